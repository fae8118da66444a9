"""Checks the K3s operations make before they touch a node.

Upgrades: Kubernetes' version skew policy lets a control plane move one minor at a time and
never back, so playbooks/upgrade.yml refuses a downgrade or a skipped minor before any node
is drained. Node recovery: removing a failed server's etcd member needs a quorum of the
members left, so playbooks/recover-node.yml refuses when too few servers answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

# v1.34.9+k3s1 (K3s's release names); the +k3sN revision orders releases of one Kubernetes patch.
VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+]k3s(\d+))?$")
# First line of `k3s --version`: "k3s version v1.34.9+k3s1 (7ac2bd9c)".
BINARY_LINE = re.compile(r"^k3s version (\S+)")


def k3s_version_tuple(version: Any) -> tuple[int, int, int, int]:
    """``(major, minor, patch, k3s revision)`` of a K3s version; ValueError names a bad one."""
    match = VERSION.match(str(version or "").strip())
    if not match:
        raise ValueError(f"{version!r} is not a K3s version like v1.34.9+k3s1")
    major, minor, patch, revision = match.groups()
    return int(major), int(minor), int(patch), int(revision or 0)


def k3s_binary_version(stdout: Any) -> str:
    """The version in ``k3s --version`` output, or '' when there is none (no binary)."""
    for line in str(stdout or "").splitlines():
        match = BINARY_LINE.match(line.strip())
        if match:
            return match.group(1)
    return ""


def k3s_upgrade_problems(current: dict[str, Any], target: Any) -> list[str]:
    """Why ``target`` may not replace the versions in ``current`` ({node: version or ''}).

    A node with no version (K3s not installed) is not a problem here: the k3s role installs
    the target there as on a new node. An empty list means the upgrade may go ahead.
    """
    try:
        want = k3s_version_tuple(target)
    except ValueError as err:
        return [f"k3s_version: {err}"]
    problems = []
    for node, version in sorted((current or {}).items()):
        if not version:
            continue
        try:
            have = k3s_version_tuple(version)
        except ValueError as err:
            problems.append(f"{node}: runs {err}; check it by hand before upgrading")
            continue
        if want < have:
            problems.append(
                f"{node}: runs {version}, k3s_version {target} would be a downgrade; "
                f"Kubernetes does not support that: restore an etcd snapshot taken before the upgrade instead"
            )
        elif want[0] != have[0] or want[1] > have[1] + 1:
            step = f"v{have[0]}.{have[1] + 1}"
            problems.append(
                f"{node}: runs {version}, k3s_version {target} skips a minor (Kubernetes' skew policy allows one at a time): "
                f"upgrade to the latest {step} release first"
            )
    return problems


def k3s_needs_upgrade(version: Any, target: Any) -> bool:
    """True when a node at ``version`` must move to ``target`` (not installed counts too)."""
    return not version or k3s_version_tuple(version) != k3s_version_tuple(target)


def k3s_recover_problems(node: Any, groups: dict[str, list[str]], live_servers: list[str]) -> list[str]:
    """Why ``node`` cannot be replaced now; ``live_servers`` are the servers whose API answers.

    A server's etcd member is removed through the others: etcd needs a majority of its
    members (the failed one still counts until removed) to agree, so fewer live servers than
    that means the cluster must come back from a snapshot instead.
    """
    servers = list(groups.get("k3s_server") or [])
    agents = list(groups.get("k3s_agent") or [])
    if not node:
        return ["recover_node: give the inventory name of the host to replace: -e recover_node=<host>"]
    if node not in servers + agents:
        return [
            f"recover_node: {node} is not in k3s_server or k3s_agent of this inventory "
            f"(servers: {', '.join(servers) or 'none'}; agents: {', '.join(agents) or 'none'})"
        ]
    live = [s for s in live_servers or [] if s != node]
    restore = "restore the cluster from an etcd snapshot instead (roles/k3s/tasks/etcd_restore.yml)"
    if not live:
        return [f"no server other than {node} answers, so nothing can take {node} back in: {restore}"]
    quorum = len(servers) // 2 + 1
    if node in servers and len(live) < quorum:
        return [
            f"{node} is a server: removing its etcd member needs {quorum} of the {len(servers)} members, "
            f"but only {len(live)} other server(s) answer ({', '.join(live)}): bring another server back first, or {restore}"
        ]
    return []


def k3s_node_state(result: dict[str, Any], version: Any = "") -> dict[str, Any]:
    """Readiness of a node from ``kubectl get node -o json`` (a registered command result):
    ``{ready, version, version_ok, summary}``; ``version_ok`` is true when no version is wanted."""
    state = {"ready": False, "version": "", "version_ok": not version, "summary": ""}
    if (result or {}).get("rc") != 0:
        lines = str((result or {}).get("stderr") or (result or {}).get("msg") or "no answer").strip().splitlines()
        state["summary"] = f"the API did not answer ({lines[-1] if lines else 'no output'})"
        return state
    try:
        node = json.loads(result.get("stdout") or "")
    except ValueError:
        state["summary"] = "the API's answer was not JSON"
        return state
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    state["ready"] = ready.get("status") == "True"
    state["version"] = (status.get("nodeInfo") or {}).get("kubeletVersion", "")
    state["version_ok"] = not version or state["version"] == str(version)
    state["summary"] = (
        f"Ready={ready.get('status', 'unknown')} ({ready.get('reason', 'no reason given')}), kubelet {state['version'] or 'unknown'}"
    )
    if node.get("spec", {}).get("unschedulable"):
        state["summary"] += ", cordoned"
    return state


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_k3s_binary_version": k3s_binary_version,
            "mlops_k3s_upgrade_problems": k3s_upgrade_problems,
            "mlops_k3s_needs_upgrade": k3s_needs_upgrade,
            "mlops_k3s_recover_problems": k3s_recover_problems,
            "mlops_k3s_node_state": k3s_node_state,
        }
