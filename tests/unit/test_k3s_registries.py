"""registries.yaml as a dict, its certificate files and input checks (plugins/filter/k3s_registries.py)."""

from __future__ import annotations

import k3s_registries as reg

HOST = "registry.example.org:5000"


def pem_files(tmp_path):
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    return {
        "ca_file": str(tmp_path / "ca.pem"),
        "cert_file": str(tmp_path / "client.pem"),
        "key_file": str(tmp_path / "client-key.pem"),
    }


def test_registries_merge_tls_paths_on_the_node_and_the_vault_password(tmp_path):
    raw = {"mirrors": {"docker.io": {"endpoint": [f"https://{HOST}"]}}, "configs": {HOST: {"tls": {"insecure_skip_verify": False}}}}
    configs = {HOST: {**pem_files(tmp_path), "username": "pull"}}
    result = reg.k3s_registries(raw, configs, {HOST: "s3cret"})
    assert result["mirrors"] == raw["mirrors"]
    assert result["configs"][HOST] == {
        "tls": {
            "insecure_skip_verify": False,
            "ca_file": "/etc/rancher/k3s/certs/registry.example.org_5000/ca.crt",
            "cert_file": "/etc/rancher/k3s/certs/registry.example.org_5000/client.crt",
            "key_file": "/etc/rancher/k3s/certs/registry.example.org_5000/client.key",
        },
        "auth": {"username": "pull", "password": "s3cret"},
    }
    assert raw["configs"][HOST] == {"tls": {"insecure_skip_verify": False}}  # the input is not changed


def test_render_has_a_placeholder_and_never_reads_the_passwords(tmp_path):
    class Unreadable(dict):
        def get(self, *args):
            raise AssertionError("render read a password")

    result = reg.k3s_registries({}, {HOST: {"username": "pull"}}, Unreadable(), render=True)
    assert result == {"configs": {HOST: {"auth": {"username": "pull", "password": reg.NOT_RENDERED}}}}


def test_files_to_copy_per_registry(tmp_path):
    files = reg.registry_files({HOST: pem_files(tmp_path), "*": {"ca_file": "/x/ca.pem"}})
    assert [(f["src"].rsplit("/", 1)[1], f["dest"]) for f in files] == [
        ("ca.pem", "/etc/rancher/k3s/certs/_/ca.crt"),
        ("ca.pem", "/etc/rancher/k3s/certs/registry.example.org_5000/ca.crt"),
        ("client.pem", "/etc/rancher/k3s/certs/registry.example.org_5000/client.crt"),
        ("client-key.pem", "/etc/rancher/k3s/certs/registry.example.org_5000/client.key"),
    ]
    assert reg.registry_files({}) == []


def test_valid_inputs_have_no_problems(tmp_path):
    configs = {HOST: {**pem_files(tmp_path), "insecure_skip_verify": False, "username": "pull"}, "*": {}}
    assert reg.registry_problems({"mirrors": {}}, configs, {HOST: "s3cret"}) == []
    assert reg.registry_problems({}, {}, {}) == []


def test_problems_name_the_field_and_the_fix(tmp_path):
    files = pem_files(tmp_path)
    configs = {
        "https://registry.example.org/v2": {},
        HOST: {"ca_file": str(tmp_path / "missing.pem"), "cert_file": files["cert_file"], "password": "x", "username": "pull"},
        "other.example.org": {"ca_file": "certs/ca.pem", "insecure_skip_verify": "yes"},
    }
    problems = reg.registry_problems({"mirrors": {}, "auths": {}}, configs, {"unknown.example.org": "x"})
    text = "\n".join(problems)
    assert "k3s_registries has auths" in text
    assert "k3s_registry_configs['https://registry.example.org/v2']: the key must be a registry host" in text
    assert f"k3s_registry_configs['{HOST}'] has password" in text and "(a password goes in the vault)" in text
    assert f"k3s_registry_configs['{HOST}'].ca_file: {tmp_path}/missing.pem does not exist on the controller" in text
    assert f"k3s_registry_configs['{HOST}']: cert_file and key_file are a pair" in text
    assert f"k3s_registry_configs['{HOST}'].username is set but the vault has no password for {HOST}" in text
    assert "vault_k3s_registry_passwords" in text
    assert "k3s_registry_configs['other.example.org'].ca_file is 'certs/ca.pem', a relative path" in text
    assert "k3s_registry_configs['other.example.org'].insecure_skip_verify must be true or false" in text
    assert "vault_k3s_registry_passwords has a password for 'unknown.example.org'" in text
    assert "'x'" not in text  # no password is ever repeated


def test_render_does_not_ask_for_passwords():
    assert reg.registry_problems({}, {HOST: {"username": "pull"}}, {}, check_passwords=False) == []
