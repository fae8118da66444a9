"""firewalld on, exactly the declared ports open: checked on the host and from outside it."""

import errno
import socket

import pytest

ADDRESS = "10.231.0.31"  # mm-fw1 in molecule.yml


def connect(port: int) -> int:
    """0 when a TCP connection opens, else the errno (EHOSTUNREACH = rejected by firewalld)."""
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((ADDRESS, port))


def test_firewalld_enabled_and_running(host):
    service = host.service("firewalld")
    assert service.is_enabled and service.is_running


def test_zone_holds_exactly_the_declarations(host):
    zone = host.run("firewall-cmd --zone=public --list-all").stdout
    ports = host.run("firewall-cmd --zone=public --list-ports").stdout.split()
    assert ports == ["8080/tcp"]
    rules = host.run("firewall-cmd --zone=public --list-rich-rules").stdout.strip().splitlines()
    assert rules == ['rule family="ipv4" source address="10.231.0.1" port port="8081" protocol="tcp" accept']
    assert "9999/tcp" not in zone  # the stray port was pruned
    assert "ssh" in host.run("firewall-cmd --zone=public --list-services").stdout.split()


def test_cluster_ranges_are_trusted(host):
    sources = host.run("firewall-cmd --zone=trusted --list-sources").stdout.split()
    assert sorted(sources) == ["10.42.0.0/16", "10.43.0.0/16"]


@pytest.mark.parametrize(("port", "expected"), [(8080, 0), (8081, 0), (8082, errno.EHOSTUNREACH)])
def test_from_a_second_host_declared_ports_answer_and_others_are_refused(host, port, expected):
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert connect(port) == expected


def test_selinux_role_says_it_does_nothing_on_debian(host):
    assert host.system_info.distribution == "debian"
    assert not host.exists("getenforce")
