"""Unit tests for the converge-only-the-difference filters (plugins/filter/host_state.py)."""

from __future__ import annotations

from host_state import modules_to_load, sysctls_to_set

WANTED = {"net.ipv4.ip_forward": 1, "fs.inotify.max_user_watches": 524288, "net.ipv4.ip_local_port_range": "1024 65000"}
LIVE_OK = ["net.ipv4.ip_forward = 1", "fs.inotify.max_user_watches = 524288", "net.ipv4.ip_local_port_range = 1024\t65000"]
FILE_OK = "# managed\nnet.ipv4.ip_forward=1\nfs.inotify.max_user_watches=524288\nnet.ipv4.ip_local_port_range=1024 65000\n"


def test_converged_host_needs_nothing():
    assert sysctls_to_set(WANTED, LIVE_OK, FILE_OK) == []


def test_live_drift_is_set_again():
    live = ["net.ipv4.ip_forward = 0", *LIVE_OK[1:]]
    assert sysctls_to_set(WANTED, live, FILE_OK) == ["net.ipv4.ip_forward"]


def test_missing_drop_in_line_is_written_even_when_live_value_is_right():
    assert sysctls_to_set(WANTED, LIVE_OK, "net.ipv4.ip_forward=1\n") == [
        "fs.inotify.max_user_watches",
        "net.ipv4.ip_local_port_range",
    ]


def test_unknown_key_on_this_kernel_is_set():
    # sysctl -e prints nothing for a key the kernel lacks (br_netfilter not loaded yet).
    assert sysctls_to_set({"net.bridge.bridge-nf-call-iptables": 1}, [], "") == ["net.bridge.bridge-nf-call-iptables"]


PROC_MODULES = "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\nbridge 311296 1 br_netfilter, Live 0x0\n"


def test_modules_loaded_and_listed_need_nothing():
    files = ["/etc/modules-load.d/overlay.conf", "/etc/modules-load.d/br_netfilter.conf"]
    assert modules_to_load(["br_netfilter", "overlay"], PROC_MODULES, files) == []


def test_module_missing_now_or_at_boot_is_loaded():
    files = ["/etc/modules-load.d/overlay.conf", "/etc/modules-load.d/nfs.conf"]
    # br_netfilter: loaded but not listed for boot; nfs: listed but not loaded; bridge is no prefix match.
    assert modules_to_load(["br_netfilter", "overlay", "nfs", "bridg"], PROC_MODULES, files) == ["br_netfilter", "nfs", "bridg"]
