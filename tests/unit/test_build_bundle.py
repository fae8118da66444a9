"""tools/build_bundle.py (make bundle) against a release mirror and chart repositories served on
loopback: what it builds passes the first phase's bundle check, and a damaged download is refused."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import layer_inputs
import yaml

ROOT = Path(__file__).resolve().parents[2]
VERSION = "v1.34.9+k3s1"


@contextmanager
def serve(folder: Path):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def mirror(root: Path, damaged: bool = False) -> None:
    release = root / "releases" / VERSION
    release.mkdir(parents=True)
    files = {
        "k3s": b"\x7fELF k3s",
        "k3s-airgap-images-amd64.tar.zst": b"zstd system images",
        "k3s-images.txt": b"docker.io/rancher/mirrored-pause:3.6\n",
    }
    for name, content in files.items():
        (release / name).write_bytes(content)
    sums = {n: hashlib.sha256(c).hexdigest() for n, c in files.items()}
    if damaged:
        sums["k3s"] = "0" * 64
    (release / "sha256sum-amd64.txt").write_text("".join(f"{d}  {n}\n" for n, d in sums.items()))
    for repo, name, version in (("metallb", "metallb", "0.15.2"), ("csi", "csi-driver-nfs", "v4.11.0")):
        (root / repo).mkdir()
        tgz = f"{name}-{version}.tgz"
        (root / repo / tgz).write_bytes(f"chart {name}".encode())
        digest = hashlib.sha256(f"chart {name}".encode()).hexdigest()
        index = {"apiVersion": "v1", "entries": {name: [{"version": version, "urls": [tgz], "digest": digest}]}}
        (root / repo / "index.yaml").write_text(yaml.safe_dump(index))


def build(url: str, out: Path, images: Path) -> subprocess.CompletedProcess:
    mirrors = ["--release-url", f"{url}/releases", "--metallb-repo", f"{url}/metallb", "--csi-nfs-repo", f"{url}/csi"]
    command = [sys.executable, str(ROOT / "tools" / "build_bundle.py"), "--out", str(out), "--k3s-version", VERSION, *mirrors]
    return subprocess.run([*command, "--images-dir", str(images)], capture_output=True, text=True, timeout=120, check=False)


def platform_build(folder: Path) -> Path:
    folder.mkdir()
    (folder / "api.tar").write_bytes(b"api image archive")
    (folder / "images.json").write_text(json.dumps({"api": {"ref": "registry.local/mlops/api:1", "bytes": 17}}))
    return folder


def test_the_bundle_built_passes_the_first_phase_check(tmp_path):
    mirror(tmp_path / "mirror")
    with serve(tmp_path / "mirror") as url:
        result = build(url, tmp_path / "bundle", platform_build(tmp_path / "images"))
    assert result.returncode == 0, result.stderr
    bundle = tmp_path / "bundle"
    assert layer_inputs.k3s_bundle_problems(str(bundle), ["x86_64"], VERSION) == []
    assert {p.name for p in (bundle / "charts").iterdir()} == {"metallb-0.15.2.tgz", "csi-driver-nfs-v4.11.0.tgz"}
    listing = json.loads((bundle / "images" / "images.json").read_text())
    assert layer_inputs.image_archive_problems(str(bundle / "images"), listing, ["api"]) == []
    recorded = json.loads((bundle / "bundle.json").read_text())
    assert recorded["k3s_version"] == VERSION and len(recorded["sha256"]) == 5
    # Built for another version: the first phase says so.
    (found,) = layer_inputs.k3s_bundle_problems(str(bundle), ["x86_64"], "v1.35.0+k3s1")
    assert "built for K3s v1.34.9+k3s1" in found["problem"]


def test_a_download_that_does_not_match_the_release_sums_is_refused(tmp_path):
    mirror(tmp_path / "mirror", damaged=True)
    with serve(tmp_path / "mirror") as url:
        result = build(url, tmp_path / "bundle", platform_build(tmp_path / "images"))
    assert result.returncode != 0 and "k3s has sha256" in result.stderr and "download again" in result.stderr
    assert not (tmp_path / "bundle" / "k3s").exists()
