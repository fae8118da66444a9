"""selinux on Debian: nothing installed, nothing configured; relaxing without a reason is refused."""

import os
import subprocess


def test_no_selinux_packages_or_config(host):
    for package in ("selinux-basics", "selinux-policy-default", "policycoreutils"):
        assert not host.package(package).is_installed
    assert not host.file("/etc/selinux/config").exists


def test_relaxing_without_a_reason_fails_before_any_change(host):
    """The guard runs first on every OS family: permissive without selinux_state_reason stops the play."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    playbook = os.path.join(os.path.dirname(__file__), "..", "converge.yml")
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory, playbook, "-e", "selinux_state=permissive"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "SELinux stays enforcing unless the inventory also sets selinux_state_reason" in output
    assert "changed=0" in output
