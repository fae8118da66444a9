"""PostgreSQL stops mid-run: serving goes on, rows wait in the spool, and none are lost once it is back.

Runs last on purpose (file order): the outage also takes the MLflow server's backend down for a while."""

from __future__ import annotations

import time

import psycopg

from mlops_services.model import TrainingParams
from mlops_services.serving.inference_log import wait_drained

from .served import promote_first_model, serve

HOUSE = {"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Ohio"}


def test_postgres_outage_loses_no_inference_rows(stack, settings):
    promote_first_model(settings, 3_000, TrainingParams(n_estimators=30))

    with serve(settings) as (client, app):
        log = app.state.inference_log
        sent = 0
        for _ in range(25):
            assert client.post("/predict", json=[HOUSE, HOUSE]).status_code == 200
            sent += 2
        assert wait_drained(log)

        stack.stop_postgres()
        try:
            for _ in range(150):
                assert client.post("/predict", json=[HOUSE, HOUSE]).status_code == 200
                sent += 2
            assert client.get("/health").status_code == 200
            assert client.get("/ready").status_code == 200
            deadline = time.monotonic() + 30
            while log.spool.rows == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert log.spool.rows > 0 and log.spool.path.exists(), "rows should wait on disk while PostgreSQL is down"
            assert "mlops_inference_log_spooled_rows" in client.get("/metrics").text
        finally:
            stack.start_postgres()

        assert wait_drained(log, timeout=90), f"{log.pending} rows still pending"
        assert not log.spool.path.exists()
    with psycopg.connect(settings.db_url) as conn:
        logged = conn.execute("SELECT count(*) FROM inference_log WHERE model = %s", (settings.model_name,)).fetchone()[0]
    assert logged == sent
