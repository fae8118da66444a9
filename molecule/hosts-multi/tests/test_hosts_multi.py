"""Across real VMs: the clients mount the export and see each other's files; the firewall
opens what is declared and refuses the rest, seen from another host."""

import pytest

NFS = "10.232.0.21"
SHARE = "/srv/nfs/molecule/dev"
NODES = ["mm-node1", "mm-node2"]


def get(request, name: str):
    import testinfra

    return testinfra.get_host(f"ansible://{name}", ansible_inventory=request.config.option.ansible_inventory)


@pytest.fixture(scope="module")
def mounted(request):
    hosts = {name: get(request, name) for name in NODES}
    for name, host in hosts.items():
        host.run_test("mkdir -p /mnt/share && (mountpoint -q /mnt/share || mount -t nfs4 -o vers=4.2 %s:%s /mnt/share)", NFS, SHARE)
        host.run_test("echo from-%s > /mnt/share/%s.txt && sync", name, name)
    yield hosts
    for host in hosts.values():
        host.run("umount /mnt/share")


def test_each_client_reads_what_the_other_wrote(mounted):
    assert mounted["mm-node1"].check_output("cat /mnt/share/mm-node2.txt") == "from-mm-node2"
    assert mounted["mm-node2"].check_output("cat /mnt/share/mm-node1.txt") == "from-mm-node1"


def test_the_server_has_the_files_in_the_cluster_environment_folder(request, mounted):
    server = get(request, "mm-nfs")
    assert server.file(f"{SHARE}/mm-node1.txt").content_string.strip() == "from-mm-node1"


def probe(host, address: str, port: int) -> str:
    """From `host`, connect to address:port: open, refused (declared, nothing listening) or rejected."""
    code = (
        f"import socket,errno;s=socket.socket();s.settimeout(5);r=s.connect_ex(('{address}',{port}));print(errno.errorcode.get(r,'open'))"
    )
    return host.check_output(f'python3 -c "{code}"')


@pytest.mark.parametrize(
    ("source", "target", "port", "expected"),
    [
        ("mm-node1", "10.232.0.21", 2049, "open"),  # NFS: declared for the cluster nodes
        ("mm-node1", "10.232.0.23", 10250, "ECONNREFUSED"),  # kubelet: declared, nothing listens yet
        ("mm-node1", "10.232.0.23", 5000, "EHOSTUNREACH"),  # declared by nobody: rejected by firewalld
        ("mm-node2", "10.232.0.22", 6443, "ECONNREFUSED"),  # API port: declared on servers
        ("mm-nfs", "10.232.0.22", 6443, "ECONNREFUSED"),
        ("mm-node2", "10.232.0.21", 111, "EHOSTUNREACH"),  # rpcbind: NFSv4 needs no more than 2049
    ],
)
def test_firewall_between_hosts(host, source, target, port, expected):
    if host.backend.get_hostname() != source:
        pytest.skip("probe runs from its source host only")
    assert probe(host, target, port) == expected


def test_nodes_are_ready_for_k3s(request):
    """The host layer as K3s and the CSI drivers need it, on every node."""
    for name in NODES:
        host = get(request, name)
        modules = host.check_output("cut -d' ' -f1 /proc/modules").split()
        assert {"br_netfilter", "overlay", "iscsi_tcp", "nfs"} <= set(modules), name
        assert host.check_output("sysctl -n net.bridge.bridge-nf-call-iptables") == "1"
        assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
        assert host.service("chrony").is_running and host.service("iscsid").is_running
        assert host.service("firewalld").is_running


def test_initiator_names_differ_between_nodes(request):
    names = {get(request, n).check_output("grep ^InitiatorName= /etc/iscsi/initiatorname.iscsi") for n in NODES}
    assert len(names) == len(NODES)
