"""NFS backup and restore, then playbooks/reset.yml, on a converged VM; in file order.

Each step runs the real playbook against molecule's inventory (ansible-playbook with molecule's
settings) and checks the host with testinfra: round trip of the export tree, a damaged archive
refused, reset with the data kept, a second reset changing nothing, a wipe refused and then
confirmed, and a fresh converge that works and converges to changed=0.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
FETCHED = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "backups" / "mm-reset"
TREE = "/srv/nfs"
SHARE = "/srv/nfs/molecule/dev"
BACKUPS = "/var/backups/mlops-metal/nfs"
CONFIRM = "molecule/dev"  # mlops_cluster_name/mlops_environment of molecule.yml
SNAPSHOT = "/var/lib/rancher/k3s/server/db/snapshots/etcd-snapshot-standin-1700000000"
K3S_PORTS = {"6443/tcp", "2379-2380/tcp", "10250/tcp", "8472/udp", "7946/tcp", "7946/udp"}
NFS_RULE = 'rule family="ipv4" source address="10.232.0.44" port port="2049" protocol="tcp" accept'


@pytest.fixture(scope="module")
def play(request):
    inventory = request.config.option.ansible_inventory

    def run(playbook: str, *extra: str, expect_rc: int = 0) -> tuple[int, str]:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, playbook, *extra],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            # molecule forces colour; the recap is parsed below.
            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        )
        # One line: the YAML callback wraps long messages.
        output = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == expect_rc, output[-4000:]
        recap = re.search(r"mm-reset : ok=\d+ changed=(\d+)", output)
        return (int(recap.group(1)) if recap else -1), output

    return run


def tree_state(host) -> dict[str, str]:
    """Every entry under the share: owner, mode, type, link target and, for files, sha256."""
    meta = host.check_output(f"cd {SHARE} && find . -mindepth 1 -printf '%p|%U:%G|%m|%y|%l\\n'")
    sums = host.check_output(f"cd {SHARE} && find . -type f -exec sha256sum {{}} +")
    state = {path: rest for path, rest in (line.split("|", 1) for line in meta.splitlines())}
    for line in sums.splitlines():
        digest, path = line.split("  ", 1)
        state[path] += "|" + digest
    return state


def firewall(host) -> dict[str, set[str]]:
    return {
        "ports": set(host.check_output("firewall-cmd --zone=public --list-ports").split()),
        "services": set(host.check_output("firewall-cmd --zone=public --list-services").split()),
        "rich": set(host.check_output("firewall-cmd --zone=public --list-rich-rules").splitlines()),
        "trusted": set(host.check_output("firewall-cmd --zone=trusted --list-sources").split()),
    }


def test_converged_host_has_what_reset_removes(host):
    rules = firewall(host)
    assert rules["ports"] >= K3S_PORTS and NFS_RULE in rules["rich"]
    assert rules["trusted"] == {"10.42.0.0/16", "10.43.0.0/16"}
    assert host.service("k3s").is_running and host.service("nfs-server").is_running
    assert host.file("/etc/exports.d/mlops-metal.exports").exists
    assert "containerd-shim" in host.check_output("ps -e -o args=")
    assert {"cni0", "flannel.1"} <= set(host.check_output("ls /sys/class/net").split())


@pytest.fixture(scope="module")
def written(host):
    """Test data in the share: several owners and modes, nested folders, a link, an empty file,
    a name with spaces, 2 MiB of random bytes, and a user xattr (tar --xattrs keeps it)."""
    host.run_test(
        f"set -e; cd {SHARE}; mkdir -p claim-a/deep/er claim-b"
        "; echo alpha > claim-a/a.txt; head -c 2097152 /dev/urandom > claim-a/deep/er/blob.bin"
        "; : > claim-b/empty; printf 'spaces\\n' > 'claim-b/with spaces.txt'; ln -s ../claim-a/a.txt claim-b/link"
        "; chown -R 1234:5678 claim-a; chmod 0640 claim-a/a.txt; chmod 0750 claim-a/deep"
        "; python3 -c \"import os; os.setxattr('claim-b/empty', 'user.mlops', b'kept')\""
    )
    return tree_state(host)


def test_backup_writes_archive_and_manifest(host, play, written):
    # Three older backups: with keep 2, the newest of them and the new one are left.
    host.run_test(
        f"mkdir -p {BACKUPS} && cd {BACKUPS} && for n in 1 2 3; do echo old > old$n.tar.gz; echo {{}} > old$n.json;"
        ' touch -d "2020-01-0$n" old$n.tar.gz; done'
    )
    play(str(SCENARIO / "backup.yml"), "-e", "nfs_server_backup_name=roundtrip", "-e", "nfs_server_backup_keep=2")
    manifest = json.loads(host.file(f"{BACKUPS}/roundtrip.json").content_string)
    archive = host.file(f"{BACKUPS}/roundtrip.tar.gz")
    assert manifest["file"] == "roundtrip.tar.gz" and manifest["size"] == archive.size
    assert manifest["sha256"] == archive.sha256sum
    assert manifest["file_count"] == sum(1 for entry in written.values() if entry.split("|")[2] != "d")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created"])
    assert "--xattrs" in manifest["tar_options"] and "--acls" in manifest["tar_options"]
    assert sorted(host.check_output(f"ls {BACKUPS}").split()) == ["old3.json", "old3.tar.gz", "roundtrip.json", "roundtrip.tar.gz"]
    assert (FETCHED / "roundtrip.json").is_file() and (FETCHED / "roundtrip.tar.gz").stat().st_size == archive.size


def test_restore_refuses_a_tree_with_files_without_confirmation(host, play, written):
    _, output = play(str(SCENARIO / "restore.yml"), "-e", "nfs_server_backup_name=roundtrip", expect_rc=2)
    assert "nfs_server_restore_confirm" in output and "'roundtrip'" in output
    assert tree_state(host) == written


def test_restore_round_trip_from_the_controller_copy(host, play, written):
    # The data lost, and the host's own copy too: the restore takes the controller's.
    host.run_test(f"rm -rf {SHARE}/* {BACKUPS}/roundtrip.*")
    play(str(SCENARIO / "restore.yml"), "-e", "nfs_server_backup_name=roundtrip")
    assert tree_state(host) == written
    xattr = f"import os; print(os.getxattr('{SHARE}/claim-b/empty', 'user.mlops').decode())"
    assert host.check_output(f'python3 -c "{xattr}"') == "kept"


def test_restore_refuses_an_archive_that_differs_from_its_manifest(host, play, written):
    # A file the archive lacks: a restore that went ahead (it is confirmed) would delete it.
    host.run_test(
        f"cd {BACKUPS} && cp roundtrip.tar.gz damaged.tar.gz && printf x >> damaged.tar.gz"
        f" && sed 's/roundtrip/damaged/g' roundtrip.json > damaged.json && echo new > {SHARE}/not-in-backup.txt"
    )
    _, output = play(
        str(SCENARIO / "restore.yml"),
        "-e",
        "nfs_server_backup_name=damaged",
        "-e",
        "nfs_server_restore_confirm=damaged",
        expect_rc=2,
    )
    assert "the archive is damaged" in output
    assert host.file(f"{SHARE}/not-in-backup.txt").exists
    host.run_test(f"rm {SHARE}/not-in-backup.txt")
    assert tree_state(host) == written


def test_reset_without_confirmation_changes_nothing(host, play):
    _, output = play(str(ROOT / "playbooks/reset.yml"), expect_rc=2)
    assert "reset_confirm" in output and CONFIRM in output
    assert host.service("k3s").is_running


@pytest.fixture(scope="module")
def reset(play, written):
    return play(str(ROOT / "playbooks/reset.yml"), "-e", f"reset_confirm={CONFIRM}")


def test_reset_closes_exactly_the_ports_our_roles_opened(host, reset):
    rules = firewall(host)
    assert not rules["ports"] and not rules["rich"] and not rules["trusted"]
    assert "ssh" in rules["services"]
    assert host.service("firewalld").is_running


def test_reset_removes_k3s(host, reset):
    for unit in ("k3s", "k3s-agent"):
        assert not host.file(f"/etc/systemd/system/{unit}.service").exists
        assert not host.service(unit).is_running
    assert "containerd-shim" not in host.check_output("ps -e -o args=")
    assert "sleep 100000" not in host.check_output("ps -e -o args=")
    assert not re.search(r" (/run/k3s|/var/lib/kubelet|/var/lib/rancher|/run/netns/cni-)", host.file("/proc/mounts").content_string)
    assert not {"cni0", "flannel.1", "vethstandin"} & set(host.check_output("ls /sys/class/net").split())
    assert "cni-" not in host.check_output("ip netns list")
    rules = host.file("/run/k3s-standin.rules").content_string
    assert not re.search(r"KUBE-|CNI-|flannel", rules, re.IGNORECASE) and "-A INPUT -s 192.0.2.0/24 -j SITE-RULE" in rules
    for path in (
        "/usr/local/bin/k3s",
        "/usr/local/bin/kubectl",
        "/usr/local/bin/crictl",
        "/usr/local/bin/ctr",
        "/etc/rancher",
        "/var/lib/kubelet",
        "/var/lib/cni",
        "/run/k3s",
        "/run/flannel",
        "/var/lib/rancher/k3s/server/db/state.db",
        "/var/lib/rancher/k3s/data",
        "/var/lib/rancher/k3s/agent",
    ):
        assert not host.file(path).exists, path


def test_reset_unexports_and_stops_nfs_but_keeps_the_data(host, reset, written):
    assert not host.file("/etc/exports.d/mlops-metal.exports").exists
    assert not host.file("/etc/nfs.conf.d/mlops-metal.conf").exists
    assert host.check_output("exportfs -s") == ""
    assert not host.service("nfs-server").is_running and not host.service("nfs-server").is_enabled
    assert tree_state(host) == written
    assert host.file(SNAPSHOT).content_string == "standin snapshot\n"
    assert host.file(f"{BACKUPS}/roundtrip.tar.gz").exists


def test_second_reset_changes_nothing(play, reset):
    changed, _ = play(str(ROOT / "playbooks/reset.yml"), "-e", f"reset_confirm={CONFIRM}")
    assert changed == 0


def wipe(play, confirm: str, **kwargs):
    """reset.yml asked to wipe the data, with ``confirm`` as the wipe's confirmation."""
    extra = ("-e", f"reset_confirm={CONFIRM}", "-e", "reset_wipe_data=true", "-e", f"reset_wipe_data_confirm={confirm}")
    return play(str(ROOT / "playbooks/reset.yml"), *extra, **kwargs)


def test_wipe_with_a_wrong_confirmation_is_refused(host, play, reset, written):
    _, output = wipe(play, "molecule/prod", expect_rc=2)
    assert "reset_wipe_data_confirm" in output and f"'{CONFIRM}'" in output
    assert tree_state(host) == written and host.file(SNAPSHOT).exists


def test_confirmed_wipe_deletes_the_export_tree_and_snapshots(host, play, reset):
    wipe(play, CONFIRM)
    assert not host.file(TREE).exists
    assert not host.file("/var/lib/rancher").exists
    # Backups are never part of a wipe.
    assert host.file(f"{BACKUPS}/roundtrip.tar.gz").exists


def test_fresh_converge_works_and_is_idempotent(host, play):
    play(str(SCENARIO / "converge.yml"))
    assert host.service("k3s").is_running and host.service("nfs-server").is_running
    assert SHARE in host.check_output("exportfs -s")
    assert firewall(host)["ports"] >= K3S_PORTS
    changed, _ = play(str(SCENARIO / "converge.yml"))
    assert changed == 0
