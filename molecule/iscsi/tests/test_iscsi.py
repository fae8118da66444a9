"""iscsi on a VM: initiator ready, its name kept, and a real login to a LIO target on the same host."""

import pytest

TARGET = "iqn.2003-01.org.linux-iscsi.molecule:disk1"
CONFIGFS = "/sys/kernel/config/target"


def test_initiator_name_kept(host):
    content = host.file("/etc/iscsi/initiatorname.iscsi").content_string
    assert content.strip() == "InitiatorName=iqn.2004-10.com.ubuntu:01:molecule-kept"


def test_iscsid_running_and_transport_loaded(host):
    service = host.service("iscsid")
    assert service.is_enabled and service.is_running
    assert host.run("grep -qw ^iscsi_tcp /proc/modules").rc == 0
    assert "iscsi_tcp" in host.check_output("cat /etc/modules-load.d/*.conf")


def test_multipath_blacklists_local_disks(host):
    conf = host.file("/etc/multipath.conf").content_string
    assert "blacklist" in conf and '"^sd[a-z0-9]+"' in conf
    assert host.service("multipathd").is_running


@pytest.fixture(scope="module")
def lio_target(host):
    """A LIO target built through configfs (kernel only, no target packages), served on loopback."""
    tpg = f"{CONFIGFS}/iscsi/{TARGET}/tpgt_1"
    backstore = f"{CONFIGFS}/core/fileio_0/disk1"
    setup = " && ".join(
        [
            "modprobe target_core_mod",
            "modprobe target_core_file",
            "modprobe iscsi_target_mod",
            "truncate -s 64M /var/tmp/lio-disk1.img",
            f"mkdir -p {backstore}",
            f"echo fd_dev_name=/var/tmp/lio-disk1.img,fd_dev_size=67108864 > {backstore}/control",
            f"echo 1 > {backstore}/enable",
            f"mkdir -p {tpg}/lun/lun_0 {tpg}/np/127.0.0.1:3260",
            f"ln -s {backstore} {tpg}/lun/lun_0/disk1",
            f"echo 0 > {tpg}/attrib/authentication",
            f"echo 1 > {tpg}/attrib/generate_node_acls",
            f"echo 0 > {tpg}/attrib/demo_mode_write_protect",
            f"echo 1 > {tpg}/enable",
        ]
    )
    host.run_expect([0], f"sh -c '{setup}'")
    yield TARGET
    host.run(f"iscsiadm -m node -T {TARGET} -p 127.0.0.1 --logout")


def test_initiator_logs_into_a_real_target(host, lio_target):
    discovered = host.check_output("iscsiadm -m discovery -t sendtargets -p 127.0.0.1")
    assert lio_target in discovered
    host.run_expect([0], f"iscsiadm -m node -T {lio_target} -p 127.0.0.1 --login")
    sessions = host.check_output("iscsiadm -m session")
    assert lio_target in sessions
    disk = host.run("for i in $(seq 50); do ls /dev/disk/by-path/*iscsi* 2>/dev/null && break; sleep 0.2; done")
    assert "iscsi" in disk.stdout
