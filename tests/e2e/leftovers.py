"""What the live tier's node may leave on this machine, looked for after `down`."""

import os
import subprocess
from pathlib import Path

DEFAULT_STATE = Path("/var/tmp/mlops-e2e/node")  # tools/e2e/env.sh
STATE = Path(os.environ.get("E2E_STATE", DEFAULT_STATE))


NETNS_DIR = Path("/run/netns")
# Where the kubelet, containerd's shims and CNI write regardless of their configuration
# (tools/e2e/node.sh bind-mounts the state over them inside the node).
HOST_PATHS = ("/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/run/containerd")


def snapshot() -> dict[str, set[str]]:
    """What of the machine the node could add to: named network namespaces (ip netns, CRI's pod
    namespaces when pinned there) and the host paths above, with their entries."""
    return {
        "netns": set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set(),
        "paths": {str(p) for path in HOST_PATHS if Path(path).exists() for p in [Path(path), *Path(path).rglob("*")]},
    }


def leftovers(before: dict[str, set[str]] | None = None) -> list[str]:
    """Everything of the node still on this machine: namespaces, links, cgroups, processes, mounts,
    rules, files; with a snapshot taken before up, every namespace and host path added since."""
    found = []
    if subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count("mlops-e2e"):
        found.append("network namespace mlops-e2e")
    if subprocess.run(["ip", "link", "show", "mlopse2e0"], capture_output=True).returncode == 0:
        found.append("bridge mlopse2e0")
    if before is not None:
        now = snapshot()
        found += [str(NETNS_DIR / name) for name in sorted(now["netns"] - before["netns"])]
        found += sorted(now["paths"] - before["paths"])
    found += [str(p) for p in Path("/sys/fs/cgroup").glob("*/mlops-e2e")]
    processes = subprocess.run(["pgrep", "-af", str(STATE)], capture_output=True, text=True).stdout
    found += [line for line in processes.splitlines() if line]
    found += [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(STATE) in line]
    # The node's rules (kube-proxy, CNI masquerade) live in its network namespace, never here.
    for save in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([save], capture_output=True, text=True).stdout
        found += [f"{save}: {line}" for line in rules.splitlines() if any(m in line for m in ("KUBE-", "CNI-", "10.235.", "10.236."))]
    # down removes the default state's parent too (it made it); a chosen state's parent is the user's.
    found += [str(path) for path in (STATE, DEFAULT_STATE.parent if STATE == DEFAULT_STATE else STATE) if path.exists()]
    return found
