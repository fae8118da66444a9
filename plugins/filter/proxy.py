"""The HTTP proxy of K3s, containerd and the roles' downloads, built from the network plan.

- ``no_proxy(plan, node_addresses, extra)``: what must never go through the proxy, so nobody
  types it: loopback, every node's address, the pod and service ranges, the API's virtual
  address and endpoint, the cluster's DNS suffixes, then the site's own additions.
- ``proxy_env(no_proxy, http, https, password, lowercase)``: the variables, empty when no proxy
  is set. A password from the vault goes into the URLs' user part, percent-encoded.
- ``redact_proxy(env)``: the same variables with any password replaced, for render.
- ``env_file(env)``: the lines of a systemd EnvironmentFile.
- ``proxy_problems(http, https, extra)``: each setting's problem, field first, with its fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

LOOPBACK = ("localhost", "127.0.0.1", "::1")
# The cluster's own names: Services (<svc>.<ns>.svc) and the cluster domain.
CLUSTER_SUFFIXES = (".svc", ".cluster.local")
REDACTED = "NOT-RENDERED"
SCHEMES = ("http", "https", "socks5", "socks5h")


def _split(value: Any) -> list[str]:
    """A list or a comma-separated string (dual-stack ranges) as separate entries."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return [str(item).strip() for item in items if str(item or "").strip()]


def no_proxy(plan: dict[str, Any], node_addresses: Iterable[str] = (), extra: Iterable[str] = ()) -> list[str]:
    """Every destination inside the cluster and the node network, first seen first, no repeats."""
    entries = [
        *LOOPBACK,
        *_split(list(node_addresses)),
        *_split(plan.get("k3s_cluster_cidr")),
        *_split(plan.get("k3s_service_cidr")),
        *_split(plan.get("mlops_api_vip")),
        *CLUSTER_SUFFIXES,
        *_split(list(extra)),
    ]
    return list(dict.fromkeys(entries))


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    if not password or not parts.username or parts.password is not None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{quote(password, safe='')}@{host}"))


def proxy_env(no_proxy_list: Sequence[str], http: str = "", https: str = "", password: str = "", lowercase: bool = False) -> dict[str, str]:
    """HTTP_PROXY, HTTPS_PROXY and NO_PROXY (and their lower-case twins, which curl, apt and
    dnf read); nothing at all when neither proxy is set."""
    if not http and not https:
        return {}
    env = {}
    if http:
        env["HTTP_PROXY"] = _with_password(str(http), str(password or ""))
    if https:
        env["HTTPS_PROXY"] = _with_password(str(https), str(password or ""))
    env["NO_PROXY"] = ",".join(_split(list(no_proxy_list)))
    if lowercase:
        env.update({key.lower(): value for key, value in list(env.items())})
    return env


def _redact_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.username:
        return value
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{REDACTED}@{host}"))


def redact_proxy(env: dict[str, str]) -> dict[str, str]:
    """The variables with every URL's password (set or still to come from the vault) replaced."""
    return {key: value if key.upper() == "NO_PROXY" else _redact_url(str(value)) for key, value in env.items()}


def env_file(env: dict[str, str]) -> str:
    """KEY="value" lines as systemd reads them (quotes and backslashes escaped)."""
    lines = []
    for key, value in env.items():
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "".join(line + "\n" for line in lines)


def proxy_problems(http: Any = "", https: Any = "", extra: Any = ()) -> list[str]:
    """Each proxy setting's problem, naming the field and the fix (values are never repeated:
    a URL may hold a password)."""
    problems = []
    for field, value in (("mlops_http_proxy", http), ("mlops_https_proxy", https)):
        if value in ("", None):
            continue
        if not isinstance(value, str):
            problems.append(f"{field} must be a URL string, e.g. http://proxy.example.org:3128")
            continue
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in SCHEMES or not parts.hostname:
            problems.append(f"{field} is not a proxy URL: write it as http://[user@]host:port (schemes: {', '.join(SCHEMES)})")
        elif port is None:
            problems.append(f"{field} has no port: write it as http://[user@]{parts.hostname}:<port>, e.g. :3128")
    if isinstance(extra, str) or not isinstance(extra, (list, tuple)):
        problems.append("mlops_no_proxy_extra must be a list of hosts, domains (.example.org) or ranges (10.0.0.0/8)")
    else:
        for item in extra:
            if not isinstance(item, str) or not item.strip() or "," in item or " " in item.strip():
                problems.append(f"mlops_no_proxy_extra holds {item!r}: each entry is one host, domain or range, without commas or spaces")
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mlops_no_proxy_entries": no_proxy,
            "mlops_proxy_env": proxy_env,
            "mlops_redact_proxy": redact_proxy,
            "mlops_env_file": env_file,
            "mlops_proxy_problems": proxy_problems,
        }
