"""Who starts the embedded etcd cluster and whom every other node joins through.

K3s's ``cluster-init`` makes a new etcd cluster on a server without etcd data, so a rebuilt
first server given it would start a second cluster beside the live one. cluster-init is
therefore given only while no server holds etcd data, and to one server only (the bootstrap
server); as soon as any server holds data every node joins through a live one. K3s reads
``cluster-init`` and ``server`` only while it has no etcd data of its own, which is why a
member's config may drop the key without a restart (``k3s_join_key_only``).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

JOIN_KEYS = ("cluster-init", "server")


def k3s_join_plan(
    node: Any,
    servers: list[str],
    bootstrap: Any,
    etcd_servers: list[str] | None = None,
    live_servers: list[str] | None = None,
    unreached: list[str] | None = None,
    endpoint: Any = "",
) -> dict[str, Any]:
    """How ``node`` takes part in the cluster.

    ``etcd_servers``: the servers that hold etcd data; ``live_servers``: those whose API
    answers; ``unreached``: those that could not be asked (both probes: roles/k3s/tasks/
    cluster_state.yml); ``endpoint``: k3s_api_endpoint. Returns ``cluster_exists``,
    ``cluster_init`` (this node starts the cluster), ``join_server`` (the server to join through
    and take the token from, '' when none; the endpoint, when set, is the address joined) and
    ``problem`` ('' or why the node cannot go on).
    """
    node, bootstrap, endpoint = str(node), str(bootstrap), str(endpoint or "").strip()
    servers = list(servers or [])
    etcd = [s for s in servers if s in (etcd_servers or [])]
    live = [s for s in servers if s in (live_servers or [])]
    missing = [s for s in servers if s in (unreached or [])]
    is_server = node in servers
    exists = bool(etcd)
    # Best first: members whose API answers, other servers that answer, then members (K3s down).
    candidates = [s for s in dict.fromkeys([s for s in live if s in etcd] + live + etcd) if s != node]
    if candidates:
        join = candidates[0]
    elif not exists and node != bootstrap:
        join = bootstrap  # a new cluster: the bootstrap server starts it in this run
    else:
        join = ""
    plan = {"cluster_exists": exists, "cluster_init": False, "join_server": join, "problem": ""}
    if is_server and not exists and missing:
        them = "it" if len(missing) == 1 else "them"
        plan["problem"] = (
            f"no server reached holds etcd data and {', '.join(missing)} could not be asked, so it cannot be told whether "
            f"the cluster exists: starting one now could split it from a cluster on {', '.join(missing)}. Make {them} "
            f"reachable, or take {them} out of k3s_server if gone for good"
        )
        return plan
    # A new cluster: the bootstrap server starts it. An existing one: only a lone member with no
    # other address to name keeps cluster-init (nothing to split from; K3s ignores it on a member).
    # Every other node joins: a node without etcd data always has a member or the bootstrap server to name.
    plan["cluster_init"] = is_server and (node == bootstrap if not exists else (not endpoint and not join))
    return plan


def k3s_join_key_only(current: Any, wanted: dict[str, Any]) -> bool:
    """True when ``current`` (config.yaml's text on the host) differs from ``wanted`` only in
    the join keys (``cluster-init``, ``server``) and is not the same; '' or unreadable: False."""
    try:
        have = yaml.safe_load(str(current or ""))
        want = json.loads(json.dumps(dict(wanted or {})))  # plain types, as a YAML load gives them
    except (yaml.YAMLError, TypeError, ValueError):
        return False
    if not isinstance(have, dict) or have == want:
        return False

    def rest(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in JOIN_KEYS}

    return rest(have) == rest(want)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_k3s_join_plan": k3s_join_plan,
            "mlops_k3s_join_key_only": k3s_join_key_only,
        }
