"""The API over real HTTP, serving the registry's @champion from the live MLflow server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mlflow
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_services import pipeline
from mlops_services.contract import FEATURES
from mlops_services.model import TrainingParams
from mlops_services.serving.inference_log import wait_drained
from mlops_services.settings import Settings
from mlops_services.train import train_and_register

from .served import promote_first_model, serve

HOUSE = {"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Texas"}
MANSION = {"bed": 6, "bath": 5, "acre_lot": 2.0, "house_size": 5200, "state": "California"}


def test_predict_one_and_many(api):
    client, _, _settings, _ = api
    one = client.post("/predict", json=HOUSE)
    assert one.status_code == 200
    body = one.json()
    assert body["model_version"] == "1" and 50_000 < body["price"] < 1_000_000
    many = client.post("/predict", json=[HOUSE, MANSION])
    assert many.status_code == 200
    prices = many.json()["prices"]
    assert prices[0] == pytest.approx(body["price"]) and prices[1] > prices[0]


def test_predictions_are_the_registered_models(api):
    client, _, settings, _ = api
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    # The signature declares doubles; MLflow refuses to cast int64 columns itself.
    frame = pd.DataFrame([HOUSE, MANSION])[list(FEATURES)].astype({"bed": float, "bath": float, "house_size": float})
    expected = model.predict(frame)
    got = client.post("/predict", json=[HOUSE, MANSION]).json()["prices"]
    assert np.allclose(got, expected)


@pytest.mark.parametrize(
    "payload, field",
    [
        ({**HOUSE, "house_size": -5}, ["body", "house_size"]),
        ({**HOUSE, "bed": "three"}, ["body", "bed"]),
        ({**HOUSE, "state": "Texass"}, ["body", "state"]),
        ({k: v for k, v in HOUSE.items() if k != "bath"}, ["body", "bath"]),
        ({**HOUSE, "pool": True}, ["body", "pool"]),
        ([HOUSE, {**HOUSE, "acre_lot": 1e9}], ["body", 1, "acre_lot"]),
    ],
)
def test_bad_input_is_422_naming_the_field(api, payload, field):
    client, *_ = api
    response = client.post("/predict", json=payload)
    assert response.status_code == 422
    assert field in [e["loc"] for e in response.json()["detail"]]


def test_state_typo_gets_a_suggestion(api):
    client, *_ = api
    detail = client.post("/predict", json={**HOUSE, "state": "Californa"}).json()["detail"]
    assert "did you mean 'California'" in detail[0]["msg"]


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"42", b'"text"', b"[]", b"[1, 2]", b'{"bed": NaN}', b'{"bed": 1e999}', b"\xff\xfe"])
def test_garbage_is_never_a_500(api, raw):
    client, *_ = api
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": list(HOUSE), "data": [list(HOUSE.values()), list(MANSION.values())]}},
        {"dataframe_split": {"columns": list(HOUSE), "data": [list(HOUSE.values()), list(MANSION.values())], "index": [7, "b"]}},
        {"dataframe_split": {"columns": list(HOUSE)[::-1], "data": [list(HOUSE.values())[::-1], list(MANSION.values())[::-1]]}},
        {"dataframe_records": [HOUSE, MANSION]},
        {"dataframe_records": [HOUSE, MANSION], "params": {"anything": 1}},
        {"inputs": [HOUSE, MANSION]},
        {"inputs": {k: [HOUSE[k], MANSION[k]] for k in HOUSE}},
        {"instances": [HOUSE, MANSION]},
        {"instances": {k: [HOUSE[k], MANSION[k]] for k in HOUSE}},
    ],
)
def test_invocations_speaks_mlflow_scoring_protocol(api, payload):
    client, *_ = api
    expected = client.post("/predict", json=[HOUSE, MANSION]).json()["prices"]
    response = client.post("/invocations", json=payload)
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["predictions"], expected)


def test_invocations_accepts_csv_and_rejects_bad_rows(api):
    client, *_ = api
    csv = pd.DataFrame([HOUSE]).to_csv(index=False)
    assert client.post("/invocations", content=csv, headers={"content-type": "text/csv"}).status_code == 200
    bad = client.post("/invocations", json={"dataframe_records": [HOUSE, {**HOUSE, "bath": -1}]})
    # MLflow's error body and status (as `mlflow models serve` answers), naming the row and field.
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert ["body", "dataframe_records", 1, "bath"] in [e["loc"] for e in bad.json()["detail"]]


def test_explain_adds_up_to_the_prediction_in_dollars(api):
    client, *_ = api
    for listing in (HOUSE, MANSION):
        body = client.post("/explain", json=listing).json()
        assert set(body["contributions"]) == set(FEATURES)
        total = body["base_value"] + sum(body["contributions"].values())
        assert total == pytest.approx(body["price"], rel=1e-6)
        assert body["price"] == pytest.approx(client.post("/predict", json=listing).json()["price"])
        assert 100_000 < body["base_value"] < 1_000_000  # dollars, not log-dollars


def test_health_ready_metrics(api):
    client, _, settings, _ = api
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] and ready["version"] == client.post("/predict", json=HOUSE).json()["model_version"]
    text = client.get("/metrics").text
    assert 'mlops_api_requests_total{endpoint="/predict",status="200"}' in text
    assert 'mlops_api_requests_total{endpoint="/predict",status="422"}' in text
    assert "mlops_api_request_seconds_bucket" in text
    assert "mlops_predicted_price_dollars_count" in text
    assert f'mlops_model_version{{model="{settings.model_name}"}}' in text


def test_reload_requires_the_token(api):
    client, *_ = api
    assert client.post("/reload").status_code == 401
    assert client.post("/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_every_prediction_is_logged_to_postgresql(api):
    import psycopg

    client, app, settings, _ = api
    count = "SELECT count(*) FROM inference_log WHERE model = %s"
    assert wait_drained(app.state.inference_log)  # earlier tests' rows are in
    with psycopg.connect(settings.db_url) as conn:
        before = conn.execute(count, (settings.model_name,)).fetchone()[0]
    for _ in range(20):
        response = client.post("/predict", json=[HOUSE, MANSION])
        assert response.status_code == 200
    assert wait_drained(app.state.inference_log)
    with psycopg.connect(settings.db_url) as conn:
        assert conn.execute(count, (settings.model_name,)).fetchone()[0] - before == 40
        last = conn.execute(
            "SELECT bed, bath, acre_lot, house_size, state, prediction, endpoint, model_version FROM inference_log ORDER BY id DESC LIMIT 2"
        ).fetchall()
    # Each row holds what was asked and what was answered.
    fields = ("bed", "bath", "acre_lot", "house_size", "state")
    assert [row[:5] for row in reversed(last)] == [tuple(r[f] for f in fields) for r in (HOUSE, MANSION)]
    assert [row[5] for row in reversed(last)] == pytest.approx(response.json()["prices"])
    assert {row[6:] for row in last} == {("/predict", response.json()["model_version"])}


def test_reload_under_load_swaps_without_failing_a_request(api):
    client, _app, settings, (snapshot_uri, frame) = api
    better = train_and_register(frame, snapshot_uri, settings, TrainingParams())
    assert pipeline.evaluate_and_promote(settings, better.version, snapshot_uri).promoted
    statuses: list[int] = []
    versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        import httpx

        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            while not stop.is_set():
                response = own.post("/predict", json=HOUSE)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.add(response.json()["model_version"])

    with ThreadPoolExecutor(8) as pool:
        workers = [pool.submit(hammer) for _ in range(8)]
        time.sleep(0.5)  # let the load build up before the swap
        reload = client.post("/reload", headers={"Authorization": f"Bearer {settings.reload_token.get_secret_value()}"})
        assert reload.status_code == 202
        deadline = time.monotonic() + 120
        while client.get("/ready").json()["version"] != better.version and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        for w in workers:
            w.result()
    assert client.get("/ready").json()["version"] == better.version
    assert statuses and set(statuses) == {200}, f"{len([s for s in statuses if s != 200])} failed requests"
    assert versions == {"1", better.version}


def test_drift_found_by_the_pipeline_reaches_the_metrics_after_a_reload(settings: Settings):
    """What MlopsModelNotLoaded and MlopsDriftDetected read: the served version's drift verdict,
    tagged by the pipeline's drift step, exported by the API once it reloads."""
    promote_first_model(settings, 6_000, TrainingParams(n_estimators=8, num_leaves=8, learning_rate=0.2))

    def gauges(client) -> dict[str, float]:
        families = text_string_to_metric_families(client.get("/metrics").text)
        wanted = {"mlops_model_loaded", "mlops_drift_detected", "mlops_drift_drifted_features_ratio"}
        return {sample.name: sample.value for family in families for sample in family.samples if sample.name in wanted}

    with serve(settings) as (client, _):
        assert gauges(client) == {"mlops_model_loaded": 1, "mlops_drift_detected": 0, "mlops_drift_drifted_features_ratio": 0}
        drifted = pipeline.ingest(settings, rows=6_000, seed=9, drift_level=1.0)
        summary = pipeline.check_drift(settings, drifted.valid_uri)
        assert summary["dataset_drift"] and summary["verdict_changed"]
        assert pipeline.reload_api(settings.model_copy(update={"api_url": str(client.base_url).rstrip("/")})) == "reloading"
        deadline = time.monotonic() + 120
        while gauges(client)["mlops_drift_detected"] != 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        share = len(summary["drifted_features"]) / len(summary["features"])
        assert gauges(client) == {
            "mlops_model_loaded": 1,
            "mlops_drift_detected": 1,
            "mlops_drift_drifted_features_ratio": pytest.approx(share),
        }
