"""The Airflow 3 DAG, run whole by `airflow dags test` on the live loopback stack, with the
Airflow metadata in the stack's PostgreSQL. Airflow lives in its own venv (MLOPS_AIRFLOW_BIN,
set by `make services-test`); the DAG's tasks run in this interpreter, as in the worker image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from mlops_dev.stack import Stack

from mlops_services import registry
from mlops_services.settings import Settings

from .served import serve

DAGS = Path(__file__).resolve().parents[1] / "dags"
DAG_ID = "mlops_house_prices"
TASKS = {"ingest", "validate", "drift", "train", "evaluate", "promote", "reload_api"}


@pytest.fixture(scope="module")
def airflow(stack: Stack, tmp_path_factory: pytest.TempPathFactory):
    binary = Path(os.environ.get("MLOPS_AIRFLOW_BIN", Path(__file__).resolve().parents[2] / ".venv-airflow/bin/airflow"))
    if not binary.is_file():
        pytest.fail(f"Airflow not found at {binary}: run `make airflow-setup` (or set MLOPS_AIRFLOW_BIN)")
    stack.ensure_database("airflow")
    password = stack.credentials()["pg_password"]
    metadata_db = f"postgresql+psycopg2://mlops:{password}@{stack.host}:{stack.ports.postgres}/airflow"
    env = os.environ | {
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home")),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MLOPS_SERVICES_PYTHON": sys.executable,
    }

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run([str(binary), *args], env=env | (extra or {}), capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done

    run("db", "migrate")
    return run, metadata_db.replace("+psycopg2", "")


def _run_states(metadata_db: str, logical_date: str) -> tuple[str, dict[str, str]]:
    """The state Airflow recorded for the run of that date, and for each of its tasks."""
    with psycopg.connect(metadata_db) as conn:
        run_id, state = conn.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = %s AND logical_date::date = %s", (DAG_ID, logical_date)
        ).fetchone()
        tasks = conn.execute("SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id)).fetchall()
    return state, dict(tasks)


def test_dag_runs_every_step_against_the_stack(airflow, settings: Settings) -> None:
    run, metadata_db = airflow
    settings_env = {
        "MLOPS_MODEL_NAME": settings.model_name,
        "MLOPS_EXPERIMENT": settings.experiment,
        "MLOPS_DATA_BUCKET": settings.data_bucket,
        "MLOPS_RELOAD_TOKEN": settings.reload_token.get_secret_value(),
    }
    with serve(settings, wait_ready=False) as (api, _):
        assert api.get("/ready").status_code == 503  # nothing registered yet
        settings_env["MLOPS_API_URL"] = str(api.base_url).rstrip("/")

        # First run: no champion yet, so no drift reference; the new version must become champion.
        run("dags", "test", DAG_ID, "2026-11-01", "--conf", json.dumps({"rows": 6000, "seed": 1}), extra=settings_env)
        client = registry.client_for(settings)
        champion = registry.version_for_alias(client, settings.model_name, registry.CHAMPION)
        assert champion == "1"
        # reload_api ran: the API loads the champion in the background (202), then serves it.
        deadline = time.monotonic() + 120
        while api.get("/ready").json()["version"] != "1" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert api.get("/ready").json()["version"] == "1"

        # Second run, drifted batch: drift is measured against v1's snapshot and stored in MLflow.
        run("dags", "test", DAG_ID, "2026-11-02", "--conf", json.dumps({"rows": 6000, "seed": 2, "drift_level": 1.0}), extra=settings_env)

    for day in ("2026-11-01", "2026-11-02"):
        run_state, task_states = _run_states(metadata_db, day)
        assert run_state == "success" and task_states == dict.fromkeys(TASKS, "success"), (day, run_state, task_states)
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    v2 = client.get_model_version(settings.model_name, "2")
    assert v2.tags["mlops.promotion"]  # evaluated and decided, whichever way
    drift_runs = client.search_runs([client.get_experiment_by_name(settings.experiment).experiment_id], "tags.`mlops.kind` = 'drift'")
    assert len(drift_runs) == 1 and drift_runs[0].data.metrics["drifted_features"] >= 1
    # ... and its verdict is tagged on v1, the champion it was measured against (the API exports it).
    assert registry.drift_verdict(client.get_model_version(settings.model_name, "1").tags)[0]
