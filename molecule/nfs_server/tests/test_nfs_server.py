"""nfs_server on a VM: a folder per cluster and environment, NFSv4 only, exported to node addresses only."""

import pytest

ADDRESS = "10.232.0.43"  # mm-nfs1, also a cluster node
FOLDERS = ["/srv/nfs/molecule/dev", "/srv/nfs/molecule/prod"]


def test_server_running_nfsv4_only(host):
    service = host.service("nfs-server")
    assert service.is_enabled and service.is_running
    versions = host.file("/proc/fs/nfsd/versions").content_string.split()
    assert "-3" in versions and "+4.2" in versions


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_exported_to_the_node_address_only(host, folder):
    assert host.file(folder).is_directory
    exports = host.check_output("exportfs -v")
    lines = [line for line in exports.split(folder)[1:]]
    assert lines, f"{folder} is not exported"
    client = lines[0].split()[0]
    assert client.startswith(ADDRESS + "(")
    assert "*" not in exports


def test_export_mounts_over_nfs4_and_round_trips_data(host):
    host.run_expect([0], "mkdir -p /mnt/nfs-test")
    host.run_expect([0], f"mount -t nfs4 {ADDRESS}:/srv/nfs/molecule/dev /mnt/nfs-test")
    try:
        assert "nfs4" in host.check_output("findmnt -n -o FSTYPE /mnt/nfs-test")
        host.run_expect([0], "echo written-over-nfs > /mnt/nfs-test/probe.txt && sync")
        assert host.file("/srv/nfs/molecule/dev/probe.txt").content_string == "written-over-nfs\n"
    finally:
        host.run("umount /mnt/nfs-test")
        host.run("rm -f /srv/nfs/molecule/dev/probe.txt")


def test_nfsv3_mount_is_refused(host):
    result = host.run(f"timeout 20 mount -t nfs -o vers=3 {ADDRESS}:/srv/nfs/molecule/dev /mnt/nfs-test")
    assert result.rc != 0
