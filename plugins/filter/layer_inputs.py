"""What site.yml checks in its first phase, before any host changes (roles/preflight, inputs.yml).

Each check returns problems as ``{"field", "problem", "fix"}``: the variable (or bundle file) at
fault, what is wrong with it and what to do, so the run can report them all at once.

- ``k3s_bundle_problems``: the air-gap bundle against the release's own sha256 files, which
  the bundle carries (``sha256sum-<arch>.txt``, as the K3s release publishes it): the binary and
  the system image archive of every architecture in use are present, not empty, and match.
- ``image_archive_problems``: every image archive a layer imports is present, at the size the
  build recorded (images.json) and, when the bundle lists the add-on images, those too.
- ``vault_problems``: the vault values the layers will read, in the form each one needs.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from platform_credentials import credential_problems

ARCH = {"x86_64": ("", "amd64"), "aarch64": ("-arm64", "arm64")}
# The release publishes the system images in three compressions; K3s imports any of them.
IMAGE_SUFFIXES = (".tar.zst", ".tar.gz", ".tar")
BUNDLE_FIX = "rebuild the bundle with `make bundle` on a connected machine (docs/cluster.md, Air-gap bundle)"
# keepalived uses only the first eight characters of a PASS authentication password.
VRRP_PASS_MAX = 8


def _problem(field: str, problem: str, fix: str) -> dict[str, str]:
    return {"field": field, "problem": problem, "fix": fix}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_sums(path: Path) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>``, ``*<name>`` in binary mode) as name -> hex."""
    sums = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def k3s_bundle_problems(bundle_dir: str, architectures: Iterable[str], k3s_version: str = "") -> list[dict[str, str]]:
    """The bundle's K3s files for each architecture, checked against the release's sha256 file."""
    root, problems = Path(bundle_dir), []
    field = "k3s_airgap_dir"
    if not root.is_dir():
        return [
            _problem(
                field, f"{bundle_dir} is not a directory on the controller", f"{BUNDLE_FIX}, or leave mlops_airgap_dir empty to download"
            )
        ]
    recorded = root / "bundle.json"
    if k3s_version and recorded.is_file():
        version = json.loads(recorded.read_text()).get("k3s_version", "")
        if version and version != k3s_version:
            problems.append(_problem(field, f"the bundle was built for K3s {version}, the inventory asks for {k3s_version}", BUNDLE_FIX))
    for arch in sorted({a or "x86_64" for a in architectures}):
        if arch not in ARCH:
            problems.append(_problem(field, f"no K3s release for architecture {arch}", "use x86_64 or aarch64 hosts"))
            continue
        suffix, image_arch = ARCH[arch]
        sums_file = root / f"sha256sum-{image_arch}.txt"
        if not sums_file.is_file():
            problems.append(
                _problem(
                    field,
                    f"{sums_file} is missing: the release's checksums are needed to check the bundle",
                    f"{BUNDLE_FIX} (it keeps the file)",
                )
            )
            continue
        sums = release_sums(sums_file)
        archives = [root / "images" / f"k3s-airgap-images-{image_arch}{ext}" for ext in IMAGE_SUFFIXES]
        images = next((path for path in archives if path.is_file()), None)
        wanted = [(root / f"k3s{suffix}", f"k3s{suffix}")]
        if images is None:
            problems.append(_problem(field, f"{root}/images has no k3s-airgap-images-{image_arch}.tar.zst (nor .tar.gz, .tar)", BUNDLE_FIX))
        else:
            wanted.append((images, images.name))
        for path, name in wanted:
            if not path.is_file():
                problems.append(_problem(field, f"{path} is missing", BUNDLE_FIX))
            elif path.stat().st_size == 0:
                problems.append(_problem(field, f"{path} is empty (0 bytes)", BUNDLE_FIX))
            elif name not in sums:
                problems.append(
                    _problem(field, f"{sums_file.name} has no checksum for {name}: it is not this release's file list", BUNDLE_FIX)
                )
            elif (actual := sha256_file(path)) != sums[name]:
                problems.append(
                    _problem(
                        field,
                        f"{path} ({path.stat().st_size} bytes) has sha256 {actual[:16]}…, the release's is {sums[name][:16]}…",
                        BUNDLE_FIX,
                    )
                )
    return problems


def _archive_refs(path: Path) -> set[str]:
    """The image references a docker-archive (manifest.json RepoTags) or OCI archive (index.json
    annotations) holds; empty when it is neither."""
    refs: set[str] = set()
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                if member.name.lstrip("./") == "manifest.json":
                    for entry in json.load(archive.extractfile(member)) or []:
                        refs.update(entry.get("RepoTags") or [])
                elif member.name.lstrip("./") == "index.json":
                    for entry in json.load(archive.extractfile(member)).get("manifests") or []:
                        annotations = entry.get("annotations") or {}
                        refs.update(
                            v
                            for k, v in annotations.items()
                            if k in ("io.containerd.image.name", "org.opencontainers.image.ref.name") and "/" in v
                        )
    except (tarfile.TarError, OSError, ValueError):
        return set()
    return refs


def image_archive_problems(
    images_dir: str, image_list: dict[str, Any], names: Sequence[str], addon_images: Sequence[str] = ()
) -> list[dict[str, str]]:
    """Each named image's archive (``<name>.tar``) at the size images.json records; every add-on
    image in some archive of the folder."""
    root, problems = Path(images_dir), []
    for name in names:
        archive = root / f"{name}.tar"
        expected = (image_list.get(name) or {}).get("bytes")
        if not archive.is_file():
            problems.append(
                _problem(
                    f"platform_image_{name}",
                    f"{archive} is missing",
                    "run `make images` (air-gapped: copy build/images/* into the bundle's images/), or set platform_image_"
                    + name
                    + " to your registry's reference",
                )
            )
        elif archive.stat().st_size == 0 or (expected and archive.stat().st_size != int(expected)):
            problems.append(
                _problem(
                    f"platform_image_{name}",
                    f"{archive} is {archive.stat().st_size} bytes, the build wrote {expected}",
                    "copy the archive again from the build (`make images`, build/images)",
                )
            )
    if addon_images:
        found: set[str] = set()
        for archive in sorted(root.glob("*.tar")):
            found |= _archive_refs(archive)
        for ref in sorted(set(addon_images) - found):
            problems.append(_problem("mlops_airgap_dir", f"no archive in {root} holds {ref}", f"{BUNDLE_FIX}; it saves every add-on image"))
    return problems


def vault_problems(values: dict[str, Any]) -> list[dict[str, str]]:
    """The vault values the layers read, each in the form its layer needs (docs/secrets.md)."""
    problems = []
    token = str(values.get("k3s_token") or "")
    if token and (len(token) < 16 or any(c.isspace() or c == ":" for c in token)):
        problems.append(
            _problem(
                "vault_k3s_token",
                "must be at least 16 characters, without spaces or ':'",
                "put a long random value in the vault, e.g. `openssl rand -hex 32`, or remove it to have one generated",
            )
        )
    problems += [
        _problem("vault_platform_credentials", p, "fix the key in the vault (keys listed in docs/platform.md)")
        for p in credential_problems(values.get("platform_credentials") or {})
    ]
    vip_pass = str(values.get("api_vip_auth_pass") or "")
    if len(vip_pass) > VRRP_PASS_MAX:
        problems.append(
            _problem(
                "vault_api_vip_auth_pass",
                f"is {len(vip_pass)} characters; keepalived uses only the first {VRRP_PASS_MAX}",
                f"use a password of at most {VRRP_PASS_MAX} characters",
            )
        )
    return problems


def inputs_report(problems: Sequence[dict[str, str]]) -> str:
    """One line per problem, field first, with its fix."""
    return "\n".join(f"- {p['field']}: {p['problem']}. Fix: {p['fix']}." for p in problems)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_k3s_bundle_problems": k3s_bundle_problems,
            "mlops_image_archive_problems": image_archive_problems,
            "mlops_vault_problems": vault_problems,
            "mlops_inputs_report": inputs_report,
        }
