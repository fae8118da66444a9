"""mlops-backup (services/images/backup): backup -> wipe -> restore on a real loopback stack.

The stack here is its own (PostgreSQL, SeaweedFS, MLflow on other free ports), because the test
wipes its storage: after the restore, the registry and @champion are back, every table has the
rows and content it had, every object its content, and the API serves the same predictions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from mlops_dev.stack import PG_BIN, Ports, Stack

from mlops_services import registry
from mlops_services.contract import FEATURES
from mlops_services.model import TrainingParams
from mlops_services.serving.inference_log import wait_drained
from mlops_services.settings import Settings

from .served import promote_first_model, serve

TOOL = Path(__file__).resolve().parents[1] / "images" / "backup" / "mlops_backup.py"
spec = importlib.util.spec_from_file_location("mlops_backup", TOOL)
mlops_backup = importlib.util.module_from_spec(spec)
sys.modules["mlops_backup"] = mlops_backup  # dataclasses look their module up there
spec.loader.exec_module(mlops_backup)

DATABASES = ("mlflow", "mlops")
BACKUP_BUCKET = "mlops-backups"


# ------------------------------------------------------------------------------ units
def test_retention_keeps_the_newest_complete_sets_and_drops_older_partial_ones(tmp_path: Path) -> None:
    store = mlops_backup.DirStore(str(tmp_path))
    for set_id, complete in [
        ("20260101T000000Z", True),
        ("20260102T000000Z", False),  # interrupted, older than a complete one: dropped
        ("20260103T000000Z", True),
        ("20260104T000000Z", True),
        ("20260105T000000Z", False),  # maybe still being written: kept
    ]:
        (tmp_path / set_id).mkdir()
        if complete:
            (tmp_path / set_id / "manifest.json").write_text("{}")
    (tmp_path / "not-a-set").mkdir()
    assert mlops_backup.prune(store, keep=2) == ["20260101T000000Z", "20260102T000000Z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20260103T000000Z", "20260104T000000Z", "20260105T000000Z", "not-a-set"]


def test_a_directory_store_refuses_keys_that_leave_it(tmp_path: Path) -> None:
    store = mlops_backup.DirStore(str(tmp_path / "store"))
    with pytest.raises(mlops_backup.BackupError, match="not a path inside"):
        store.put("set/s3/bucket/../../../../escape", tmp_path / "x")


def test_table_comparison_names_each_difference() -> None:
    want = {"public.a": {"rows": 2, "checksum": "x"}, "public.b": {"rows": 1, "checksum": "y"}, "public.c": {"rows": 0, "checksum": ""}}
    got = {"public.a": {"rows": 1, "checksum": "x"}, "public.b": {"rows": 1, "checksum": "z"}, "public.d": {"rows": 0, "checksum": ""}}
    assert mlops_backup.compare_tables(want, got) == [
        "public.c: missing",
        "public.d: not in the backup",
        "public.a: 1 rows, backup has 2",
        "public.b: same 1 rows but different content",
    ]


def test_set_ids_must_sort_by_age() -> None:
    with pytest.raises(mlops_backup.BackupError, match="--id 'nightly'"):
        mlops_backup.create(mlops_backup.Options([], [], [], Path("/nonexistent")), "nightly", keep=1)


# ------------------------------------------------------------------------------ round trip
@pytest.fixture(scope="module")
def own_stack():
    state = Path(tempfile.mkdtemp(prefix="mlops-backup-stack-"))
    state.chmod(0o755)
    running = Stack(state, Ports.free())
    try:
        running.up()
        yield running
    finally:
        running.down()
        shutil.rmtree(state, ignore_errors=True)


def tool(stack: Stack, *args: str, check: bool = True, small_file: int | None = None) -> dict:
    """Runs mlops-backup as the CronJob does, against the stack; returns its result line.
    small_file: the size above which files take the one-at-a-time path (both paths get tested)."""
    c = stack.credentials()
    env = {
        **({"MLOPS_BACKUP_SMALL_FILE": str(small_file)} if small_file is not None else {}),
        **stack.environment(),
        "PATH": "/usr/bin:/bin",
        "PGHOST": stack.host,
        "PGPORT": str(stack.ports.postgres),
        "PGUSER": "mlops",  # the stack's superuser
        "PGPASSWORD": c["pg_password"],
        "MLOPS_BACKUP_S3_ENDPOINT": f"http://{stack.host}:{stack.ports.s3}",
        # The S3 store as a site's own S3 is given (its own endpoint and keys; the same server here).
        "MLOPS_BACKUP_STORE_S3_ENDPOINT": f"http://{stack.host}:{stack.ports.s3}",
        "MLOPS_BACKUP_STORE_ACCESS_KEY_ID": c["s3_access_key"],
        "MLOPS_BACKUP_STORE_SECRET_ACCESS_KEY": c["s3_secret_key"],
        "MLOPS_BACKUP_PG_BIN": str(PG_BIN),
    }
    done = subprocess.run([sys.executable, str(TOOL), *args], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith(mlops_backup.RESULT_PREFIX)]
    assert lines, f"no result line\n{done.stdout}\n{done.stderr}"
    result = json.loads(lines[-1][len(mlops_backup.RESULT_PREFIX) :])
    if check:
        assert done.returncode == 0 and result["ok"], f"{done.stdout}\n{done.stderr}"
    else:
        assert done.returncode != 0 and not result["ok"], done.stdout
    return result


def table_rows(stack: Stack, database: str) -> dict[str, int]:
    with psycopg.connect(
        host=stack.host, port=stack.ports.postgres, user="mlops", password=stack.credentials()["pg_password"], dbname=database
    ) as conn:
        tables = conn.execute(mlops_backup.TABLES).fetchall()
        return {f"{s}.{t}": conn.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0] for s, t in tables}


def objects(stack: Stack, bucket: str) -> dict[str, str]:
    """Each object's key and the MD5 of its content (ETags of multipart uploads are not MD5s)."""
    client = stack._s3_client()
    return {
        item["Key"]: hashlib.md5(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read(), usedforsecurity=False).hexdigest()
        for item in mlops_backup.list_keys(client, bucket)
    }


def databases(stack: Stack) -> set[str]:
    with psycopg.connect(
        host=stack.host, port=stack.ports.postgres, user="mlops", password=stack.credentials()["pg_password"], dbname="postgres"
    ) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def test_backup_wipe_restore_loses_nothing(own_stack: Stack, monkeypatch, tmp_path: Path) -> None:
    for key, value in own_stack.environment().items():
        monkeypatch.setenv(key, value)
    settings = Settings(
        model_name="house-price",
        experiment="house-price",
        data_bucket="mlops-data",
        spool_dir=tmp_path / "spool",
        reload_token="token",
        log_flush_seconds=0.1,
        model_poll_seconds=0,
    )
    _, frame = promote_first_model(settings, 3_000, TrainingParams(n_estimators=8, num_leaves=8, learning_rate=0.2))
    houses = frame[list(FEATURES)].head(25).to_dict(orient="records")
    with serve(settings) as (client, app):
        before = client.post("/predict", json=houses).json()
        assert wait_drained(app.state.inference_log)
    champion = registry.client_for(settings).get_model_version_by_alias(settings.model_name, "champion")
    rows = {db: table_rows(own_stack, db) for db in DATABASES}
    assert rows["mlflow"]["public.model_versions"] >= 1 and sum(rows["mlops"].values()) >= 25  # the inference log
    buckets = ("mlflow-artifacts", "mlops-data")
    content = {b: objects(own_stack, b) for b in buckets}
    assert all(content.values())
    own_stack._s3_client().create_bucket(Bucket=BACKUP_BUCKET)
    store = tmp_path / "store"
    common = [*(f"--database={d}" for d in DATABASES), *(f"--bucket={b}" for b in buckets)]
    stores = [f"--store=s3://{BACKUP_BUCKET}/sets", f"--store={store}"]

    # The first set through the scratch folder one file at a time, read back in memory in parallel;
    # the second the other way round (the restore below reads it one file at a time).
    first = tool(own_stack, "create", *common, *stores, "--keep=1", "--label=first", small_file=1024)
    assert tool(own_stack, "verify", f"--store={store}", f"--id={first['id']}")["files"] == first["files"]
    second = tool(own_stack, "create", *common, *stores, "--keep=1")
    # Retention: one complete set kept in each store, the older one removed from both.
    assert second["pruned"] == {f"s3://{BACKUP_BUCKET}/sets": [first["id"]], str(store): [first["id"]]}
    listed = tool(own_stack, "list", *stores)
    assert listed[f"s3://{BACKUP_BUCKET}/sets"] == listed[str(store)] == [second["id"]]
    assert second["databases"] == {db: sum(rows[db].values()) for db in DATABASES}
    assert second["objects"] == {b: len(content[b]) for b in buckets}
    # Both copies read back whole.
    assert tool(own_stack, "verify", f"--store=s3://{BACKUP_BUCKET}/sets")["files"] == second["files"]

    # A damaged copy is refused before anything changes.
    damaged = tmp_path / "damaged"
    shutil.copytree(store, damaged)
    dump = damaged / second["id"] / "postgres" / "mlflow.dump"
    dump.write_bytes(dump.read_bytes()[:-10] + b"0123456789")
    refused = tool(own_stack, "restore", f"--store={damaged}", "--replace", check=False)
    assert "sha256" in refused["error"] and "damaged" in refused["error"]
    assert table_rows(own_stack, "mlflow") == rows["mlflow"]

    # The wipe: every database and object gone (the stack's storage deleted), a fresh stack up.
    own_stack.down()
    shutil.rmtree(own_stack.state / "postgres")
    shutil.rmtree(own_stack.state / "seaweedfs")
    own_stack.start_postgres()
    own_stack.start_seaweedfs()
    assert table_rows(own_stack, "mlflow") == {} and objects(own_stack, "mlflow-artifacts") == {}
    # Over an existing database only when told to.
    assert "needs --replace" in tool(own_stack, "restore", f"--store={store}", check=False)["error"]

    restored = tool(own_stack, "restore", f"--store={store}", "--replace", small_file=1024)
    assert restored["id"] == second["id"]
    assert {db: r["rows"] for db, r in restored["databases"].items()} == second["databases"]
    assert all(b["etags_match"] == b["objects"] for b in restored["buckets"].values())
    # Zero rows and zero objects lost, counted here rather than taken from the tool's word.
    assert {db: table_rows(own_stack, db) for db in DATABASES} == rows
    assert {b: objects(own_stack, b) for b in buckets} == content
    assert not {f"{db}__restore" for db in DATABASES} & databases(own_stack)

    own_stack.up()  # MLflow on the restored registry
    again = registry.client_for(settings).get_model_version_by_alias(settings.model_name, "champion")
    assert (again.version, again.run_id) == (champion.version, champion.run_id)
    with serve(settings) as (client, _):
        assert client.post("/predict", json=houses).json() == before
