"""Unit tests for the network-plan module (plugins/filter/network_plan.py)."""

from __future__ import annotations

import json

import network_plan
import pytest
from plan_cases import BASE, errors, plan, warnings

# ---------------------------------------------------------------- plan values


def test_default_plan_is_clean():
    resolved, problems = network_plan.resolve_plan(BASE)
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
    _, problems = network_plan.resolve_plan(plan(**{field: value}))
    messages = errors(problems)
    assert any(field in m and expected in m for m in messages), messages


def test_host_bits_fix_names_the_network():
    _, problems = network_plan.resolve_plan(plan(k3s_service_cidr="10.43.0.1/16"))
    assert any(p["fix"] == "use the network address: 10.43.0.0/16" for p in problems)


def test_pod_and_service_overlap():
    _, problems = network_plan.resolve_plan(plan(k3s_service_cidr="10.42.128.0/17", k3s_cluster_dns="10.42.128.10"))
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
    _, problems = network_plan.resolve_plan(plan(k3s_cluster_dns=dns))
    assert any(expected in m for m in errors(problems)), problems


def test_too_small_pod_range_and_too_large_service_range():
    _, problems = network_plan.resolve_plan(
        plan(k3s_cluster_cidr="10.42.0.0/25", k3s_service_cidr="10.0.0.0/8", k3s_cluster_dns="10.0.0.10")
    )
    messages = errors(problems)
    assert any("smaller than one node's /24" in m for m in messages)
    assert any("kube-apiserver accepts at most 20" in m for m in messages)


def test_every_problem_is_reported_not_just_the_first():
    _, problems = network_plan.resolve_plan(plan(k3s_cluster_cidr="10.42.0.0/33", k3s_cluster_dns="10.99.0.1", mlops_environment="Prod!"))
    assert len(errors(problems)) == 3


def test_dual_stack_values():
    resolved, problems = network_plan.resolve_plan(
        plan(
            k3s_cluster_cidr="10.42.0.0/16,fd42:42::/56",
            k3s_service_cidr=["10.43.0.0/16", "fd42:43::/112"],
            k3s_cluster_dns="10.43.0.10,fd42:43::a",
        )
    )
    assert errors(problems) == []
    assert network_plan.plan_as_data(resolved)["k3s_service_cidr"] == "10.43.0.0/16,fd42:43::/112"


def test_two_ranges_of_one_family_rejected():
    _, problems = network_plan.resolve_plan(plan(k3s_cluster_cidr="10.42.0.0/16,10.50.0.0/16"))
    assert any("more than one IPv4 range" in m for m in errors(problems))


def test_unset_values_fall_back_to_k3s_defaults_with_a_warning():
    raw = {"mlops_cluster_name": "lab", "mlops_environment": "dev"}
    resolved, problems = network_plan.resolve_plan(raw)
    assert errors(problems) == []
    assert [str(n) for n in resolved["k3s_cluster_cidr"]] == ["10.42.0.0/16"]
    assert len(warnings(problems)) == 3


def test_missing_cluster_name_is_an_error_with_the_file_to_edit():
    _, problems = network_plan.resolve_plan(plan(mlops_cluster_name=None))
    assert any("group_vars/all/network.yml" in p["fix"] for p in problems if "mlops_cluster_name" in p["message"])


# ---------------------------------------------------------------- MetalLB pools


def test_pools_accept_json_string_like_extra_vars():
    text = json.dumps([{"name": "lb", "addresses": ["10.1.0.0/28", "10.1.0.20-10.1.0.30"]}])
    pools, problems = network_plan.normalize_pools(text)
    assert problems == []
    assert [e["text"] for e in pools[0]["entries"]] == ["10.1.0.0/28", "10.1.0.20-10.1.0.30"]
    assert network_plan.count_addresses(n for e in pools[0]["entries"] for n in e["networks"]) == 16 + 11


def test_range_covers_exactly_its_addresses():
    nets = network_plan.parse_range("192.168.1.250-192.168.2.5")
    assert network_plan.count_addresses(nets) == 12


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
    _, problems = network_plan.normalize_pools([{"name": "p", "addresses": [address]}])
    assert any(expected in m for m in errors(problems)), problems


def test_pool_shape_errors():
    _, problems = network_plan.normalize_pools(
        [{"name": "Bad Name", "addresses": []}, {"name": "x", "addresses": ["10.0.0.0/30"], "protocl": "bgp"}, "nope"]
    )
    messages = errors(problems)
    assert any("[0].name" in m for m in messages)
    assert any("[0].addresses must be a non-empty list" in m for m in messages)
    assert any("unknown keys ['protocl']" in m for m in messages)
    assert any("[2] must be a mapping" in m for m in messages)


def test_unparseable_pool_string():
    _, problems = network_plan.normalize_pools("[{name: a, addresses: [")
    assert any("could not be parsed" in m for m in errors(problems))


def test_pools_overlapping_each_other_and_ranges():
    pools = [
        {"name": "a", "addresses": ["192.168.1.0/28"]},
        {"name": "b", "addresses": ["192.168.1.8-192.168.1.20"]},
        {"name": "c", "addresses": ["10.43.1.0/30"]},
    ]
    _, problems = network_plan.resolve_plan(plan(metallb_address_pools=pools))
    messages = errors(problems)
    assert any("'a' (192.168.1.0/28) overlaps pool 'b'" in m for m in messages)
    assert any("'c' (10.43.1.0/30) overlaps k3s_service_cidr" in m for m in messages)


def test_duplicate_pool_names():
    pools = [{"name": "a", "addresses": ["192.168.1.0/30"]}, {"name": "a", "addresses": ["192.168.1.4/30"]}]
    _, problems = network_plan.resolve_plan(plan(metallb_address_pools=pools))
    assert any("used by two pools" in m for m in errors(problems))


# ---------------------------------------------------------------- filters and helpers


def test_network_plan_filter_raises_with_every_error():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError) as caught:
        network_plan.network_plan(plan(k3s_cluster_cidr="x/16", k3s_cluster_dns="10.0.0.1"))
    assert "k3s_cluster_cidr" in str(caught.value) and "k3s_cluster_dns" in str(caught.value)
    assert network_plan.network_plan(BASE)["k3s_cluster_dns"] == "10.43.0.10"


def test_suggest_free_skips_taken_ranges():
    assert network_plan.suggest_free(16, 4, ["10.44.0.0/16", "10.45.0.0/24"]) == "10.46.0.0/16"
    assert network_plan.suggest_free(16, 6, []).startswith("fd42:")


def test_node_address_precedence():
    facts = {"ansible_facts": {"default_ipv4": {"address": "10.0.0.5"}}, "ansible_host": "10.0.0.9", "inventory_hostname": "n1"}
    assert network_plan.node_address({**facts, "k3s_node_ip": "10.0.0.1"}) == "10.0.0.1"
    assert network_plan.node_address(facts) == "10.0.0.5"
    assert network_plan.node_address({"ansible_facts": {}, "ansible_host": "10.0.0.9", "inventory_hostname": "n1"}) == "10.0.0.9"
    assert network_plan.node_address({"inventory_hostname": "n1"}) == "n1"


def test_findings_name_their_check_and_host():
    found = network_plan.Findings("os", "n1")
    found.error("broken", "mend it")
    found.warning("odd", check="sizing", host="n2")
    found.add("error", "plain")
    assert found == [
        {"severity": "error", "host": "n1", "check": "os", "message": "broken", "fix": "mend it"},
        {"severity": "warning", "host": "n2", "check": "sizing", "message": "odd", "fix": ""},
        {"severity": "error", "host": "n1", "check": "os", "message": "plain", "fix": ""},
    ]


# ---------------------------------------------------------------- API virtual address


def test_api_vip_is_optional_and_kept_in_the_plan():
    resolved, problems = network_plan.resolve_plan(plan(mlops_api_vip="192.168.1.10"))
    assert problems == []
    assert network_plan.plan_as_data(resolved)["mlops_api_vip"] == "192.168.1.10"
    assert network_plan.plan_as_data(network_plan.resolve_plan(BASE)[0])["mlops_api_vip"] == ""


@pytest.mark.parametrize(
    ("vip", "expected", "fix"),
    [
        ("192.168.1.10/24", "is not a plain IP address", "no prefix length"),
        ("api.example.org", "is not a plain IP address", "e.g. 192.168.1.10"),
        ("127.0.0.5", "is a loopback address", "free address of the node subnet"),
        ("10.42.3.4", "is inside k3s_cluster_cidr 10.42.0.0/16", "belongs to the cluster's own traffic"),
        ("10.43.0.1", "is inside k3s_service_cidr 10.43.0.0/16", "belongs to the cluster's own traffic"),
        ("192.168.1.245", "is inside MetalLB pool 'default' (192.168.1.240-192.168.1.250)", "shrink the pool"),
    ],
)
def test_api_vip_errors_name_the_variable_and_the_fix(vip, expected, fix):
    _, problems = network_plan.resolve_plan(plan(mlops_api_vip=vip))
    (problem,) = [p for p in problems if p["severity"] == "error"]
    assert problem["message"].startswith(f"mlops_api_vip {vip}") or problem["message"].startswith(f"mlops_api_vip '{vip}'")
    assert expected in problem["message"], problem
    assert "set mlops_api_vip in inventories/<env>/group_vars/all/network.yml" in problem["fix"] and fix in problem["fix"]


def test_network_plan_filter_refuses_a_vip_in_a_pool():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=r"mlops_api_vip 192\.168\.1\.240 is inside MetalLB pool"):
        network_plan.network_plan(plan(mlops_api_vip="192.168.1.240"))
