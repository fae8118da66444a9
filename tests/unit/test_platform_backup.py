"""The backup CronJob and the one-off backup/restore Jobs the playbooks run, as built from the settings."""

from __future__ import annotations

import copy

import platform_backup as pb
import platform_stack as ps
import pytest
from platform_settings import SETTINGS


def settings(**backup) -> dict:
    out = copy.deepcopy(SETTINGS)
    out["backup"].update(backup)
    return out


def backup_file(s: dict) -> list[dict]:
    return ps.platform_objects(s).get("65-backup.yaml", [])


def test_the_cronjob_backs_up_every_database_and_data_bucket_to_both_stores() -> None:
    claim, cron = backup_file(settings())
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["storageClassName"] == SETTINGS["storage_class"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "create"
    assert {a.split("=", 1)[1] for a in args if a.startswith("--database=")} == set(ps.DATABASES)
    # Every bucket but the one the sets are written to.
    assert {a.split("=", 1)[1] for a in args if a.startswith("--bucket=")} == set(ps.BUCKETS) - {"mlops-backups"}
    assert [a for a in args if a.startswith("--store=")] == ["--store=s3://mlops-backups", "--store=/backups"]


def test_no_volume_means_the_bucket_alone_and_no_schedule_means_no_cronjob() -> None:
    (cron,) = backup_file(settings(volume_size=""))
    assert "--store=/backups" not in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert backup_file(settings(schedule="")) == []


def test_a_restore_job_reads_one_store_of_the_environment_and_is_named_by_its_run() -> None:
    job = pb.backup_job(SETTINGS, "restore", "20261129T101500Z", set_id="latest", store="/backups", replace=True)
    assert job["metadata"]["name"] == "mlops-backup-restore-20261129t101500z"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["restore", "--id=latest", "--store=/backups", "--replace"]
    assert job["spec"]["backoffLimit"] == 0
    with pytest.raises(ValueError, match=r"restore_store: 's3://elsewhere' is not a store of this environment"):
        pb.backup_job(SETTINGS, "restore", "20261129T101500Z", store="s3://elsewhere")


SITE = {"s3_url": "s3://site-backups/mlops-prod", "s3_endpoint": "https://s3.example.org", "s3_cidrs": ["10.43.100.50/32"]}


def test_a_site_s3_takes_the_sets_off_the_cluster_with_its_own_keys_and_one_way_out() -> None:
    claim, policy, cron = backup_file(settings(**SITE))
    assert claim["kind"] == "PersistentVolumeClaim"
    assert pb.stores(settings(**SITE)) == ["s3://site-backups/mlops-prod", "/backups"]
    box = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "--store=s3://site-backups/mlops-prod" in box["args"] and "--store=s3://mlops-backups" not in box["args"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["secretKeyRef"]["key"] for e in box["env"]}
    assert env["MLOPS_BACKUP_STORE_S3_ENDPOINT"] == "https://s3.example.org"
    assert env["MLOPS_BACKUP_STORE_ACCESS_KEY_ID"] == "backup-s3-access-key"
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlops-backup"
    assert policy["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "10.43.100.50/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"s3_url": "site-backups"}, r"platform_backup_s3_url 'site-backups' must be s3://<bucket>"),
        ({"s3_endpoint": ""}, r"platform_backup_s3_endpoint '' must be the S3 service's URL"),
        ({"s3_cidrs": []}, r"platform_backup_s3_cidrs \[\] must list the addresses"),
        ({"s3_cidrs": ["s3.example.org"]}, r"platform_backup_s3_cidrs .* must list the addresses"),
    ],
)
def test_a_site_s3_without_a_bucket_endpoint_or_addresses_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backup_file(settings(**(SITE | change)))


def test_the_site_s3_keys_come_from_the_vault_as_given_and_are_never_generated() -> None:
    import base64

    import platform_credentials as pc

    plain = pc.platform_secret(None, None, "s", "ns")["data"]
    assert not set(pc.SITE_KEYS) & set(plain)
    keys = {"backup-s3-access-key": "AKIA/EXAMPLE+1", "backup-s3-secret-key": "wJalr/XUtnFEMI+K7MDENG=="}
    data = pc.platform_secret(None, keys, "s", "ns")["data"]
    assert {k: base64.b64decode(data[k]).decode() for k in keys} == keys
