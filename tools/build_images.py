#!/usr/bin/env python3
"""Builds every image the platform runs (services/images/images.yml), with no registry.

1. A Debian 12 base: mmdebstrap (minbase and the catalogue's packages) from the apt mirror this
   machine uses, made into an image with buildah.
2. Each image from its Dockerfile on that base (buildah, chroot isolation).
3. Each written as an OCI archive to the output folder (the air-gap bundle's images/, in the
   form K3s imports from its agent images directory) with images.txt (ref digest) and
   images.json (name -> ref, digest, bytes).
4. Each smoke-run with podman on loopback: it starts and answers its health check.

Tags are <version>-<12 hex of the sha256 of the inputs>: the context's files, the Dockerfile,
the base's reference. PyPI wheels are fetched on this machine (pinned by the image's
requirements) and installed offline in the build, so images never reach an index themselves.
An image whose tag is already built is not built again.
buildah and podman keep their store under MLOPS_IMAGES_CACHE (default ~/.cache/mlops-metal/images).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "services" / "images" / "images.yml"
CONTAINERS_CONF = ROOT / "services" / "images" / "containers.conf"
CACHE = Path(os.environ.get("MLOPS_IMAGES_CACHE", Path.home() / ".cache" / "mlops-metal" / "images"))
RUNROOT = Path("/run/mlops-metal-images")
# How the base's root filesystem is made; part of the base's tag.
MMDEBSTRAP = ["--variant=minbase", "--format=tar", '--aptopt=APT::Install-Recommends "false"']


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def store_args() -> list[str]:
    return ["--root", str(CACHE / "storage"), "--runroot", str(RUNROOT), "--storage-driver", "overlay"]


def tool_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "BUILDAH_ISOLATION": "chroot"}


def run(*args: str, capture: bool = False) -> str:
    result = subprocess.run(args, check=True, text=True, env=tool_env(), stdout=subprocess.PIPE if capture else sys.stderr)
    return result.stdout.strip() if capture else ""


def buildah(*args: str, capture: bool = False) -> str:
    return run("buildah", *store_args(), *args, capture=capture)


def podman(*args: str, capture: bool = False) -> str:
    return run("podman", *store_args(), *args, capture=capture)


def digest_of(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(hashlib.sha256(part).digest())
    return sha.hexdigest()


def context_files(folder: Path) -> list[Path]:
    """A build context's files as a fresh clone has them: tracked or new, never ignored
    (egg-info, caches, bytecode), in a stable order."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
                            cwd=folder, capture_output=True, text=True)  # fmt: skip
    if listed.returncode != 0:  # not a git checkout (an exported tree): everything but bytecode
        return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return sorted({folder / name for name in listed.stdout.split("\0") if name and (folder / name).is_file()})


def tree_bytes(folder: Path) -> list[bytes]:
    """Every file of a build context, path and content, in a stable order."""
    return [str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() for path in context_files(folder)]


def apt_sources(release: str) -> list[str]:
    """This machine's apt sources for the release (main, updates, security) as one-line entries:
    the only place packages can come from here, and where the pinned versions are."""
    entries = []
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
            if fields.get("Types", "").strip() != "deb":
                continue
            for suite in fields["Suites"].split():
                entries.append(f"deb {fields['URIs'].strip()} {suite} {fields['Components'].strip()}")
    else:
        entries = [line.strip() for line in Path("/etc/apt/sources.list").read_text().splitlines() if line.startswith("deb ")]
    entries = [entry for entry in entries if entry.split()[2].startswith(release)]
    if not entries:
        sys.exit(f"images: no apt source for {release} in /etc/apt")
    return entries


def build_base(catalog: dict[str, Any]) -> str:
    base = catalog["base"]
    sources = apt_sources(base["release"])
    ref = base_reference(catalog)
    if image_exists(ref):
        return ref
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        tarball = Path(work) / "rootfs.tar"
        run("mmdebstrap", *MMDEBSTRAP, f"--include={','.join(base['packages'])}", base["release"], str(tarball), *sources)
        container = buildah("from", "scratch", capture=True)
        try:
            buildah("add", container, str(tarball), "/")
            buildah("config", "--env", "LANG=C.UTF-8", "--cmd", "/bin/sh", container)
            buildah("commit", "--quiet", "--timestamp", "0", container, ref)
        finally:
            buildah("rm", container)
    log(f"{ref} built in {time.monotonic() - start:.0f} s")
    return ref


def image_exists(ref: str) -> bool:
    inspect = subprocess.run(["buildah", *store_args(), "inspect", "--type", "image", ref], capture_output=True, env=tool_env())
    return inspect.returncode == 0


def wheelhouse(context: Path, requirements: str) -> Path:
    """The image's PyPI wheels, fetched and built on this machine (whose trust store reaches the
    index) into a cache keyed by the requirements; the Dockerfile installs from them offline."""
    file = context / requirements
    inputs = [file.read_bytes()] + [
        (file.parent / line.split(maxsplit=1)[1]).read_bytes() for line in file.read_text().splitlines() if line.startswith(("-c ", "-r "))
    ]
    house = CACHE / "wheels" / digest_of(*inputs)[:16]
    if not (house / ".complete").exists():
        start = time.monotonic()
        shutil.rmtree(house, ignore_errors=True)
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir", str(house), "-r", str(file))
        (house / ".complete").touch()
        log(f"wheels for {file.relative_to(ROOT)}: {len(list(house.glob('*.whl')))} in {time.monotonic() - start:.0f} s")
    return house


def base_reference(catalog: dict[str, Any]) -> str:
    base = catalog["base"]
    key = digest_of(json.dumps([base, apt_sources(base["release"]), MMDEBSTRAP], sort_keys=True).encode())[:12]
    return f"{catalog['registry']}/{base['name']}:{base['version']}-{key}"


def image_reference(name: str, spec: dict[str, Any], registry: str, base_ref: str) -> str:
    """<version>-<12 hex of everything that goes in>: known before (and without) a build."""
    context = ROOT / spec["context"]
    dockerfile = context / spec.get("dockerfile", "Dockerfile")
    key = digest_of(*tree_bytes(context), dockerfile.read_bytes(), base_ref.encode(), spec.get("target", "").encode())[:12]
    return f"{registry}/{name}:{spec['version']}-{key}"


def write_plan(out: Path) -> None:
    """The references a build makes, for rendering manifests where nothing is built (make validate)."""
    catalog = yaml.safe_load(CATALOG.read_text())
    base_ref = base_reference(catalog)
    plan = {
        name: {"ref": image_reference(name, spec, catalog["registry"], base_ref), "digest": None}
        for name, spec in catalog["images"].items()
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "images.json").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")


def build_image(name: str, spec: dict[str, Any], registry: str, base_ref: str) -> str:
    context = ROOT / spec["context"]
    dockerfile = context / spec.get("dockerfile", "Dockerfile")
    target = spec.get("target", "")
    ref = image_reference(name, spec, registry, base_ref)
    if image_exists(ref):
        log(f"{ref} already built")
        return ref
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        if "wheels" in spec:  # the context plus its wheel folders, in a copy: the work tree stays clean
            build_context = Path(work) / "context"
            for path in context_files(context):
                copy = build_context / path.relative_to(context)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
            houses = spec["wheels"] if isinstance(spec["wheels"], dict) else {"wheels": spec["wheels"]}
            for folder, requirements in houses.items():
                shutil.copytree(wheelhouse(context, requirements), build_context / folder)
        else:
            build_context = context
        buildah("build", "--quiet", "--layers", "--isolation", "chroot", "--timestamp", "0",
                "--build-arg", f"BASE={base_ref}", "-f", str(build_context / dockerfile.relative_to(context)),
                *(["--target", target] if target else []), "-t", ref, str(build_context))  # fmt: skip
    log(f"{ref} built in {time.monotonic() - start:.0f} s")
    return ref


def drop_older_tags(name: str, ref: str, registry: str) -> None:
    """Other tags of the image are older builds: dropped, or the store grows by an image a change.
    Best effort: an image another still builds on (a base, a cached stage) stays."""
    listed = buildah("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}", capture=True).splitlines()
    for older in sorted({line for line in listed if line.startswith(f"{registry}/{name}:") and line != ref}):
        subprocess.run(["buildah", *store_args(), "rmi", older], capture_output=True, env=tool_env())


def write_archive(name: str, ref: str, out: Path) -> dict[str, Any]:
    archive = out / f"{name}.tar"
    with tempfile.NamedTemporaryFile() as digest_file:
        archive.unlink(missing_ok=True)
        buildah("push", "--quiet", "--digestfile", digest_file.name, ref, f"oci-archive:{archive}:{ref}")
        digest = Path(digest_file.name).read_text().strip()
    return {"ref": ref, "digest": digest, "bytes": archive.stat().st_size}


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def with_free_ports(check: dict[str, Any]) -> dict[str, Any]:
    """The smoke spec with each {portN} replaced by a port free on loopback now: a fixed port
    could be held by another server (make demo's stack), which would then answer the check."""
    text = json.dumps(check)
    ports = {name: str(free_port()) for name in sorted(set(re.findall(r"\{(port\d*)\}", text)))}
    for name, port in ports.items():
        text = text.replace("{" + name + "}", port)
    return json.loads(text)


def smoke(name: str, ref: str, spec: dict[str, Any], timeout: float = 240) -> float:
    """Runs the image with podman on the host network (loopback only) until it answers."""
    check = with_free_ports(spec["smoke"])
    container = f"mlops-smoke-{name}-{os.getpid()}"  # two builds side by side do not collide
    podman("rm", "--force", "--ignore", container)
    with tempfile.TemporaryDirectory() as work:
        password = Path(work) / "password"
        password.write_text(secrets.token_urlsafe(24))
        password.chmod(0o644)
        args = ["run", "--detach", "--name", container, "--network", "host", "--read-only",
                "--volume", f"{password}:/run/secrets/smoke:ro", "--tmpfs", "/tmp", "--tmpfs", "/run"]  # fmt: skip
        for number, path in enumerate(check.get("volumes", [])):  # fresh folders, owned by the image's user
            (Path(work) / f"volume{number}").mkdir()
            args += ["--volume", f"{Path(work) / f'volume{number}'}:{path}:U"]
        if "entrypoint" in check:
            args += ["--entrypoint", json.dumps(check["entrypoint"])]
        for key, value in check.get("env", {}).items():
            args += ["--env", f"{key}={value}"]
        start = time.monotonic()
        podman(*args, ref, *check.get("args", []))
        try:
            while time.monotonic() - start < timeout:
                if "http" in check and http_ok(check["http"]):
                    return time.monotonic() - start
                if "exec" in check and subprocess.run(["podman", *store_args(), "exec", container, *check["exec"]],
                                                      capture_output=True, env=tool_env()).returncode == 0:  # fmt: skip
                    return time.monotonic() - start
                state = podman("inspect", "--format", "{{.State.Status}}", container, capture=True)
                if state != "running":
                    logs = podman("logs", container, capture=True)
                    sys.exit(f"images: {name} exited during its smoke run ({state}):\n{logs}")
                time.sleep(0.5)
            sys.exit(f"images: {name} did not answer its health check within {timeout:.0f} s:\n{podman('logs', container, capture=True)}")
        finally:
            podman("rm", "--force", "--time", "2", container)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "images", help="folder for the archives and lists")
    parser.add_argument("--only", nargs="*", help="image names (default: all)")
    parser.add_argument("--no-smoke", action="store_true", help="skip the podman smoke runs")
    parser.add_argument("--plan", action="store_true", help="write images.json with the references a build would make, build nothing")
    options = parser.parse_args()
    if options.plan:
        write_plan(options.out)
        return
    for tool in ("mmdebstrap", "buildah", "podman"):
        if shutil.which(tool) is None:
            sys.exit(f"images: {tool} is missing (make images installs it: apt-get install {tool})")
    catalog = yaml.safe_load(CATALOG.read_text())
    names = options.only or list(catalog["images"])
    unknown = sorted(set(names) - set(catalog["images"]))
    if unknown:
        sys.exit(f"images: not in {CATALOG.relative_to(ROOT)}: {', '.join(unknown)}")
    options.out.mkdir(parents=True, exist_ok=True)
    listing = options.out / "images.json"
    built: dict[str, Any] = json.loads(listing.read_text()) if listing.exists() else {}
    base_ref = build_base(catalog)
    for name in names:
        spec = catalog["images"][name]
        ref = build_image(name, spec, catalog["registry"], base_ref)
        if built.get(name, {}).get("ref") != ref or not (options.out / f"{name}.tar").exists():
            built[name] = write_archive(name, ref, options.out)
        if not options.no_smoke:
            seconds = smoke(name, ref, spec)
            log(f"{name}: answered its health check {seconds:.1f} s after start")
        log(f"{name}: {built[name]['ref']} {built[name]['bytes'] / 2**20:.0f} MiB")
    for name in names:
        drop_older_tags(name, built[name]["ref"], catalog["registry"])
    drop_older_tags(catalog["base"]["name"], base_ref, catalog["registry"])
    built = {name: built[name] for name in catalog["images"] if name in built}
    listing.write_text(json.dumps(built, indent=2, sort_keys=True) + "\n")
    (options.out / "images.txt").write_text("".join(f"{entry['ref']} {entry['digest']}\n" for entry in built.values()))


if __name__ == "__main__":
    main()
