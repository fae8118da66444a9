"""K3s's /etc/rancher/k3s/registries.yaml built as data, with its certificates and credentials.

Inputs (roles/k3s, docs/cluster.md "Private registries"):

- ``k3s_registries``: registries.yaml as K3s documents it (``mirrors``, ``configs``), kept as is.
- ``k3s_registry_configs``: per registry host (as in image references, port included), the
  TLS files on the controller (``ca_file``, ``cert_file``, ``key_file``), ``insecure_skip_verify``
  and the pull account's ``username``. The files go to ``/etc/rancher/k3s/certs/<host>/``.
- ``k3s_registry_passwords``: per registry host, that account's password, from the vault only.

``k3s_registries(raw, configs, passwords, render)`` merges them into the file's dict: tls paths
on the node and ``auth``. In render the password is a placeholder and never read.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

CERTS_DIR = "/etc/rancher/k3s/certs"
# Each TLS key of a registries.yaml config and the name its file gets on the node.
TLS_FILES = {"ca_file": "ca.crt", "cert_file": "client.crt", "key_file": "client.key"}
CONFIG_KEYS = (*TLS_FILES, "insecure_skip_verify", "username")
NOT_RENDERED = "(from the vault at deploy time; not rendered)"
# A registry host as containerd matches it: name or address, optional port; "*" is K3s's default.
HOST = re.compile(r"^(\*|\[[0-9A-Fa-f:.]+\](:\d{1,5})?|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?)$")


def cert_dir(host: str) -> str:
    """The node folder of one registry's files; a port's colon and "*" become "_"."""
    return f"{CERTS_DIR}/{re.sub(r'[^A-Za-z0-9._-]', '_', host)}"


def registry_files(configs: dict[str, Any]) -> list[dict[str, str]]:
    """The files to copy from the controller: src, dest, owner-only modes (K3s runs as root)."""
    files = []
    for host in sorted(configs or {}):
        for key, name in TLS_FILES.items():
            if (configs[host] or {}).get(key):
                files.append({"host": host, "src": str(configs[host][key]), "dest": f"{cert_dir(host)}/{name}"})
    return files


def k3s_registries(
    raw: dict[str, Any], configs: dict[str, Any], passwords: dict[str, Any] | None = None, render: bool = False
) -> dict[str, Any]:
    """registries.yaml: ``raw`` with each configured host's tls paths and auth merged in."""
    result: dict[str, Any] = {key: copy.copy(value) for key, value in (raw or {}).items()}
    merged = dict(result.get("configs") or {})
    for host in sorted(configs or {}):
        config = configs[host] or {}
        entry = dict(merged.get(host) or {})
        tls = dict(entry.get("tls") or {})
        tls.update({key: f"{cert_dir(host)}/{name}" for key, name in TLS_FILES.items() if config.get(key)})
        if "insecure_skip_verify" in config:
            tls["insecure_skip_verify"] = bool(config["insecure_skip_verify"])
        if tls:
            entry["tls"] = tls
        if config.get("username"):
            # Rendering never reads the password: it comes from the vault, which render does not load.
            password = NOT_RENDERED if render else str((passwords or {}).get(host) or "")
            entry["auth"] = {"username": str(config["username"]), "password": password}
        merged[host] = entry
    if merged:
        result["configs"] = merged
    return result


def _file_problems(field: str, path: Any) -> list[str]:
    if not isinstance(path, str) or not path:
        return [f"{field} must be a path on the controller, e.g. '{{{{ inventory_dir }}}}/files/registry-ca.crt'"]
    if not os.path.isabs(path):
        return [f"{field} is {path!r}, a relative path: write it absolute, e.g. '{{{{ inventory_dir }}}}/{path}'"]
    if not os.path.isfile(path):
        return [f"{field}: {path} does not exist on the controller: put the PEM file there or correct the path"]
    return []


def registry_problems(raw: Any, configs: Any, passwords: Any = None, check_passwords: bool = True) -> list[str]:
    """Each problem of the registry inputs, naming the field and the fix; passwords are only
    counted, never repeated."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        return ["k3s_registries must be a mapping with mirrors and/or configs (K3s's registries.yaml)"]
    unknown = sorted(set(raw) - {"mirrors", "configs"})
    if unknown:
        problems.append(f"k3s_registries has {', '.join(map(str, unknown))}: registries.yaml knows only mirrors and configs")
    if not isinstance(configs, dict):
        return [*problems, "k3s_registry_configs must be a mapping of registry host to its settings"]
    passwords = passwords or {}
    if not isinstance(passwords, dict):
        return [*problems, "k3s_registry_passwords (vault_k3s_registry_passwords) must be a mapping of registry host to password"]
    for host, config in configs.items():
        field = f"k3s_registry_configs[{host!r}]"
        if not isinstance(host, str) or not HOST.match(host):
            problems.append(
                f"{field}: the key must be a registry host as image references name it (registry.example.org:5000), no https:// or path"
            )
            continue
        if not isinstance(config, dict):
            problems.append(f"{field} must be a mapping of {', '.join(CONFIG_KEYS)}")
            continue
        extra = sorted(set(config) - set(CONFIG_KEYS))
        if extra:
            problems.append(
                f"{field} has {', '.join(map(str, extra))}: the keys are {', '.join(CONFIG_KEYS)} (a password goes in the vault)"
            )
        for key in TLS_FILES:
            if key in config:
                problems += _file_problems(f"{field}.{key}", config[key])
        if bool(config.get("cert_file")) != bool(config.get("key_file")):
            problems.append(f"{field}: cert_file and key_file are a pair (the client certificate and its key): set both or neither")
        if "insecure_skip_verify" in config and not isinstance(config["insecure_skip_verify"], bool):
            problems.append(f"{field}.insecure_skip_verify must be true or false")
        username = config.get("username")
        if username is not None and (not isinstance(username, str) or not username):
            problems.append(f"{field}.username must be the pull account's name")
        elif username and check_passwords and not passwords.get(host):
            problems.append(
                f"{field}.username is set but the vault has no password for {host}: add it to inventories/<env>/vault.yml as "
                f"vault_k3s_registry_passwords: {{'{host}': <password>}} (docs/secrets.md)"
            )
    for host in passwords:
        config = configs.get(host)
        if not (isinstance(config, dict) and config.get("username")):
            problems.append(
                f"vault_k3s_registry_passwords has a password for {host!r} but k3s_registry_configs[{host!r}] names no username: "
                "add the username, or remove the password from the vault"
            )
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_k3s_registries": k3s_registries,
            "mlops_k3s_registry_files": registry_files,
            "mlops_k3s_registry_problems": registry_problems,
        }
