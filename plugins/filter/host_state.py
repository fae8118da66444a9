"""What differs between a host's kernel state and what the common role wants.

The role reads the state once (one command, one file read) and runs the per-item
modules only for what these filters return, so a converged host costs two reads
instead of one module run per sysctl and per kernel module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_BLANK_OR_COMMENT = re.compile(r"^\s*([#;].*)?$")


def _normalise(value: object) -> str:
    # sysctl prints multi-valued keys tab-separated; a drop-in may use spaces.
    return "".join(str(value).split())


def _key_values(lines: Iterable[str]) -> dict[str, str]:
    pairs = {}
    for line in lines:
        if _BLANK_OR_COMMENT.match(line) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        pairs[key.strip().lstrip("-")] = _normalise(value)
    return pairs


def sysctls_to_set(wanted: Mapping[str, Any], live_lines: Iterable[str], drop_in_text: str = "") -> list[str]:
    """Keys whose live value (``sysctl key ...`` output) or drop-in line differs from ``wanted``."""
    live, persisted = _key_values(live_lines), _key_values(drop_in_text.splitlines())
    return [key for key, value in wanted.items() if live.get(key) != _normalise(value) or persisted.get(key) != _normalise(value)]


def modules_to_load(wanted: Iterable[str], proc_modules_text: str, boot_list_files: Iterable[str]) -> list[str]:
    """Modules not loaded now (per /proc/modules) or without their modules-load.d file.

    A module built into the kernel is never in /proc/modules, so it is always returned;
    community.general.modprobe then reports it unchanged.
    """
    loaded = {line.split(" ", 1)[0] for line in proc_modules_text.splitlines() if line}
    at_boot = {name.rsplit("/", 1)[-1].removesuffix(".conf") for name in boot_list_files}
    return [module for module in wanted if module not in loaded or module not in at_boot]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_sysctls_to_set": sysctls_to_set, "mlops_modules_to_load": modules_to_load}
