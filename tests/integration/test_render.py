"""Render mode end to end: playbooks/render.yml writes build/<env>/, which is validated strictly."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"


def run(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return result


@functools.cache
def image_plan() -> Path:
    """The platform's image references as a build would make them (nothing is built)."""
    out = Path(tempfile.mkdtemp(prefix="image-plan-"))
    subprocess.run([sys.executable, "tools/build_images.py", "--plan", "--out", str(out)], cwd=ROOT, check=True)
    return out


def render(env: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(
        str(BIN / "ansible-playbook"),
        "playbooks/render.yml",
        "-i",
        f"inventories/{env}",
        "-e",
        f"mlops_render_dir={out}",
        "-e",
        f"platform_images_dir={image_plan()}",
        *extra,
    )


def validate(*dirs: Path) -> subprocess.CompletedProcess:
    return run(sys.executable, "tools/validate_manifests.py", *map(str, dirs))


def config(out: Path, node: str) -> dict:
    return yaml.safe_load((out / "nodes" / node / "etc/rancher/k3s/config.yaml").read_text())


def objects(out: Path) -> list[dict]:
    return [d for f in sorted((out / "manifests").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


@pytest.fixture(scope="module")
def prod(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render") / "prod"
    result = render("prod", out)
    assert result.returncode == 0, result.output
    return out


def test_prod_render_has_every_node_and_the_ha_join_order(prod):
    nodes = sorted(p.name for p in (prod / "nodes").iterdir())
    assert nodes == ["prod-agent1", "prod-agent2", "prod-agent3", "prod-server1", "prod-server2", "prod-server3"]
    first, second = config(prod, "prod-server1"), config(prod, "prod-server2")
    assert first["cluster-init"] is True and "server" not in first
    # Joins go through the API's virtual address (mlops_api_vip), which is also in every server's tls-san.
    assert second["server"] == "https://10.43.100.10:6443" and "cluster-init" not in second
    for node in ("prod-server1", "prod-server2", "prod-server3"):
        cfg = config(prod, node)
        assert (cfg["cluster-cidr"], cfg["service-cidr"], cfg["cluster-dns"]) == ("10.44.0.0/16", "10.45.0.0/16", "10.45.0.10")
        assert cfg["write-kubeconfig-mode"] == "0600" and cfg["secrets-encryption"] is True
        assert {"servicelb", "traefik", "local-storage"} <= set(cfg["disable"])
        assert "10.43.100.10" in cfg["tls-san"]
    agent = config(prod, "prod-agent1")
    assert agent["server"] == "https://10.43.100.10:6443" and "cluster-cidr" not in agent
    assert agent["node-ip"] == "10.43.100.21" and agent["node-name"] == "prod-agent1"
    assert (prod / "nodes/prod-agent1/k3s-agent.service").read_text().count("ExecStart=/usr/local/bin/k3s agent") == 1


def test_only_the_named_bootstrap_server_starts_a_new_cluster(tmp_path):
    # Render shows a new cluster (no server holds etcd data): the bootstrap server alone gets cluster-init,
    # here one that is not the first, and the first joins like every other server.
    out = tmp_path / "prod"
    result = render("prod", out, "-e", "k3s_bootstrap_server=prod-server2")
    assert result.returncode == 0, result.output
    assert config(out, "prod-server2")["cluster-init"] is True
    for node in ("prod-server1", "prod-server3", "prod-agent1"):
        cfg = config(out, node)
        assert cfg["server"] == "https://10.43.100.10:6443" and "cluster-init" not in cfg, node


def test_no_token_is_ever_rendered(prod):
    for path in prod.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "token:" not in text.replace("token-file:", ""), path
    assert config(prod, "prod-server1")["token-file"] == "/etc/rancher/k3s/token"


def test_storage_and_pools_derive_from_the_plan(prod):
    everything = objects(prod)
    (sc,) = [o for o in everything if o["kind"] == "StorageClass"]
    assert sc["metadata"]["name"] == "nfs-mlops-prod"
    assert sc["parameters"]["server"] == "10.43.100.5" and sc["parameters"]["share"] == "/srv/nfs/mlops/prod"
    pools = {o["metadata"]["name"]: o["spec"]["addresses"] for o in everything if o["kind"] == "IPAddressPool"}
    assert pools == {"default": ["10.43.100.200-10.43.100.230"], "reserved": ["10.43.100.240/29"]}


def test_every_rendered_object_passes_strict_validation(prod):
    result = validate(prod)
    assert result.returncode == 0, result.output
    assert "0 problem(s)" in result.output


def test_second_render_changes_nothing(prod):
    result = render("prod", prod)
    assert result.returncode == 0, result.output
    assert "changed=0" in result.output and "changed=1" not in result.output


def test_validator_rejects_wrong_types_unknown_fields_and_unknown_kinds(prod, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(prod, broken)
    storage = broken / "manifests" / "mlops-storage.yaml"
    storage.write_text(storage.read_text().replace("allowVolumeExpansion: true", "allowVolumeExpansion: 'yes'"))
    (broken / "manifests" / "extra.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\n"
        "spec: {addresses: [], autoassign: true}\n"
    )
    cfg = broken / "nodes/prod-server1/etc/rancher/k3s/config.yaml"
    cfg.write_text(cfg.read_text() + "token: literal-secret\n")
    result = validate(broken)
    assert result.returncode == 1
    out = result.output
    assert "StorageClass/nfs-mlops-prod: allowVolumeExpansion: 'yes' is not of type 'boolean'" in out
    assert "Widget/w: no schema for Widget (example.com/v1)" in out
    assert "'autoassign' was unexpected" in out and "spec.addresses: [] should be non-empty" in out
    assert "prod-server1/etc/rancher/k3s/config.yaml" in out and "'token'" in out


def test_airgapped_render_points_helm_charts_at_k3s_static_charts(tmp_path):
    out = tmp_path / "airgap"
    result = render("dev", out, "-e", "mlops_airgap_dir=/srv/bundle")
    assert result.returncode == 0, result.output
    charts = [o["spec"] for o in objects(out) if o["kind"] == "HelmChart"]
    assert {c["chart"] for c in charts} == {
        "https://%{KUBERNETES_API}%/static/charts/metallb-0.15.2.tgz",
        "https://%{KUBERNETES_API}%/static/charts/csi-driver-nfs-v4.11.0.tgz",
    }
    assert all("repo" not in c for c in charts)
    assert validate(out).returncode == 0


def test_dual_stack_plan_renders_and_validates(tmp_path):
    out = tmp_path / "dual"
    result = render(
        "staging",
        out,
        "-e",
        "k3s_cluster_cidr=10.42.0.0/16,fd42:42::/56",
        "-e",
        "k3s_service_cidr=10.43.0.0/16,fd42:43::/112",
        "-e",
        "k3s_cluster_dns=10.43.0.10",
    )
    assert result.returncode == 0, result.output
    assert config(out, "stg-server1")["cluster-cidr"] == "10.42.0.0/16,fd42:42::/56"
    assert validate(out).returncode == 0


def test_invalid_plan_stops_render_with_the_field_and_fix(tmp_path):
    out = tmp_path / "bad"
    result = render("dev", out, "-e", "k3s_service_cidr=10.42.128.0/17", "-e", "k3s_cluster_dns=10.42.128.10")
    assert result.returncode != 0
    assert "k3s_cluster_cidr 10.42.0.0/16 overlaps k3s_service_cidr 10.42.128.0/17" in result.output
    assert not (out / "manifests").exists()


@pytest.mark.skipif(not CHECKOV.exists() and not os.environ.get("CI"), reason="checkov venv not set up (make checkov)")
def test_checkov_gate_fails_on_a_privileged_workload(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: mlops-dev}\nspec:\n"
        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n"
        "      containers: [{name: c, image: 'nginx:1.27.0', securityContext: {privileged: true}}]\n"
    )
    result = run(str(CHECKOV), "--config-file", ".checkov.yaml", "-d", str(tmp_path))
    assert result.returncode != 0
    assert "CKV_K8S_16" in result.output  # "Container should not be privileged"


def test_render_without_an_nfs_server_says_what_to_add(tmp_path):
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "dev", inventory)
    (inventory / "hosts.yml").write_text(
        "all:\n  vars: {mlops_os_family: Debian}\n  children:\n    k3s_cluster:\n      children:\n        k3s_server:\n"
        "          hosts:\n            s1: {ansible_host: 192.168.10.11}\n    nfs_server:\n"
    )
    result = run(str(BIN / "ansible-playbook"), "playbooks/render.yml", "-i", str(inventory), "-e", f"mlops_render_dir={tmp_path / 'out'}")
    assert result.returncode != 0
    assert "No NFS server for the StorageClasses: put a host in the nfs_server group" in result.output


def copy_inventory(tmp_path: Path, env: str, name: str) -> Path:
    """inventories/<env> copied as a user would (cp -r), with the shared files its links point at."""
    root = tmp_path / "inventories"
    shutil.copytree(ROOT / "inventories" / ".shared", root / ".shared")
    shutil.copytree(ROOT / "inventories" / env, root / name, symlinks=True)
    return root / name


def test_selinux_follows_the_inventorys_os_family(prod, tmp_path):
    assert all(config(prod, n)["selinux"] is True for n in ("prod-server1", "prod-agent1"))  # mlops_os_family: RedHat
    out = tmp_path / "dev"
    assert render("dev", out).returncode == 0  # mlops_os_family: Debian
    assert [config(out, n)["selinux"] for n in ("dev-server1", "dev-agent1")] == [False, False]


def test_render_refuses_a_node_whose_os_family_is_not_stated(tmp_path):
    inventory = copy_inventory(tmp_path, "dev", "site")
    hosts = inventory / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("mlops_os_family: Debian", "mlops_os_family: ''"))
    result = run(str(BIN / "ansible-playbook"), "playbooks/render.yml", "-i", str(inventory), "-e", f"mlops_render_dir={tmp_path / 'out'}")
    assert result.returncode != 0
    assert "dev-server1 has no mlops_os_family" in result.output and "set mlops_os_family to RedHat" in result.output
    assert not (tmp_path / "out").exists()


VAULT = {
    "vault_k3s_token": "K3sTokenNotForRender",
    "vault_platform_credentials": {"reload-token": "ReloadTokenNotForRender"},
    "vault_registry_password": "RegistryPasswordNotForRender",
}


def encrypted_vault(inventory: Path, tmp_path: Path) -> Path:
    password = tmp_path / "vault-pass"
    password.write_text("test-only\n")
    vault = inventory / "vault.yml"
    vault.write_text(yaml.safe_dump(VAULT))
    encrypt = [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault)]
    subprocess.run(encrypt, check=True, capture_output=True)
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    return password


def test_an_inventory_holding_a_vault_renders_without_its_password(tmp_path):
    inventory = copy_inventory(tmp_path, "prod", "site")
    encrypted_vault(inventory, tmp_path)
    (inventory / "group_vars/all/registries.yml").write_text(
        'k3s_registries:\n  configs:\n    registry.example.org:\n      auth: {username: pull, password: "{{ vault_registry_password }}"}\n'
    )
    out = tmp_path / "out"
    result = run(
        str(BIN / "ansible-playbook"),
        *("playbooks/render.yml", "-i", str(inventory), "-e", f"mlops_render_dir={out}", "-e", f"platform_images_dir={image_plan()}"),
    )
    assert result.returncode == 0, result.output
    # Neither parsed as an inventory source nor decrypted.
    assert "decrypt" not in result.output and "Unable to parse" not in result.output, result.output
    registries = yaml.safe_load((out / "nodes/prod-server1/etc/rancher/k3s/registries.yaml").read_text())
    assert registries["configs"]["registry.example.org"]["auth"] == {
        "username": "(from the vault at deploy time; not rendered)",
        "password": "(from the vault at deploy time; not rendered)",
    }
    assert validate(out).returncode == 0
    for syntax in ("--syntax-check", "--list-hosts"):
        assert run(str(BIN / "ansible-playbook"), syntax, "site.yml", "-i", str(inventory)).returncode == 0, syntax


PROBE = """
- name: What a deploying play sees
  hosts: k3s_server[0]
  gather_facts: false
  roles:
    - role: mlops_defaults
  tasks:
    - name: The wiring hands the vault's values to the roles' variables
      ansible.builtin.assert:
        that:
          - k3s_token == 'K3sTokenNotForRender'
          - "platform_credentials == {'reload-token': 'ReloadTokenNotForRender'}"
"""


def test_the_deploying_layers_load_the_vault_and_ask_for_its_password(tmp_path):
    inventory = copy_inventory(tmp_path, "prod", "site")
    probe = tmp_path / "probe.yml"
    probe.write_text(PROBE)
    # The probe's tasks run on the controller (-c local): no inventory host is contacted.
    play = [str(BIN / "ansible-playbook"), str(probe), "-i", str(inventory), "-c", "local"]
    without = run(*play)
    assert without.returncode != 0 and "k3s_token == 'K3sTokenNotForRender'" in without.output  # no vault: nothing set
    password = encrypted_vault(inventory, tmp_path)
    assert run(*play, "--vault-password-file", str(password)).returncode == 0
    result = run(*play)
    assert result.returncode != 0
    assert f"Could not load {inventory}/vault.yml" in result.output and "--ask-vault-pass" in result.output
