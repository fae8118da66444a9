"""Unit tests for the K3s port table (plugins/filter/k3s_ports.py)."""

from __future__ import annotations

import k3s_ports

KUBELET = {"port": "10250", "proto": "tcp", "purpose": "kubelet metrics and exec"}
VXLAN = {"port": "8472", "proto": "udp", "purpose": "flannel VXLAN"}
MEMBERLIST = [{"port": "7946", "proto": proto, "purpose": "MetalLB memberlist"} for proto in ("tcp", "udp")]
WIREGUARD = {"port": "51820-51821", "proto": "udp", "purpose": "flannel WireGuard"}


def test_servers_and_agents_open_what_k3s_documents():
    ports = k3s_ports.k3s_ports("vxlan")
    assert ports["k3s_server"] == [
        {"port": "6443", "proto": "tcp", "purpose": "Kubernetes API"},
        {"port": "2379-2380", "proto": "tcp", "purpose": "embedded etcd"},
        KUBELET,
        VXLAN,
        *MEMBERLIST,
    ]
    assert ports["k3s_agent"] == [KUBELET, VXLAN, *MEMBERLIST]


def test_wireguard_ports_only_with_the_wireguard_backend():
    for backend in (None, "", "vxlan", "host-gw"):
        assert all(WIREGUARD not in ports for ports in k3s_ports.k3s_ports(backend).values()), backend
    assert all(ports[-1] == WIREGUARD for ports in k3s_ports.k3s_ports("wireguard-native").values())


def test_api_port_follows_k3s_api_port_and_defaults_to_k3s():
    assert k3s_ports.k3s_api_port() == k3s_ports.k3s_api_port("") == 6443
    assert k3s_ports.k3s_api_port("7443") == 7443
    assert k3s_ports.k3s_ports("vxlan", 7443)["k3s_server"][0]["port"] == "7443"
