"""site.yml's first-phase input checks (plugins/filter/layer_inputs.py): the air-gap bundle against
the release's sha256 file, the image archives, the vault values."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import layer_inputs as li


def bundle(folder: Path, files: dict[str, bytes], listed: dict[str, bytes] | None = None) -> Path:
    """A bundle holding ``files``; its sha256sum-amd64.txt lists ``listed`` (default: the files)."""
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(content)
    sums = listed if listed is not None else {Path(rel).name: content for rel, content in files.items()}
    (folder / "sha256sum-amd64.txt").write_text("".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in sums.items()))
    return folder


GOOD = {"k3s": b"\x7fELF binary", "images/k3s-airgap-images-amd64.tar.zst": b"zstd images"}


def problems(folder: Path, arches=("x86_64",), version: str = "") -> list[str]:
    return [p["problem"] for p in li.k3s_bundle_problems(str(folder), arches, version)]


def test_a_bundle_matching_the_release_sums_passes(tmp_path):
    assert problems(bundle(tmp_path, GOOD)) == []


def test_an_empty_binary_is_named(tmp_path):
    found = problems(bundle(tmp_path, {**GOOD, "k3s": b""}))
    assert found == [f"{tmp_path}/k3s is empty (0 bytes)"]


def test_a_changed_archive_fails_its_checksum(tmp_path):
    bundle(tmp_path, GOOD)
    (tmp_path / "images/k3s-airgap-images-amd64.tar.zst").write_bytes(b"truncated")
    (found,) = problems(tmp_path)
    assert "k3s-airgap-images-amd64.tar.zst (9 bytes) has sha256" in found and "the release's is" in found


def test_missing_sums_file_missing_images_and_other_arches(tmp_path):
    bundle(tmp_path, {"k3s": b"x"})
    assert problems(tmp_path) == [f"{tmp_path}/images has no k3s-airgap-images-amd64.tar.zst (nor .tar.gz, .tar)"]
    (arm,) = problems(tmp_path, ("aarch64",))
    assert "sha256sum-arm64.txt is missing" in arm
    assert problems(tmp_path / "nowhere")[0].endswith("is not a directory on the controller")


def test_a_file_the_sums_do_not_list_and_a_version_mismatch(tmp_path):
    bundle(tmp_path, GOOD, listed={"k3s": GOOD["k3s"]})
    (tmp_path / "bundle.json").write_text(json.dumps({"k3s_version": "v1.33.1+k3s1"}))
    found = problems(tmp_path, version="v1.34.9+k3s1")
    assert found[0] == "the bundle was built for K3s v1.33.1+k3s1, the inventory asks for v1.34.9+k3s1"
    assert "has no checksum for k3s-airgap-images-amd64.tar.zst" in found[1]


def test_every_problem_names_a_field_and_a_fix(tmp_path):
    found = li.k3s_bundle_problems(str(bundle(tmp_path, {**GOOD, "k3s": b""})), ["x86_64"])
    report = li.inputs_report(found)
    assert report.startswith("- k3s_airgap_dir: ") and "Fix: rebuild the bundle with `make bundle`" in report


def docker_archive(path: Path, tags: list[str]) -> None:
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": []}]).encode()
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))


def test_image_archives_by_size_and_addon_images_by_their_tags(tmp_path):
    docker_archive(tmp_path / "postgres.tar", ["registry.local/mlops/postgres:15-abc"])
    docker_archive(tmp_path / "metallb.tar", ["quay.io/metallb/controller:v0.15.2"])
    size = (tmp_path / "postgres.tar").stat().st_size
    listing = {"postgres": {"bytes": size}, "api": {"bytes": 10}}
    assert li.image_archive_problems(str(tmp_path), listing, ["postgres"], ["quay.io/metallb/controller:v0.15.2"]) == []
    found = li.image_archive_problems(
        str(tmp_path), {"postgres": {"bytes": size + 1}}, ["postgres", "api"], ["quay.io/metallb/speaker:v0.15.2"]
    )
    assert [p["field"] for p in found] == ["platform_image_postgres", "platform_image_api", "mlops_airgap_dir"]
    assert f"is {size} bytes, the build wrote {size + 1}" in found[0]["problem"]
    assert found[1]["problem"].endswith("api.tar is missing")
    assert "holds quay.io/metallb/speaker:v0.15.2" in found[2]["problem"]


def test_vault_values_in_the_form_each_layer_needs():
    assert (
        li.vault_problems({"k3s_token": "a" * 32, "platform_credentials": {"reload-token": "abc123"}, "api_vip_auth_pass": "8chars!!"})
        == []
    )
    found = li.vault_problems(
        {"k3s_token": "short", "platform_credentials": {"nope": "x", "reload-token": "a-b"}, "api_vip_auth_pass": "ninechars"}
    )
    assert [p["field"] for p in found] == [
        "vault_k3s_token",
        "vault_platform_credentials",
        "vault_platform_credentials",
        "vault_api_vip_auth_pass",
    ]
    assert "unknown key(s) nope" in found[1]["problem"] and "reload-token must be letters and digits" in found[2]["problem"]
