"""The K3s operations in --check against real systemd hosts (systemd-nspawn containers).

K3s cannot run here, so each host gets stand-ins that --check can read but never needs to
run: a `k3s` script that answers `--version` (v1.33.5+k3s1) and fails anything else (so no
server's API answers and live_server.yml lets the reachable servers stand in), running
`k3s`/`k3s-agent` units that only sleep, and on the first server a placeholder snapshot.
Then upgrade.yml (up to the platform layers), recover-node.yml and the etcd snapshot and
restore task files run in --check: every check, template and decision runs against the
hosts' real facts, and afterwards the stand-ins are byte-for-byte the same and the units
still run: nothing was stopped, drained, moved or written. The refusals (a skipped minor, a
downgrade, an unknown node, an unconfirmed restore) must stop before any node is touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from nspawn_lab import hosts, inventory, needs_nspawn, new_key, placeholder_bundle, ssh

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODES = {
    "mmop-s1": ("k3s_server", "10.231.0.41"),
    "mmop-s2": ("k3s_server", "10.231.0.42"),
    "mmop-s3": ("k3s_server", "10.231.0.43"),
    "mmop-a1": ("k3s_agent", "10.231.0.44"),
}
SNAPSHOT = "mlops-mmop-s1-1767225600"
SNAPSHOT_DIR = "/var/lib/rancher/k3s/server/db/snapshots"
FAKE_K3S = """#!/bin/sh
# Stand-in for the test: answers --version, fails everything else (no API here).
[ "$1" = --version ] && { echo 'k3s version v1.33.5+k3s1 (0a1b2c3d)'; echo 'go version go1.24.6'; exit 0; }
echo "stand-in k3s: $*" >&2; exit 1
"""
UNIT = "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
# What must be the same after every run: the stand-ins, the snapshot folder, the units running, no K3s config.
STATE = (
    "sha256sum /usr/local/bin/k3s; ls -la --time-style=+%s /var/lib/rancher/k3s/server/db 2>/dev/null; "
    "systemctl is-active k3s k3s-agent; test -e /etc/rancher/k3s && echo CONFIG-WRITTEN; true"
)

pytestmark = needs_nspawn


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("operations-check")
    key = new_key(tmp)
    with hosts(NODES, key):
        for name, (group, ip) in NODES.items():
            unit = "k3s" if group == "k3s_server" else "k3s-agent"
            setup = (
                f"mkdir -p /usr/local/bin && cat > /usr/local/bin/k3s <<'EOF'\n{FAKE_K3S}EOF\nchmod 0755 /usr/local/bin/k3s && "
                f"printf '{UNIT}' > /etc/systemd/system/{unit}.service && systemctl daemon-reload && systemctl start {unit}"
            )
            if name == "mmop-s1":
                setup += f" && mkdir -p {SNAPSHOT_DIR} && echo placeholder > {SNAPSHOT_DIR}/{SNAPSHOT}"
            done = ssh(key, ip, setup)
            assert done.returncode == 0, done.stderr
        plan = {
            "mlops_cluster_name": "ops",
            # Three servers need an API address that outlives any one of them (preflight refuses none).
            "mlops_api_vip": "10.231.0.49",
            "metallb_address_pools": [{"name": "default", "addresses": ["10.231.0.220-10.231.0.230"]}],
            "mlops_airgap_dir": str(placeholder_bundle(tmp)),
        }
        lab_inventory = inventory(tmp, key, NODES, plan)
        # The task files as a caller (backup, restore playbooks) would include them.
        for entry in ("etcd_snapshot", "etcd_restore"):
            play = [
                {
                    "name": f"Run {entry}",
                    "hosts": "k3s_server",
                    "gather_facts": False,
                    "become": True,
                    "roles": [{"role": "mlops_defaults"}],
                    "tasks": [{"name": entry, "ansible.builtin.include_role": {"name": "k3s", "tasks_from": f"{entry}.yml"}}],
                }
            ]
            (tmp / f"{entry}.yml").write_text(yaml.safe_dump(play, sort_keys=False))
        lab = {"key": key, "inventory": lab_inventory, "tmp": tmp}
        lab["before"] = state(lab)
        yield lab


def state(lab) -> dict[str, str]:
    return {name: ssh(lab["key"], ip, STATE).stdout for name, (_, ip) in NODES.items()}


def check(lab, playbook: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_ROLES_PATH": str(ROOT / "roles")}
    cmd = [str(BIN / "ansible-playbook"), playbook, "-i", str(lab["inventory"]), "--check", *extra]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    if os.environ.get("OPS_CHECK_LOG"):
        with open(os.environ["OPS_CHECK_LOG"], "a") as log:
            log.write(f"\n===== {' '.join(cmd)}\n{result.output}")
    return result


def assert_untouched(lab):
    after = state(lab)
    assert after == lab["before"]
    for name, text in after.items():
        assert "CONFIG-WRITTEN" not in text and "\nactive\n" in "\n" + text, (name, text)


def test_upgrade_check_walks_every_node_and_changes_nothing(lab):
    result = check(lab, "playbooks/upgrade.yml", "--skip-tags", "platform,services")
    out = result.output
    assert result.returncode == 0, out
    assert "Verdict: PASS" in out
    assert "k3s_version v1.34.9+k3s1; now: mmop-a1 v1.33.5+k3s1, mmop-s1 v1.33.5+k3s1" in out
    assert "(--check: no API answers" in out
    for play in ("Snapshot etcd before the upgrade", "Upgrade K3s servers, one at a time", "Upgrade K3s agents, one at a time"):
        assert f"PLAY [{play}]" in out, play
    # Each node in turn: cordon and drain are commands, which --check skips; the role's install runs in check.
    assert out.count("TASK [k3s : Drain the node]") == len(NODES)
    assert_untouched(lab)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            "v1.35.0+k3s1",
            "k3s_version v1.35.0+k3s1 skips a minor (Kubernetes' skew policy allows one at a time): "
            "upgrade to the latest v1.34 release first",
        ),
        ("v1.33.4+k3s1", "k3s_version v1.33.4+k3s1 would be a downgrade"),
    ],
)
def test_upgrade_refuses_a_skipped_minor_or_a_downgrade_before_any_drain(lab, version, message):
    result = check(lab, "playbooks/upgrade.yml", "-e", f"k3s_version={version}")
    assert result.returncode != 0
    assert f"mmop-s1: runs v1.33.5+k3s1, {message}" in result.output
    assert "No node was drained" in result.output
    assert "PLAY [Snapshot etcd before the upgrade]" not in result.output


def test_recover_node_check_for_a_server_and_an_agent_changes_nothing(lab):
    for node, via in (("mmop-s2", "mmop-s1"), ("mmop-a1", "mmop-s1")):
        result = check(lab, "playbooks/recover-node.yml", "-e", f"recover_node={node}")
        out = result.output
        assert result.returncode == 0, out
        # The failed node is never asked; the first other server that answers drives the recovery.
        assert f"{node} rejoins through {via}" in out
        assert "TASK [k3s : Write config.yaml (built as a dict from the inventory and the network plan)]" in out
    assert_untouched(lab)


def test_recovering_the_first_server_over_its_old_etcd_data_needs_a_named_confirmation(lab):
    # mmop-s1 holds /var/lib/rancher/k3s/server/db (the placeholder snapshot's folder).
    refused = check(lab, "playbooks/recover-node.yml", "-e", "recover_node=mmop-s1")
    assert refused.returncode != 0
    assert "run again with -e recover_node_move_db=mmop-s1" in refused.output
    assert "TASK [Delete the Node object of the failed node (K3s removes its etcd member)]" not in refused.output
    result = check(lab, "playbooks/recover-node.yml", "-e", "recover_node=mmop-s1", "-e", "recover_node_move_db=mmop-s1")
    assert result.returncode == 0, result.output
    assert "mmop-s1 rejoins through mmop-s2" in result.output
    assert "TASK [Move the old etcd data aside on the replacement]" in result.output
    assert_untouched(lab)


def test_recover_node_refuses_an_unknown_node(lab):
    result = check(lab, "playbooks/recover-node.yml", "-e", "recover_node=mmop-s9")
    assert result.returncode != 0
    assert "recover_node: mmop-s9 is not in k3s_server or k3s_agent of this inventory" in result.output


def test_etcd_snapshot_check_finds_a_live_server_and_changes_nothing(lab):
    result = check(lab, str(lab["tmp"] / "etcd_snapshot.yml"), "-e", "k3s_etcd_snapshot_name=mlops-before-test")
    assert result.returncode == 0, result.output
    assert "Live servers: mmop-s1, mmop-s2, mmop-s3 (--check: no API answers" in result.output
    assert "check_mode: true" in result.output and "server: mmop-s1" in result.output
    bad = check(lab, str(lab["tmp"] / "etcd_snapshot.yml"), "-e", "k3s_etcd_snapshot_name=nightly")
    assert bad.returncode != 0 and "must be letters, digits" in bad.output
    assert_untouched(lab)


ETCD_MEMBER = "/var/lib/rancher/k3s/server/db/etcd/member"
# cluster.yml's add-ons need an NFS server to name; this lab has none in its inventory.
NFS = ("-e", "cluster_addons_nfs_server=10.231.0.45")


@contextlib.contextmanager
def etcd_data(lab, *servers: str):
    """A stand-in etcd member folder on each of servers (no file of the lab's state), removed afterwards."""
    try:
        for name in servers:
            assert ssh(lab["key"], NODES[name][1], f"mkdir -p {ETCD_MEMBER}").returncode == 0
        yield
    finally:
        for name in servers:
            ssh(
                lab["key"],
                NODES[name][1],
                "rm -rf /var/lib/rancher/k3s/server/db/etcd; rmdir -p /var/lib/rancher/k3s/server/db 2>/dev/null; true",
            )


def test_a_rebuilt_first_server_joins_the_cluster_another_server_holds(lab):
    # mmop-s1 holds no etcd data, as after a rebuild; mmop-s2 does. No API address: joins name a server.
    with etcd_data(lab, "mmop-s2"):
        result = check(lab, "playbooks/cluster.yml", "--diff", "--tags", "k3s", "-e", "k3s_api_endpoint=", *NFS)
    out = result.output
    assert result.returncode == 0, out
    assert "etcd data on mmop-s2: the cluster exists" in out
    assert "mmop-s1 joins through https://10.231.0.42:6443, token from mmop-s2" in out
    # Nobody starts a second cluster; mmop-s1, mmop-s3 and the agent join through mmop-s2.
    assert "+cluster-init" not in out
    assert out.count("+server: https://10.231.0.42:6443") == 3
    assert_untouched(lab)


def test_cluster_check_goes_on_without_the_first_server(lab, tmp_path):
    # mmop-s1 is lost: its address answers no more (nothing listens on .47), and preflight is told to leave it out.
    lost = tmp_path / "lost.yml"
    lost.write_text(yaml.safe_dump({"all": {"children": {"k3s_server": {"hosts": {"mmop-s1": {"ansible_host": "10.231.0.47"}}}}}}))
    with etcd_data(lab, "mmop-s2", "mmop-s3"):
        result = check(lab, "playbooks/cluster.yml", "--diff", "-i", str(lost), "--limit", "!mmop-s1", *NFS)
    out = result.output
    assert result.returncode == 0, out
    assert "etcd data on mmop-s2, mmop-s3: the cluster exists" in out and "not asked (unreachable): mmop-s1" in out
    assert "+cluster-init" not in out and "+server: https://10.231.0.49:6443" in out
    # The add-ons go through the first server that answers.
    assert "Live servers: mmop-s2, mmop-s3" in out
    hand = out.split("TASK [cluster_addons : Hand the add-ons to the K3s deploy controller]")[1].split("TASK [")[0]
    assert "[mmop-s2]" in hand and "mmop-s3" not in hand
    for name in ("mmop-s2", "mmop-s3", "mmop-a1"):
        assert re.search(rf"{name}\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out), name
    assert_untouched(lab)


def test_etcd_restore_needs_the_named_confirmation_and_in_check_stops_nothing(lab):
    playbook = str(lab["tmp"] / "etcd_restore.yml")
    refused = check(lab, playbook, "-e", f"k3s_etcd_restore_snapshot={SNAPSHOT}")
    assert refused.returncode != 0
    assert f"k3s_etcd_restore_confirm must repeat the snapshot file name (-e k3s_etcd_restore_confirm={SNAPSHOT})" in refused.output
    assert "TASK [k3s : Stop K3s on every server]" not in refused.output
    missing = check(lab, playbook, "-e", "k3s_etcd_restore_snapshot=mlops-gone-1", "-e", "k3s_etcd_restore_confirm=mlops-gone-1")
    assert missing.returncode != 0 and f"{SNAPSHOT_DIR}/mlops-gone-1 is not on mmop-s1" in missing.output
    result = check(lab, playbook, "-e", f"k3s_etcd_restore_snapshot={SNAPSHOT}", "-e", f"k3s_etcd_restore_confirm={SNAPSHOT}")
    assert result.returncode == 0, result.output
    for task in ("Stop K3s on every server", "Start K3s on mmop-s1", "Move the old etcd data aside on mmop-s3"):
        assert f"TASK [k3s : {task}]" in result.output, task
    assert_untouched(lab)


def test_rotate_certs_needs_the_named_confirmation_and_in_check_restarts_nothing(lab):
    refused = check(lab, "playbooks/rotate-certs.yml", "-e", "rotate_certs_confirm=ops/prod")
    assert refused.returncode != 0
    assert "pass -e rotate_certs_confirm=ops/dev (mlops_cluster_name/mlops_environment) to confirm" in refused.output
    assert "PLAY [Rotate the servers' certificates, one at a time]" not in refused.output
    result = check(lab, "playbooks/rotate-certs.yml", "-e", "rotate_certs_confirm=ops/dev")
    out = result.output
    assert result.returncode == 0, out
    # One node at a time (a play batch each): servers stopped, rotated (a command: --check skips it) and
    # started; then the agent, which skips both and is restarted.
    servers, agent = out.split("PLAY [Restart the agents for new certificates, one at a time]")

    def did(text: str, task: str, result: str, name: str) -> bool:
        return re.search(rf"TASK \[k3s : {re.escape(task)}\] \**\n{result}: \[{name}\]", text) is not None

    # The start finds the unit running (--check stopped nothing): ok, not changed.
    for task, result in (
        ("Stop K3s before its certificates are moved aside", "changed"),
        ("Start K3s, which issues the new certificates", "ok"),
    ):
        assert all(did(servers, task, result, name) for name in NODES if name != "mmop-a1"), task
    assert did(agent, "Start K3s, which issues the new certificates", "changed", "mmop-a1")
    assert did(agent, "Stop K3s before its certificates are moved aside", "skipping", "mmop-a1")
    assert "PLAY [Restart the agents for new certificates, one at a time]" in out
    assert "PLAY [Refresh the controller's kubeconfig]" in out
    assert_untouched(lab)
