"""common on a VM: packages, kernel modules, sysctls, time sync, swap and /etc/hosts, live."""

import pytest

MODULES = ["br_netfilter", "overlay", "iscsi_tcp", "nfs"]


def test_base_packages_installed_and_usable(host):
    for package in ("chrony", "conntrack", "socat", "nfs-common"):
        assert host.package(package).is_installed
    assert host.exists("mount.nfs") or host.file("/sbin/mount.nfs").exists


@pytest.mark.parametrize("module", MODULES)
def test_kernel_modules_loaded_now_and_at_boot(host, module):
    assert host.run(f"grep -qw ^{module} /proc/modules").rc == 0
    assert module in host.check_output("cat /etc/modules-load.d/*.conf")


@pytest.mark.parametrize(
    "key, value",
    [
        ("net.ipv4.ip_forward", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ("fs.inotify.max_user_watches", "524288"),
        ("fs.inotify.max_user_instances", "8192"),
    ],
)
def test_sysctls_live_and_in_one_drop_in(host, key, value):
    assert host.check_output(f"sysctl -n {key}") == value
    assert key in host.file("/etc/sysctl.d/90-mlops-metal.conf").content_string


def test_chrony_running_with_our_sources_only(host):
    service = host.service("chrony")
    assert service.is_enabled and service.is_running
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "server 10.232.0.1 iburst" in conf and "pool " not in conf
    # chronyd answers on its control socket with exactly the configured source.
    assert "10.232.0.1" in host.check_output("chronyc -n sources")


def test_swap_off_now_and_after_reboot(host):
    assert host.check_output("swapon --show --noheadings") == ""
    active = [
        line for line in host.file("/etc/fstab").content_string.splitlines() if " swap " in line and not line.lstrip().startswith("#")
    ]
    assert active == []


def test_etc_hosts_names_the_cluster_node(host):
    hosts = host.file("/etc/hosts").content_string
    assert "10.232.0.41 mm-common1" in hosts
