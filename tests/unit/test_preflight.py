"""Unit tests for preflight's host checks and report (plugins/filter/preflight.py)."""

from __future__ import annotations

import network_plan
import preflight
from plan_cases import BASE, errors, plan, warnings

REQ = {
    "managed_groups": ["k3s_server", "k3s_agent", "nfs_server"],
    "supported_os": [
        {"family": "RedHat", "distributions": ["Rocky", "RedHat", "AlmaLinux"], "major_versions": ["9"]},
        {"family": "Debian", "distributions": ["Debian"], "major_versions": ["12"]},
    ],
    "architectures": ["x86_64", "aarch64"],
    "group_minimums": {
        "k3s_server": {"vcpus": 2, "memory_mb": 1800, "disk_path": "/var/lib/rancher", "disk_free_gb": 10},
        "nfs_server": {"vcpus": 1, "memory_mb": 450, "disk_path": "/srv/nfs", "disk_free_gb": 20},
    },
    "group_ports": {"k3s_server": [{"port": 6443, "proto": "tcp", "purpose": "Kubernetes API"}]},
    "port_owner_patterns": ["k3s*"],
    "ignored_interfaces": ["cni0", "flannel*", "veth*"],
}


def host(name="node1", addrs=(("eth0", "192.168.1.11", 24),), routes=(), groups=("k3s_server", "k3s_cluster"), **facts):
    report = {
        "name": name,
        "groups": list(groups),
        "hostname": name,
        "node_ip": addrs[0][1] if addrs else "",
        "os_family": "RedHat",
        "distribution": "Rocky",
        "distribution_major_version": "9",
        "architecture": "x86_64",
        "vcpus": 4,
        "memory_mb": 8000,
        "swap_mb": 0,
        "mounts": [{"mount": "/", "size_available": 100 * 1024**3}],
        "addresses": [
            {"ifname": ifname, "addr_info": [{"family": "inet6" if ":" in ip else "inet", "local": ip, "prefixlen": plen}]}
            for ifname, ip, plen in addrs
        ],
        "routes": [dict(r) for r in routes],
        "listening": [],
        "time_sync_active": ["chronyd.service"],
    }
    report.update(facts)
    return report


# ---------------------------------------------------------------- host networks


def run_hosts(raw_plan, reports):
    resolved, _ = network_plan.resolve_plan(raw_plan)
    return preflight.check_host_networks(resolved, reports, REQ["ignored_interfaces"])


def test_deployment_log_case_names_address_range_and_fix():
    problems = run_hosts(BASE, [host("node1", addrs=(("eth0", "10.43.100.94", 24),))])
    (problem,) = [p for p in problems if p["severity"] == "error"]
    assert problem["message"] == "10.43.100.94 on eth0 of node1 is inside k3s_service_cidr 10.43.0.0/16"
    assert problem["fix"] == "choose a service range that does not contain it, e.g. 10.44.0.0/16 with k3s_cluster_dns 10.44.0.10"
    assert problem["host"] == "node1"


def test_suggestion_avoids_every_host_network_and_the_pod_range():
    reports = [host("n1", addrs=(("eth0", "10.43.100.94", 24), ("eth1", "10.44.0.5", 16)))]
    problems = run_hosts(BASE, reports)
    fix = next(p["fix"] for p in problems if "10.43.100.94" in p["message"])
    assert "e.g. 10.45.0.0/16" in fix


def test_pod_range_collision_and_ipv6_addresses():
    raw = plan(k3s_cluster_cidr="10.42.0.0/16,fd42:42::/56", k3s_service_cidr="10.43.0.0/16,fd42:43::/112", k3s_cluster_dns="10.43.0.10")
    reports = [host("n1", addrs=(("eth0", "192.168.1.11", 24), ("eth1", "fd42:42::5", 64), ("wg0", "10.42.7.1", 24)))]
    messages = errors(run_hosts(raw, reports))
    assert "fd42:42::5 on eth1 of n1 is inside k3s_cluster_cidr fd42:42::/56" in messages
    assert "10.42.7.1 on wg0 of n1 is inside k3s_cluster_cidr 10.42.0.0/16" in messages


def test_routes_are_checked_but_not_double_reported():
    routes = (
        {"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"},
        {"dst": "10.43.0.0/16", "gateway": "192.168.1.254", "dev": "eth0"},
        {"dst": "192.168.1.0/24", "dev": "eth0", "protocol": "kernel"},
        {"dst": "10.42.1.0/24", "gateway": "10.42.1.0", "dev": "flannel.1"},
    )
    messages = errors(run_hosts(BASE, [host("n1", routes=routes)]))
    assert messages == ["route 10.43.0.0/16 via 192.168.1.254 dev eth0 on n1 overlaps k3s_service_cidr 10.43.0.0/16"]


def test_connected_route_of_a_flagged_address_is_not_repeated():
    routes = ({"dst": "10.43.100.0/24", "dev": "eth0", "protocol": "kernel"},)
    problems = run_hosts(BASE, [host("n1", addrs=(("eth0", "10.43.100.94", 24),), routes=routes)])
    assert len(errors(problems)) == 1


def test_k3s_own_interfaces_are_ignored_on_a_running_node():
    reports = [host("n1", addrs=(("eth0", "192.168.1.11", 24), ("cni0", "10.42.0.1", 24), ("flannel.1", "10.42.0.0", 32)))]
    assert errors(run_hosts(BASE, reports)) == []


def test_pool_containing_a_node_address():
    raw = plan(metallb_address_pools=[{"name": "lb", "addresses": ["192.168.1.0/28"]}])
    messages = errors(run_hosts(raw, [host("n1", addrs=(("eth0", "192.168.1.11", 24),))]))
    assert messages == ["192.168.1.11 on eth0 of n1 is inside MetalLB pool 'lb' (192.168.1.0/28)"]


def test_layer2_pool_outside_host_subnets_warns_and_bgp_does_not():
    raw = plan(
        metallb_address_pools=[
            {"name": "l2", "addresses": ["172.30.0.0/28"]},
            {"name": "b", "protocol": "bgp", "addresses": ["172.31.0.0/28"]},
        ]
    )
    problems = run_hosts(raw, [host()])
    assert errors(problems) == []
    assert warnings(problems) == ["MetalLB layer2 pool 'l2' (172.30.0.0/28) is not inside any host subnet"]


# ---------------------------------------------------------------- host facts


def test_healthy_host_has_no_findings():
    assert preflight.check_host_facts(host(), REQ) == []


def test_unmanaged_host_gets_no_fact_checks():
    assert preflight.check_host_facts(host(groups=(), os_family="Archlinux", vcpus=1), REQ) == []


def test_host_fact_problems_are_all_reported():
    report = host(
        distribution="Ubuntu",
        os_family="Debian",
        distribution_major_version="22",
        architecture="armv7l",
        vcpus=1,
        memory_mb=1000,
        swap_mb=2048,
        time_sync_active=[],
        mounts=[{"mount": "/", "size_available": 2 * 1024**3}],
        listening=[
            {"port": 6443, "protocol": "tcp", "name": "nginx", "pid": 42},
            {"port": 6443, "protocol": "tcp6", "name": "k3s-server", "pid": 7},
        ],
    )
    problems = preflight.check_host_facts(report, REQ)
    text = "\n".join(p["message"] for p in problems)
    assert "runs Ubuntu 22 (Debian), which is not supported" in text
    assert "is armv7l" in text
    assert "has 1 vCPUs; k3s_server needs 2" in text
    assert "1000 MB of memory" in text
    assert "2.0 GiB free on / (holding /var/lib/rancher); needs 10 GiB" in text
    assert "6443/tcp (Kubernetes API) on node1 is taken by nginx (pid 42)" in text
    assert "k3s-server" not in text
    assert sorted(warnings(problems)) == sorted(m for m in text.splitlines() if "swap" in m or "time sync" in m)


def test_strictest_group_requirement_wins_and_longest_mount_matches():
    report = host(
        groups=("k3s_server", "nfs_server"),
        mounts=[{"mount": "/", "size_available": 50 * 1024**3}, {"mount": "/srv", "size_available": 5 * 1024**3}],
    )
    messages = errors(preflight.check_host_facts(report, REQ))
    assert messages == [
        "node1 has 5.0 GiB free on /srv (holding /srv/nfs); needs 20 GiB (preflight_group_minimums.nfs_server.disk_free_gb)"
    ]


def test_needs_on_one_filesystem_add_up_and_name_their_variables():
    # K3s's data and the NFS exports on the root disk: 10 + 20 GiB, though each alone would fit.
    report = host(groups=("k3s_server", "nfs_server"), mounts=[{"mount": "/", "size_available": 25 * 1024**3}])
    problems = [p for p in preflight.check_host_facts(report, REQ) if p["severity"] == "error"]
    assert [p["message"] for p in problems] == [
        "node1 has 25.0 GiB free on / (holding /var/lib/rancher, /srv/nfs); needs 30 GiB in total: "
        "10 GiB for /var/lib/rancher (preflight_group_minimums.k3s_server.disk_free_gb) + "
        "20 GiB for /srv/nfs (preflight_group_minimums.nfs_server.disk_free_gb)"
    ]
    assert "give /srv/nfs a filesystem of its own" in problems[0]["fix"] and "preflight_group_minimums" in problems[0]["fix"]
    # Enough for the sum: no finding. Separate filesystems: each need on its own.
    assert errors(preflight.check_host_facts({**report, "mounts": [{"mount": "/", "size_available": 30 * 1024**3}]}, REQ)) == []
    split = [{"mount": "/", "size_available": 12 * 1024**3}, {"mount": "/srv/nfs", "size_available": 21 * 1024**3}]
    assert errors(preflight.check_host_facts({**report, "mounts": split}, REQ)) == []
    # A passing report states the totals too, per filesystem: need/free.
    passing = preflight.preflight(plan(), [{**report, "mounts": [{"mount": "/", "size_available": 31 * 1024**3}]}], REQ)
    assert passing["errors"] == 0 and "/ 30/31.0 GiB" in passing["report"] and "disk need/free" in passing["report"]
    assert preflight.disk_summary({**report, "mounts": split}, REQ) == "/ 10/12.0 GiB, /srv/nfs 20/21.0 GiB"


def test_cpu_and_memory_errors_name_the_minimum_to_change():
    messages = errors(preflight.check_host_facts(host(vcpus=1, memory_mb=1000), REQ))
    assert messages == [
        "node1 has 1 vCPUs; k3s_server needs 2 (preflight_group_minimums.k3s_server.vcpus)",
        "node1 has 1000 MB of memory; k3s_server needs 1800 MB (preflight_group_minimums.k3s_server.memory_mb)",
    ]


def test_the_inventorys_os_family_is_checked_against_the_facts():
    assert preflight.check_host_facts(host(os_family_declared="RedHat"), REQ) == []
    wrong = preflight.check_host_facts(host(os_family_declared="Debian"), REQ)
    assert errors(wrong) == ["node1 runs Rocky (RedHat) but the inventory says mlops_os_family: Debian"]
    assert wrong[0]["fix"].startswith("set mlops_os_family: RedHat for node1")
    unset = preflight.check_host_facts(host(os_family_declared=""), REQ)
    assert errors(unset) == []
    assert warnings(unset) == ["node1 runs Rocky (RedHat) but the inventory does not say so: mlops_os_family is not set"]


def test_swap_and_time_sync_can_be_made_fatal():
    report = host(swap_mb=10, time_sync_active=[])
    assert len(errors(preflight.check_host_facts(report, {**REQ, "swap_fatal": True, "time_sync_fatal": True}))) == 2


def test_duplicate_hostnames_and_node_ips():
    reports = [host("a", hostname="node"), host("b", hostname="NODE")]
    messages = errors(preflight.check_uniqueness(reports, REQ["managed_groups"]))
    assert messages == ["hostname node is shared by a, b", "node IP 192.168.1.11 is shared by a, b"]


# ---------------------------------------------------------------- whole run


def test_preflight_collects_everything_and_renders_a_report():
    raw = plan(k3s_cluster_dns="10.99.0.1")
    reports = [host("n1", addrs=(("eth0", "10.43.100.94", 24),)), host("n2", addrs=(("eth0", "10.43.100.95", 24),), vcpus=1)]
    result = preflight.preflight(raw, reports, {**REQ, "missing_hosts": ["n3"]})
    assert result["errors"] == 5
    report = result["report"]
    for expected in (
        "10.43.100.94 on eth0 of n1",
        "10.43.100.95 on eth0 of n2",
        "k3s_cluster_dns 10.99.0.1",
        "has 1 vCPUs",
        "n3 could not be checked",
        "Verdict: FAIL",
    ):
        assert expected in report


def test_port_ranges_and_udp_ports_are_checked():
    req = {
        **REQ,
        "group_ports": {
            "k3s_server": [
                {"port": "2379-2380", "proto": "tcp", "purpose": "embedded etcd"},
                {"port": "7946", "proto": "udp", "purpose": "MetalLB memberlist"},
            ]
        },
    }
    report = host(
        listening=[
            {"port": 2380, "protocol": "tcp", "name": "etcd", "pid": 5},
            {"port": 2381, "protocol": "tcp", "name": "etcd", "pid": 5},
            {"port": 7946, "protocol": "udp6", "name": "serf", "pid": 6},
            {"port": 7946, "protocol": "tcp", "name": "serf", "pid": 6},
        ]
    )
    assert errors(preflight.check_host_facts(report, req)) == [
        "2380/tcp (embedded etcd) on node1 is taken by etcd (pid 5)",
        "7946/udp (MetalLB memberlist) on node1 is taken by serf (pid 6)",
    ]


# ---------------------------------------------------------------- API virtual address

SERVERS = ["s1", "s2", "s3"]


def servers(*extra_addrs, **facts):
    """Three servers on 192.168.1.0/24; extra (host, ifname, ip, prefix) addresses added."""
    reports = [host(name, addrs=(("eth0", f"192.168.1.1{i}", 24),), **facts) for i, name in enumerate(SERVERS, 1)]
    for name, ifname, ip, prefix in extra_addrs:
        report = next(r for r in reports if r["name"] == name)
        report["addresses"].append({"ifname": ifname, "addr_info": [{"family": "inet", "local": ip, "prefixlen": prefix}]})
    for report in reports:
        report["addresses"][0]["address"] = f"52:54:00:00:00:{report['name'][-1]}0"
    return reports


def run_api(raw_plan, reports, endpoint="", host_addresses=None):
    resolved, _ = network_plan.resolve_plan(raw_plan)
    api = {"servers": SERVERS, "endpoint": endpoint, "host_addresses": host_addresses or {}}
    return preflight.check_api_address(resolved, reports, api, REQ["ignored_interfaces"])


def test_several_servers_need_an_api_address():
    (problem,) = run_api(BASE, servers())
    assert problem["message"].startswith("3 servers (s1, s2, s3) and no API endpoint")
    assert problem["fix"].startswith("set mlops_api_vip in inventories/<env>/group_vars/all/network.yml")
    assert run_api(BASE, servers(), endpoint="api.example.org") == []
    assert run_api(plan(mlops_api_vip="192.168.1.10"), servers()) == []


def test_one_server_needs_no_api_address():
    resolved, _ = network_plan.resolve_plan(BASE)
    assert preflight.check_api_address(resolved, servers()[:1], {"servers": ["s1"]}, []) == []


def test_vip_outside_the_servers_subnet():
    problems = run_api(plan(mlops_api_vip="192.168.7.10"), servers())
    assert [p["host"] for p in problems] == SERVERS
    assert problems[0]["message"] == (
        "mlops_api_vip 192.168.7.10 is not in the node subnet 192.168.1.0/24 (eth0) of server s1:"
        " VRRP moves an address only within the servers' network"
    )
    assert "e.g. inside 192.168.1.0/24" in problems[0]["fix"]


def test_vip_held_by_a_server_is_the_live_cluster_not_a_conflict():
    # keepalived adds the address as a /32: the subnet check must not count that host route.
    assert run_api(plan(mlops_api_vip="192.168.1.10"), servers(("s2", "eth0", "192.168.1.10", 32))) == []


def test_vip_used_by_a_host_is_refused():
    problems = run_api(
        plan(mlops_api_vip="192.168.1.10"),
        [*servers(), host("nfs", addrs=(("eth0", "192.168.1.20", 24), ("eth0", "192.168.1.10", 24)), groups=("nfs_server",))],
        host_addresses={"s1": "192.168.1.11", "agent1": "192.168.1.10"},
    )
    messages = errors(problems)
    assert "mlops_api_vip 192.168.1.10 is the address of inventory host agent1" in messages
    assert "mlops_api_vip 192.168.1.10 is on eth0 of nfs, which is not a server" in messages


def test_vip_answered_by_another_machine_is_refused():
    reports = servers()
    reports[0]["api_vip_neighbors"] = [{"dst": "192.168.1.10", "lladdr": "AA:BB:CC:00:00:01", "state": ["REACHABLE"]}]
    reports[1]["api_vip_neighbors"] = [{"dst": "192.168.1.10", "state": ["FAILED"]}]
    (problem,) = run_api(plan(mlops_api_vip="192.168.1.10"), reports)
    assert problem["message"] == (
        "mlops_api_vip 192.168.1.10 already answers on the node network (seen from s1: aa:bb:cc:00:00:01),"
        " and no server holds it: another machine uses it"
    )
    assert "the machine with MAC aa:bb:cc:00:00:01" in problem["fix"]


def test_vip_answered_by_the_holding_server_is_fine():
    reports = servers(("s2", "eth0", "192.168.1.10", 32))
    reports[0]["api_vip_neighbors"] = [{"dst": "192.168.1.10", "lladdr": "52:54:00:00:00:20", "state": ["REACHABLE"]}]
    assert run_api(plan(mlops_api_vip="192.168.1.10"), reports) == []


def test_vip_shows_in_the_report():
    result = preflight.preflight(plan(mlops_api_vip="192.168.1.10"), servers(), {**REQ, "api": {"servers": SERVERS}})
    assert "mlops_api_vip" in result["report"] and result["plan"]["mlops_api_vip"] == "192.168.1.10"


def test_pool_addresses_answered_by_a_machine_outside_the_cluster():
    import preflight as pf
    from network_plan import resolve_plan

    raw = {
        "metallb_address_pools": [
            {"name": "default", "addresses": ["10.1.0.200-10.1.0.203"]},
            {"name": "b", "protocol": "bgp", "addresses": ["10.2.0.0/30"]},
        ]
    }
    assert pf.pool_probe_addresses(raw) == ["10.1.0.200", "10.1.0.201", "10.1.0.202", "10.1.0.203"]
    assert len(pf.pool_probe_addresses({"metallb_address_pools": [{"name": "big", "addresses": ["10.9.0.0/16"]}]})) == pf.POOL_PROBE_LIMIT
    plan, _ = resolve_plan(raw)
    node = {"address": "aa:bb:cc:00:00:01"}
    neighbors = [
        {"dst": "10.1.0.201", "lladdr": "de:ad:be:ef:00:01", "state": ["REACHABLE"]},  # a stranger
        {"dst": "10.1.0.202", "lladdr": "aa:bb:cc:00:00:01", "state": ["REACHABLE"]},  # MetalLB on a node: a rerun
        {"dst": "10.1.0.203", "state": ["FAILED"]},  # nobody
    ]
    (finding,) = pf.check_pool_addresses(plan, [{"name": "s1", "addresses": [node], "pool_neighbors": neighbors}])
    assert finding["severity"] == "error" and "10.1.0.201 already answers" in finding["message"]
    assert finding["fix"].startswith("take 10.1.0.201 out of metallb_address_pools")
