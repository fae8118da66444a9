#!/usr/bin/env python3
"""Generate each role's README.md from its meta/argument_specs.yml (the single source).

    tools/role_docs.py            write every roles/*/README.md
    tools/role_docs.py --check    exit 1 if a README is stale, a role has no spec, or a
                                  spec default disagrees with defaults/main.yml

Checking defaults against the spec keeps the two from drifting: defaults/main.yml is what
Ansible uses, the spec is what users read and what validates their input.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MARKUP = [
    (re.compile(r"C\(([^)]*)\)"), r"`\1`"),
    (re.compile(r"I\(([^)]*)\)"), r"*\1*"),
    (re.compile(r"B\(([^)]*)\)"), r"**\1**"),
]


def to_markdown(text: str) -> str:
    for pattern, repl in MARKUP:
        text = pattern.sub(repl, text)
    return text


def as_lines(value: Any) -> list[str]:
    if value is None:
        return []
    return [to_markdown(str(v)) for v in (value if isinstance(value, list) else [value])]


def render_default(value: Any) -> str:
    if isinstance(value, (dict, list)) and value:
        return "\n```yaml\n" + yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip() + "\n```"
    return f" `{yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`"


def render(role: Path, specs: dict[str, Any]) -> str:
    lines = [
        f"# Role `{role.name}`",
        "",
        "<!-- Generated from meta/argument_specs.yml by tools/role_docs.py: edit the spec, then run `make docs`. -->",
        "",
    ]
    for entry_name, entry in specs.items():
        if entry_name != "main":
            lines += [f"## Entry point `{entry_name}`", ""]
        lines += [to_markdown(entry.get("short_description", "")), ""]
        for paragraph in as_lines(entry.get("description")):
            lines += [paragraph, ""]
        options = entry.get("options") or {}
        if not options:
            lines += ["This role takes no variables.", ""]
            continue
        lines += ["## Variables", "", "| name | type | required | default |", "| --- | --- | --- | --- |"]
        for name, opt in options.items():
            kind = opt.get("type", "str") + (f" of {opt['elements']}" if opt.get("elements") else "")
            if "default" in opt:
                default = (
                    "see below" if isinstance(opt["default"], (dict, list)) and opt["default"] else render_default(opt["default"]).strip()
                )
            else:
                default = "-"
            lines.append(f"| [`{name}`](#{name}) | {kind} | {'yes' if opt.get('required') else 'no'} | {default} |")
        lines.append("")
        for name, opt in options.items():
            lines += [f"### {name}", ""]
            lines += as_lines(opt.get("description"))
            if opt.get("choices"):
                lines.append("Choices: " + ", ".join(f"`{c}`" for c in opt["choices"]) + ".")
            if "default" in opt:
                lines.append("")
                lines.append("Default:" + render_default(opt["default"]))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def check_defaults(role: Path, specs: dict[str, Any]) -> list[str]:
    problems = []
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    defaults = defaults or {}
    # A default may be documented by the entry point that reads it (e.g. backup, restore); every
    # entry point that lists it must agree with defaults/main.yml.
    entries = [(entry.get("options") or {}) for entry in specs.values()]
    options = {name: opt for opts in reversed(entries) for name, opt in opts.items()}
    for name, value in defaults.items():
        if name not in options:
            problems.append(f"{role.name}: {name} is in defaults/main.yml but not in meta/argument_specs.yml")
        elif any(opts[name].get("default") != value for opts in entries if name in opts):
            problems.append(f"{role.name}: default of {name} differs between defaults/main.yml and meta/argument_specs.yml")
    for name, opt in options.items():
        if "default" in opt and name not in defaults:
            problems.append(f"{role.name}: {name} has a spec default but is not in defaults/main.yml")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale READMEs and spec drift, write nothing")
    parser.add_argument("--roles", type=Path, default=ROOT / "roles")
    args = parser.parse_args(argv)
    problems: list[str] = []
    for role in sorted(p for p in args.roles.iterdir() if p.is_dir()):
        spec_file = role / "meta" / "argument_specs.yml"
        if not spec_file.exists():
            problems.append(f"{role.name}: no meta/argument_specs.yml (every role needs one)")
            continue
        specs = (yaml.safe_load(spec_file.read_text()) or {}).get("argument_specs") or {}
        problems += check_defaults(role, specs)
        wanted = render(role, specs)
        readme = role / "README.md"
        if readme.exists() and readme.read_text() == wanted:
            continue
        if args.check:
            problems.append(f"{role.name}: README.md is stale; run `make docs`")
        else:
            readme.write_text(wanted)
            print(f"wrote {readme.relative_to(args.roles.parent)}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
