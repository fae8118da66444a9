"""The ports K3s opens on its nodes, written once.

The k3s role declares them to the firewall (``k3s_firewall``), preflight checks that no other
process holds them (``preflight_group_ports``) and the add-ons' NetworkPolicies let API
clients reach the API port: all three read this table through the filters below.
"""

from __future__ import annotations

from typing import Any

API_PORT = 6443  # K3s's https-listen-port default; k3s_api_port, when set, replaces it everywhere
SERVER = "k3s_server"
AGENT = "k3s_agent"

# port ("N" or "N-M"; None: the API port), protocol, purpose, groups whose hosts open it,
# flannel backend it belongs to (None: every backend).
TABLE: tuple[tuple[str | None, str, str, tuple[str, ...], str | None], ...] = (
    (None, "tcp", "Kubernetes API", (SERVER,), None),
    ("2379-2380", "tcp", "embedded etcd", (SERVER,), None),
    ("10250", "tcp", "kubelet metrics and exec", (SERVER, AGENT), None),
    ("8472", "udp", "flannel VXLAN", (SERVER, AGENT), None),
    ("7946", "tcp", "MetalLB memberlist", (SERVER, AGENT), None),
    ("7946", "udp", "MetalLB memberlist", (SERVER, AGENT), None),
    ("51820-51821", "udp", "flannel WireGuard", (SERVER, AGENT), "wireguard-native"),
)


def k3s_api_port(api_port: Any = None) -> int:
    """``k3s_api_port`` when given (not None or empty), else K3s's own."""
    return int(api_port) if api_port not in (None, "") else API_PORT


def k3s_ports(flannel_backend: Any = None, api_port: Any = None) -> dict[str, list[dict[str, str]]]:
    """``{k3s_server: [...], k3s_agent: [...]}``, each a list of ``{port, proto, purpose}``
    declarations (the firewall role's form) for a node of that group."""
    return {
        group: [
            {"port": port or str(k3s_api_port(api_port)), "proto": proto, "purpose": purpose}
            for port, proto, purpose, groups, backend in TABLE
            if group in groups and backend in (None, flannel_backend)
        ]
        for group in (SERVER, AGENT)
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_k3s_ports": k3s_ports, "mlops_k3s_api_port": k3s_api_port}
