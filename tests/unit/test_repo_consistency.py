"""Repository-wide promises: pins agree, docs are fresh, example plans are sound, no secrets."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import network_plan
import preflight
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# As the Makefile globs them: inventories/.shared holds what every environment links to.
INVENTORIES = sorted(p.name for p in (ROOT / "inventories").iterdir() if p.is_dir() and not p.name.startswith("."))
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
EXAMPLE_VAULT_PASSWORD = "example-only-not-a-secret"  # documented in docs/secrets.md; guards placeholders only


def installed_collection_version(fqcn: str) -> str:
    import ansible_collections

    namespace, name = fqcn.split(".")
    for base in ansible_collections.__path__:
        manifest = Path(base) / namespace / name / "MANIFEST.json"
        if manifest.exists():
            return json.loads(manifest.read_text())["collection_info"]["version"]
    raise AssertionError(f"{fqcn} is not installed")


def test_requirements_yml_matches_the_pinned_ansible_package():
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    assert wanted, "requirements.yml lists no collections"
    for entry in wanted:
        assert str(entry["version"]) == installed_collection_version(entry["name"]), entry["name"]


def test_every_python_tool_is_pinned_exactly():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    for line in filter(None, lines):
        assert re.fullmatch(r"[A-Za-z0-9_.\[\]-]+==[0-9][0-9A-Za-z.]*", line), f"not pinned exactly: {line}"


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_spec_and_readme(role):
    base = ROOT / "roles" / role
    for rel in ("meta/argument_specs.yml", "meta/main.yml", "README.md"):
        assert (base / rel).is_file(), f"{role} lacks {rel}"


# geerlingguy's pattern: the distribution's file, else the OS family's, else vars/main.yml. Without
# facts (render) the family is the inventory's mlops_os_family.
OS_VARS_FILES = [
    "{{ ansible_facts['distribution'] | default('') }}.yml",
    "{{ ansible_facts['os_family'] | default(mlops_os_family | default('')) }}.yml",
    "main.yml",
]


def role_tasks(role: str) -> list[dict]:
    def flatten(tasks):
        for task in tasks or []:
            yield task
            for key in ("block", "rescue", "always"):
                yield from flatten(task.get(key))

    return [t for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")) for t in flatten(yaml.safe_load(path.read_text()))]


def vars_file(role: str, name: str) -> dict:
    path = ROOT / "roles" / role / "vars" / name
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def os_vars(role: str, distribution: str, family: str) -> dict:
    """The variables a host of that OS gets: vars/main.yml, then the first file the pattern finds."""
    found = next((n for n in (f"{distribution}.yml", f"{family}.yml", "main.yml") if (ROOT / "roles" / role / "vars" / n).is_file()), None)
    return {**vars_file(role, "main.yml"), **(vars_file(role, found) if found else {})}


def supported_os_names() -> set[str]:
    supported = yaml.safe_load((ROOT / "roles/preflight/defaults/main.yml").read_text())["preflight_supported_os"]
    return {s["family"] for s in supported} | {d for s in supported for d in s["distributions"]}


@pytest.mark.parametrize("role", ROLES)
def test_os_vars_follow_one_pattern(role):
    """Per-OS vars exist only where an OS differs, named so the one loading pattern reaches them."""
    per_os = sorted(p.name for p in (ROOT / "roles" / role / "vars").glob("*.yml") if p.name != "main.yml")
    # The vault loader of mlops_defaults reads the inventory's secrets, not per-OS values.
    vault_loader = {"file": "{{ mlops_vault_file }}"}
    loaders = [t for t in role_tasks(role) if {"ansible.builtin.include_vars", "include_vars"} & set(t)]
    loaders = [t for t in loaders if t.get("ansible.builtin.include_vars", t.get("include_vars")) != vault_loader]
    if not per_os:
        assert loaders == [], f"{role} loads variables by OS but has no per-OS vars file"
        return
    assert len(loaders) == 1, f"{role} must load its per-OS vars exactly once, with the pattern below"
    (task,) = loaders
    name = f"__{role}_os_vars"
    assert task.get("ansible.builtin.include_vars") == f"{{{{ lookup('ansible.builtin.first_found', {name}) }}}}", role
    assert task["vars"] == {name: {"files": OS_VARS_FILES, "paths": ["{{ role_path }}/vars"]}}, role
    unreachable = {n.removesuffix(".yml") for n in per_os} - supported_os_names()
    assert not unreachable, f"{role}: vars/{unreachable} is named after no supported distribution or OS family"
    main = vars_file(role, "main.yml")
    contents = [vars_file(role, n) for n in per_os]
    for file_name, content in zip(per_os, contents, strict=True):
        same = sorted(k for k, v in content.items() if k in main and main[k] == v)
        assert not same, f"{role}: vars/{file_name} repeats {same} from vars/main.yml"
        assert contents.count(content) == 1, f"{role}: vars/{file_name} has a twin; identical per-OS files belong in vars/main.yml"


def test_role_readmes_are_generated_and_current():
    result = subprocess.run([sys.executable, "tools/role_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stale_readme_and_spec_drift_are_caught(tmp_path):
    roles = tmp_path / "roles"
    shutil.copytree(ROOT / "roles" / "preflight", roles / "preflight")
    spec_file = roles / "preflight" / "meta" / "argument_specs.yml"
    spec_file.write_text(spec_file.read_text().replace("Validate the network plan", "Check the network plan"))
    defaults = roles / "preflight" / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace("preflight_swap_fatal: false", "preflight_swap_fatal: true"))
    result = subprocess.run(
        [sys.executable, "tools/role_docs.py", "--check", "--roles", str(roles)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "README.md is stale" in result.stderr
    assert "default of preflight_swap_fatal differs" in result.stderr


def inventory(env: str) -> dict:
    out = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", f"inventories/{env}", "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize("env", INVENTORIES)
def test_example_inventory_plans_are_sound(env):
    """Each shipped plan passes preflight's plan checks, with node addresses from ansible_host."""
    data = inventory(env)
    hostvars = data["_meta"]["hostvars"]
    any_host = next(iter(hostvars.values()))
    raw = {field: any_host.get(field) for field in network_plan.PLAN_FIELDS}
    plan, problems = network_plan.resolve_plan(raw)
    assert [p for p in problems if p["severity"] == "error"] == []
    reports = []
    for name, hv in hostvars.items():
        address = hv.get("ansible_host")
        if address and not ipaddress.ip_address(address).is_loopback:
            # The example node networks are /24s: the pool's layer2 check needs the subnet.
            reports.append(
                {"name": name, "addresses": [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": address, "prefixlen": 24}]}]}
            )
    problems = preflight.check_host_networks(plan, reports, [])
    # Several servers need an API address in their subnet that no host uses.
    api = {
        "servers": sorted(data.get("k3s_server", {}).get("hosts", [])),
        "endpoint": any_host.get("k3s_api_endpoint"),
        "host_addresses": {name: hv["ansible_host"] for name, hv in hostvars.items() if hv.get("ansible_host")},
    }
    problems += preflight.check_api_address(plan, reports, api, [])
    assert problems == [] if reports else True, problems


def test_no_inventory_file_is_copied_between_environments():
    """What environments share lives once, in inventories/.shared, linked from each environment."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "inventories").rglob("*")):
        if path.is_symlink():
            assert path.resolve().parent == ROOT / "inventories" / ".shared", f"{path} links outside inventories/.shared"
        elif path.is_file():
            text = path.read_text()
            assert text not in seen, f"{path} repeats {seen.get(text)}: move it to inventories/.shared and link it"
            seen[text] = path


def test_no_plugin_module_is_longer_than_500_lines():
    for path in (ROOT / "plugins").rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, f"{path} is longer than 500 lines: split it by job"


def test_k3s_ports_are_written_only_in_the_port_table():
    """Firewall needs, preflight and NetworkPolicies take K3s's ports from plugins/filter/k3s_ports.py."""
    ports = re.compile(r"\b(2379|2380|7946|8472|10250|51820|51821)\b")
    for path in sorted((ROOT / "roles").rglob("*.yml")) + sorted((ROOT / "playbooks").rglob("*.yml")):
        assert not ports.search(path.read_text()), f"{path} writes a K3s port: take it from mlops_k3s_ports"


def test_groups_are_populated_in_every_real_inventory():
    # local is the controller alone; e2e is the live tier's single node (no agents, local-path storage).
    for env in (e for e in INVENTORIES if e not in ("local", "e2e")):
        groups = set(inventory(env)) - {"_meta"}
        assert {"k3s_server", "k3s_agent", "k3s_cluster", "nfs_server"} <= groups, env


def test_prod_has_ha_servers_agents_and_storage():
    data = inventory("prod")
    assert len(data["k3s_server"]["hosts"]) >= 3 and len(data["k3s_server"]["hosts"]) % 2 == 1
    assert len(data["k3s_agent"]["hosts"]) >= 2
    assert len(data["nfs_server"]["hosts"]) == 1


SECRET_KEY = re.compile(r"(password|passwd|secret|token|private_key|access_key)", re.I)


def literal_secrets(node, where: str = "") -> list[str]:
    """Keys that look like secrets but hold a literal value instead of a vault reference."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if SECRET_KEY.search(str(key)) and isinstance(value, str) and not value.strip().startswith("{{"):
                found.append(f"{where}{key}")
            found += literal_secrets(value, f"{where}{key}.")
    elif isinstance(node, list):
        for item in node:
            found += literal_secrets(item, where)
    return found


def test_secret_detector_flags_literals_and_allows_vault_references():
    assert literal_secrets({"db": {"postgres_password": "hunter2", "k3s_token": "{{ vault_k3s_token }}"}}) == ["db.postgres_password"]


def test_no_plaintext_secrets_in_inventories():
    for path in (ROOT / "inventories").rglob("*.y*ml"):
        text = path.read_text()
        if text.startswith("$ANSIBLE_VAULT"):
            continue
        assert "vault" not in path.name, f"{path} looks like a vault file but is not encrypted"
        assert literal_secrets(yaml.safe_load(text)) == [], f"{path}: reference vault_ variables instead"


def vault_names_read() -> set[str]:
    """Every vault_ name something reads: the shared wiring file, role defaults and specs, playbooks."""
    sources = [ROOT / "inventories/.shared/secrets.yml", *(ROOT / "roles").glob("*/defaults/main.yml")]
    sources += [*(ROOT / "roles").glob("*/meta/argument_specs.yml"), *(ROOT / "playbooks").glob("*.yml")]
    return {name for path in sources for name in re.findall(r"\b(vault_[a-z0-9_]+)", path.read_text())}


def example_vault(tmp_path: Path) -> dict:
    example = ROOT / "docs" / "examples" / "vault.yml"
    assert example.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    password = tmp_path / "pw"
    password.write_text(EXAMPLE_VAULT_PASSWORD)
    plain = subprocess.run(
        [str(BIN / "ansible-vault"), "view", "--vault-password-file", str(password), str(example)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(plain)


def test_example_vault_holds_exactly_what_the_layers_read_as_valid_placeholders(tmp_path):
    import platform_credentials

    values = example_vault(tmp_path)
    read = vault_names_read()
    unread, unshown = sorted(set(values) - read), sorted(read - set(values))
    assert (unread, unshown) == ([], []), f"in the example but read by nothing: {unread}; read but not shown in it: {unshown}"
    # Placeholders, but values the roles accept: a copied example deploys, then gets replaced.
    credentials = values["vault_platform_credentials"]
    platform_credentials.platform_credentials(None, credentials)
    strings = [values["vault_k3s_token"], values["vault_api_vip_auth_pass"], *credentials.values()]
    assert all(isinstance(v, str) and v.startswith("Replace") for v in strings), strings


def test_every_vault_name_is_documented_in_secrets_md():
    text = (ROOT / "docs/secrets.md").read_text()
    assert {n for n in vault_names_read() if n not in text} == set()


def test_the_vault_wiring_is_linked_from_every_example_environment():
    for env in ("dev", "staging", "prod"):
        link = ROOT / "inventories" / env / "group_vars/all/secrets.yml"
        assert link.is_symlink() and link.resolve() == ROOT / "inventories/.shared/secrets.yml", env


def test_vm_image_preinstalls_every_debian_package_the_host_roles_declare():
    # The VM image bakes the roles' packages in (an apt install under emulation costs minutes);
    # a package added to a role but not to the image would go untested by the image build.
    script = (ROOT / "molecule/testhosts/build-vm-image.sh").read_text()
    included = set(re.search(r"--include=(\S+)", script).group(1).split(","))
    declared = set()
    for role in ("common", "firewall", "iscsi", "nfs_server", "api_vip"):
        variables = os_vars(role, "Debian", "Debian")
        declared |= {p for key, value in variables.items() if key.endswith("_packages") for p in value}
    assert declared and declared <= included, f"add to build-vm-image.sh --include: {sorted(declared - included)}"


def test_testinfra_waits_for_the_vms_as_long_as_ansible_does():
    # testinfra ignores Ansible's `timeout` and passes ConnectTimeout=10 unless the ssh args name
    # one; an emulated sshd under load took longer than that to answer (verify failed in CI).
    from testinfra.backend.ssh import SshBackend

    shared = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())
    ssh_args = shared["provisioner"]["config_options"]["ssh_connection"]["ssh_args"]
    command, _ = SshBackend("ssh://vm", ssh_extra_args=ssh_args)._build_ssh_command("true")
    # ssh keeps the first value it is given for an option
    testinfra_wait = int(re.search(r"ConnectTimeout=(\d+)", " ".join(command)).group(1))
    for scenario in sorted((ROOT / "molecule").glob("*/molecule.yml")):
        defaults = yaml.safe_load(scenario.read_text())["provisioner"].get("config_options", {}).get("defaults", {})
        assert testinfra_wait >= int(defaults.get("timeout", 10)), scenario
