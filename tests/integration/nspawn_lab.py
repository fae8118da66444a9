"""Real systemd hosts for --check runs: systemd-nspawn containers (molecule/testhosts/nspawn-host.sh)
reached over ssh, a placeholder air-gap bundle and an inventory of them. The cluster and the
operations checks share it."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ROOT / "molecule" / "testhosts" / "nspawn-host.sh"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
from cluster_addons import addon_images  # noqa: E402  (the filters' folder is on the path just above)

ADDON_IMAGES = addon_images({"metallb": {"version": "0.15.2"}, "csi_nfs": {"version": "v4.11.0"}})
BUNDLE_FILES = ("k3s", "images/k3s-airgap-images-amd64.tar.zst", "charts/metallb-0.15.2.tgz", "charts/csi-driver-nfs-v4.11.0.tgz")

needs_nspawn = pytest.mark.skipif(
    (os.geteuid() != 0 or not shutil.which("systemd-nspawn")) and not os.environ.get("CI"),
    reason="needs root and systemd-nspawn (make test installs it)",
)


def ssh(key: Path, ip: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-i", str(key), *SSH_OPTS, f"root@{ip}", command], capture_output=True, text=True, timeout=60)


def new_key(folder: Path) -> Path:
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@contextlib.contextmanager
def hosts(nodes: dict[str, tuple[str, str]], key: Path) -> Iterator[None]:
    """Each node (name -> (group, address)) started with the key authorised; all stopped afterwards."""
    started = []
    try:
        for name, (_, ip) in nodes.items():
            subprocess.run([str(HOSTS), "start", name, ip, f"{key}.pub"], check=True, capture_output=True, text=True, timeout=300)
            started.append(name)
        yield
    finally:
        for name in started:
            subprocess.run([str(HOSTS), "stop", name], capture_output=True)


def placeholder_bundle(folder: Path) -> Path:
    """An air-gap bundle of placeholder files: --check compares checksums and never runs them."""
    bundle = folder / "bundle"
    content = b"placeholder: --check only compares checksums, nothing runs this\n"
    for rel in BUNDLE_FILES:
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_bytes(content)
    # The release's own checksum file, which the first phase checks the bundle against.
    digest = hashlib.sha256(content).hexdigest()
    (bundle / "sha256sum-amd64.txt").write_text(f"{digest}  k3s\n{digest}  k3s-airgap-images-amd64.tar.zst\n")
    # One archive whose manifest names every add-on image, as skopeo's docker-archive does.
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ADDON_IMAGES, "Layers": []}]).encode()
    with tarfile.open(bundle / "images" / "addons.tar", "w") as archive:
        entry = tarfile.TarInfo("manifest.json")
        entry.size = len(manifest)
        archive.addfile(entry, io.BytesIO(manifest))
    return bundle


def inventory(folder: Path, key: Path, nodes: dict[str, tuple[str, str]], plan: dict, extra_children: dict | None = None) -> Path:
    """hosts.yml with the nodes in their K3s groups, and the plan as group_vars/all/plan.yml."""
    out = folder / "inventory"
    (out / "group_vars" / "all").mkdir(parents=True)
    groups: dict = {"k3s_server": {"hosts": {}}, "k3s_agent": {"hosts": {}}}
    for name, (group, ip) in nodes.items():
        groups[group]["hosts"][name] = {"ansible_host": ip}
    listing = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {"k3s_cluster": {"children": groups}, **(extra_children or {})},
        }
    }
    (out / "hosts.yml").write_text(yaml.safe_dump(listing))
    base = {
        "mlops_environment": "dev",
        "k3s_cluster_cidr": "10.42.0.0/16",
        "k3s_service_cidr": "10.43.0.0/16",
        "k3s_cluster_dns": "10.43.0.10",
        "mlops_kubeconfig": str(folder / "kubeconfig"),
    }
    (out / "group_vars" / "all" / "plan.yml").write_text(yaml.safe_dump(base | plan))
    return out
