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
