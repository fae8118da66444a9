#!/usr/bin/env python3
"""Build the air-gap bundle (docs/cluster.md, Air-gap bundle) on a connected machine: `make bundle`.

Everything the cluster and platform layers install without a network, at the versions the roles pin:

  <out>/k3s[-arm64], sha256sum-<arch>.txt, k3s-images.txt   the K3s release's own files
  <out>/images/k3s-airgap-images-<arch>.tar.zst             K3s's system images
  <out>/images/<name>.tar, images.json                      the platform's images (make images)
  <out>/images/addon-*.tar                                  every add-on image (skopeo), from
                                                            the image list render writes
  <out>/charts/<chart>-<version>.tgz                        MetalLB and csi-driver-nfs
  <out>/bundle.json                                         what was put in, with sha256s

Every download is checked before it is kept: the K3s files against the release's sha256 file,
the charts against their repository index's digest. The first phase of site.yml checks the same
files again on the controller (plugins/filter/layer_inputs.py), so a bundle copied badly fails
there, before any host changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The checks the first phase of site.yml makes: the bundle is read the same way here.
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
from layer_inputs import release_sums, sha256_file  # noqa: E402  (on the path just above)

ARCH = {"amd64": "", "arm64": "-arm64"}


def log(message: str) -> None:
    print(f"bundle: {message}", file=sys.stderr, flush=True)


def defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def download(url: str, dest: Path) -> Path:
    """``url`` to ``dest`` through a partial file, so an interrupted download leaves nothing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    log(f"{url} -> {dest.relative_to(dest.parents[1]) if len(dest.parents) > 1 else dest}")
    with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    partial.replace(dest)
    return dest


def k3s_release(out: Path, release_url: str, version: str, arch: str) -> dict[str, str]:
    base = f"{release_url.rstrip('/')}/{urllib.parse.quote(version, safe='')}"
    sums_file = download(f"{base}/sha256sum-{arch}.txt", out / f"sha256sum-{arch}.txt")
    sums = release_sums(sums_file)
    files = {
        f"k3s{ARCH[arch]}": out / f"k3s{ARCH[arch]}",
        f"k3s-airgap-images-{arch}.tar.zst": out / "images" / f"k3s-airgap-images-{arch}.tar.zst",
    }
    kept = {}
    for name, dest in files.items():
        if name not in sums:
            raise SystemExit(f"bundle: {sums_file.name} of {version} lists no {name}: is {version} a K3s release?")
        download(f"{base}/{name}", dest)
        if (actual := sha256_file(dest)) != sums[name]:
            dest.unlink()
            raise SystemExit(f"bundle: {name} has sha256 {actual}, the release's {sums_file.name} says {sums[name]}: download again")
        kept[name] = actual
    download(f"{base}/k3s-images.txt", out / "k3s-images.txt")
    (out / f"k3s{ARCH[arch]}").chmod(0o755)
    return kept


def chart(out: Path, repo: str, name: str, version: str) -> dict[str, str]:
    """A chart at its pinned version, from its repository's index, checked against the index's digest."""
    index = yaml.safe_load(urllib.request.urlopen(f"{repo.rstrip('/')}/index.yaml", timeout=60).read())
    entry = next((e for e in index.get("entries", {}).get(name, []) if str(e.get("version")) == version), None)
    if entry is None:
        raise SystemExit(f"bundle: {repo} has no {name} {version}")
    url = urllib.parse.urljoin(repo.rstrip("/") + "/", entry["urls"][0])
    dest = download(url, out / "charts" / f"{name}-{version}.tgz")
    if entry.get("digest") and (actual := sha256_file(dest)) != entry["digest"]:
        dest.unlink()
        raise SystemExit(f"bundle: {dest.name} has sha256 {actual}, {repo}/index.yaml says {entry['digest']}")
    return {dest.name: sha256_file(dest)}


def platform_images(out: Path, images_dir: Path) -> dict[str, str]:
    listing = images_dir / "images.json"
    if not listing.is_file():
        raise SystemExit(f"bundle: {listing} is missing: run `make images` first (it builds the platform's images)")
    kept = {}
    for name in json.loads(listing.read_text()):
        source = images_dir / f"{name}.tar"
        if not source.is_file():
            raise SystemExit(f"bundle: {source} is missing: run `make images`")
        shutil.copy2(source, out / "images" / source.name)
        kept[source.name] = sha256_file(out / "images" / source.name)
    shutil.copy2(listing, out / "images" / "images.json")
    return kept


def addon_images(out: Path, image_list: Path | None, ours: set[str]) -> dict[str, str]:
    """Every image of the list that is not ours and not K3s's own, saved with skopeo."""
    if image_list is None:
        log("no image list given (render writes build/<env>/images.txt): add-on images not saved")
        return {}
    refs = sorted({line.split()[0] for line in image_list.read_text().splitlines() if line.strip() and not line.startswith("#")} - ours)
    k3s_own = set((out / "k3s-images.txt").read_text().split()) if (out / "k3s-images.txt").is_file() else set()
    refs = [r for r in refs if r not in k3s_own and f"docker.io/{r}" not in k3s_own]
    if refs and not shutil.which("skopeo"):
        raise SystemExit("bundle: skopeo is needed to save the add-on images (apt/dnf install skopeo)")
    kept = {}
    for ref in refs:
        dest = out / "images" / f"addon-{ref.replace('/', '_').replace(':', '_').replace('@', '_')}.tar"
        log(f"{ref} -> {dest.name}")
        subprocess.run(["skopeo", "copy", "--quiet", f"docker://{ref}", f"docker-archive:{dest}:{ref}"], check=True)
        kept[dest.name] = sha256_file(dest)
    return kept


def main() -> None:
    k3s, addons = defaults("k3s"), defaults("cluster_addons")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bundle")
    parser.add_argument("--k3s-version", default=k3s["k3s_version"])
    parser.add_argument("--arch", choices=sorted(ARCH), default="amd64")
    parser.add_argument("--release-url", default=k3s["k3s_release_url"], help="the K3s releases, or a mirror of them")
    parser.add_argument("--metallb-repo", default=addons["cluster_addons_metallb_repo"])
    parser.add_argument("--csi-nfs-repo", default=addons["cluster_addons_csi_nfs_repo"])
    parser.add_argument("--images-dir", type=Path, default=ROOT / "build" / "images", help="make images' output")
    parser.add_argument("--image-list", type=Path, help="every image the layers need (render's build/<env>/images.txt)")
    options = parser.parse_args()

    out: Path = options.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    files = k3s_release(out, options.release_url, options.k3s_version, options.arch)
    files |= chart(out, options.metallb_repo, "metallb", str(addons["cluster_addons_metallb_version"]))
    files |= chart(out, options.csi_nfs_repo, "csi-driver-nfs", str(addons["cluster_addons_csi_nfs_version"]))
    files |= platform_images(out, options.images_dir)
    ours = {entry["ref"] for entry in json.loads((options.images_dir / "images.json").read_text()).values()}
    files |= addon_images(out, options.image_list, ours)
    (out / "bundle.json").write_text(
        json.dumps({"k3s_version": options.k3s_version, "arch": options.arch, "sha256": files}, indent=2) + "\n"
    )
    log(f"{out}: {len(files)} files checked; set mlops_airgap_dir to it (copied to the controller)")


if __name__ == "__main__":
    main()
