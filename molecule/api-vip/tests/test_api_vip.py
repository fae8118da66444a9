"""The API address on three real VMs: one server holds it, and it moves within seconds when the
holder's API stops, its keepalived stops or the whole VM goes. The fourth host (the client that
measures, outside k3s_server) can never take it. Tests run in file order: the last one kills a VM."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

VIP = "10.232.0.50"
SERVERS = {"mm-vip1": "10.232.0.51", "mm-vip2": "10.232.0.52", "mm-vip3": "10.232.0.53"}
CLIENT = "mm-vipc"
# Servers whose VM the last test killed.
DEAD: set[str] = set()
RESULTS = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "build/molecule/api-vip-failover.json"


@pytest.fixture(scope="module")
def hosts(request):
    import testinfra

    inventory = request.config.option.ansible_inventory
    return {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory) for name in [*SERVERS, CLIENT]}


def holders(hosts) -> list[str]:
    alive = [n for n in SERVERS if n not in DEAD]
    return [n for n in alive if hosts[n].run(f"ip -o -4 address show to {VIP}/32").stdout.strip()]


def answering(hosts) -> str:
    """Which server answers on the address, asked from the client."""
    return hosts[CLIENT].check_output(f"/usr/local/bin/vip-poll {VIP} 0.1").split()[-1]


def wait_for_holder(hosts, timeout=60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = holders(hosts)
        if len(found) == 1 and answering(hosts) == found[0]:
            return found[0]
        time.sleep(1)
    raise AssertionError(f"no single holder of {VIP} within {timeout} s: {holders(hosts)}")


def measure(hosts, break_holder, label: str) -> tuple[str, str, float]:
    """Break the holder while the client polls; the outage the client saw, in seconds."""
    client = hosts[CLIENT]
    old = wait_for_holder(hosts)
    client.run_test("systemd-run --unit=vip-poll --collect /bin/sh -c '/usr/local/bin/vip-poll %s 60 >/root/poll.log'", VIP)

    def answers() -> list[tuple[float, str]]:
        lines = client.check_output("cat /root/poll.log").splitlines()
        return [(float(t), n) for t, n in (line.split() for line in lines if len(line.split()) == 2)]

    # A few answers from the old holder first (the poller's start is seconds under emulation).
    deadline = time.monotonic() + 60
    while sum(n == old for _, n in answers()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    break_holder(old)
    new, deadline = "", time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = answers()
        after = [a for a in seen if a[1] not in ("-", old)]
        if after:
            new = after[0][1]
            break
        time.sleep(0.2)
    client.run("systemctl stop vip-poll")
    assert new in SERVERS and new != old, f"{label}: the address did not move from {old} ({seen[-5:]})"
    last_old = max(t for t, n in seen if n == old)
    outage = round(after[0][0] - last_old, 1)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[label] = {"from": old, "to": new, "outage_s": outage}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{label}: {old} -> {new}, no answer for {outage} s")
    assert outage < 20, f"{label}: {outage} s without an answer"
    return old, new, outage


def test_keepalived_runs_on_the_servers_with_the_others_as_peers(hosts):
    for name, address in SERVERS.items():
        host = hosts[name]
        assert host.service("keepalived").is_running and host.service("keepalived").is_enabled
        conf = host.file("/etc/keepalived/keepalived.conf")
        assert conf.mode == 0o600
        peers = conf.content_string.split("unicast_peer {")[1].split("}")[0].split()
        assert sorted(peers) == sorted(a for n, a in SERVERS.items() if n != name)
        assert f"unicast_src_ip {address}" in conf.content_string and "check_unicast_src" in conf.content_string


def test_firewall_takes_vrrp_from_the_peers_only(hosts):
    for name in SERVERS:
        rules = hosts[name].check_output("firewall-cmd --zone=public --list-rich-rules")
        vrrp = sorted(line for line in rules.splitlines() if 'protocol value="vrrp"' in line)
        assert vrrp == sorted(
            f'rule family="ipv4" source address="{a}" protocol value="vrrp" accept' for n, a in SERVERS.items() if n != name
        )
        assert "vrrp" not in hosts[name].check_output("firewall-cmd --zone=public --list-protocols")


def test_one_server_holds_the_address_and_answers_on_it(hosts):
    holder = wait_for_holder(hosts)
    assert holders(hosts) == [holder]
    assert not hosts[CLIENT].run(f"ip -o -4 address show to {VIP}/32").stdout.strip()


def test_the_fourth_host_cannot_take_the_address(hosts):
    client = hosts[CLIENT]
    # No keepalived instance for the address there, and no server lists it as a peer: its
    # adverts would be dropped by the servers' firewall and ignored by their keepalived.
    assert not client.file("/etc/keepalived/keepalived.conf").exists
    assert not client.service("keepalived").is_running
    for name in SERVERS:
        assert "10.232.0.54" not in hosts[name].file("/etc/keepalived/keepalived.conf").content_string
        rule = 'rule family="ipv4" source address="10.232.0.54" protocol value="vrrp" accept'
        assert hosts[name].run("firewall-cmd --zone=public --query-rich-rule=%s", rule).rc == 1


def test_preflight_refuses_an_address_another_machine_answers_on(request, hosts):
    """Preflight's probe on real hosts: from the servers, the client answering on .60 is seen."""
    client = hosts[CLIENT]
    client.run_test("ip address add 10.232.0.60/24 dev eth0")
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                request.config.option.ansible_inventory,
                "-e",
                "mlops_api_vip=10.232.0.60",
                str(Path(__file__).parents[3] / "playbooks/preflight.yml"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        client.run_test("ip address del 10.232.0.60/24 dev eth0")
    assert result.returncode != 0, result.stdout[-3000:]
    assert "mlops_api_vip 10.232.0.60 already answers on the node network (seen from mm-vip" in result.stdout, result.stdout[-3000:]
    assert "mlops_api_vip 10.232.0.60 is on eth0 of mm-vipc, which is not a server" in result.stdout


def test_address_moves_when_the_holders_api_stops(hosts):
    old, _, _ = measure(hosts, lambda h: hosts[h].run_test("systemctl stop fake-k3s-api"), "API stopped on the holder")
    hosts[old].run_test("systemctl start fake-k3s-api")


def test_address_moves_when_keepalived_stops_on_the_holder(hosts):
    old, _, _ = measure(hosts, lambda h: hosts[h].run_test("systemctl stop keepalived"), "keepalived stopped on the holder")
    hosts[old].run_test("systemctl start keepalived")


def test_address_moves_when_the_holder_loses_power(hosts):
    def power_off(name):
        pid = Path(f"/run/mlops-testvms/{name}.pid").read_text().strip()
        subprocess.run(["kill", "-KILL", pid], check=True)
        DEAD.add(name)

    measure(hosts, power_off, "holder powered off (QEMU killed)")
    assert len(holders(hosts)) == 1


def test_reset_removes_keepalived_and_the_address_from_the_survivors(request, hosts):
    """roles/api_vip/tasks/remove.yml as playbooks/reset.yml runs it, on the servers still up: keepalived
    stopped and removed, its configuration and check gone, nobody holding the address; again: no change."""
    alive = [n for n in SERVERS if n not in DEAD]
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        request.config.option.ansible_inventory,
        "--limit",
        ",".join(alive),
        str(Path(__file__).parents[1] / "remove.yml"),
    ]
    for run in ("first", "second"):
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
        )
        assert result.returncode == 0, result.stdout[-3000:]
        changed = sum(int(c) for c in re.findall(r"\bchanged=(\d+)", result.stdout.split("PLAY RECAP", 1)[-1]))
        assert (changed > 0) if run == "first" else (changed == 0), result.stdout[-3000:]
    for name in alive:
        host = hosts[name]
        assert not host.package("keepalived").is_installed
        assert not host.file("/etc/keepalived/keepalived.conf").exists
        assert not host.file("/usr/libexec/keepalived/mlops-api-ready").exists
    assert holders(hosts) == []
