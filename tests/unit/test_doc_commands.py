"""The commands README.md and docs/*.md print run as printed: each names playbooks, inventories,
make targets, variables and files that exist. Commands come from code blocks (indented or
fenced) and inline code spans; prose is not read."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = ("ansible-playbook", "ansible-vault", "ansible-inventory", "make", "cp", ".venv/bin/")
# Top-level folders of the repository: a command word under one of them is a path that must exist.
TOP = ("roles/", "playbooks/", "inventories/", "docs/", "tools/", "plugins/", "tests/", "services/", "molecule/", "site.yml")
# ansible-playbook options that take a value (the first other word is the playbook).
VALUED = {"-i", "--inventory", "-e", "--extra-vars", "-t", "--tags", "--skip-tags", "-l", "--limit", "--vault-password-file", "-c", "-u"}


def code_of(text: str) -> list[str]:
    """Every line of an indented or fenced code block, and every inline code span."""
    lines, fenced, prose = [], False, []
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            lines.append(line.strip())
        else:
            prose.append(line)
    spans = re.findall(r"`([^`\n]+)`", "\n".join(prose))
    return lines + spans


def commands_in(text: str) -> list[str]:
    found = []
    for code in code_of(text):
        code = re.split(r"\s+#\s", code)[0].strip()  # a trailing comment
        for part in re.split(r"\s*(?:&&|;|\|)\s*", code):
            # A bare tool name (`make`, `ansible-playbook`) is a mention, not a command.
            if part.startswith(COMMANDS) and len(part.split()) > 1:
                found.append(part)
    return found


def words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote inside prose-like code: split on blanks
        return command.split()


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", text, re.M))


def variables_read() -> set[str]:
    """Every option of every role's argument specs, and every name a playbook mentions."""
    names: set[str] = set()
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in (yaml.safe_load(spec.read_text())["argument_specs"] or {}).values():
            names |= set((entry or {}).get("options") or {})
    for playbook in [ROOT / "site.yml", *(ROOT / "playbooks").glob("*.yml")]:
        names |= set(re.findall(r"\b[a-z][a-z0-9_]+\b", playbook.read_text()))
    return names


def user_inventories(texts: list[str]) -> set[str]:
    """Inventories the docs tell the reader to make: `cp -r inventories/<example> inventories/<name>`."""
    made = set()
    for text in texts:
        for src, dst in re.findall(r"cp -r (inventories/[\w.-]+) (inventories/[\w.-]+)", text):
            if (ROOT / src).is_dir():
                made.add(dst)
    return made


def placeholder(word: str) -> bool:
    return any(c in word for c in "<>*$…{")


def check_path(word: str, user: set[str], where: str) -> list[str]:
    """A repository path must exist; a pytest node id (`file::test`) must name a test in that file."""
    path, _, test = word.split("#")[0].partition("::")
    path = path.rstrip("/,.:")
    if placeholder(path) or not path.startswith(TOP) or any(path == u or path.startswith(u + "/") for u in user):
        return []
    if not (ROOT / path).exists():
        return [f"{where}: {path} does not exist"]
    test = re.split(r"[^\w]", test)[0]
    if test and not re.search(rf"def {test}\b", (ROOT / path).read_text()):
        return [f"{where}: {path} has no test {test}"]
    return []


def check_command(command: str, user: set[str], targets: set[str], variables: set[str], where: str = "doc") -> list[str]:
    """What is wrong with one command, as messages naming it; [] when it runs as printed."""
    argv, problems = words(command), []
    where = f"{where}: `{command}`"
    if argv[0] == "make":
        for target in (a for a in argv[1:] if not a.startswith("-") and "=" not in a):
            if target not in targets:
                problems.append(f"{where}: no Makefile target {target}")
    if argv[0] == "ansible-playbook":
        positional, i = [], 1
        while i < len(argv):
            arg = argv[i]
            if arg in VALUED and i + 1 < len(argv):
                value = argv[i + 1]
                if arg in ("-i", "--inventory") and not placeholder(value):
                    inv = value.rstrip("/")
                    if not ((ROOT / inv).exists() or inv in user):
                        problems.append(f"{where}: inventory {inv} does not exist and no command makes it")
                if arg in ("-e", "--extra-vars") and "=" in value:
                    name = value.split("=", 1)[0]
                    if name not in variables:
                        problems.append(f"{where}: -e {name} is read by no role's argument specs and no playbook")
                i += 2
                continue
            if not arg.startswith("-"):
                positional.append(arg)
            i += 1
        if not positional:
            problems.append(f"{where}: names no playbook")
        elif not placeholder(positional[0]) and not (ROOT / positional[0]).is_file():
            problems.append(f"{where}: playbook {positional[0]} does not exist")
    for word in argv[1:]:
        for piece in word.split("="):
            problems += check_path(piece, user, where)
    return problems


def check_doc(text: str, user: set[str], targets: set[str], variables: set[str], where: str) -> list[str]:
    problems = []
    for command in commands_in(text):
        problems += check_command(command, user, targets, variables, where)
    # Paths named in code anywhere (not only in commands) must exist too.
    for code in code_of(text):
        for word in code.split():
            problems += [p for p in check_path(word.strip("()'\""), user, f"{where}: `{code}`") if p not in problems]
    return problems


@pytest.fixture(scope="module")
def context():
    texts = [p.read_text() for p in DOCS]
    return user_inventories(texts), makefile_targets(), variables_read()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_the_docs_names_things_that_exist(doc, context):
    user, targets, variables = context
    assert check_doc(doc.read_text(), user, targets, variables, str(doc.relative_to(ROOT))) == []


def test_the_docs_hold_commands_to_check(context):
    # The extraction must keep finding the commands, or the test above checks nothing.
    commands = [c for p in DOCS for c in commands_in(p.read_text())]
    assert sum(c.startswith("ansible-playbook") for c in commands) >= 20
    assert sum(c.startswith("make ") for c in commands) >= 10
    assert any(" -e " in c for c in commands)
    assert "inventories/mysite" in context[0]


def test_readme_says_how_the_tools_get_on_path():
    readme = (ROOT / "README.md").read_text()
    first_command = readme.index("ansible-playbook playbooks/")
    assert readme.index("export PATH=$PWD/.venv/bin:$PATH") < first_command


def test_broken_commands_are_caught(context):
    user, targets, variables = context
    broken = """
    ansible-playbook playbooks/nope.yml -i inventories/prod
    ansible-playbook site.yml -i inventories/elsewhere
    ansible-playbook site.yml -i inventories/prod -e no_such_variable=1
    make no-such-target
    .venv/bin/python tools/no_such_tool.py

Inline too: `ansible-playbook playbooks/verify.yml -i inventories/mysite` with `roles/nope/tasks/main.yml`,
and `tests/unit/test_preflight.py::test_that_was_renamed`.
"""
    problems = check_doc(broken, user, targets, variables, "broken.md")
    text = "\n".join(problems)
    assert "playbook playbooks/nope.yml does not exist" in text
    assert "inventory inventories/elsewhere does not exist and no command makes it" in text
    assert "-e no_such_variable is read by no role's argument specs and no playbook" in text
    assert "no Makefile target no-such-target" in text
    assert "tools/no_such_tool.py does not exist" in text
    assert "roles/nope/tasks/main.yml does not exist" in text
    assert "tests/unit/test_preflight.py has no test test_that_was_renamed" in text
    assert "playbooks/verify.yml" not in text  # inventories/mysite is made by a documented cp -r
    fine = "    ansible-playbook playbooks/render.yml -i inventories/dev -e platform_images_dir=$PWD/build/image-plan\n    make render\n"
    assert check_doc(fine, user, targets, variables, "fine.md") == []
