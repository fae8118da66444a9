"""site.yml from scratch on a fresh VM, with inputs that cannot work; in file order.

Each run is the real `ansible-playbook site.yml` against molecule's inventory. It must fail in the
first phase (preflight and the layers' inputs), name the fix, and leave the host as it was:
testinfra compares every file outside the kernel's and the logs' trees (path, size, mtime, mode),
the installed packages, the unit files and their states, and the firewall rules, before and after.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
# Trees that change whatever Ansible does: the kernel's, the logs, caches (the test image's
# bytecode cache among them) and systemd's timestamps.
PRUNED = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/log", "/var/cache", "/var/lib/systemd")
FIRST_LAYER_PLAY = "PLAY [Prepare hosts]"
TIMINGS = ROOT / "build" / "molecule" / "first-run-timings.txt"  # kept after the scenario, for the record


def host_state(host) -> dict[str, object]:
    prune = " -o ".join(f"-path {path}" for path in PRUNED)
    files = host.check_output(f"find / -xdev \\( {prune} \\) -prune -o -printf '%p|%s|%T@|%m|%U:%G\\n'")
    return {
        "files": set(files.splitlines()),
        "packages": host.check_output("dpkg-query -W -f '${Package} ${Version} ${Status}\\n'"),
        "unit_files": host.check_output("systemctl list-unit-files --no-legend --no-pager"),
        "units": host.check_output("systemctl list-units --all --no-legend --no-pager --plain | awk '{print $1, $3, $4}'"),
        "nft": host.check_output("nft list ruleset 2>/dev/null || true"),
        "iptables": host.check_output("iptables-save 2>/dev/null | grep -v '^#' || true"),
    }


def assert_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    for key in before:
        if key == "files":
            added, removed = sorted(after[key] - before[key]), sorted(before[key] - after[key])
            assert (added, removed) == ([], []), f"files changed: new/changed {added[:20]}, gone/changed {removed[:20]}"
        else:
            assert after[key] == before[key], f"{key} changed"


@pytest.fixture(scope="module")
def site(request):
    inventory = request.config.option.ansible_inventory

    def run(*extra: str) -> str:
        start = time.monotonic()
        result = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(ROOT / "site.yml"), *extra],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            # Ansible's own working folder on the host (by default ~/.ansible/tmp, which would
            # touch /root) goes under /tmp: what is compared is what the playbook does.
            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_REMOTE_TMP": "/tmp/.ansible-first-run"},
        )
        elapsed = time.monotonic() - start
        output = result.stdout + result.stderr
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        with TIMINGS.open("a") as log:
            log.write(f"site.yml {' '.join(extra) or '(no bundle)'}: rc {result.returncode}, {elapsed:.0f} s\n")
        print(f"site.yml {' '.join(extra)}: rc {result.returncode} in {elapsed:.0f} s")
        assert result.returncode != 0, output[-3000:]
        assert FIRST_LAYER_PLAY not in output, "a layer started: " + output[-3000:]
        return " ".join(output.split())

    return run


@pytest.fixture(scope="module")
def fresh(host):
    # The test image's own Python hook (molecule/testhosts/shipped_code_pyc.py) writes its bytecode
    # at the first Python start, whoever starts it: started once here, before the picture is taken.
    host.run_test("python3 -c pass")
    return host_state(host)


def test_a_fresh_host_left_alone_twice_looks_the_same(host, fresh):
    # The comparison itself must not see changes where nothing ran.
    assert_unchanged(fresh, host_state(host))


def test_no_bundle_and_no_route_fails_first_naming_the_bundle(host, site, fresh):
    output = site()
    assert re.search(r"mm-first would download K3s \S+ from http://10\.232\.0\.1:9/\S+ and it cannot", output), output[-3000:]
    assert "Fix: set mlops_airgap_dir (read as k3s_airgap_dir) to an air-gap bundle built with `make bundle`" in output
    assert_unchanged(fresh, host_state(host))


def test_a_bundle_with_an_empty_binary_fails_first_naming_the_file(host, site, fresh, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "images").mkdir(parents=True)
    images = b"not really zstd, but the release's checksum file says it is"
    (bundle / "images" / "k3s-airgap-images-amd64.tar.zst").write_bytes(images)
    (bundle / "k3s").write_bytes(b"")
    (bundle / "sha256sum-amd64.txt").write_text(
        f"{hashlib.sha256(b'the real binary').hexdigest()}  k3s\n{hashlib.sha256(images).hexdigest()}  k3s-airgap-images-amd64.tar.zst\n"
    )
    output = site("-e", f"mlops_airgap_dir={bundle}")
    assert f"- k3s_airgap_dir: {bundle}/k3s is empty (0 bytes). Fix: rebuild the bundle with `make bundle`" in output, output[-3000:]
    assert_unchanged(fresh, host_state(host))
