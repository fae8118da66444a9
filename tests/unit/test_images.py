"""The image catalogue (services/images/images.yml) and its Dockerfiles: every image is built on
our own base, every Debian package and wheel is pinned, and a tag follows its inputs."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOG = yaml.safe_load((ROOT / "services" / "images" / "images.yml").read_text())
spec = importlib.util.spec_from_file_location("build_images", ROOT / "tools" / "build_images.py")
build_images = importlib.util.module_from_spec(spec)
sys.modules["build_images"] = build_images
spec.loader.exec_module(build_images)


def dockerfile(name: str) -> Path:
    entry = CATALOG["images"][name]
    return ROOT / entry["context"] / entry.get("dockerfile", "Dockerfile")


def test_every_dockerfile_is_in_the_catalogue() -> None:
    on_disk = {path.resolve() for path in (ROOT / "services" / "images").glob("*/Dockerfile")}
    catalogued = {dockerfile(name).resolve() for name in CATALOG["images"]}
    assert on_disk == catalogued


@pytest.mark.parametrize("name", sorted(CATALOG["images"]))
def test_image_builds_only_on_our_base(name: str) -> None:
    """No registry is ever pulled from: FROM names our base (the BASE argument) or an earlier stage."""
    stages: set[str] = set()
    for line in dockerfile(name).read_text().splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            assert match[1] in ({"${BASE}"} | stages), f"{name}: {line}"
            if match[2]:
                stages.add(match[2])
    assert stages or "FROM ${BASE}" in dockerfile(name).read_text()


@pytest.mark.parametrize("name", sorted(CATALOG["images"]))
def test_debian_packages_are_pinned(name: str) -> None:
    text = dockerfile(name).read_text().replace("\\\n", " ")
    for install in re.findall(r"apt-get install ([^&]+)", text):
        packages = [word for word in install.split() if not word.startswith("-")]
        assert packages, f"{name}: empty install"
        unpinned = [package for package in packages if "=" not in package]
        assert not unpinned, f"{name}: unpinned Debian packages {unpinned}"


def effective_user(text: str, target: str | None) -> str | None:
    """The user a stage ends on: its own last USER, else its parent stage's (None: root by default)."""
    stages: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in text.splitlines():
        if match := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE):
            current = match[2] or f"stage{len(stages)}"
            stages[current] = (match[1], [])
        elif match := re.match(r"USER\s+(\S+)", line):
            stages[current][1].append(match[1])
    stage = target or current
    while stage in stages:
        parent, users = stages[stage]
        if users:
            return users[-1]
        stage = parent
    return None


@pytest.mark.parametrize("name", sorted(CATALOG["images"]))
def test_image_runs_as_a_numeric_non_root_user(name: str) -> None:
    user = effective_user(dockerfile(name).read_text(), CATALOG["images"][name].get("target"))
    assert user is not None, f"{name}: no USER, so root"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: runs as {user}"


def test_effective_user_follows_the_stage_chain() -> None:
    text = "FROM ${BASE} AS runtime\nUSER 10\nFROM runtime AS a\nUSER 0\nFROM runtime AS b\nFROM ${BASE} AS c\n"
    assert effective_user(text, "a") == "0"
    assert effective_user(text, "b") == "10"
    assert effective_user(text, "c") is None


@pytest.mark.parametrize("name", sorted(n for n, e in CATALOG["images"].items() if "wheels" in e))
def test_wheels_are_pinned(name: str) -> None:
    """Every wheel requirement is exact, or constrained by a lock whose lines are all exact."""
    entry = CATALOG["images"][name]
    files = entry["wheels"].values() if isinstance(entry["wheels"], dict) else [entry["wheels"]]
    for relative in files:
        requirements = ROOT / entry["context"] / relative
        lines = [line.strip() for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#")]
        locks = [requirements.parent / line.split(maxsplit=1)[1] for line in lines if line.startswith(("-c ", "-r "))]
        names = [line for line in lines if not line.startswith("-")]
        for lock in locks:
            for pin in lock.read_text().splitlines():
                if pin.strip() and not pin.startswith("#"):
                    assert "==" in pin, f"{lock}: {pin}"
        constrained = {re.split(r"[=\[<>]", pin)[0].lower() for lock in locks for pin in lock.read_text().splitlines() if "==" in pin}
        for line in names:
            assert "==" in line or re.split(r"[\[=<>]", line)[0].lower() in constrained, f"{requirements}: {line}"


def test_tag_follows_every_input(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    (context / "app.py").write_text("print(1)\n")
    key = build_images.digest_of(*build_images.tree_bytes(context))
    assert build_images.digest_of(*build_images.tree_bytes(context)) == key
    (context / "__pycache__").mkdir()
    (context / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert build_images.digest_of(*build_images.tree_bytes(context)) == key, "bytecode is not an input"
    (context / "app.py").write_text("print(2)\n")
    assert build_images.digest_of(*build_images.tree_bytes(context)) != key
    (context / "app.py").write_text("print(1)\n")
    (context / "app.py").rename(context / "main.py")
    assert build_images.digest_of(*build_images.tree_bytes(context)) != key, "a renamed file is a new input"


def test_ignored_files_are_no_input(tmp_path: Path) -> None:
    """In a checkout, what git ignores (egg-info, caches) neither changes a tag nor enters the build."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.egg-info/\n.pytest_cache/\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    key = build_images.digest_of(*build_images.tree_bytes(tmp_path))
    (tmp_path / "pkg.egg-info").mkdir()
    (tmp_path / "pkg.egg-info" / "PKG-INFO").write_text("Name: pkg\n")
    assert build_images.digest_of(*build_images.tree_bytes(tmp_path)) == key
    assert [p.name for p in build_images.context_files(tmp_path)] == [".gitignore", "app.py"]
    (tmp_path / "new.py").write_text("print(2)\n")  # new, not yet added: an input all the same
    assert build_images.digest_of(*build_images.tree_bytes(tmp_path)) != key


def test_smoke_ports_are_free_ones_not_fixed() -> None:
    """Every smoke check names its ports as {portN}: a fixed port could be held by another server
    (make demo's stack uses several), which would then answer the check in the image's place."""
    for name, entry in CATALOG["images"].items():
        text = json.dumps(entry["smoke"])
        assert not re.search(r"(?<![\d.])(1\d{4}|[2-9]\d{3})(?!\d)", text.replace("127.0.0.1", "")), f"{name}: a fixed port"
    check = build_images.with_free_ports({"args": ["-a={port0}", "-b={port1}"], "http": "http://127.0.0.1:{port0}/"})
    first, second = int(check["args"][0][3:]), int(check["args"][1][3:])
    assert first != second
    assert check["http"] == f"http://127.0.0.1:{first}/"
