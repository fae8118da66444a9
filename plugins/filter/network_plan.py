"""The network plan of mlops-metal: parsing, checks and the maths on its ranges.

Everything here is pure Python (``ipaddress``) so it is unit-tested without Ansible; the
filters at the bottom are thin wrappers. A *finding* is a dict with ``severity`` ("error" or
"warning"), ``host`` ("-" for plan-wide findings), ``check``, ``message`` and ``fix``;
callers collect them all (``Findings``) and fail once. Preflight's host checks and report
build on this module (preflight.py).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
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
# Optional: the API's virtual address (roles/api_vip); empty means none.
VIP_FIELD = "mlops_api_vip"
PLAN_FIELDS = (*K3S_DEFAULTS, "mlops_cluster_name", "mlops_environment", VIP_FIELD)
PLAN_FILE_HINT = "inventories/<env>/group_vars/all/network.yml"
PLAN_EXAMPLES = {"mlops_cluster_name": "mlops", "mlops_environment": "dev"}
RANGE_FIELDS = ("k3s_cluster_cidr", "k3s_service_cidr")

# Kubernetes allocates one pod subnet per node of this size (kube-controller-manager's
# node-cidr-mask-size defaults) and caps the service range (kube-apiserver rejects more
# than 20 bits of service addresses).
NODE_MASK = {4: 24, 6: 64}
MAX_SERVICE_BITS = 20

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
POOL_PROTOCOLS = ("layer2", "bgp")
POOL_KEYS = ("name", "addresses", "protocol", "auto_assign", "avoid_buggy_ips")
POOL_EXAMPLE = '[{"name": "default", "addresses": ["192.168.1.240-192.168.1.250"]}]'


class Findings(list[dict[str, str]]):
    """Findings in the order they were made, for one check and host unless a call names others."""

    def __init__(self, check: str = "plan", host: str = "-") -> None:
        super().__init__()
        self.check, self.host = check, host

    def add(self, severity: str, message: str, fix: str = "", check: str = "", host: str = "") -> None:
        self.append({"severity": severity, "host": host or self.host, "check": check or self.check, "message": message, "fix": fix})

    def error(self, message: str, fix: str = "", check: str = "", host: str = "") -> None:
        self.add("error", message, fix, check, host)

    def warning(self, message: str, fix: str = "", check: str = "", host: str = "") -> None:
        self.add("warning", message, fix, check, host)


# --------------------------------------------------------------------------- parsing


def _items(field: str, value: Any, found: Findings) -> list[str]:
    """A comma-separated string or a list (dual-stack) as a list of stripped strings; none is an error."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        items = [str(value)]
    if not items:
        found.error(f"{field} is empty", f"set {field} in {PLAN_FILE_HINT}")
    return items


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


def parse_cidrs(field: str, value: Any) -> tuple[list[Network], Findings]:
    """Parse a K3s CIDR value (one network per IP family, comma-separated for dual-stack)."""
    nets: list[Network] = []
    found = Findings()
    for item in _items(field, value, found):
        if "/" not in item:
            found.error(f"{field}: {item!r} has no prefix length", f"write it as network/prefix, e.g. {K3S_DEFAULTS.get(field)}")
            continue
        try:
            iface = ipaddress.ip_interface(item)
        except ValueError as exc:
            found.error(
                f"{field}: {item!r} is not a valid CIDR ({exc})", f"write {field} as network/prefix, e.g. {K3S_DEFAULTS.get(field)}"
            )
            continue
        net = iface.network
        if iface.ip != net.network_address:
            # ip_network(strict=False) would silently clear the host bits; say so instead.
            found.error(f"{field}: {item} has host bits set", f"use the network address: {net}")
            continue
        reason = _unusable_reason(net)
        if reason:
            found.error(f"{field}: {net} is a {reason} range", "choose a private range, e.g. 10.44.0.0/16")
            continue
        nets.append(net)
    families = [n.version for n in nets]
    if len(set(families)) != len(families):
        found.error(
            f"{field}: more than one IPv{families[0]} range ({', '.join(map(str, nets))})",
            "give at most one IPv4 and one IPv6 range (dual-stack), comma-separated",
        )
    return nets, found


def parse_addresses(field: str, value: Any) -> tuple[list[Address], Findings]:
    addrs: list[Address] = []
    found = Findings()
    for item in _items(field, value, found):
        try:
            addrs.append(ipaddress.ip_address(item))
        except ValueError:
            found.error(f"{field}: {item!r} is not an IP address", f"write a plain address, e.g. {K3S_DEFAULTS['k3s_cluster_dns']}")
    return addrs, found


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


def _load_pools(value: Any, found: Findings) -> Any:
    """metallb_address_pools as given with -e: a JSON or YAML string becomes data; None on failure."""
    field = "metallb_address_pools"
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        import yaml  # only needed for the rarer YAML-in-a-string form

        return yaml.safe_load(value)
    except Exception as exc:  # any YAML error is reported the same way
        found.error(
            f"{field} could not be parsed as JSON or YAML: {str(exc).splitlines()[0]} (got {value!r})",
            f"with -e, pass a JSON object, e.g. -e '{{\"{field}\": {POOL_EXAMPLE}}}'; "
            "key=value form splits at spaces, so write its JSON without any",
        )
        return None


def _pool(where: str, raw: dict[str, Any], seen_names: set[str], found: Findings) -> dict[str, Any] | None:
    """One checked pool, or None when its addresses are missing."""
    name = str(raw.get("name", ""))
    if not DNS_LABEL.match(name):
        found.error(f"{where}.name {name!r} is not a valid Kubernetes name", "use lower-case letters, digits and '-', e.g. default")
    elif name in seen_names:
        found.error(f"{where}.name {name!r} is used by two pools", "give every pool its own name")
    seen_names.add(name)
    unknown = sorted(set(raw) - set(POOL_KEYS))
    if unknown:
        found.error(f"{where} has unknown keys {unknown}", f"allowed: {', '.join(POOL_KEYS)}")
    protocol = raw.get("protocol", "layer2")
    if protocol not in POOL_PROTOCOLS:
        found.error(f"{where}.protocol {protocol!r} is not one of {list(POOL_PROTOCOLS)}", "use layer2 (default) or bgp")
    addresses = raw.get("addresses")
    if isinstance(addresses, str):
        addresses = [addresses]
    if not addresses or not isinstance(addresses, list):
        found.error(f"{where}.addresses must be a non-empty list", f"e.g. {POOL_EXAMPLE}")
        return None
    entries: list[dict[str, Any]] = []
    for text in addresses:
        try:
            nets = parse_range(str(text))
        except ValueError as exc:
            found.error(f"{where}.addresses: {text!r} is not valid: {exc}", "write a CIDR (10.0.0.0/28) or a range (10.0.0.10-10.0.0.20)")
            continue
        entries.append({"text": str(text).strip(), "networks": nets})
    return {"name": name, "protocol": protocol, "auto_assign": bool(raw.get("auto_assign", True)), "entries": entries}


def normalize_pools(value: Any) -> tuple[list[dict[str, Any]], Findings]:
    """Turn metallb_address_pools (list, or a JSON/YAML string as given with -e) into checked pools."""
    field = "metallb_address_pools"
    found = Findings()
    if value is None or value == "":
        return [], found
    if isinstance(value, str):
        value = _load_pools(value, found)
        if found:
            return [], found
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        found.error(f"{field} must be a list of {{name, addresses}}, got {type(value).__name__}", f"e.g. {POOL_EXAMPLE}")
        return [], found
    pools: list[dict[str, Any]] = []
    seen_names: set[str] = set()
    for index, raw in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(raw, dict):
            found.error(f"{where} must be a mapping with name and addresses, got {raw!r}", f"e.g. {POOL_EXAMPLE}")
            continue
        pool = _pool(where, raw, seen_names, found)
        if pool is not None:
            pools.append(pool)
    return pools, found


# --------------------------------------------------------------------------- plan


def _plan_values(raw: dict[str, Any], found: Findings) -> dict[str, Any]:
    """Each plan field as given, or K3s's default (with a warning) when unset."""
    values: dict[str, Any] = {}
    for field in PLAN_FIELDS:
        value = raw.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            if field == VIP_FIELD:
                value = ""
            elif field == "metallb_address_pools":
                value = []
            elif field in K3S_DEFAULTS:
                value = K3S_DEFAULTS[field]
                found.warning(
                    f"{field} is not set; using the K3s default {value}",
                    f"state it in {PLAN_FILE_HINT} so every consumer sees the same value",
                )
            else:
                found.error(f"{field} is not set", f"set {field} in {PLAN_FILE_HINT} (a lower-case DNS label, e.g. {PLAN_EXAMPLES[field]})")
        values[field] = value
    for field in ("mlops_cluster_name", "mlops_environment"):
        value = values[field]
        if value is not None and not DNS_LABEL.match(str(value)):
            found.error(
                f"{field} {value!r} is not a lower-case DNS label",
                "use lower-case letters, digits and '-' (it names NFS folders, StorageClasses and namespaces)",
            )
    return values


def _check_range_sizes(pods: list[Network], services: list[Network], found: Findings) -> None:
    for pod in pods:
        for svc in services:
            if pod.overlaps(svc):
                found.error(
                    f"k3s_cluster_cidr {pod} overlaps k3s_service_cidr {svc}",
                    f"give them disjoint ranges, e.g. pods {pod} and services {suggest_free(svc.prefixlen, svc.version, [pod])}",
                )
    for pod in pods:
        mask = NODE_MASK[pod.version]
        if pod.prefixlen > mask:
            found.error(
                f"k3s_cluster_cidr {pod} is smaller than one node's /{mask} pod subnet",
                f"use /{mask - 8} or larger, e.g. {suggest_free(16, 4, services) if pod.version == 4 else 'a /56'}",
            )
    for svc in services:
        bits = svc.max_prefixlen - svc.prefixlen
        if bits > MAX_SERVICE_BITS:
            found.error(
                f"k3s_service_cidr {svc} has {bits} host bits; kube-apiserver accepts at most {MAX_SERVICE_BITS}",
                f"use /{svc.max_prefixlen - MAX_SERVICE_BITS} or smaller, e.g. /16",
            )


def _check_dns(dns: list[Address], services: list[Network], found: Findings) -> None:
    for address in dns:
        same_family = [s for s in services if s.version == address.version]
        if not same_family:
            found.error(
                f"k3s_cluster_dns {address} has no IPv{address.version} k3s_service_cidr to live in",
                "use an address inside k3s_service_cidr",
            )
            continue
        svc = same_family[0]
        example = f"{svc.network_address + 10}"
        if address not in svc:
            found.error(f"k3s_cluster_dns {address} is not inside k3s_service_cidr {svc}", f"use an address inside it, e.g. {example}")
        elif address == svc.network_address or (svc.version == 4 and address == svc.broadcast_address):
            which = "network" if address == svc.network_address else "broadcast"
            found.error(f"k3s_cluster_dns {address} is the {which} address of {svc}", f"use e.g. {example}")
        elif address == svc.network_address + 1:
            found.error(
                f"k3s_cluster_dns {address} is the first address of {svc}, which Kubernetes gives to the 'kubernetes' API service",
                f"use e.g. {example}",
            )


def _check_pool_overlaps(pools: list[dict[str, Any]], ranges: dict[str, list[Network]], found: Findings) -> None:
    pool_nets = [(pool["name"], entry["text"], net) for pool in pools for entry in pool["entries"] for net in entry["networks"]]
    for name, text, net in pool_nets:
        for field, nets in ranges.items():
            for rng in nets:
                if net.overlaps(rng):
                    found.error(
                        f"MetalLB pool {name!r} ({text}) overlaps {field} {rng}",
                        "take pool addresses from the node network, outside the pod and service ranges",
                    )
    reported: set[tuple[str, str]] = set()
    for i, (name_a, text_a, net_a) in enumerate(pool_nets):
        for name_b, text_b, net_b in pool_nets[i + 1 :]:
            key = (f"{name_a}:{text_a}", f"{name_b}:{text_b}")
            if (name_a, text_a) != (name_b, text_b) and net_a.overlaps(net_b) and key not in reported:
                reported.add(key)
                found.error(f"MetalLB pool {name_a!r} ({text_a}) overlaps pool {name_b!r} ({text_b})", "make the pools disjoint")


def parse_api_vip(value: Any, pools: list[dict[str, Any]], ranges: dict[str, list[Network]]) -> tuple[Address | None, Findings]:
    """mlops_api_vip: one plain address, outside the pod and service ranges and every MetalLB pool."""
    found = Findings()
    text = str(value or "").strip()
    if not text:
        return None, found
    fix_free = f"set {VIP_FIELD} in {PLAN_FILE_HINT} to a free address of the node subnet, outside the MetalLB pools"
    try:
        vip = ipaddress.ip_address(text)
    except ValueError:
        found.error(f"{VIP_FIELD} {text!r} is not a plain IP address", f"{fix_free} (no prefix length, no name), e.g. 192.168.1.10")
        return None, found
    reason = _unusable_reason(ipaddress.ip_network(vip))
    if reason:
        found.error(f"{VIP_FIELD} {vip} is a {reason} address", fix_free)
        return None, found
    for field, nets in ranges.items():
        for rng in nets:
            if vip in rng:
                found.error(f"{VIP_FIELD} {vip} is inside {field} {rng}", f"{fix_free}; {field} belongs to the cluster's own traffic")
    for pool in pools:
        for entry in pool["entries"]:
            if any(vip in net for net in entry["networks"]):
                found.error(
                    f"{VIP_FIELD} {vip} is inside MetalLB pool {pool['name']!r} ({entry['text']})",
                    f"{fix_free}, or shrink the pool so MetalLB cannot hand the API's address to a service",
                )
    return vip, found


def resolve_plan(raw: dict[str, Any]) -> tuple[dict[str, Any], Findings]:
    """Apply K3s defaults to unset values and check every value and their relations.

    Returns the resolved plan (networks as ``ipaddress`` objects) and all findings.
    """
    found = Findings()
    values = _plan_values(raw, found)
    pods, p = parse_cidrs("k3s_cluster_cidr", values["k3s_cluster_cidr"])
    found += p
    services, p = parse_cidrs("k3s_service_cidr", values["k3s_service_cidr"])
    found += p
    dns, p = parse_addresses("k3s_cluster_dns", values["k3s_cluster_dns"])
    found += p
    pools, p = normalize_pools(values["metallb_address_pools"])
    found += p
    _check_range_sizes(pods, services, found)
    _check_dns(dns, services, found)
    _check_pool_overlaps(pools, {"k3s_cluster_cidr": pods, "k3s_service_cidr": services}, found)
    vip, p = parse_api_vip(values[VIP_FIELD], pools, {"k3s_cluster_cidr": pods, "k3s_service_cidr": services})
    found += p
    plan = {
        "mlops_cluster_name": values["mlops_cluster_name"],
        "mlops_environment": values["mlops_environment"],
        "k3s_cluster_cidr": pods,
        "k3s_service_cidr": services,
        "k3s_cluster_dns": dns,
        "metallb_address_pools": pools,
        VIP_FIELD: vip,
    }
    return plan, found


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
        VIP_FIELD: str(plan.get(VIP_FIELD) or ""),
    }


def network_plan(raw_plan: dict[str, Any]) -> dict[str, Any]:
    """The resolved plan for consumers (K3s config, firewall, MetalLB); raises on any error."""
    from ansible.errors import AnsibleFilterError

    plan, found = resolve_plan(raw_plan)
    errors = [f"{p['message']} (fix: {p['fix']})" for p in found if p["severity"] == "error"]
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
        return {"mlops_network_plan": network_plan, "mlops_node_address": node_address}
