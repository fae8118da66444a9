"""The cluster playbook in --check against real systemd hosts (systemd-nspawn containers).

K3s itself cannot run here (no binary, no images), so this is the strongest live check of
the cluster layer: preflight and the input validation run for real, every task templates
against the hosts' real facts, --diff shows the exact config.yaml each node would get, and
afterwards nothing on the hosts has changed. The air-gap bundle is a directory of
placeholder files: in --check nothing copies or executes them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nspawn_lab import hosts, inventory, needs_nspawn, new_key, placeholder_bundle, ssh

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODES = {"mmck-s1": ("k3s_server", "10.231.0.21"), "mmck-a1": ("k3s_agent", "10.231.0.22")}

pytestmark = needs_nspawn


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster-check")
    key = new_key(tmp)
    with hosts(NODES, key):
        bundle = placeholder_bundle(tmp)
        plan = {
            "mlops_cluster_name": "check",
            "metallb_address_pools": [{"name": "default", "addresses": ["10.231.0.200-10.231.0.210"]}],
            "mlops_airgap_dir": str(bundle),
        }
        yield {"key": key, "inventory": inventory(tmp, key, NODES, plan, {"nfs_server": {"hosts": {"mmck-s1": {}}}}), "bundle": bundle}


def cluster_check(lab) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(BIN / "ansible-playbook"), "playbooks/cluster.yml", "-i", str(lab["inventory"]), "--check", "--diff"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return result


def test_check_mode_shows_each_node_its_config_and_changes_nothing(lab):
    result = cluster_check(lab)
    out = result.output
    assert result.returncode == 0, out
    assert "Verdict: PASS" in out  # preflight ran against the real hosts first
    # The config each node would get, from the hosts' real facts.
    assert "+node-ip: 10.231.0.21" in out and "+cluster-init: true" in out
    assert "+node-ip: 10.231.0.22" in out and "+server: https://10.231.0.21:6443" in out
    assert "+selinux: false" in out  # Debian 12 hosts: no SELinux
    assert "token:" not in out.replace("token-file:", "")
    for name, (_, ip) in NODES.items():
        probe = ssh(lab["key"], ip, "test ! -e /etc/rancher/k3s && test ! -e /usr/local/bin/k3s && echo untouched")
        assert probe.stdout.strip() == "untouched", (name, probe.stdout, probe.stderr)


def test_incomplete_bundle_stops_before_any_host_is_touched(lab):
    chart = lab["bundle"] / "charts" / "metallb-0.15.2.tgz"
    chart.rename(chart.with_suffix(".moved"))
    try:
        result = cluster_check(lab)
    finally:
        chart.with_suffix(".moved").rename(chart)
    assert result.returncode != 0
    assert "charts lacks metallb-0.15.2.tgz" in result.output
    assert "PLAY [K3s servers]" not in result.output
