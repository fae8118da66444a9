"""Preflight of mlops-metal: every host checked against the network plan and the requirements.

The plan's own checks live in network_plan.py; this module adds what needs the hosts: their
addresses and routes against the plan, their facts (OS, sizing, swap, time sync, ports),
cross-host uniqueness, and the report. Pure Python, unit-tested without Ansible.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

# Ansible loads each filter file on its own, by path: the plan module is imported from beside this one.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from network_plan import (
    NODE_MASK,
    PLAN_FILE_HINT,
    RANGE_FIELDS,
    VIP_FIELD,
    Findings,
    count_addresses,
    normalize_pools,
    plan_as_data,
    resolve_plan,
    suggest_free,
)
from preflight_host import check_host_facts, disk_summary

# --------------------------------------------------------------------------- host networks


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


FIXERS = {"k3s_cluster_cidr": _pod_fix, "k3s_service_cidr": _service_fix}


def check_host_networks(plan: dict[str, Any], reports: Sequence[dict[str, Any]], ignored: Sequence[str]) -> Findings:
    """Every address and non-default route of every host against pod/service ranges and pools."""
    found = Findings("network")
    collected = {r["name"]: _host_nets(r, ignored) for r in reports}
    avoid: list[Any] = []
    for addresses, routes in collected.values():
        avoid += [a["interface"].network for a in addresses] + [r["network"] for r in routes]
    pool_nets = [(p["name"], e["text"], n) for p in plan["metallb_address_pools"] for e in p["entries"] for n in e["networks"]]

    def fix(field: str, rng: Any) -> str:
        return FIXERS[field](plan, avoid, rng.version, rng.prefixlen)

    for host, (addresses, routes) in collected.items():
        flagged: list[tuple[str, Any]] = []
        for entry in addresses:
            ip, ifname = entry["interface"].ip, entry["ifname"]
            for field in RANGE_FIELDS:
                for rng in plan[field]:
                    if ip in rng:
                        flagged.append((field, ip))
                        found.error(f"{ip} on {ifname} of {host} is inside {field} {rng}", fix(field, rng), host=host)
            for name, text, net in pool_nets:
                if ip in net:
                    found.error(
                        f"{ip} on {ifname} of {host} is inside MetalLB pool {name!r} ({text})",
                        "MetalLB would hand out a node's own address: shrink the pool so it excludes every node address",
                        host=host,
                    )
        for route in routes:
            net = route["network"]
            via = f" via {route['gateway']}" if route["gateway"] else ""
            where = f"route {net}{via} dev {route['dev']} on {host}"
            for field in RANGE_FIELDS:
                for rng in plan[field]:
                    already = any(f == field and ip in net for f, ip in flagged)
                    if net.overlaps(rng) and not already:
                        found.error(f"{where} overlaps {field} {rng}", fix(field, rng), host=host)
            if route["gateway"]:
                for name, text, pnet in pool_nets:
                    if net.overlaps(pnet):
                        found.warning(
                            f"{where} overlaps MetalLB pool {name!r} ({text})",
                            "pool addresses should live on the nodes' own L2 segment, not behind a router",
                            host=host,
                        )

    subnets = [a["interface"].network for addresses, _ in collected.values() for a in addresses if not a["interface"].ip.is_loopback]
    if reports:
        for pool in plan["metallb_address_pools"]:
            if pool["protocol"] != "layer2":
                continue
            for entry in pool["entries"]:
                if not all(any(n.subnet_of(s) for s in subnets if s.version == n.version) for n in entry["networks"]):
                    found.warning(
                        f"MetalLB layer2 pool {pool['name']!r} ({entry['text']}) is not inside any host subnet",
                        "layer2 answers ARP/NDP only on the node network: take the pool from a subnet the nodes are on",
                    )
    return found


# --------------------------------------------------------------------------- API address


def check_api_address(plan: dict[str, Any], reports: Sequence[dict[str, Any]], api: dict[str, Any], ignored: Sequence[str]) -> Findings:
    """The API's virtual address against the servers: needed with more than one server, in their
    subnet, held by no host (a server's keepalived excepted) and answered by no other machine.

    ``api``: ``servers`` (k3s_server), ``endpoint`` (k3s_api_endpoint from the inventory),
    ``host_addresses`` ({host: its node address} for every inventory host).
    """
    found = Findings("api-address")
    servers, vip = list(api.get("servers") or []), plan.get(VIP_FIELD)
    fix_vip = f"set {VIP_FIELD} in {PLAN_FILE_HINT} to a free address of the servers' node subnet"
    if len(servers) > 1 and not vip and not str(api.get("endpoint") or "").strip():
        found.error(
            f"{len(servers)} servers ({', '.join(servers)}) and no API endpoint: joins, clients and the kubeconfig "
            "would all use the first server, and its loss would take the API address with it",
            f"{fix_vip} (the api_vip role keeps it on a server whose API answers), or k3s_api_endpoint to a load "
            "balancer or DNS name in front of every server",
        )
    if not vip:
        return found
    for name, address in sorted((api.get("host_addresses") or {}).items()):
        if str(address) == str(vip):
            found.error(f"{VIP_FIELD} {vip} is the address of inventory host {name}", f"{fix_vip}, one no host uses", host=name)
    by_name = {r["name"]: r for r in reports}
    server_macs: set[str] = set()
    holders: list[str] = []
    for report in reports:
        addresses, _ = _host_nets(report, ignored)
        is_server = report["name"] in servers
        if is_server:
            server_macs |= {str(link.get("address", "")).lower() for link in report.get("addresses") or []}
        for entry in addresses:
            if entry["interface"].ip != vip:
                continue
            if is_server and str(report.get("node_ip")) != str(vip):
                holders.append(report["name"])  # keepalived holds it there: the cluster is live
            elif str(report.get("node_ip")) != str(vip):
                found.error(
                    f"{VIP_FIELD} {vip} is on {entry['ifname']} of {report['name']}, which is not a server",
                    f"{fix_vip}, or remove the address from {report['name']}",
                    host=report["name"],
                )
    for name in servers:
        report = by_name.get(name)
        if report is None:
            continue
        addresses, _ = _host_nets(report, ignored)
        subnets = [a["interface"].network for a in addresses if a["interface"].network.prefixlen < a["interface"].max_prefixlen]
        if not any(vip in net for net in subnets):
            node = next((a for a in addresses if str(a["interface"].ip) == str(report.get("node_ip"))), None)
            where = f"the node subnet {node['interface'].network} ({node['ifname']})" if node else "any subnet"
            found.error(
                f"{VIP_FIELD} {vip} is not in {where} of server {name}: VRRP moves an address only within the servers' network",
                f"{fix_vip}" + (f", e.g. inside {node['interface'].network}" if node else ""),
                host=name,
            )
    for report in reports:
        for neighbor in report.get("api_vip_neighbors") or []:
            mac = str(neighbor.get("lladdr", "")).lower()
            if "REACHABLE" in (neighbor.get("state") or []) and mac and mac not in server_macs:
                found.error(
                    f"{VIP_FIELD} {vip} already answers on the node network (seen from {report['name']}: {mac}),"
                    f" {'besides ' + ', '.join(holders) if holders else 'and no server holds it'}: another machine uses it",
                    f"{fix_vip}, one nothing answers on, or free this one (the machine with MAC {mac})",
                    host=report["name"],
                )
    return found


POOL_PROBE_LIMIT = 256


def pool_probe_addresses(raw_plan: dict[str, Any], limit: int = POOL_PROBE_LIMIT) -> list[str]:
    """The MetalLB pools' addresses to knock on before the platform takes them (layer2 pools:
    those are answered by ARP/NDP on the node network), at most ``limit`` of them."""
    pools, _ = normalize_pools(raw_plan.get("metallb_address_pools") or [])
    addresses: list[str] = []
    for pool in pools:
        if pool["protocol"] != "layer2":
            continue
        for entry in pool["entries"]:
            for net in entry["networks"]:
                for address in net:
                    if len(addresses) >= limit:
                        return addresses
                    addresses.append(str(address))
    return addresses


def check_pool_addresses(plan: dict[str, Any], reports: Sequence[dict[str, Any]]) -> Findings:
    """A pool address that a machine outside the cluster answers on would be handed out twice."""
    found = Findings("metallb-pools")
    node_macs = {str(link.get("address", "")).lower() for r in reports for link in r.get("addresses") or []}
    pools = [(p["name"], net) for p in plan.get("metallb_address_pools") or [] for e in p["entries"] for net in e["networks"]]
    for report in reports:
        for neighbor in report.get("pool_neighbors") or []:
            mac, dst = str(neighbor.get("lladdr", "")).lower(), str(neighbor.get("dst", ""))
            if "REACHABLE" not in (neighbor.get("state") or []) or not mac or mac in node_macs:
                continue
            try:
                address = ipaddress.ip_address(dst)
            except ValueError:
                continue
            for name, net in pools:
                if address.version == net.version and address in net:
                    found.error(
                        f"MetalLB pool {name!r}: {address} already answers on the node network (seen from {report['name']}: {mac})",
                        f"take {address} out of metallb_address_pools in {PLAN_FILE_HINT}, or free it (the machine with MAC {mac})",
                        host=report["name"],
                    )
                    break
    return found


# --------------------------------------------------------------------------- host facts


def check_uniqueness(reports: Sequence[dict[str, Any]], managed_groups: Sequence[str]) -> Findings:
    found = Findings("hosts")
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
                found.error(f"{label} {value} is shared by {', '.join(hosts)}", fix)
    return found


# --------------------------------------------------------------------------- report


def _fmt_nets(nets: Sequence[Any]) -> str:
    return ", ".join(str(n) for n in nets) or "-"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _plan_rows(plan: dict[str, Any]) -> list[list[str]]:
    rows = [["field", "value", "size"]]
    for field in RANGE_FIELDS:
        nets = plan[field]
        size = ", ".join(
            f"{n.num_addresses:,} addresses"
            + (f", {2 ** max(0, NODE_MASK[n.version] - n.prefixlen):,} nodes" if field == "k3s_cluster_cidr" else "")
            for n in nets
        )
        rows.append([field, _fmt_nets(nets), size])
    rows.append(["k3s_cluster_dns", _fmt_nets(plan["k3s_cluster_dns"]), ""])
    if plan.get(VIP_FIELD):
        rows.append([VIP_FIELD, str(plan[VIP_FIELD]), "API address (keepalived on the servers)"])
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
    return rows


def _host_rows(
    reports: Sequence[dict[str, Any]], problems: Sequence[dict[str, str]], ignored: Sequence[str], req: dict[str, Any]
) -> list[list[str]]:
    by_host: dict[str, list[dict[str, str]]] = {}
    for p in problems:
        by_host.setdefault(p["host"], []).append(p)
    # disk: per filesystem, what the host's groups need on it in all / what is free (GiB).
    rows = [["host", "groups", "addresses", "disk need/free", "verdict"]]
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
        groups = ",".join(g for g in report.get("groups") or [] if g != "ungrouped") or "-"
        rows.append([report["name"], groups, shown, disk_summary(report, req), verdict])
    return rows


def render_report(
    plan: dict[str, Any],
    reports: Sequence[dict[str, Any]],
    problems: Sequence[dict[str, str]],
    ignored: Sequence[str],
    requirements: dict[str, Any] | None = None,
) -> str:
    lines = [
        f"mlops-metal preflight: cluster {plan.get('mlops_cluster_name') or '?'},"
        f" environment {plan.get('mlops_environment') or '?'}, {len(reports)} host(s)",
        "",
        "Network plan",
        *_table(_plan_rows(plan)),
        "",
        "Hosts",
        *_table(_host_rows(reports, problems, ignored, requirements or {})),
    ]
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
    plan, found = resolve_plan(raw_plan)
    ignored = requirements.get("ignored_interfaces", [])
    found += check_host_networks(plan, reports, ignored)
    found += check_api_address(plan, reports, requirements.get("api") or {}, ignored)
    found += check_pool_addresses(plan, reports)
    for report in reports:
        found += check_host_facts(report, requirements)
    found += check_uniqueness(reports, requirements.get("managed_groups", []))
    for missing in requirements.get("missing_hosts", []):
        found.error(
            f"{missing} could not be checked (unreachable, or fact collection failed)",
            "make the host reachable over ssh with Python 3, then run preflight again",
            "hosts",
            missing,
        )
    errors = sum(1 for p in found if p["severity"] == "error")
    return {
        "errors": errors,
        "warnings": len(found) - errors,
        "findings": list(found),
        "report": render_report(plan, reports, found, ignored, requirements),
        "plan": plan_as_data(plan),
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_preflight": preflight, "mlops_pool_probe_addresses": pool_probe_addresses}
