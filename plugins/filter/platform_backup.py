"""Backups of the platform's data as Kubernetes objects: the scheduled CronJob and the one-off
Jobs that playbooks/backup.yml and restore.yml run.

Every run is the ``mlops-backup`` tool of the backup image (services/images/backup): each
PostgreSQL database and each data bucket into one backup set with a manifest of checksums, in
the SeaweedFS bucket ``mlops-backups`` and, when the environment has a backup volume, on that
volume too (a claim on the environment's StorageClass: on K3s installs the NFS host, so a copy
survives the loss of SeaweedFS's own volume). A site with an S3 of its own gets its sets there
instead of the SeaweedFS bucket: off the cluster's storage altogether. Restores read one store
and check themselves.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from k8s_objects import Obj, empty_dir, env_list, meta, mount, plain, pod_spec, selector, template
from platform_stack import BUCKETS, DATABASES, PORTS, Platform

NAME = "mlops-backup"
UID = 10020
VOLUME_CLAIM = "mlops-backups"
VOLUME_PATH = "/backups"
S3_STORE = "s3://mlops-backups"
# The data a backup holds: every database, every bucket but the one the sets are written to.
BACKUP_BUCKETS = tuple(b for b in BUCKETS if b != "mlops-backups")


def stores(settings: dict[str, Any]) -> list[str]:
    """The site's own S3 when it has one (off the cluster's storage), else SeaweedFS's bucket; and the volume."""
    backup = settings["backup"]
    return [backup.get("s3_url") or S3_STORE] + ([VOLUME_PATH] if backup["volume_size"] else [])


def site_s3(backup: dict[str, Any]) -> tuple[str, int] | None:
    """(endpoint, port) of the site's S3 store, checked; None when the set goes to SeaweedFS."""
    url, endpoint, cidrs = backup.get("s3_url", ""), backup.get("s3_endpoint", ""), backup.get("s3_cidrs", [])
    if not url:
        return None
    parsed = urlparse(endpoint)
    problems = []
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        problems.append(f"platform_backup_s3_url {url!r} must be s3://<bucket>[/<prefix>]")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        problems.append(f"platform_backup_s3_endpoint {endpoint!r} must be the S3 service's URL, e.g. https://s3.example.org")
    try:
        if not cidrs or not all(ipaddress.ip_network(c, strict=False) for c in cidrs):
            raise ValueError
    except ValueError:
        problems.append(
            f"platform_backup_s3_cidrs {cidrs!r} must list the addresses the S3 endpoint answers on (e.g. [10.43.100.50/32]): "
            "the backup pods may reach nothing else outside the namespace"
        )
    if problems:
        raise ValueError("; ".join(problems))
    return endpoint, parsed.port or (443 if parsed.scheme == "https" else 80)


def _pod(p: Platform, args: list[str], restart: str = "Never") -> Obj:
    backup = p.s["backup"]
    env = env_list(
        {
            "PGHOST": "postgres",
            "PGPORT": str(PORTS["postgres"]),
            "PGUSER": "postgres",
            "MLOPS_BACKUP_S3_ENDPOINT": p.urls()["MLFLOW_S3_ENDPOINT_URL"],
        }
    ) + p.secret_env(PGPASSWORD="postgres-password", AWS_ACCESS_KEY_ID="s3-access-key", AWS_SECRET_ACCESS_KEY="s3-secret-key")
    if site_s3(backup):
        env += env_list({"MLOPS_BACKUP_STORE_S3_ENDPOINT": backup["s3_endpoint"]}) + p.secret_env(
            MLOPS_BACKUP_STORE_ACCESS_KEY_ID="backup-s3-access-key", MLOPS_BACKUP_STORE_SECRET_ACCESS_KEY="backup-s3-secret-key"
        )
    volumes = [empty_dir("scratch", backup["scratch_size"])]
    mounts = [mount("scratch", "/tmp")]
    if backup["volume_size"]:
        volumes.append({"name": "backups", "persistentVolumeClaim": {"claimName": VOLUME_CLAIM}})
        mounts.append(mount("backups", VOLUME_PATH))
    run = p.box("backup", "backup", "backup", args=args, env=env, mounts=mounts)
    return template(NAME, pod_spec([run], UID, volumes=volumes, restart_policy=restart))


def create_args(settings: dict[str, Any], set_id: str = "", label: str = "") -> list[str]:
    args = ["create", *(f"--database={d}" for d in DATABASES), *(f"--bucket={b}" for b in BACKUP_BUCKETS)]
    args += [f"--store={s}" for s in stores(settings)] + [f"--keep={settings['backup']['keep']}"]
    return args + ([f"--id={set_id}"] if set_id else []) + ([f"--label={label}"] if label else [])


def backup_objects(p: Platform) -> list[Obj]:
    """The backup volume and the scheduled backup; nothing when backups are off."""
    backup = p.s["backup"]
    if not backup["schedule"]:
        return []
    objects: list[Obj] = []
    if backup["volume_size"]:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                # Kept when the platform is deleted, like the databases' volumes.
                "metadata": meta(VOLUME_CLAIM, p.ns, annotations={"helm.sh/resource-policy": "keep"}),
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": backup["storage_class"] or p.s["storage_class"],
                    "resources": {"requests": {"storage": backup["volume_size"]}},
                },
            }
        )
    site = site_s3(backup)
    if site:
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": meta(f"{NAME}-site-s3-egress", p.ns),
                "spec": {
                    "podSelector": {"matchLabels": selector(NAME)},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"ipBlock": {"cidr": str(ipaddress.ip_network(c, strict=False))}} for c in backup["s3_cidrs"]],
                            "ports": [{"protocol": "TCP", "port": site[1]}],
                        }
                    ],
                },
            }
        )
    objects.append(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta(NAME, p.ns),
            "spec": {
                "schedule": backup["schedule"],
                "timeZone": "Etc/UTC",
                # A slow backup is never overlapped by the next one; a missed one runs late, once.
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": meta(NAME, None)["labels"]},
                    "spec": {"backoffLimit": 1, "template": _pod(p, create_args(p.s, label="scheduled"))},
                },
            },
        }
    )
    return objects


def backup_job(settings: dict[str, Any], command: str, run: str, set_id: str = "", store: str = "", replace: bool = False) -> Obj:
    """A one-off Job named after ``run`` (a time stamp: each run its own Job): ``create`` a set named
    ``set_id``, or ``restore``/``verify`` one (an id or latest) from ``store``."""
    settings = plain(settings)
    p = Platform(settings)
    if command == "create":
        args = create_args(settings, set_id=set_id)
    elif command in ("restore", "verify"):
        if store not in stores(settings):
            raise ValueError(f"restore_store: {store!r} is not a store of this environment; choose one of {', '.join(stores(settings))}")
        args = [command, f"--id={set_id or 'latest'}", f"--store={store}"] + (["--replace"] if replace else [])
    else:
        raise ValueError(f"backup job: unknown command {command!r}")
    name = f"{NAME}-{command}-{re.sub(r'[^a-z0-9-]', '', run.lower())}"[:63].rstrip("-")
    pod = _pod(p, args)
    pod["metadata"]["labels"]["job-name"] = name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(name, p.ns, {"app.kubernetes.io/component": command}),
        # The tool's own checks decide; a retry would only repeat a failure the log explains.
        "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 86400, "template": pod},
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"mlops_backup_job": backup_job, "mlops_backup_stores": lambda settings: stores(plain(settings))}
