"""A restricted site's network in render: the proxy environment of K3s, a private registry with its
certificates and vault credentials, and images.txt, the list for mirroring (issue #19)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from test_render import BIN, copy_inventory, image_plan, run, validate

REGISTRY = "registry.example.org:5000"
SITE = f"""
mlops_http_proxy: http://mlops@proxy.example.org:3128
mlops_https_proxy: http://mlops@proxy.example.org:3128
mlops_no_proxy_extra: [.example.org, 10.43.100.0/24]
k3s_registries:
  mirrors:
    docker.io: {{endpoint: ["https://{REGISTRY}"], rewrite: {{"^(.*)$": "docker.io/$1"}}}}
k3s_registry_configs:
  "{REGISTRY}":
    ca_file: "{{{{ inventory_dir }}}}/files/registry-ca.crt"
    cert_file: "{{{{ inventory_dir }}}}/files/client.crt"
    key_file: "{{{{ inventory_dir }}}}/files/client.key"
    username: pull
"""
VAULT = {"vault_k3s_registry_passwords": {REGISTRY: "RegistryPassNotForRender"}, "vault_mlops_proxy_password": "ProxyPassNotForRender"}


def site_inventory(tmp_path: Path) -> Path:
    inventory = copy_inventory(tmp_path, "prod", "site")
    (inventory / "files").mkdir()
    for name in ("registry-ca.crt", "client.crt", "client.key"):
        (inventory / "files" / name).write_text(f"-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n")
    (inventory / "group_vars/all/site.yml").write_text(SITE)
    return inventory


def render(inventory: Path, out: Path) -> subprocess.CompletedProcess:
    return run(
        str(BIN / "ansible-playbook"),
        *("playbooks/render.yml", "-i", str(inventory), "-e", f"mlops_render_dir={out}", "-e", f"platform_images_dir={image_plan()}"),
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("site")
    inventory = site_inventory(tmp_path)
    out = tmp_path / "out"
    result = render(inventory, out)
    assert result.returncode == 0, result.output
    return inventory, out


def test_k3s_gets_the_proxy_with_no_proxy_from_the_plan(site):
    _, out = site
    env = (out / "nodes/prod-agent1/k3s-agent.service.env").read_text().splitlines()
    assert env[:2] == [
        'HTTP_PROXY="http://mlops:NOT-RENDERED@proxy.example.org:3128"',
        'HTTPS_PROXY="http://mlops:NOT-RENDERED@proxy.example.org:3128"',
    ]
    no_proxy = env[2].removeprefix('NO_PROXY="').removesuffix('"').split(",")
    # Nobody typed these: loopback, the nodes, the pod and service ranges, the API's address, the cluster's names.
    for entry in (
        "localhost",
        "127.0.0.1",
        "10.43.100.11",
        "10.43.100.23",
        "10.44.0.0/16",
        "10.45.0.0/16",
        "10.43.100.10",
        ".svc",
        ".cluster.local",
    ):
        assert entry in no_proxy
    assert no_proxy[-2:] == [".example.org", "10.43.100.0/24"]
    assert (out / "nodes/prod-server1/k3s.service.env").exists()
    assert "EnvironmentFile=-/etc/systemd/system/%N.service.env" in (out / "nodes/prod-server1/k3s.service").read_text()


def test_registries_yaml_names_the_node_certificates_and_hides_the_password(site):
    _, out = site
    registries = yaml.safe_load((out / "nodes/prod-server2/etc/rancher/k3s/registries.yaml").read_text())
    certs = "/etc/rancher/k3s/certs/registry.example.org_5000"
    assert registries["configs"][REGISTRY] == {
        "tls": {"ca_file": f"{certs}/ca.crt", "cert_file": f"{certs}/client.crt", "key_file": f"{certs}/client.key"},
        "auth": {"username": "pull", "password": "(from the vault at deploy time; not rendered)"},
    }
    assert registries["mirrors"]["docker.io"]["endpoint"] == [f"https://{REGISTRY}"]


def test_images_txt_lists_every_rendered_image(site):
    """Checked against the files with plain text matching, independent of the filter that wrote
    the list: every `image:` line and every chart value's repository and tag."""
    _, out = site
    listed = {line.split()[0]: line.split()[1] for line in (out / "images.txt").read_text().splitlines() if not line.startswith("#")}
    found = set()
    for path in [*out.glob("manifests/*.yaml"), *out.glob("platform/*.yaml")]:
        text = path.read_text()
        found |= set(re.findall(r"^\s*(?:- )?image: ['\"]?([^'\"\s]+)", text, re.M))
        found |= {f"{r}:{t}" for r, t in re.findall(r"repository: (\S+)\n\s+tag: (\S+)", text)}
    assert found and found <= set(listed), sorted(found - set(listed))
    assert listed["quay.io/metallb/speaker:v0.15.2"] == "cluster"
    assert {layer for ref, layer in listed.items() if ref.startswith("registry.local/mlops/")} == {"platform"}
    assert validate(out).returncode == 0


def test_a_missing_certificate_stops_render_naming_the_field(tmp_path):
    inventory = site_inventory(tmp_path)
    (inventory / "files/client.key").unlink()
    result = render(inventory, tmp_path / "out")
    assert result.returncode != 0
    assert f"k3s_registry_configs['{REGISTRY}'].key_file: {inventory}/files/client.key does not exist on the controller" in result.output
    assert not (tmp_path / "out" / "nodes").exists()


PROBE = """
- name: What a deploying play hands K3s
  hosts: k3s_server[0]
  gather_facts: false
  roles:
    - role: mlops_defaults
  tasks:
    - name: The vault's registry and proxy passwords reach registries.yaml and the proxy URLs
      ansible.builtin.assert:
        that:
          - (k3s_registries | mlops_k3s_registries(k3s_registry_configs, k3s_registry_passwords)).configs[registry].auth.password
            == 'RegistryPassNotForRender'
          - mlops_proxy_env.HTTPS_PROXY == 'http://mlops:ProxyPassNotForRender@proxy.example.org:3128'
          - mlops_proxy_env.https_proxy == mlops_proxy_env.HTTPS_PROXY
      vars:
        registry: "registry.example.org:5000"
"""


def test_the_vault_supplies_the_registry_and_proxy_passwords(tmp_path):
    inventory = site_inventory(tmp_path)
    password = tmp_path / "vault-pass"
    password.write_text("test-only\n")
    vault = inventory / "vault.yml"
    vault.write_text(yaml.safe_dump(VAULT))
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault)], check=True, capture_output=True
    )
    probe = tmp_path / "probe.yml"
    probe.write_text(PROBE)
    # On the controller only (-c local): no inventory host is contacted.
    result = run(str(BIN / "ansible-playbook"), str(probe), "-i", str(inventory), "-c", "local", "--vault-password-file", str(password))
    assert result.returncode == 0, result.output
    assert "NotForRender" not in result.output
