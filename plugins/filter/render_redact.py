"""What render writes in place of credentials: the shape of each ``auth`` block, never its values.

Render needs no vault (docs/secrets.md), so a value that comes from it is not even looked at:
Ansible templates nested values lazily, and the values under ``auth`` are never read here.
"""

from __future__ import annotations

from typing import Any

NOT_RENDERED = "(from the vault at deploy time; not rendered)"


def redact_auth(data: Any) -> Any:
    """A copy of data in which every value inside an ``auth`` mapping is replaced by NOT_RENDERED."""
    if isinstance(data, dict):
        return {key: _redacted(data[key]) if key == "auth" else redact_auth(data[key]) for key in data}
    if isinstance(data, list):
        return [redact_auth(item) for item in data]
    return data


def _redacted(auth: Any) -> Any:
    # Only the keys are read: the values may be vault references that render cannot resolve.
    return {key: NOT_RENDERED for key in auth} if isinstance(auth, dict) else NOT_RENDERED


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_redact_auth": redact_auth}
