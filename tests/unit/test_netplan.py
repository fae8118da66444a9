"""Unit tests for the network-plan maths (plugins/filter/netplan.py)."""

from __future__ import annotations

import json

import netplan
import pytest

BASE = {
    "k3s_cluster_cidr": "10.42.0.0/16",
    "k3s_service_cidr": "10.43.0.0/16",
    "k3s_cluster_dns": "10.43.0.10",
    "metallb_address_pools": [{"name": "default", "addresses": ["192.168.1.240-192.168.1.250"]}],
    "mlops_cluster_name": "lab",
    "mlops_environment": "dev",
}
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


def plan(**changes):
    return {**BASE, **changes}


def errors(problems):
    return [p["message"] for p in problems if p["severity"] == "error"]


def warnings(problems):
    return [p["message"] for p in problems if p["severity"] == "warning"]


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


# ---------------------------------------------------------------- plan values


def test_default_plan_is_clean():
    resolved, problems = netplan.resolve_plan(BASE)
    assert problems == []
    assert [str(n) for n in resolved["k3s_service_cidr"]] == ["10.43.0.0/16"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("k3s_cluster_cidr", "10.42.0.0/33", "not a valid CIDR"),
        ("k3s_cluster_cidr", "10.42.0.0", "no prefix length"),
        ("k3s_cluster_cidr", "banana/16", "not a valid CIDR"),
        ("k3s_service_cidr", "10.43.0.1/16", "host bits set"),
        ("k3s_service_cidr", "127.0.0.0/16", "loopback"),
        ("k3s_cluster_dns", "10.43.0.300", "not an IP address"),
        ("mlops_cluster_name", "My_Cluster", "not a lower-case DNS label"),
    ],
)
def test_malformed_values_name_the_field(field, value, expected):
    _, problems = netplan.resolve_plan(plan(**{field: value}))
    messages = errors(problems)
    assert any(field in m and expected in m for m in messages), messages


def test_host_bits_fix_names_the_network():
    _, problems = netplan.resolve_plan(plan(k3s_service_cidr="10.43.0.1/16"))
    assert any(p["fix"] == "use the network address: 10.43.0.0/16" for p in problems)


def test_pod_and_service_overlap():
    _, problems = netplan.resolve_plan(plan(k3s_service_cidr="10.42.128.0/17", k3s_cluster_dns="10.42.128.10"))
    assert any("overlaps k3s_service_cidr" in m for m in errors(problems))


@pytest.mark.parametrize(
    ("dns", "expected"),
    [
        ("10.44.0.10", "is not inside k3s_service_cidr"),
        ("10.43.0.0", "network address"),
        ("10.43.255.255", "broadcast address"),
        ("10.43.0.1", "'kubernetes' API service"),
    ],
)
def test_cluster_dns_position(dns, expected):
    _, problems = netplan.resolve_plan(plan(k3s_cluster_dns=dns))
    assert any(expected in m for m in errors(problems)), problems


def test_too_small_pod_range_and_too_large_service_range():
    _, problems = netplan.resolve_plan(plan(k3s_cluster_cidr="10.42.0.0/25", k3s_service_cidr="10.0.0.0/8", k3s_cluster_dns="10.0.0.10"))
    messages = errors(problems)
    assert any("smaller than one node's /24" in m for m in messages)
    assert any("kube-apiserver accepts at most 20" in m for m in messages)


def test_every_problem_is_reported_not_just_the_first():
    _, problems = netplan.resolve_plan(plan(k3s_cluster_cidr="10.42.0.0/33", k3s_cluster_dns="10.99.0.1", mlops_environment="Prod!"))
    assert len(errors(problems)) == 3


def test_dual_stack_values():
    resolved, problems = netplan.resolve_plan(
        plan(
            k3s_cluster_cidr="10.42.0.0/16,fd42:42::/56",
            k3s_service_cidr=["10.43.0.0/16", "fd42:43::/112"],
            k3s_cluster_dns="10.43.0.10,fd42:43::a",
        )
    )
    assert errors(problems) == []
    assert netplan.plan_as_data(resolved)["k3s_service_cidr"] == "10.43.0.0/16,fd42:43::/112"


def test_two_ranges_of_one_family_rejected():
    _, problems = netplan.resolve_plan(plan(k3s_cluster_cidr="10.42.0.0/16,10.50.0.0/16"))
    assert any("more than one IPv4 range" in m for m in errors(problems))


def test_unset_values_fall_back_to_k3s_defaults_with_a_warning():
    raw = {"mlops_cluster_name": "lab", "mlops_environment": "dev"}
    resolved, problems = netplan.resolve_plan(raw)
    assert errors(problems) == []
    assert [str(n) for n in resolved["k3s_cluster_cidr"]] == ["10.42.0.0/16"]
    assert len(warnings(problems)) == 3


def test_missing_cluster_name_is_an_error_with_the_file_to_edit():
    _, problems = netplan.resolve_plan(plan(mlops_cluster_name=None))
    assert any("group_vars/all/network.yml" in p["fix"] for p in problems if "mlops_cluster_name" in p["message"])


# ---------------------------------------------------------------- MetalLB pools


def test_pools_accept_json_string_like_extra_vars():
    text = json.dumps([{"name": "lb", "addresses": ["10.1.0.0/28", "10.1.0.20-10.1.0.30"]}])
    pools, problems = netplan.normalize_pools(text)
    assert problems == []
    assert [e["text"] for e in pools[0]["entries"]] == ["10.1.0.0/28", "10.1.0.20-10.1.0.30"]
    assert netplan.count_addresses(n for e in pools[0]["entries"] for n in e["networks"]) == 16 + 11


def test_range_covers_exactly_its_addresses():
    nets = netplan.parse_range("192.168.1.250-192.168.2.5")
    assert netplan.count_addresses(nets) == 12


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.20-10.0.0.10", "starts after it ends"),
        ("10.0.0.1-fd00::1", "different IP families"),
        ("10.0.0.1/24", "host bits set"),
        ("10.0.0.1", "expected a CIDR"),
    ],
)
def test_bad_pool_addresses(address, expected):
    _, problems = netplan.normalize_pools([{"name": "p", "addresses": [address]}])
    assert any(expected in m for m in errors(problems)), problems


def test_pool_shape_errors():
    _, problems = netplan.normalize_pools(
        [{"name": "Bad Name", "addresses": []}, {"name": "x", "addresses": ["10.0.0.0/30"], "protocl": "bgp"}, "nope"]
    )
    messages = errors(problems)
    assert any("[0].name" in m for m in messages)
    assert any("[0].addresses must be a non-empty list" in m for m in messages)
    assert any("unknown keys ['protocl']" in m for m in messages)
    assert any("[2] must be a mapping" in m for m in messages)


def test_unparseable_pool_string():
    _, problems = netplan.normalize_pools("[{name: a, addresses: [")
    assert any("could not be parsed" in m for m in errors(problems))


def test_pools_overlapping_each_other_and_ranges():
    pools = [
        {"name": "a", "addresses": ["192.168.1.0/28"]},
        {"name": "b", "addresses": ["192.168.1.8-192.168.1.20"]},
        {"name": "c", "addresses": ["10.43.1.0/30"]},
    ]
    _, problems = netplan.resolve_plan(plan(metallb_address_pools=pools))
    messages = errors(problems)
    assert any("'a' (192.168.1.0/28) overlaps pool 'b'" in m for m in messages)
    assert any("'c' (10.43.1.0/30) overlaps k3s_service_cidr" in m for m in messages)


def test_duplicate_pool_names():
    pools = [{"name": "a", "addresses": ["192.168.1.0/30"]}, {"name": "a", "addresses": ["192.168.1.4/30"]}]
    _, problems = netplan.resolve_plan(plan(metallb_address_pools=pools))
    assert any("used by two pools" in m for m in errors(problems))


# ---------------------------------------------------------------- host networks


def run_hosts(raw_plan, reports):
    resolved, _ = netplan.resolve_plan(raw_plan)
    return netplan.check_host_networks(resolved, reports, REQ["ignored_interfaces"])


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
    assert netplan.check_host_facts(host(), REQ) == []


def test_unmanaged_host_gets_no_fact_checks():
    assert netplan.check_host_facts(host(groups=(), os_family="Archlinux", vcpus=1), REQ) == []


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
    problems = netplan.check_host_facts(report, REQ)
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
    messages = errors(netplan.check_host_facts(report, REQ))
    assert messages == ["node1 has 5.0 GiB free on /srv (holding /srv/nfs); needs 20 GiB"]


def test_swap_and_time_sync_can_be_made_fatal():
    report = host(swap_mb=10, time_sync_active=[])
    assert len(errors(netplan.check_host_facts(report, {**REQ, "swap_fatal": True, "time_sync_fatal": True}))) == 2


def test_duplicate_hostnames_and_node_ips():
    reports = [host("a", hostname="node"), host("b", hostname="NODE")]
    messages = errors(netplan.check_uniqueness(reports, REQ["managed_groups"]))
    assert messages == ["hostname node is shared by a, b", "node IP 192.168.1.11 is shared by a, b"]


# ---------------------------------------------------------------- whole run


def test_preflight_collects_everything_and_renders_a_report():
    raw = plan(k3s_cluster_dns="10.99.0.1")
    reports = [host("n1", addrs=(("eth0", "10.43.100.94", 24),)), host("n2", addrs=(("eth0", "10.43.100.95", 24),), vcpus=1)]
    result = netplan.preflight(raw, reports, {**REQ, "missing_hosts": ["n3"]})
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


def test_network_plan_filter_raises_with_every_error():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError) as caught:
        netplan.network_plan(plan(k3s_cluster_cidr="x/16", k3s_cluster_dns="10.0.0.1"))
    assert "k3s_cluster_cidr" in str(caught.value) and "k3s_cluster_dns" in str(caught.value)
    assert netplan.network_plan(BASE)["k3s_cluster_dns"] == "10.43.0.10"


def test_suggest_free_skips_taken_ranges():
    assert netplan.suggest_free(16, 4, ["10.44.0.0/16", "10.45.0.0/24"]) == "10.46.0.0/16"
    assert netplan.suggest_free(16, 6, []).startswith("fd42:")


def test_node_address_precedence():
    facts = {"ansible_facts": {"default_ipv4": {"address": "10.0.0.5"}}, "ansible_host": "10.0.0.9", "inventory_hostname": "n1"}
    assert netplan.node_address({**facts, "k3s_node_ip": "10.0.0.1"}) == "10.0.0.1"
    assert netplan.node_address(facts) == "10.0.0.5"
    assert netplan.node_address({"ansible_facts": {}, "ansible_host": "10.0.0.9", "inventory_hostname": "n1"}) == "10.0.0.9"
    assert netplan.node_address({"inventory_hostname": "n1"}) == "n1"
