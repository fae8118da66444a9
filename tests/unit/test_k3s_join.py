"""Unit tests for who starts the etcd cluster and whom the others join (plugins/filter/k3s_join.py)."""

from __future__ import annotations

import k3s_join as join
import yaml

SERVERS = ["s1", "s2", "s3"]


def plan(node, etcd=(), live=(), unreached=(), endpoint="", bootstrap="s1"):
    return join.k3s_join_plan(node, SERVERS, bootstrap, list(etcd), list(live), list(unreached), endpoint)


def test_a_new_cluster_is_started_by_the_bootstrap_server_alone():
    assert plan("s1") == {"cluster_exists": False, "cluster_init": True, "join_server": "", "problem": ""}
    for node in ("s2", "s3", "a1"):
        assert plan(node) == {"cluster_exists": False, "cluster_init": False, "join_server": "s1", "problem": ""}
    # k3s_bootstrap_server names another one.
    assert plan("s2", bootstrap="s2")["cluster_init"] and not plan("s1", bootstrap="s2")["cluster_init"]
    assert plan("s1", bootstrap="s2")["join_server"] == "s2"


def test_a_rebuilt_first_server_joins_the_cluster_a_later_server_holds():
    got = plan("s1", etcd=["s2", "s3"], live=["s2", "s3"])
    assert got == {"cluster_exists": True, "cluster_init": False, "join_server": "s2", "problem": ""}
    # Nobody gets cluster-init once any server holds etcd data, the first server's members included.
    for node in [*SERVERS, "a1"]:
        assert not plan(node, etcd=["s2"], live=["s2"], endpoint="10.0.0.9")["cluster_init"], node


def test_the_join_server_is_a_live_member_first_and_never_the_node_itself():
    # s1 answers but holds nothing (a --check stand-in): the member that answers comes first.
    assert plan("s3", etcd=["s2"], live=["s1", "s2"])["join_server"] == "s2"
    assert plan("s2", etcd=["s1", "s2"], live=["s1", "s2"])["join_server"] == "s1"
    assert plan("s1", etcd=["s1", "s2"], live=["s1", "s2"])["join_server"] == "s2"
    # No API answers anywhere (K3s down on every server): a member is still named.
    assert plan("a1", etcd=["s2", "s3"])["join_server"] == "s2"
    # An unreachable first server is never picked.
    got = plan("s2", etcd=["s2", "s3"], live=["s2", "s3"], unreached=["s1"])
    assert got["join_server"] == "s3" and not got["cluster_init"] and not got["problem"]


def test_a_lone_member_keeps_cluster_init_only_with_no_endpoint_to_name():
    single = join.k3s_join_plan("s1", ["s1"], "s1", ["s1"], ["s1"], [], "")
    assert single["cluster_init"] and single["join_server"] == ""
    with_vip = join.k3s_join_plan("s1", ["s1"], "s1", ["s1"], ["s1"], [], "10.0.0.9")
    assert not with_vip["cluster_init"] and with_vip["join_server"] == "" and not with_vip["problem"]


def test_no_cluster_is_started_while_an_unreachable_server_may_hold_one():
    for node in ("s1", "s2"):
        got = plan(node, unreached=["s3"])
        assert not got["cluster_init"]
        assert got["problem"].startswith("no server reached holds etcd data and s3 could not be asked")
        assert "Make it reachable, or take it out of k3s_server" in got["problem"]
    # Data found elsewhere settles it: the unreachable server does not matter.
    assert plan("s1", etcd=["s2"], live=["s2"], unreached=["s3"])["problem"] == ""
    # Agents never start a cluster, so they are not held up by it.
    assert plan("a1", unreached=["s3"])["problem"] == ""


CONFIG = {"node-ip": "10.0.0.1", "selinux": False, "tls-san": ["10.0.0.9"], "etcd-snapshot-retention": 28}


def test_only_a_change_of_the_join_key_is_recognised():
    on_host = yaml.safe_dump(CONFIG | {"cluster-init": True})
    assert join.k3s_join_key_only(on_host, CONFIG | {"server": "https://10.0.0.9:6443"})
    assert join.k3s_join_key_only(
        yaml.safe_dump(CONFIG | {"server": "https://10.0.0.2:6443"}), CONFIG | {"server": "https://10.0.0.9:6443"}
    )
    # Anything else changing, or nothing at all, is not.
    assert not join.k3s_join_key_only(on_host, CONFIG | {"cluster-init": True})
    assert not join.k3s_join_key_only(on_host, CONFIG | {"selinux": True, "server": "https://10.0.0.9:6443"})
    for unreadable in ("", "not: [yaml", "- a list\n", None):
        assert not join.k3s_join_key_only(unreadable, CONFIG | {"server": "https://10.0.0.9:6443"})
