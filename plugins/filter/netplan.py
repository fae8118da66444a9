"""Network plan maths for mlops-metal: parsing, validation and collision checks.

Everything here is pure Python (``ipaddress``) so it is unit-tested without Ansible;
the Ansible filters at the bottom are thin wrappers. A *finding* is a dict with
``severity`` ("error" or "warning"), ``host`` ("-" for plan-wide findings), ``check``,
``message`` and ``fix``; callers collect them all and fail once.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# K3s's own defaults, applied (with a warning) when an inventory leaves a value unset.
# This is the only place they are written down; every consumer resolves the plan here.
K3S_DEFAULTS: dict[str, Any] = {
    "k3s_cluster_cidr": "10.42.0.0/16",
    "k3s_service_cidr": "10.43.0.0/16",
    "k3s_cluster_dns": "10.43.0.10",
    "metallb_address_pools": [],
}
PLAN_FIELDS = (*K3S_DEFAULTS, "mlops_cluster_name", "mlops_environment")
PLAN_FILE_HINT = "inventories/<env>/group_vars/all/network.yml"
PLAN_EXAMPLES = {"mlops_cluster_name": "mlops", "mlops_environment": "dev"}

# Kubernetes allocates one pod subnet per node of this size (kube-controller-manager's
# node-cidr-mask-size defaults) and caps the service range (kube-apiserver rejects more
# than 20 bits of service addresses).
NODE_MASK = {4: 24, 6: 64}
MAX_SERVICE_BITS = 20

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
POOL_PROTOCOLS = ("layer2", "bgp")
RANGE_LABELS = {
    "k3s_cluster_cidr": "pod range",
    "k3s_service_cidr": "service range",
}


def finding(severity: str, check: str, message: str, fix: str = "", host: str = "-") -> dict[str, str]:
    return {"severity": severity, "host": host, "check": check, "message": message, "fix": fix}


# --------------------------------------------------------------------------- parsing


def _items(value: Any) -> list[str]:
    """A comma-separated string or a list (dual-stack) as a list of stripped strings."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(part).strip() for part in value]
    return [str(value)]


def _unusable_reason(net: Network) -> str:
    for attr, label in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
    ):
        if getattr(net, attr):
            return label
    return ""


def parse_cidrs(field: str, value: Any) -> tuple[list[Network], list[dict[str, str]]]:
    """Parse a K3s CIDR value (one network per IP family, comma-separated for dual-stack)."""
    nets: list[Network] = []
    problems: list[dict[str, str]] = []
    items = _items(value)
    if not items:
        problems.append(finding("error", "plan", f"{field} is empty", f"set {field} in {PLAN_FILE_HINT}"))
    for item in items:
        if "/" not in item:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"{field}: {item!r} has no prefix length",
                    f"write it as network/prefix, e.g. {K3S_DEFAULTS.get(field)}",
                )
            )
            continue
        try:
            iface = ipaddress.ip_interface(item)
        except ValueError as exc:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"{field}: {item!r} is not a valid CIDR ({exc})",
                    f"write {field} as network/prefix, e.g. {K3S_DEFAULTS.get(field)}",
                )
            )
            continue
        net = iface.network
        if iface.ip != net.network_address:
            # ip_network(strict=False) would silently clear the host bits; say so instead.
            problems.append(finding("error", "plan", f"{field}: {item} has host bits set", f"use the network address: {net}"))
            continue
        reason = _unusable_reason(net)
        if reason:
            problems.append(finding("error", "plan", f"{field}: {net} is a {reason} range", "choose a private range, e.g. 10.44.0.0/16"))
            continue
        nets.append(net)
    families = [n.version for n in nets]
    if len(set(families)) != len(families):
        problems.append(
            finding(
                "error",
                "plan",
                f"{field}: more than one IPv{families[0]} range ({', '.join(map(str, nets))})",
                "give at most one IPv4 and one IPv6 range (dual-stack), comma-separated",
            )
        )
    return nets, problems


def parse_addresses(field: str, value: Any) -> tuple[list[Address], list[dict[str, str]]]:
    addrs: list[Address] = []
    problems: list[dict[str, str]] = []
    items = _items(value)
    if not items:
        problems.append(finding("error", "plan", f"{field} is empty", f"set {field} in {PLAN_FILE_HINT}"))
    for item in items:
        try:
            addrs.append(ipaddress.ip_address(item))
        except ValueError:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"{field}: {item!r} is not an IP address",
                    f"write a plain address, e.g. {K3S_DEFAULTS['k3s_cluster_dns']}",
                )
            )
    return addrs, problems


def parse_range(text: str) -> list[Network]:
    """A MetalLB address: a CIDR or an 'a.b.c.d-e.f.g.h' range, as the networks that cover it."""
    text = text.strip()
    if "-" in text:
        start_text, end_text = (part.strip() for part in text.split("-", 1))
        start, end = ipaddress.ip_address(start_text), ipaddress.ip_address(end_text)
        if start.version != end.version:
            raise ValueError(f"{start} and {end} are of different IP families")
        if start > end:
            raise ValueError(f"the range starts after it ends ({start} > {end})")
        return list(ipaddress.summarize_address_range(start, end))
    if "/" not in text:
        raise ValueError("expected a CIDR (a.b.c.d/nn) or a range (a.b.c.d-e.f.g.h)")
    net = ipaddress.ip_network(text, strict=False)
    if ipaddress.ip_interface(text).ip != net.network_address:
        raise ValueError(f"host bits set: did you mean {net}?")
    return [net]


def count_addresses(nets: Iterable[Network]) -> int:
    return sum(n.num_addresses for n in nets)


def normalize_pools(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Turn metallb_address_pools (list, or a JSON/YAML string as given with -e) into checked pools."""
    field = "metallb_address_pools"
    problems: list[dict[str, str]] = []
    example = '[{"name": "default", "addresses": ["192.168.1.240-192.168.1.250"]}]'
    if value is None or value == "":
        return [], problems
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                import yaml  # only needed for the rarer YAML-in-a-string form

                value = yaml.safe_load(value)
            except Exception as exc:  # any YAML error is reported the same way
                problems.append(
                    finding(
                        "error",
                        "plan",
                        f"{field} could not be parsed as JSON or YAML: {str(exc).splitlines()[0]} (got {value!r})",
                        f"with -e, pass a JSON object, e.g. -e '{{\"{field}\": {example}}}'; "
                        "key=value form splits at spaces, so write its JSON without any",
                    )
                )
                return [], problems
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        problems.append(
            finding("error", "plan", f"{field} must be a list of {{name, addresses}}, got {type(value).__name__}", f"e.g. {example}")
        )
        return [], problems
    pools: list[dict[str, Any]] = []
    seen_names: set[str] = set()
    for index, raw in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(raw, dict):
            problems.append(finding("error", "plan", f"{where} must be a mapping with name and addresses, got {raw!r}", f"e.g. {example}"))
            continue
        name = str(raw.get("name", ""))
        if not DNS_LABEL.match(name):
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"{where}.name {name!r} is not a valid Kubernetes name",
                    "use lower-case letters, digits and '-', e.g. default",
                )
            )
        elif name in seen_names:
            problems.append(finding("error", "plan", f"{where}.name {name!r} is used by two pools", "give every pool its own name"))
        seen_names.add(name)
        unknown = sorted(set(raw) - {"name", "addresses", "protocol", "auto_assign", "avoid_buggy_ips"})
        if unknown:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"{where} has unknown keys {unknown}",
                    "allowed: name, addresses, protocol, auto_assign, avoid_buggy_ips",
                )
            )
        protocol = raw.get("protocol", "layer2")
        if protocol not in POOL_PROTOCOLS:
            problems.append(
                finding(
                    "error", "plan", f"{where}.protocol {protocol!r} is not one of {list(POOL_PROTOCOLS)}", "use layer2 (default) or bgp"
                )
            )
        addresses = raw.get("addresses")
        if isinstance(addresses, str):
            addresses = [addresses]
        if not addresses or not isinstance(addresses, list):
            problems.append(finding("error", "plan", f"{where}.addresses must be a non-empty list", f"e.g. {example}"))
            continue
        entries: list[dict[str, Any]] = []
        for text in addresses:
            try:
                nets = parse_range(str(text))
            except ValueError as exc:
                problems.append(
                    finding(
                        "error",
                        "plan",
                        f"{where}.addresses: {text!r} is not valid: {exc}",
                        "write a CIDR (10.0.0.0/28) or a range (10.0.0.10-10.0.0.20)",
                    )
                )
                continue
            entries.append({"text": str(text).strip(), "networks": nets})
        pools.append({"name": name, "protocol": protocol, "auto_assign": bool(raw.get("auto_assign", True)), "entries": entries})
    return pools, problems


# --------------------------------------------------------------------------- plan


def resolve_plan(raw: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Apply K3s defaults to unset values and check every value and their relations.

    Returns the resolved plan (networks as ``ipaddress`` objects) and all findings.
    """
    problems: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for field in PLAN_FIELDS:
        value = raw.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            if field in K3S_DEFAULTS and field != "metallb_address_pools":
                value = K3S_DEFAULTS[field]
                problems.append(
                    finding(
                        "warning",
                        "plan",
                        f"{field} is not set; using the K3s default {value}",
                        f"state it in {PLAN_FILE_HINT} so every consumer sees the same value",
                    )
                )
            elif field == "metallb_address_pools":
                value = []
            else:
                problems.append(
                    finding(
                        "error",
                        "plan",
                        f"{field} is not set",
                        f"set {field} in {PLAN_FILE_HINT} (a lower-case DNS label, e.g. {PLAN_EXAMPLES[field]})",
                    )
                )
        values[field] = value

    for field in ("mlops_cluster_name", "mlops_environment"):
        value = values[field]
        if value is not None and not DNS_LABEL.match(str(value)):
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"{field} {value!r} is not a lower-case DNS label",
                    "use lower-case letters, digits and '-' (it names NFS folders, StorageClasses and namespaces)",
                )
            )

    pods, p = parse_cidrs("k3s_cluster_cidr", values["k3s_cluster_cidr"])
    problems += p
    services, p = parse_cidrs("k3s_service_cidr", values["k3s_service_cidr"])
    problems += p
    dns, p = parse_addresses("k3s_cluster_dns", values["k3s_cluster_dns"])
    problems += p
    pools, p = normalize_pools(values["metallb_address_pools"])
    problems += p

    for pod in pods:
        for svc in services:
            if pod.overlaps(svc):
                problems.append(
                    finding(
                        "error",
                        "plan",
                        f"k3s_cluster_cidr {pod} overlaps k3s_service_cidr {svc}",
                        f"give them disjoint ranges, e.g. pods {pod} and services {suggest_free(svc.prefixlen, svc.version, [pod])}",
                    )
                )
    for pod in pods:
        mask = NODE_MASK[pod.version]
        if pod.prefixlen > mask:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"k3s_cluster_cidr {pod} is smaller than one node's /{mask} pod subnet",
                    f"use /{mask - 8} or larger, e.g. {suggest_free(16, 4, services) if pod.version == 4 else 'a /56'}",
                )
            )
    for svc in services:
        bits = svc.max_prefixlen - svc.prefixlen
        if bits > MAX_SERVICE_BITS:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"k3s_service_cidr {svc} has {bits} host bits; kube-apiserver accepts at most {MAX_SERVICE_BITS}",
                    f"use /{svc.max_prefixlen - MAX_SERVICE_BITS} or smaller, e.g. /16",
                )
            )

    for address in dns:
        same_family = [s for s in services if s.version == address.version]
        if not same_family:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"k3s_cluster_dns {address} has no IPv{address.version} k3s_service_cidr to live in",
                    "use an address inside k3s_service_cidr",
                )
            )
            continue
        svc = same_family[0]
        if address not in svc:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"k3s_cluster_dns {address} is not inside k3s_service_cidr {svc}",
                    f"use an address inside it, e.g. {svc.network_address + 10}",
                )
            )
        elif address == svc.network_address or (svc.version == 4 and address == svc.broadcast_address):
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"k3s_cluster_dns {address} is the {'network' if address == svc.network_address else 'broadcast'} address of {svc}",
                    f"use e.g. {svc.network_address + 10}",
                )
            )
        elif address == svc.network_address + 1:
            problems.append(
                finding(
                    "error",
                    "plan",
                    f"k3s_cluster_dns {address} is the first address of {svc}, which Kubernetes gives to the 'kubernetes' API service",
                    f"use e.g. {svc.network_address + 10}",
                )
            )

    pool_nets = [(pool["name"], entry["text"], net) for pool in pools for entry in pool["entries"] for net in entry["networks"]]
    for name, text, net in pool_nets:
        for field, ranges in (("k3s_cluster_cidr", pods), ("k3s_service_cidr", services)):
            for rng in ranges:
                if net.overlaps(rng):
                    problems.append(
                        finding(
                            "error",
                            "plan",
                            f"MetalLB pool {name!r} ({text}) overlaps {field} {rng}",
                            "take pool addresses from the node network, outside the pod and service ranges",
                        )
                    )
    reported: set[tuple[str, str]] = set()
    for i, (name_a, text_a, net_a) in enumerate(pool_nets):
        for name_b, text_b, net_b in pool_nets[i + 1 :]:
            key = (f"{name_a}:{text_a}", f"{name_b}:{text_b}")
            if (name_a, text_a) != (name_b, text_b) and net_a.overlaps(net_b) and key not in reported:
                reported.add(key)
                problems.append(
                    finding(
                        "error",
                        "plan",
                        f"MetalLB pool {name_a!r} ({text_a}) overlaps pool {name_b!r} ({text_b})",
                        "make the pools disjoint",
                    )
                )

    plan = {
        "mlops_cluster_name": values["mlops_cluster_name"],
        "mlops_environment": values["mlops_environment"],
        "k3s_cluster_cidr": pods,
        "k3s_service_cidr": services,
        "k3s_cluster_dns": dns,
        "metallb_address_pools": pools,
    }
    return plan, problems


def suggest_free(prefixlen: int, version: int, avoid: Sequence[Any]) -> str:
    """A private range of the given size that overlaps nothing in ``avoid``, for fix messages."""
    avoid_nets = [ipaddress.ip_network(a) if not isinstance(a, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else a for a in avoid]
    avoid_nets = [n for n in avoid_nets if n.version == version]
    if version == 6:
        parents = [ipaddress.ip_network("fd42::/16")]
    else:
        parents = [
            ipaddress.ip_network(p)
            for p in ("10.44.0.0/14", "10.48.0.0/12", "10.64.0.0/10", "10.128.0.0/9", "10.0.0.0/11", "172.16.0.0/12", "192.168.0.0/16")
        ]
    for parent in parents:
        if prefixlen < parent.prefixlen:
            continue
        for candidate in parent.subnets(new_prefix=prefixlen):
            if not any(candidate.overlaps(n) for n in avoid_nets):
                return str(candidate)
    return "a private range used nowhere on your network"


# --------------------------------------------------------------------------- hosts


def _host_nets(report: dict[str, Any], ignored: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Addresses and route destinations of one host, without interfaces K3s itself creates."""

    def skip(dev: str) -> bool:
        return any(fnmatch(dev or "", pattern) for pattern in ignored)

    addresses = []
    for link in report.get("addresses") or []:
        ifname = link.get("ifname", "?")
        if skip(ifname):
            continue
        for info in link.get("addr_info") or []:
            if info.get("family") not in ("inet", "inet6") or not info.get("local"):
                continue
            iface = ipaddress.ip_interface(f"{info['local']}/{info.get('prefixlen', 128 if ':' in info['local'] else 32)}")
            addresses.append({"ifname": ifname, "interface": iface})
    routes = []
    for route in report.get("routes") or []:
        dst = route.get("dst", "")
        if (
            dst in ("default", "")
            or route.get("table") == "local"
            or route.get("type") in ("local", "broadcast", "multicast", "anycast")
            or skip(route.get("dev", ""))
        ):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.is_link_local or net.is_multicast or net.prefixlen == 0:
            continue
        routes.append({"dev": route.get("dev", "?"), "gateway": route.get("gateway", ""), "network": net})
    return addresses, routes


def _service_fix(plan: dict[str, Any], avoid: list[Any], version: int, prefixlen: int) -> str:
    suggestion = suggest_free(prefixlen, version, avoid + list(plan["k3s_cluster_cidr"]))
    if "/" not in suggestion:
        return f"choose a service range that does not contain it ({suggestion})"
    dns = ipaddress.ip_network(suggestion).network_address + 10
    return f"choose a service range that does not contain it, e.g. {suggestion} with k3s_cluster_dns {dns}"


def _pod_fix(plan: dict[str, Any], avoid: list[Any], version: int, prefixlen: int) -> str:
    suggestion = suggest_free(prefixlen, version, avoid + list(plan["k3s_service_cidr"]))
    return f"choose a pod range that does not contain it, e.g. {suggestion}"


def check_host_networks(plan: dict[str, Any], reports: Sequence[dict[str, Any]], ignored: Sequence[str]) -> list[dict[str, str]]:
    """Every address and non-default route of every host against pod/service ranges and pools."""
    problems: list[dict[str, str]] = []
    collected = {r["name"]: _host_nets(r, ignored) for r in reports}
    avoid: list[Any] = []
    for addresses, routes in collected.values():
        avoid += [a["interface"].network for a in addresses] + [r["network"] for r in routes]
    pool_nets = [
        (p["name"], e["text"], n, p["protocol"]) for p in plan["metallb_address_pools"] for e in p["entries"] for n in e["networks"]
    ]
    fixers = {"k3s_cluster_cidr": _pod_fix, "k3s_service_cidr": _service_fix}

    for host, (addresses, routes) in collected.items():
        flagged: list[tuple[str, Any]] = []
        for entry in addresses:
            ip, ifname = entry["interface"].ip, entry["ifname"]
            for field in ("k3s_cluster_cidr", "k3s_service_cidr"):
                for rng in plan[field]:
                    if ip in rng:
                        flagged.append((field, ip))
                        problems.append(
                            finding(
                                "error",
                                "network",
                                f"{ip} on {ifname} of {host} is inside {field} {rng}",
                                fixers[field](plan, avoid, rng.version, rng.prefixlen),
                                host,
                            )
                        )
            for name, text, net, _ in pool_nets:
                if ip in net:
                    problems.append(
                        finding(
                            "error",
                            "network",
                            f"{ip} on {ifname} of {host} is inside MetalLB pool {name!r} ({text})",
                            "MetalLB would hand out a node's own address: shrink the pool so it excludes every node address",
                            host,
                        )
                    )
        for route in routes:
            net = route["network"]
            via = f" via {route['gateway']}" if route["gateway"] else ""
            for field in ("k3s_cluster_cidr", "k3s_service_cidr"):
                for rng in plan[field]:
                    already = any(f == field and ip in net for f, ip in flagged)
                    if net.overlaps(rng) and not already:
                        problems.append(
                            finding(
                                "error",
                                "network",
                                f"route {net}{via} dev {route['dev']} on {host} overlaps {field} {rng}",
                                fixers[field](plan, avoid, rng.version, rng.prefixlen),
                                host,
                            )
                        )
            if route["gateway"]:
                for name, text, pnet, _ in pool_nets:
                    if net.overlaps(pnet):
                        problems.append(
                            finding(
                                "warning",
                                "network",
                                f"route {net}{via} dev {route['dev']} on {host} overlaps MetalLB pool {name!r} ({text})",
                                "pool addresses should live on the nodes' own L2 segment, not behind a router",
                                host,
                            )
                        )

    subnets = [a["interface"].network for addresses, _ in collected.values() for a in addresses if not a["interface"].ip.is_loopback]
    if reports:
        for pool in plan["metallb_address_pools"]:
            if pool["protocol"] != "layer2":
                continue
            for entry in pool["entries"]:
                if not all(any(n.subnet_of(s) for s in subnets if s.version == n.version) for n in entry["networks"]):
                    problems.append(
                        finding(
                            "warning",
                            "network",
                            f"MetalLB layer2 pool {pool['name']!r} ({entry['text']}) is not inside any host subnet",
                            "layer2 answers ARP/NDP only on the node network: take the pool from a subnet the nodes are on",
                        )
                    )
    return problems


# --------------------------------------------------------------------------- host facts


def _group_requirements(groups: Sequence[str], minimums: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The strictest requirement of every group a host is in."""
    merged: dict[str, Any] = {"disk": {}}
    for group in groups:
        spec = minimums.get(group) or {}
        for key in ("vcpus", "memory_mb"):
            if key in spec:
                merged[key] = max(merged.get(key, 0), spec[key])
        if "disk_path" in spec:
            path = spec["disk_path"]
            merged["disk"][path] = max(merged["disk"].get(path, 0), spec.get("disk_free_gb", 0))
    return merged


def _mount_for(path: str, mounts: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    best = None
    for mount in mounts:
        point = mount.get("mount", "")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best["mount"])):
            best = mount
    return best


def check_host_facts(report: dict[str, Any], req: dict[str, Any]) -> list[dict[str, str]]:
    """OS, architecture, sizing, swap, time sync and port checks for one managed host."""
    host = report["name"]
    groups = set(report.get("groups") or [])
    managed = sorted(groups & set(req.get("managed_groups", [])))
    if not managed:
        return []
    problems: list[dict[str, str]] = []
    family, dist, major = report.get("os_family"), report.get("distribution"), str(report.get("distribution_major_version"))
    supported = req.get("supported_os", [])
    if not any(family == s["family"] and dist in s["distributions"] and major in [str(v) for v in s["major_versions"]] for s in supported):
        names = "; ".join(f"{'/'.join(s['distributions'])} {'/'.join(map(str, s['major_versions']))}" for s in supported)
        problems.append(
            finding("error", "os", f"{host} runs {dist} {major} ({family}), which is not supported", f"use one of: {names}", host)
        )
    arch = report.get("architecture")
    if arch not in req.get("architectures", []):
        problems.append(finding("error", "os", f"{host} is {arch}", f"K3s hosts here must be one of {req.get('architectures')}", host))

    need = _group_requirements(managed, req.get("group_minimums", {}))
    if report.get("vcpus", 0) < need.get("vcpus", 0):
        problems.append(
            finding(
                "error",
                "sizing",
                f"{host} has {report.get('vcpus')} vCPUs; {'/'.join(managed)} needs {need['vcpus']}",
                "add CPUs or move the host to a lighter group",
                host,
            )
        )
    if report.get("memory_mb", 0) < need.get("memory_mb", 0):
        problems.append(
            finding(
                "error",
                "sizing",
                f"{host} has {report.get('memory_mb')} MB of memory; {'/'.join(managed)} needs {need['memory_mb']} MB",
                "add memory or move the host to a lighter group",
                host,
            )
        )
    for path, gigabytes in need["disk"].items():
        mount = _mount_for(path, report.get("mounts") or [])
        free_gb = (mount or {}).get("size_available", 0) / 1024**3
        if mount is None or free_gb < gigabytes:
            where = f"{mount['mount']} (holding {path})" if mount else path
            problems.append(
                finding(
                    "error",
                    "sizing",
                    f"{host} has {free_gb:.1f} GiB free on {where}; needs {gigabytes} GiB",
                    f"free space or mount a larger disk at {path}",
                    host,
                )
            )

    in_cluster = "k3s_cluster" in groups or bool(groups & {"k3s_server", "k3s_agent"})
    if in_cluster and report.get("swap_mb", 0) > 0:
        problems.append(
            finding(
                "error" if req.get("swap_fatal") else "warning",
                "host",
                f"{host} has {report.get('swap_mb')} MB of swap enabled",
                "the common role turns swap off (kubelet expects none)",
                host,
            )
        )
    if in_cluster and not report.get("time_sync_active"):
        problems.append(
            finding(
                "error" if req.get("time_sync_fatal") else "warning",
                "host",
                f"{host} runs no time sync service (chronyd, systemd-timesyncd or ntpd)",
                "the common role installs and starts chrony; embedded etcd needs clocks in sync",
                host,
            )
        )

    owners = req.get("port_owner_patterns", [])
    listening = report.get("listening") or []
    for group in managed:
        for want in req.get("group_ports", {}).get(group, []):
            for sock in listening:
                if int(sock.get("port", -1)) != int(want["port"]) or sock.get("protocol", "tcp")[:3] != want.get("proto", "tcp"):
                    continue
                owner = sock.get("name") or "unknown"
                if any(fnmatch(owner, p) for p in owners):
                    continue
                problems.append(
                    finding(
                        "error",
                        "ports",
                        f"{want['port']}/{want.get('proto', 'tcp')} ({want.get('purpose', 'K3s')}) on {host}"
                        f" is taken by {owner} (pid {sock.get('pid', '?')})",
                        "stop that service or move it to another port",
                        host,
                    )
                )
    return problems


def check_uniqueness(reports: Sequence[dict[str, Any]], managed_groups: Sequence[str]) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    managed = [r for r in reports if set(r.get("groups") or []) & set(managed_groups)]
    for key, label, fix in (
        ("hostname", "hostname", "give every node its own hostname (K3s uses it as the node name)"),
        ("node_ip", "node IP", "set k3s_node_ip per host to an address of its own"),
    ):
        seen: dict[str, list[str]] = {}
        for report in managed:
            value = str(report.get(key) or "").lower()
            if value:
                seen.setdefault(value, []).append(report["name"])
        for value, hosts in sorted(seen.items()):
            if len(hosts) > 1:
                problems.append(finding("error", "hosts", f"{label} {value} is shared by {', '.join(hosts)}", fix))
    return problems


# --------------------------------------------------------------------------- report


def _fmt_nets(nets: Sequence[Any]) -> str:
    return ", ".join(str(n) for n in nets) or "-"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def render_report(
    plan: dict[str, Any], reports: Sequence[dict[str, Any]], problems: Sequence[dict[str, str]], ignored: Sequence[str]
) -> str:
    lines = [
        f"mlops-metal preflight: cluster {plan.get('mlops_cluster_name') or '?'},"
        f" environment {plan.get('mlops_environment') or '?'}, {len(reports)} host(s)",
        "",
        "Network plan",
    ]
    rows = [["field", "value", "size"]]
    for field in ("k3s_cluster_cidr", "k3s_service_cidr"):
        nets = plan[field]
        size = ", ".join(
            f"{n.num_addresses:,} addresses"
            + (f", {2 ** max(0, NODE_MASK[n.version] - n.prefixlen):,} nodes" if field == "k3s_cluster_cidr" else "")
            for n in nets
        )
        rows.append([field, _fmt_nets(nets), size])
    rows.append(["k3s_cluster_dns", _fmt_nets(plan["k3s_cluster_dns"]), ""])
    for pool in plan["metallb_address_pools"]:
        rows.append(
            [
                f"metallb pool {pool['name']}",
                ", ".join(e["text"] for e in pool["entries"]),
                f"{count_addresses(n for e in pool['entries'] for n in e['networks']):,} addresses, {pool['protocol']}",
            ]
        )
    if not plan["metallb_address_pools"]:
        rows.append(["metallb_address_pools", "-", "none: LoadBalancer services stay pending"])
    lines += _table(rows)
    lines += ["", "Hosts"]
    by_host: dict[str, list[dict[str, str]]] = {}
    for p in problems:
        by_host.setdefault(p["host"], []).append(p)
    host_rows = [["host", "groups", "addresses", "verdict"]]
    for report in reports:
        addresses, _ = _host_nets(report, ignored)
        shown = (
            ", ".join(
                f"{a['ifname']} {a['interface']}"
                for a in addresses
                if not (a["interface"].ip.is_link_local or a["interface"].ip.is_loopback)
            )
            or "-"
        )
        mine = by_host.get(report["name"], [])
        errors = sum(1 for p in mine if p["severity"] == "error")
        verdict = f"{errors} error(s)" if errors else ("warnings" if mine else "ok")
        host_rows.append([report["name"], ",".join(g for g in report.get("groups") or [] if g != "ungrouped") or "-", shown, verdict])
    lines += _table(host_rows)
    errors = [p for p in problems if p["severity"] == "error"]
    warnings = [p for p in problems if p["severity"] != "error"]
    lines += ["", f"Findings: {len(errors)} error(s), {len(warnings)} warning(s)"]
    for p in errors + warnings:
        where = "" if p["host"] == "-" else f" [{p['host']}]"
        lines.append(f"  {p['severity'].upper():7} {p['check']}{where}: {p['message']}")
        if p["fix"]:
            lines.append(f"          fix: {p['fix']}")
    lines += ["", "Verdict: " + (f"FAIL - fix the {len(errors)} error(s) above; no host was changed." if errors else "PASS")]
    return "\n".join(lines)


def preflight(raw_plan: dict[str, Any], reports: Sequence[dict[str, Any]], requirements: dict[str, Any]) -> dict[str, Any]:
    """Every check at once: the plan, each host's networks and facts, cross-host uniqueness."""
    reports = [r for r in reports if r]
    plan, problems = resolve_plan(raw_plan)
    ignored = requirements.get("ignored_interfaces", [])
    problems += check_host_networks(plan, reports, ignored)
    for report in reports:
        problems += check_host_facts(report, requirements)
    problems += check_uniqueness(reports, requirements.get("managed_groups", []))
    for missing in requirements.get("missing_hosts", []):
        problems.append(
            finding(
                "error",
                "hosts",
                f"{missing} could not be checked (unreachable, or fact collection failed)",
                "make the host reachable over ssh with Python 3, then run preflight again",
                missing,
            )
        )
    errors = sum(1 for p in problems if p["severity"] == "error")
    return {
        "errors": errors,
        "warnings": len(problems) - errors,
        "findings": problems,
        "report": render_report(plan, reports, problems, ignored),
        "plan": plan_as_data(plan),
    }


def plan_as_data(plan: dict[str, Any]) -> dict[str, Any]:
    """The resolved plan with plain strings, for templates and K3s config (dual-stack joined by commas)."""
    return {
        "mlops_cluster_name": plan["mlops_cluster_name"],
        "mlops_environment": plan["mlops_environment"],
        "k3s_cluster_cidr": ",".join(map(str, plan["k3s_cluster_cidr"])),
        "k3s_service_cidr": ",".join(map(str, plan["k3s_service_cidr"])),
        "k3s_cluster_dns": ",".join(map(str, plan["k3s_cluster_dns"])),
        "metallb_address_pools": [
            {"name": p["name"], "protocol": p["protocol"], "auto_assign": p["auto_assign"], "addresses": [e["text"] for e in p["entries"]]}
            for p in plan["metallb_address_pools"]
        ],
    }


def network_plan(raw_plan: dict[str, Any]) -> dict[str, Any]:
    """The resolved plan for consumers (K3s config, firewall, MetalLB); raises on any error."""
    from ansible.errors import AnsibleFilterError

    plan, problems = resolve_plan(raw_plan)
    errors = [f"{p['message']} (fix: {p['fix']})" for p in problems if p["severity"] == "error"]
    if errors:
        raise AnsibleFilterError("invalid network plan:\n  " + "\n  ".join(errors))
    return plan_as_data(plan)


def node_address(host_vars: Any) -> str:
    """The address K3s uses for a node, from one host's vars: the only place this is decided.

    ``k3s_node_ip`` when set, else the default IPv4 address from facts, else ``ansible_host``
    (render mode has no facts), else the inventory name.
    """
    explicit = host_vars.get("k3s_node_ip")
    if explicit:
        return str(explicit)
    facts = host_vars.get("ansible_facts") or {}
    gathered = (facts.get("default_ipv4") or {}).get("address")
    if gathered:
        return str(gathered)
    return str(host_vars.get("ansible_host") or host_vars.get("inventory_hostname") or "")


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_preflight": preflight, "mlops_network_plan": network_plan, "mlops_node_address": node_address}
