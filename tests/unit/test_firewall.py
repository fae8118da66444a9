"""Unit tests for the firewall declarations (plugins/filter/firewall.py)."""

from __future__ import annotations

import firewall
import pytest


def test_port_entries():
    assert firewall.firewall_port({"port": 8472, "proto": "udp"}) == "8472/udp"
    assert firewall.firewall_port({"port": "2379-2380"}) == "2379-2380/tcp"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"port": "0"}, "within 1-65535"),
        ({"port": "70000"}, "within 1-65535"),
        ({"port": "2380-2379"}, "within 1-65535"),
        ({"port": "http"}, "must be N or N-M"),
        ({"port": "80", "proto": "icmp"}, "proto 'icmp'"),
    ],
)
def test_bad_ports_name_the_declaration(entry, expected):
    with pytest.raises(Exception, match=expected):
        firewall.firewall_port(entry)


def test_rich_rules_one_per_source_in_firewalld_wording():
    rules = firewall.firewall_rich_rules({"port": "2049", "proto": "tcp", "sources": ["10.43.100.11", "10.43.100.0/24", "fd00::/64"]})
    assert rules == [
        'rule family="ipv4" source address="10.43.100.11" port port="2049" protocol="tcp" accept',
        'rule family="ipv4" source address="10.43.100.0/24" port port="2049" protocol="tcp" accept',
        'rule family="ipv6" source address="fd00::/64" port port="2049" protocol="tcp" accept',
    ]


@pytest.mark.parametrize(
    ("sources", "expected"),
    [([], "sources is empty"), (["0.0.0.0/0"], "opens the port to everyone"), (["nfs-clients"], "is not a CIDR")],
)
def test_bad_sources_are_refused(sources, expected):
    with pytest.raises(Exception, match=expected):
        firewall.firewall_rich_rules({"port": "2049", "sources": sources})


def test_protocol_entries_open_a_whole_ip_protocol():
    assert firewall.firewall_protocol({"protocol": "vrrp", "purpose": "keepalived"}) == "vrrp"
    assert firewall.firewall_protocol({"protocol": "112"}) == "112"
    assert firewall.firewall_rich_rules({"protocol": "vrrp", "sources": ["10.232.0.32", "fd00::2"]}) == [
        'rule family="ipv4" source address="10.232.0.32" protocol value="vrrp" accept',
        'rule family="ipv6" source address="fd00::2" protocol value="vrrp" accept',
    ]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"protocol": "vrrp", "port": "112"}, "either port"),
        ({"protocol": "300"}, "number 0-255"),
        ({"protocol": "v rrp"}, "name from /etc/protocols"),
        ({"protocol": "tcp"}, "open tcp by port"),
    ],
)
def test_bad_protocols_name_the_declaration(entry, expected):
    with pytest.raises(Exception, match=expected):
        firewall.firewall_protocol(entry)
