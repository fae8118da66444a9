"""Every password and token of an environment, and the files built from them.

``platform_credentials(existing, vault)`` returns the platform Secret's string data. Each
generated value is taken, in order, from the vault (``platform_credentials`` in an
ansible-vault file), from the Secret already on the cluster (a second run changes nothing and
never rotates a password a database already holds), or made here on first run. The connection
URLs, SeaweedFS's identity file, MLflow's auth config and Airflow's password file are derived,
so a password lives in exactly one key. The role hands the result to the cluster with no_log
and never writes it to disk.
"""

from __future__ import annotations

import base64
import configparser
import io
import json
import secrets
import string
from typing import Any

# Letters and digits only: every value also appears inside a URL or an ini file unquoted.
_ALPHABET = string.ascii_letters + string.digits
GENERATED = {
    "postgres-password": 32,
    "mlflow-db-password": 32,
    "airflow-db-password": 32,
    "mlops-db-password": 32,
    "s3-access-key": 20,
    "s3-secret-key": 40,
    "mlflow-admin-password": 24,
    "mlflow-flask-secret-key": 48,
    "airflow-admin-password": 24,
    "airflow-jwt-secret": 48,
    "airflow-api-secret-key": 48,
    "reload-token": 32,
    "grafana-admin-password": 24,
}

# Keys a site gives when it uses a service of its own (never generated): the backup store's S3.
SITE_KEYS = ("backup-s3-access-key", "backup-s3-secret-key")


def _token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _decode(data: dict[str, str] | None) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (data or {}).items()}


def _mlflow_auth_ini(c: dict[str, str]) -> str:
    config = configparser.ConfigParser()
    config["mlflow"] = {
        # Signed-in users read everything; only the admin (the platform's own clients) writes.
        "default_permission": "READ",
        "database_uri": f"postgresql+psycopg://mlflow:{c['mlflow-db-password']}@postgres:5432/mlflow_auth",
        "admin_username": "admin",
        "admin_password": c["mlflow-admin-password"],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    out = io.StringIO()
    config.write(out)
    return out.getvalue()


def credential_problems(vault: dict[str, Any]) -> list[str]:
    """What is wrong with the values a site put in the vault; empty when nothing is."""
    vault = {k: str(v) for k, v in (vault or {}).items()}
    problems = []
    unknown = sorted(set(vault) - set(GENERATED) - set(SITE_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; the keys are {', '.join([*GENERATED, *SITE_KEYS])}")
    # A site's own S3 issues its keys in its own alphabet; they go into no URL or ini file.
    bad = sorted(k for k, v in vault.items() if not v or (k not in SITE_KEYS and set(v) - set(_ALPHABET)))
    if bad:
        problems.append(f"{', '.join(bad)} must be letters and digits only (they go into URLs and ini files unquoted)")
    return problems


def platform_credentials(existing: dict[str, str] | None, vault: dict[str, str] | None = None) -> dict[str, str]:
    """existing: the Secret's ``data`` (base64) or None; vault: values the site set itself."""
    vault = {k: str(v) for k, v in (vault or {}).items()}
    if problems := credential_problems(vault):
        raise ValueError("platform_credentials: " + "; ".join(problems))
    current = _decode(existing)
    c = {key: vault.get(key) or current.get(key) or _token(length) for key, length in GENERATED.items()}
    # Fernet's own format (32 random bytes, URL-safe base64): generated once, kept like the rest.
    c["airflow-fernet-key"] = current.get("airflow-fernet-key") or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    s3_identity = {
        "identities": [
            {
                "name": "mlops",
                "credentials": [{"accessKey": c["s3-access-key"], "secretKey": c["s3-secret-key"]}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    s3_connection = {
        "conn_type": "aws",
        "login": c["s3-access-key"],
        "password": c["s3-secret-key"],
        "extra": {
            "endpoint_url": "http://seaweedfs:8333",
            "region_name": "us-east-1",
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        },
    }
    return {
        **c,
        **{key: vault[key] for key in SITE_KEYS if key in vault},
        "mlflow-db-url": f"postgresql+psycopg://mlflow:{c['mlflow-db-password']}@postgres:5432/mlflow",
        "mlflow-auth.ini": _mlflow_auth_ini(c),
        "airflow-db-url": f"postgresql+psycopg2://airflow:{c['airflow-db-password']}@postgres:5432/airflow",
        "airflow-passwords.json": json.dumps({"admin": c["airflow-admin-password"]}),
        "airflow-conn-s3": json.dumps(s3_connection),
        "inference-db-url": f"postgresql://mlops:{c['mlops-db-password']}@postgres:5432/mlops",
        "s3.json": json.dumps(s3_identity),
    }


def platform_secret(existing: dict[str, str] | None, vault: dict[str, str] | None, name: str, namespace: str) -> dict[str, Any]:
    """The Secret object itself, values base64-encoded as the API stores them (so an unchanged
    Secret compares equal and a second run reports no change)."""
    values = platform_credentials(existing, vault)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "mlops-metal", "app.kubernetes.io/managed-by": "mlops-metal"},
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())},
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_platform_secret": platform_secret}
