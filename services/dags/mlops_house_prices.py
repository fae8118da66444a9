"""House prices, retrained on schedule: ingest -> validate -> drift -> train -> evaluate ->
promote -> reload the API.

Every task is a thin call into `mlops_services.pipeline`, run by the services' own Python
(`MLOPS_SERVICES_PYTHON`): MLflow's and Airflow's pins conflict (FastAPI, among others), so
the worker image carries the pipeline in a separate venv and Airflow's ExternalPythonOperator
runs each step there. Steps hand each other S3 URIs and small dicts, never data frames.
Configuration is the pipeline's environment (MLFLOW_TRACKING_URI, MLFLOW_S3_ENDPOINT_URL,
AWS_*, MLOPS_*), inherited by every task.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

SERVICES_PYTHON = os.environ.get("MLOPS_SERVICES_PYTHON", "/opt/mlops/venv/bin/python")

# Each task below runs in the services' interpreter from its source alone (Airflow strips
# the @task line and ships the function): imports go inside it, and only arguments cross.


@dag(
    dag_id="mlops_house_prices",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs promoting at once would race for @champion
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "csv": Param(None, type=["null", "string"], description="CSV (USA Real Estate layout) on the worker; none: a synthetic batch"),
        "rows": Param(20_000, type="integer", minimum=1, description="Rows of a synthetic batch"),
        "seed": Param(None, type=["null", "integer"], description="Seed of a synthetic batch; none: the day the run was due"),
        "drift_level": Param(0.0, type="number", minimum=0, maximum=1, description="Drift of a synthetic batch (0 = none)"),
    },
    tags=["mlops", "house-prices"],
    doc_md=__doc__,
)
def mlops_house_prices():
    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def ingest(csv: str | None, rows: int, seed: int, drift_level: float) -> str:
        from pathlib import Path

        from mlops_services import pipeline
        from mlops_services.settings import Settings

        return pipeline.land(Settings(), Path(csv) if csv else None, rows, seed, drift_level)

    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def validate(raw_uri: str) -> dict:
        from dataclasses import asdict

        from mlops_services import pipeline
        from mlops_services.settings import Settings

        report = pipeline.validate(Settings(), raw_uri)
        if report.valid_rows == 0:
            raise ValueError(f"{raw_uri}: no valid rows; quarantined {report.quarantined_rows} ({report.reasons})")
        return asdict(report)

    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def drift(report: dict) -> dict | None:
        from mlops_services import pipeline
        from mlops_services.settings import Settings

        result = pipeline.check_drift(Settings(), report["valid_uri"])
        return result and {key: result[key] for key in ("dataset_drift", "drifted_features", "verdict_changed")}

    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def train() -> dict:
        from dataclasses import asdict

        from mlops_services import pipeline
        from mlops_services.settings import Settings

        result, snapshot_uri = pipeline.train(Settings())
        return asdict(result) | {"snapshot_uri": snapshot_uri}

    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def evaluate(trained: dict) -> dict:
        from dataclasses import asdict

        from mlops_services import pipeline
        from mlops_services.settings import Settings

        return asdict(pipeline.evaluate(Settings(), trained["version"], trained["snapshot_uri"]))

    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def promote(decision: dict) -> dict:
        from dataclasses import asdict

        from mlops_services import pipeline
        from mlops_services.registry import Decision
        from mlops_services.settings import Settings

        return asdict(pipeline.promote(Settings(), Decision(**decision)))

    @task.external_python(python=SERVICES_PYTHON, expect_airflow=False)
    def reload_api(decision: dict, drifted: dict | None) -> str:
        from mlops_services import pipeline
        from mlops_services.settings import Settings

        # The API exports the served version's drift verdict (read at load): a new one needs a reload too.
        if decision["promoted"] or (drifted and drifted["verdict_changed"]):
            return pipeline.reload_api(Settings())
        return "not needed: champion and its drift verdict unchanged"

    raw_uri = ingest(
        "{{ params.csv }}",
        "{{ params.rows }}",
        # run_after: set for every run (a run triggered from the UI or the API has no logical date).
        "{{ params.seed if params.seed is not none else dag_run.run_after.strftime('%Y%m%d') | int }}",
        "{{ params.drift_level }}",
    )
    report = validate(raw_uri)
    trained = train()  # on the snapshot of every valid batch so far, so only after this one is in
    drifted = drift(report)
    drifted >> trained
    reload_api(promote(evaluate(trained)), drifted)


mlops_house_prices()
