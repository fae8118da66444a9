"""Preflight's checks of one host's facts: OS (and the inventory's word on it), sizing, swap, time
sync and ports. Pure Python, unit-tested without Ansible; preflight.py runs them for every host.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

# Ansible loads each filter file on its own, by path: the plan module is imported from beside this one.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from network_plan import Findings

MINIMUMS = "preflight_group_minimums"
OS_FAMILY = "mlops_os_family"


def _group_requirements(groups: Sequence[str], minimums: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The strictest vCPU and memory need of the host's groups, and the disk needs per path, each
    with the variable that sets it (for a path several groups name, the largest need)."""
    merged: dict[str, Any] = {"disk": {}}
    for group in groups:
        spec = minimums.get(group) or {}
        for key in ("vcpus", "memory_mb"):
            if key in spec and spec[key] > merged.get(key, (0, ""))[0]:
                merged[key] = (spec[key], f"{MINIMUMS}.{group}.{key}")
        if "disk_path" in spec:
            path, gigabytes = spec["disk_path"], spec.get("disk_free_gb", 0)
            if gigabytes > merged["disk"].get(path, (-1, ""))[0]:
                merged["disk"][path] = (gigabytes, f"{MINIMUMS}.{group}.disk_free_gb")
    return merged


def _mount_for(path: str, mounts: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    best = None
    for mount in mounts:
        point = mount.get("mount", "")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best["mount"])):
            best = mount
    return best


def _port_range(port: Any) -> range:
    """A declared port, ``N`` or ``N-M`` as the firewall takes it, as the ports it covers."""
    first, _, last = str(port).partition("-")
    return range(int(first), int(last or first) + 1)


def _check_os(report: dict[str, Any], req: dict[str, Any], found: Findings) -> None:
    host = report["name"]
    family, dist, major = report.get("os_family"), report.get("distribution"), str(report.get("distribution_major_version"))
    supported = req.get("supported_os", [])
    if not any(family == s["family"] and dist in s["distributions"] and major in [str(v) for v in s["major_versions"]] for s in supported):
        names = "; ".join(f"{'/'.join(s['distributions'])} {'/'.join(map(str, s['major_versions']))}" for s in supported)
        found.error(f"{host} runs {dist} {major} ({family}), which is not supported", f"use one of: {names}")
    arch = report.get("architecture")
    if arch not in req.get("architectures", []):
        found.error(f"{host} is {arch}", f"K3s hosts here must be one of {req.get('architectures')}")
    # The inventory's word on the family is what render follows (e.g. K3s's selinux): it must match.
    declared = report.get("os_family_declared")
    if declared is None:
        return
    fix = f"set {OS_FAMILY}: {family} for {host} or its group in the inventory (render has no facts and follows it)"
    if not declared:
        if set(report.get("groups") or []) & {"k3s_cluster", "k3s_server", "k3s_agent"}:
            found.warning(f"{host} runs {dist} ({family}) but the inventory does not say so: {OS_FAMILY} is not set", fix)
    elif declared != family:
        found.error(f"{host} runs {dist} ({family}) but the inventory says {OS_FAMILY}: {declared}", fix)


def _check_sizing(report: dict[str, Any], managed: list[str], req: dict[str, Any], found: Findings) -> None:
    host, groups = report["name"], "/".join(managed)
    need = _group_requirements(managed, req.get("group_minimums", {}))
    lighter = f"or move the host to a lighter group; the minimum is {MINIMUMS} in the inventory"
    if "vcpus" in need and report.get("vcpus", 0) < need["vcpus"][0]:
        vcpus, variable = need["vcpus"]
        found.error(f"{host} has {report.get('vcpus')} vCPUs; {groups} needs {vcpus} ({variable})", f"add CPUs {lighter}", "sizing")
    if "memory_mb" in need and report.get("memory_mb", 0) < need["memory_mb"][0]:
        found.error(
            f"{host} has {report.get('memory_mb')} MB of memory; {groups} needs {need['memory_mb'][0]} MB ({need['memory_mb'][1]})",
            f"add memory {lighter}",
            "sizing",
        )
    for point, mount, paths, total, free_gb in disk_needs(report, need):
        if mount is not None and free_gb >= total:
            continue
        where = f"{point} (holding {', '.join(paths)})" if mount else point
        parts = " + ".join(f"{need['disk'][p][0]} GiB for {p} ({need['disk'][p][1]})" for p in paths)
        needs = f"{total} GiB ({need['disk'][paths[0]][1]})" if len(paths) == 1 else f"{total} GiB in total: {parts}"
        apart = f", give {' or '.join(paths[1:])} a filesystem of its own" if len(paths) > 1 else ""
        found.error(
            f"{host} has {free_gb:.1f} GiB free on {where}; needs {needs}",
            f"free space or mount a larger disk at {point}{apart}, or lower {MINIMUMS} in the inventory",
            "sizing",
        )


def disk_needs(report: dict[str, Any], need: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, list[str], int, float]]:
    """Per filesystem: its mount point, mount facts, the needed paths on it, their summed need in
    GiB and its free GiB. Needs on one filesystem add up (K3s's data and the NFS exports on one disk)."""
    by_mount: dict[str, tuple[dict[str, Any] | None, list[str]]] = {}
    for path in need["disk"]:
        mount = _mount_for(path, report.get("mounts") or [])
        by_mount.setdefault(mount["mount"] if mount else path, (mount, []))[1].append(path)
    return [
        (point, mount, paths, sum(need["disk"][p][0] for p in paths), (mount or {}).get("size_available", 0) / 1024**3)
        for point, (mount, paths) in by_mount.items()
    ]


def disk_summary(report: dict[str, Any], req: dict[str, Any]) -> str:
    """The host's disk needs per filesystem, for the report's host table: "/ 30/41.2 GiB"."""
    managed = sorted(set(report.get("groups") or []) & set(req.get("managed_groups", [])))
    if not managed:
        return "-"
    need = _group_requirements(managed, req.get("group_minimums", {}))
    return ", ".join(f"{point} {total}/{free_gb:.1f} GiB" for point, _, _, total, free_gb in disk_needs(report, need)) or "-"


def _check_ports(report: dict[str, Any], managed: list[str], req: dict[str, Any], found: Findings) -> None:
    owners = req.get("port_owner_patterns", [])
    for group in managed:
        for want in req.get("group_ports", {}).get(group, []):
            proto = want.get("proto", "tcp")
            for sock in report.get("listening") or []:
                port = int(sock.get("port", -1))
                if port not in _port_range(want["port"]) or sock.get("protocol", "tcp")[:3] != proto:
                    continue
                owner = sock.get("name") or "unknown"
                if any(fnmatch(owner, p) for p in owners):
                    continue
                found.error(
                    f"{port}/{proto} ({want.get('purpose', 'K3s')}) on {report['name']} is taken by {owner} (pid {sock.get('pid', '?')})",
                    "stop that service or move it to another port",
                    "ports",
                )


def check_host_facts(report: dict[str, Any], req: dict[str, Any]) -> Findings:
    """OS, architecture, sizing, swap, time sync and port checks for one managed host."""
    host = report["name"]
    found = Findings("os", host)
    groups = set(report.get("groups") or [])
    managed = sorted(groups & set(req.get("managed_groups", [])))
    if not managed:
        return found
    _check_os(report, req, found)
    _check_sizing(report, managed, req, found)
    in_cluster = "k3s_cluster" in groups or bool(groups & {"k3s_server", "k3s_agent"})
    if in_cluster and report.get("swap_mb", 0) > 0:
        found.add(
            "error" if req.get("swap_fatal") else "warning",
            f"{host} has {report.get('swap_mb')} MB of swap enabled",
            "the common role turns swap off (kubelet expects none)",
            "host",
        )
    if in_cluster and not report.get("time_sync_active"):
        found.add(
            "error" if req.get("time_sync_fatal") else "warning",
            f"{host} runs no time sync service (chronyd, systemd-timesyncd or ntpd)",
            "the common role installs and starts chrony; embedded etcd needs clocks in sync",
            "host",
        )
    _check_ports(report, managed, req, found)
    return found


class FilterModule:
    """No filters of its own: preflight.py's mlops_preflight runs these checks."""

    def filters(self) -> dict[str, Any]:
        return {}
