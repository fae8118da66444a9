"""Preflight against real interfaces: hosts are Linux network namespaces made by the test.

Each namespace holds one end of a veth pair (this kernel has no dummy links) with the
address under test. `ansible-playbook` runs inside it with the local connection, so the
preflight role reads that namespace's interfaces and routes exactly as on a real host.
Needs root and iproute2; no traffic leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PLAN_FIX = ["-e", "k3s_cluster_cidr=10.44.0.0/16", "-e", "k3s_service_cidr=10.45.0.0/16", "-e", "k3s_cluster_dns=10.45.0.10"]

# Skipped only on a developer machine without root; under CI (CI=true) they must run.
pytestmark = pytest.mark.skipif(
    (os.geteuid() != 0 or not shutil.which("ip")) and not os.environ.get("CI"),
    reason="needs root and iproute2 for network namespaces",
)
_counter = itertools.count()


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class Namespace:
    """A network namespace with one veth end carrying `address` (CIDR)."""

    def __init__(self, address: str):
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        self.name = f"mmpf-{tag}"
        self.inner, self.outer = f"mpi{tag}", f"mpo{tag}"
        self.address = address
        sh("ip", "netns", "add", self.name)
        sh("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        sh("ip", "link", "set", self.inner, "netns", self.name)
        sh("ip", "-n", self.name, "addr", "add", address, "dev", self.inner)
        sh("ip", "-n", self.name, "link", "set", self.inner, "up")
        sh("ip", "-n", self.name, "link", "set", "lo", "up")
        # A default route gives Ansible a default_ipv4 (the node IP), as on a real host.
        sh("ip", "-n", self.name, "route", "add", "default", "dev", self.inner)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns():
    made: list[Namespace] = []

    def make(address: str) -> Namespace:
        made.append(Namespace(address))
        return made[-1]

    yield make
    for ns in made:
        ns.remove()


def playbook(*args: str, netns: Namespace | None = None, playbook: str = "playbooks/preflight.yml") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(VENV_BIN / "ansible-playbook"), playbook, *args]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns.name, *cmd]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return result


def test_host_in_default_service_range_fails_and_names_address_and_range(netns):
    ns = netns("10.43.100.94/24")
    result = playbook("-i", "inventories/local", netns=ns)
    assert result.returncode != 0, result.output
    assert "10.43.100.94" in result.output
    assert "10.43.0.0/16" in result.output
    assert "is inside k3s_service_cidr 10.43.0.0/16" in result.output
    assert "Verdict: FAIL" in result.output


def test_moved_ranges_given_with_extra_vars_pass(netns):
    ns = netns("10.43.100.94/24")
    result = playbook("-i", "inventories/local", *PLAN_FIX, netns=ns)
    assert result.returncode == 0, result.output
    assert "Verdict: PASS" in result.output
    assert "10.45.0.0/16" in result.output


def test_passes_in_check_mode_and_changes_nothing(netns):
    ns = netns("10.43.100.94/24")
    result = playbook("-i", "inventories/local", "--check", *PLAN_FIX, netns=ns)
    assert result.returncode == 0, result.output
    assert "changed=0" in result.output


@pytest.mark.parametrize("form", ["key_value_json", "extra_vars_json"])
def test_metallb_pools_from_extra_vars_are_honoured(netns, form):
    ns = netns("10.43.100.94/24")
    pools = [{"name": "lb", "addresses": ["10.43.100.90-10.43.100.99"]}]
    pool_arg = f"metallb_address_pools={compact(pools)}" if form == "key_value_json" else json.dumps({"metallb_address_pools": pools})
    result = playbook("-i", "inventories/local", *PLAN_FIX, "-e", pool_arg, netns=ns)
    assert result.returncode != 0, result.output
    assert "10.43.100.94 on " in result.output and "is inside MetalLB pool 'lb' (10.43.100.90-10.43.100.99)" in result.output

    good = [{"name": "lb", "addresses": ["10.43.100.200/29"]}]
    good_arg = f"metallb_address_pools={compact(good)}" if form == "key_value_json" else json.dumps({"metallb_address_pools": good})
    result = playbook("-i", "inventories/local", *PLAN_FIX, "-e", good_arg, netns=ns)
    assert result.returncode == 0, result.output
    assert "not inside any host subnet" not in result.output  # the pool sits on the host's subnet


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def test_metallb_pools_key_value_with_spaces_gets_a_readable_error(netns):
    ns = netns("10.43.100.94/24")
    result = playbook("-i", "inventories/local", *PLAN_FIX, "-e", 'metallb_address_pools=[{"name": "lb"}]', netns=ns)
    assert result.returncode != 0
    assert "metallb_address_pools could not be parsed as JSON or YAML" in result.output
    assert "key=value form splits at spaces" in result.output


def test_every_problem_reported_in_one_run(netns):
    ns = netns("10.43.100.94/24")
    result = playbook("-i", "inventories/local", "-e", "k3s_cluster_cidr=10.42.0.0/33", "-e", "k3s_cluster_dns=10.99.0.1", netns=ns)
    assert result.returncode != 0
    out = result.output
    assert "k3s_cluster_cidr: '10.42.0.0/33' is not a valid CIDR" in out
    assert "k3s_cluster_dns 10.99.0.1 is not inside k3s_service_cidr 10.43.0.0/16" in out
    assert "10.43.100.94 on " in out
    assert out.count("TASK [preflight : Fail after reporting everything]") == 1


def _multi_inventory(tmp_path: Path, hosts: dict[str, tuple[str, Namespace | None]], extra_vars: dict | None = None) -> Path:
    """Inventory whose hosts are namespaces: a wrapper interpreter enters each one."""
    inventory = {
        "all": {
            "children": {
                "k3s_cluster": {"children": {"k3s_server": {"hosts": {}}, "k3s_agent": {"hosts": {}}}},
                "nfs_server": {"hosts": {}},
            }
        }
    }
    groups = inventory["all"]["children"]["k3s_cluster"]["children"]
    for name, (group, ns) in hosts.items():
        if ns is None:  # unreachable: nothing listens on loopback port 9
            spec = {
                "ansible_connection": "ssh",
                "ansible_host": "127.0.0.1",
                "ansible_port": 9,
                "ansible_ssh_common_args": "-o ConnectTimeout=3",
            }
        else:
            wrapper = tmp_path / f"python-{name}"
            wrapper.write_text(
                "#!/bin/sh\n"
                f'exec unshare --uts -- ip netns exec {ns.name} sh -c \'hostname {name} && exec {sys.executable} "$@"\' sh "$@"\n'
            )
            wrapper.chmod(0o755)
            spec = {"ansible_connection": "local", "ansible_python_interpreter": str(wrapper)}
        groups[group]["hosts"][name] = spec
    inv_dir = tmp_path / "inventory"
    (inv_dir / "group_vars" / "all").mkdir(parents=True)
    (inv_dir / "hosts.json").write_text(json.dumps(inventory))
    plan = {
        "mlops_cluster_name": "test",
        "mlops_environment": "dev",
        "k3s_cluster_cidr": "10.44.0.0/16",
        "k3s_service_cidr": "10.45.0.0/16",
        "k3s_cluster_dns": "10.45.0.10",
        "metallb_address_pools": [{"name": "lb", "addresses": ["10.43.100.200/29"]}],
        "mlops_kubeconfig": str(tmp_path / "kubeconfig"),
    }
    plan.update(extra_vars or {})
    (inv_dir / "group_vars" / "all" / "network.json").write_text(json.dumps(plan))
    return inv_dir


def test_two_hosts_with_one_node_ip_and_an_unreachable_one_stop_site_before_any_change(netns, tmp_path):
    a, b = netns("10.43.100.11/24"), netns("10.43.100.11/24")
    inventory = _multi_inventory(tmp_path, {"node1": ("k3s_server", a), "node2": ("k3s_agent", b), "node3": ("k3s_agent", None)})
    result = playbook("-i", str(inventory), playbook="site.yml")
    out = result.output
    assert result.returncode != 0, out
    assert "node IP 10.43.100.11 is shared by node1, node2" in out
    assert "node3 could not be checked" in out
    assert "hostname node" not in out  # each namespace host has its own UTS name
    # No later play started: the host layer never saw a host.
    assert "PLAY [Prepare hosts]" not in out
    assert "Verdict: FAIL" in out


def test_two_clean_hosts_pass_and_later_layers_skip_the_repeat(netns, tmp_path):
    # Only the preflight plays: these namespace "hosts" share this machine's filesystem,
    # so no layer that changes hosts may run against them.
    a, b = netns("10.43.100.11/24"), netns("10.43.100.12/24")
    inventory = _multi_inventory(tmp_path, {"node1": ("k3s_server", a), "node2": ("k3s_agent", b)})
    # The layers' input checks are left out too: these hosts have no bundle and no way out.
    result = playbook("-i", str(inventory), "--tags", "preflight", "--skip-tags", "cluster,platform,services", playbook="site.yml")
    out = result.output
    assert result.returncode == 0, out
    assert out.count("PLAY [Preflight]") == 6  # site.yml imports it, and so does each of the five layers
    assert out.count("Verdict: PASS") == 1  # but it checks only once per run
