"""firewalld declarations: each role declares what it needs, the firewall role opens the union.

A declaration is ``{port: "2049", proto: tcp, sources: [CIDR...], purpose: ...}``,
``{protocol: vrrp, sources: [CIDR...], purpose: ...}`` (a whole IP protocol, e.g. VRRP's 112)
or ``{service: nfs}``. These filters check one and turn it into firewalld's forms.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

PORT = re.compile(r"^([0-9]{1,5})(-([0-9]{1,5}))?$")
PROTOCOLS = ("tcp", "udp", "sctp")
# An IP protocol as firewalld takes it: a name from /etc/protocols or a number 0-255.
IP_PROTOCOL = re.compile(r"^([a-z][a-z0-9.+-]*|[0-9]{1,3})$")


def _error(message: str) -> Exception:
    try:
        from ansible.errors import AnsibleFilterError
    except ImportError:  # unit tests run without Ansible on the path
        return ValueError(message)
    return AnsibleFilterError(message)


def check_port_entry(entry: dict[str, Any]) -> tuple[str, str]:
    port, proto = str(entry.get("port", "")), str(entry.get("proto", "tcp"))
    match = PORT.match(port)
    if not match or not all(0 < int(p) <= 65535 for p in (match[1], match[3] or match[1])) or int(match[3] or match[1]) < int(match[1]):
        raise _error(
            f"firewall declaration {entry!r}: port {port!r} must be N or N-M within 1-65535 (fix the declaring role's <role>_firewall)"
        )
    if proto not in PROTOCOLS:
        raise _error(f"firewall declaration {entry!r}: proto {proto!r} must be one of {list(PROTOCOLS)}")
    return port, proto


def firewall_port(entry: dict[str, Any]) -> str:
    """``{port: 8472, proto: udp}`` -> ``8472/udp``."""
    port, proto = check_port_entry(entry)
    return f"{port}/{proto}"


def check_protocol_entry(entry: dict[str, Any]) -> str:
    protocol = str(entry.get("protocol", "")).lower()
    if "port" in entry:
        raise _error(f"firewall declaration {entry!r}: give either port (with proto) or protocol, not both")
    if not IP_PROTOCOL.match(protocol) or (protocol.isdigit() and int(protocol) > 255):
        raise _error(
            f"firewall declaration {entry!r}: protocol {protocol!r} must be a name from /etc/protocols (e.g. vrrp) or a number 0-255"
        )
    if protocol in PROTOCOLS:
        raise _error(f"firewall declaration {entry!r}: open {protocol} by port ({{port: N, proto: {protocol}}}), not as a whole protocol")
    return protocol


def firewall_protocol(entry: dict[str, Any]) -> str:
    """``{protocol: vrrp}`` -> ``vrrp``: a whole IP protocol opened to everyone."""
    return check_protocol_entry(entry)


def firewall_rich_rules(entry: dict[str, Any]) -> list[str]:
    """A port or protocol open only to some sources, as one rich rule per source (firewalld's own wording)."""
    if "protocol" in entry:
        what = f'protocol value="{check_protocol_entry(entry)}"'
    else:
        port, proto = check_port_entry(entry)
        what = f'port port="{port}" protocol="{proto}"'
    sources = entry.get("sources") or []
    if isinstance(sources, str):
        sources = [sources]
    if not sources:
        raise _error(f"firewall declaration {entry!r}: sources is empty; omit it to open the port to all, or list CIDRs")
    rules = []
    for source in sources:
        try:
            net = ipaddress.ip_network(str(source), strict=False)
        except ValueError as exc:
            raise _error(f"firewall declaration {entry!r}: source {source!r} is not a CIDR or address ({exc})") from exc
        if net.prefixlen == 0:
            raise _error(f"firewall declaration {entry!r}: source {source} opens the port to everyone; drop sources instead")
        address = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        rules.append(f'rule family="ipv{net.version}" source address="{address}" {what} accept')
    return rules


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_firewall_port": firewall_port,
            "mlops_firewall_protocol": firewall_protocol,
            "mlops_firewall_rich_rules": firewall_rich_rules,
        }
