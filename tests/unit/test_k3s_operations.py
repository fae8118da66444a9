"""Unit tests for the upgrade and recovery checks (plugins/filter/k3s_operations.py)."""

from __future__ import annotations

import json

import k3s_operations as ops
import pytest


def test_versions_parse_and_order_by_kubernetes_then_k3s_revision():
    assert ops.k3s_version_tuple("v1.34.9+k3s1") == (1, 34, 9, 1)
    assert ops.k3s_version_tuple("1.33.0") == (1, 33, 0, 0)
    assert ops.k3s_version_tuple("v1.34.9+k3s2") > ops.k3s_version_tuple("v1.34.9+k3s1")
    assert ops.k3s_version_tuple("v1.34.10+k3s1") > ops.k3s_version_tuple("v1.34.9+k3s2")
    for bad in ("", None, "latest", "v1.34", "stable"):
        with pytest.raises(ValueError, match="not a K3s version"):
            ops.k3s_version_tuple(bad)


def test_binary_version_is_read_from_k3s_version_output():
    out = "k3s version v1.33.5+k3s1 (0a1b2c3d)\ngo version go1.24.6\n"
    assert ops.k3s_binary_version(out) == "v1.33.5+k3s1"
    assert ops.k3s_binary_version("") == ""
    assert ops.k3s_binary_version("/bin/sh: k3s: not found") == ""


def test_one_minor_up_patch_and_revision_steps_are_allowed():
    current = {"s1": "v1.33.5+k3s1", "s2": "v1.34.1+k3s1", "a1": "v1.34.9+k3s1", "new": ""}
    assert ops.k3s_upgrade_problems(current, "v1.34.9+k3s1") == []
    assert ops.k3s_upgrade_problems({"s1": "v1.34.9+k3s1"}, "v1.34.9+k3s2") == []


def test_a_downgrade_is_refused_and_names_the_node_and_the_way_back():
    problems = ops.k3s_upgrade_problems({"s1": "v1.34.9+k3s2", "a1": "v1.34.9+k3s1"}, "v1.34.9+k3s1")
    assert len(problems) == 1
    assert problems[0].startswith("s1: runs v1.34.9+k3s2") and "downgrade" in problems[0] and "etcd snapshot" in problems[0]


def test_skipping_a_minor_is_refused_with_the_step_to_take_first():
    problems = ops.k3s_upgrade_problems({"s1": "v1.32.3+k3s1", "s2": "v1.33.1+k3s1"}, "v1.34.9+k3s1")
    assert problems == [
        "s1: runs v1.32.3+k3s1, k3s_version v1.34.9+k3s1 skips a minor (Kubernetes' skew policy allows one at a time): "
        "upgrade to the latest v1.33 release first"
    ]
    assert "skips a minor" in ops.k3s_upgrade_problems({"s1": "v1.34.9+k3s1"}, "v2.0.0+k3s1")[0]


def test_a_bad_target_or_an_unreadable_node_version_is_reported():
    assert ops.k3s_upgrade_problems({"s1": "v1.34.9+k3s1"}, "latest") == ["k3s_version: 'latest' is not a K3s version like v1.34.9+k3s1"]
    assert "check it by hand" in ops.k3s_upgrade_problems({"s1": "weird"}, "v1.34.9+k3s1")[0]


def test_only_nodes_off_the_target_need_the_upgrade():
    assert ops.k3s_needs_upgrade("", "v1.34.9+k3s1")
    assert ops.k3s_needs_upgrade("v1.33.5+k3s1", "v1.34.9+k3s1")
    assert not ops.k3s_needs_upgrade("v1.34.9+k3s1", "v1.34.9+k3s1")


GROUPS = {"k3s_server": ["s1", "s2", "s3"], "k3s_agent": ["a1"]}


def test_a_server_is_recovered_only_while_etcd_keeps_a_quorum():
    assert ops.k3s_recover_problems("s1", GROUPS, ["s2", "s3"]) == []
    problems = ops.k3s_recover_problems("s1", GROUPS, ["s3"])
    assert problems == [
        "s1 is a server: removing its etcd member needs 2 of the 3 members, but only 1 other server(s) answer (s3): "
        "bring another server back first, or restore the cluster from an etcd snapshot instead (roles/k3s/tasks/etcd_restore.yml)"
    ]
    one = {"k3s_server": ["s1"], "k3s_agent": ["a1"]}
    assert "no server other than s1 answers" in ops.k3s_recover_problems("s1", one, [])[0]


def test_an_agent_needs_one_live_server():
    assert ops.k3s_recover_problems("a1", GROUPS, ["s3"]) == []
    assert "no server other than a1 answers" in ops.k3s_recover_problems("a1", GROUPS, [])[0]


def test_the_node_to_recover_must_be_named_and_in_the_inventory():
    assert ops.k3s_recover_problems("", GROUPS, ["s1"]) == [
        "recover_node: give the inventory name of the host to replace: -e recover_node=<host>"
    ]
    assert ops.k3s_recover_problems("nfs1", GROUPS, ["s1"]) == [
        "recover_node: nfs1 is not in k3s_server or k3s_agent of this inventory (servers: s1, s2, s3; agents: a1)"
    ]


def node_json(ready="True", version="v1.34.9+k3s1", cordoned=False):
    return json.dumps(
        {
            "spec": {"unschedulable": True} if cordoned else {},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready, "reason": "KubeletReady"}],
                "nodeInfo": {"kubeletVersion": version},
            },
        }
    )


def test_node_state_reads_ready_and_the_kubelet_version():
    state = ops.k3s_node_state({"rc": 0, "stdout": node_json()}, "v1.34.9+k3s1")
    assert state["ready"] and state["version_ok"] and state["version"] == "v1.34.9+k3s1"
    old = ops.k3s_node_state({"rc": 0, "stdout": node_json(version="v1.33.5+k3s1", cordoned=True)}, "v1.34.9+k3s1")
    assert old["ready"] and not old["version_ok"]
    assert old["summary"] == "Ready=True (KubeletReady), kubelet v1.33.5+k3s1, cordoned"
    assert ops.k3s_node_state({"rc": 0, "stdout": node_json(ready="Unknown")})["ready"] is False
    assert ops.k3s_node_state({"rc": 0, "stdout": node_json()})["version_ok"]  # no version wanted


def test_node_state_says_why_when_the_api_does_not_answer():
    down = ops.k3s_node_state({"rc": 1, "stderr": "dial tcp 127.0.0.1:6443: connect: connection refused\n"})
    assert not down["ready"] and down["summary"] == "the API did not answer (dial tcp 127.0.0.1:6443: connect: connection refused)"
    assert ops.k3s_node_state({"rc": 0, "stdout": "<html>"})["summary"] == "the API's answer was not JSON"
