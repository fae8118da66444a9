#!/usr/bin/env python3
"""Strictly validate a render directory (build/<env>/) before anything reaches a cluster.

    tools/validate_manifests.py build/prod [build/dev ...]

- every Kubernetes object in manifests/*.yaml (cluster layer) and platform/*.yaml (platform
  layer and services) is validated against the schemas of the
  Kubernetes minor that the pinned K3s ships (kubernetes-validate, strict: unknown fields
  are errors);
- custom resources (HelmChart, IPAddressPool, L2Advertisement) against the in-repo schemas
  in tools/schemas/; a kind with no schema anywhere is an error, never a warning;
- each node's etc/rancher/k3s/config.yaml against tools/schemas/k3s-config.json.
Exit 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def k3s_kubernetes_version() -> str:
    """The Kubernetes version of the pinned K3s release, from the k3s role's defaults."""
    defaults = yaml.safe_load((ROOT / "roles" / "k3s" / "defaults" / "main.yml").read_text())
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+\+k3s\d+", defaults["k3s_version"])
    if not match:
        raise SystemExit(f"k3s_version {defaults['k3s_version']!r} is not like v1.34.9+k3s1")
    return f"{match[1]}.{match[2]}.0"


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in SCHEMAS.glob("*-*.json"):
        if path.name == "k3s-config.json":
            continue
        schema = json.loads(path.read_text())
        props = schema["properties"]
        schemas[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return schemas


def validate_object(obj: Any, version: str, crds: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
        return ["not a Kubernetes object (no apiVersion/kind)"]
    key = (obj["apiVersion"], obj["kind"])
    if key in crds:
        validator = jsonschema.Draft7Validator(crds[key])
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {obj['kind']} ({obj['apiVersion']}) in Kubernetes {version} or tools/schemas/: add one"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path)) or '<root>'}: {exc.message}"]
    return []


def validate_dir(render_dir: Path, version: str) -> tuple[list[str], int]:
    problems: list[str] = []
    count = 0
    crds = crd_schemas()
    manifests = []
    for folder in ("manifests", "platform"):
        found = sorted((render_dir / folder).glob("*.yaml"))
        if not found:
            problems.append(f"{render_dir}: no {folder}/*.yaml (run playbooks/render.yml first)")
        manifests += found
    for path in manifests:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not YAML: {exc}")
            continue
        for index, obj in enumerate(docs):
            count += 1
            name = f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}" if isinstance(obj, dict) else f"#{index}"
            problems += [f"{path}: {name}: {p}" for p in validate_object(obj, version, crds)]
    config_schema = jsonschema.Draft7Validator(json.loads((SCHEMAS / "k3s-config.json").read_text()))
    configs = sorted(render_dir.glob("nodes/*/etc/rancher/k3s/config.yaml"))
    if not configs:
        problems.append(f"{render_dir}: no nodes/*/etc/rancher/k3s/config.yaml")
    for path in configs:
        count += 1
        config = yaml.safe_load(path.read_text())
        problems += [f"{path}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in config_schema.iter_errors(config)]
    return problems, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("render_dirs", nargs="+", type=Path)
    parser.add_argument("--kubernetes-version", default=None, help="default: the minor of the pinned k3s_version")
    args = parser.parse_args(argv)
    version = args.kubernetes_version or k3s_kubernetes_version()
    failed = False
    for render_dir in args.render_dirs:
        problems, count = validate_dir(render_dir, version)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{render_dir}: {count} objects and node configs checked against Kubernetes {version}: {len(problems)} problem(s)")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
