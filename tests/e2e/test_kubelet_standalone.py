"""Live tier, first milestone: a standalone kubelet (built from the upstream module) on
Debian's containerd, runc and CNI plugins runs a static pod from an image built here, and
`node.sh down` leaves nothing behind. Run by `make e2e-kubelet` (root; builds the components
on first use)."""

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from leftovers import leftovers, snapshot

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "tools" / "e2e" / "node.sh"
STATE = Path(os.environ.get("E2E_STATE", "/var/tmp/mlops-e2e/node"))
NODE_IP = "10.234.0.10"
POD_NAME = "probe"


def node(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(NODE), *args], check=True, text=True, capture_output=True, **kwargs)


def probe_image() -> str:
    images = Path(node("exec", "cat", str(STATE / "etc" / "images-dir")).stdout.strip())
    return next(line.split()[0] for line in (images / "images.txt").read_text().splitlines() if "/probe:" in line)


def static_pod(image: str) -> dict:
    """busybox httpd serving one page from an emptyDir; non-root, read-only root filesystem."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD_NAME, "namespace": "default"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534},
            "containers": [
                {
                    "name": "httpd",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c"],
                    "args": ['echo "served by $(cat /etc/hostname)" >/www/index.html && exec httpd -f -p 8080 -h /www'],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                    "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                }
            ],
            "volumes": [{"name": "www", "emptyDir": {}}],
        },
    }


def kubelet_pods() -> list[dict]:
    with urllib.request.urlopen(f"http://{NODE_IP}:10255/pods", timeout=5) as response:
        return json.load(response)["items"] or []  # null until the first pod


def wait_ready(timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer from the kubelet"
    while time.monotonic() < deadline:
        try:
            for pod in kubelet_pods():
                if pod["metadata"]["name"].startswith(f"{POD_NAME}-"):
                    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
                    last = f"phase {pod['status'].get('phase')}, conditions {conditions}"
                    if conditions.get("Ready") == "True":
                        return pod
        except OSError as error:
            last = str(error)
        time.sleep(0.5)
    pytest.fail(f"static pod not Ready after {timeout} s: {last}")


@pytest.fixture(scope="module")
def before() -> dict[str, set[str]]:
    """What of this machine the node could add to, before it came up."""
    return snapshot()


@pytest.fixture(scope="module")
def standalone_node(before: dict[str, set[str]]):
    if os.geteuid() != 0:
        pytest.fail("the live tier needs root")
    assert not leftovers(), "a node from an earlier run is still there: tools/e2e/node.sh down"
    start = time.monotonic()
    node("up", "--standalone", timeout=3600)
    print(f"node up in {time.monotonic() - start:.1f} s")
    try:
        yield
    finally:
        node("down", timeout=300)


def test_static_pod_runs_from_an_image_built_here(standalone_node):
    image = probe_image()
    (STATE / "manifests" / "probe.json").write_text(json.dumps(static_pod(image)))
    start = time.monotonic()
    pod = wait_ready(timeout=120)
    print(f"static pod Ready in {time.monotonic() - start:.1f} s")
    assert pod["spec"]["containers"][0]["image"] == image
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("10.235.0."), pod_ip  # from the CNI bridge's range, not the node's
    page = node("exec", "curl", "-sf", "--max-time", "5", f"http://{pod_ip}:8080/").stdout
    assert page.strip() == f"served by {POD_NAME}-e2e-node"  # a static pod is named after its node
    # The image came from the archive, not a registry: containerd knows it by the digest we wrote.
    listed = node("ctr", "images", "ls", "-q").stdout.split()
    assert image in listed


def test_down_leaves_nothing_behind(standalone_node, before):
    node("down", timeout=300)
    assert leftovers(before) == []
