"""The serving hot path's parts, against their reference behaviour: the batch histogram against
prometheus-client's own Histogram, the fast batch decoder and the column fast path against
pydantic, the pyfunc against its booster, the spool's bound; the model gauges the alert rules read."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from pydantic import ValidationError

from mlops_services.features import matrix_from_columns, rows_to_matrix
from mlops_services.registry import drift_verdict
from mlops_services.serving.bodies import decode_batch_fast
from mlops_services.serving.inference_log import Batch, Float8ArrayDumper, Spool
from mlops_services.serving.loader import LoadedModel, ModelHolder
from mlops_services.serving.metrics import PRICE_BUCKETS, ApiMetrics, BatchHistogram
from mlops_services.serving.routes import _listings
from mlops_services.settings import Settings

HOUSE = {"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Texas"}


def test_batch_histogram_exposes_what_prometheus_histogram_would():
    # Values on the bucket bounds too: `le` means less than or equal.
    values = np.concatenate([np.asarray(PRICE_BUCKETS), np.random.default_rng(0).uniform(0, 6e6, 2_000), [0.0, 1e7]])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("price", "Predicted prices", PRICE_BUCKETS, registry=ours)
    reference = Histogram("price", "Predicted prices", buckets=PRICE_BUCKETS, registry=theirs)
    for chunk in np.array_split(values, 7):
        batch.observe_many(chunk)
    for value in values:
        reference.observe(float(value))

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#") and "_created" not in line
        }

    got, expected = samples(ours), samples(theirs)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


# Batches at the contract's edges, and breaking it in every way a client can.
CONTRACT_CASES = [
    [HOUSE],
    [HOUSE, {**HOUSE, "bed": 0, "house_size": 100, "acre_lot": 1000, "state": "Puerto Rico"}],
    [{**HOUSE, "bed": 3.5}, {**HOUSE, "bath": 30}],
    # Refused by the fast paths, so pydantic decides (accepts or names the field):
    [{**HOUSE, "bed": "3"}],
    [{**HOUSE, "bed": True}],
    [{**HOUSE, "bed": None}],
    [{**HOUSE, "bed": float("nan")}],
    [{**HOUSE, "state": "Texass"}],
    [{**HOUSE, "state": 7}],
    [{**HOUSE, "house_size": 99.9}],
    [{**HOUSE, "acre_lot": 1e999}],
    [{**HOUSE, "pool": 1}],
    [{k: v for k, v in HOUSE.items() if k != "bath"}],
]


@pytest.mark.parametrize("rows", [*CONTRACT_CASES, []])
def test_fast_batch_decoder_accepts_only_what_pydantic_accepts_identically(rows):
    body = json.dumps(rows).encode()
    fast = decode_batch_fast(body)
    try:
        reference = _listings.validate_json(body)
    except Exception:
        reference = None
    if fast is None:
        return  # deferred to pydantic: its answer is the API's answer
    assert reference is not None, "the fast path accepted what the contract refuses"
    assert np.array_equal(rows_to_matrix(fast), rows_to_matrix(reference))


def test_fast_batch_decoder_takes_the_common_case():
    assert decode_batch_fast(json.dumps([HOUSE] * 3).encode()) is not None


def test_float8_array_dumper_lays_out_postgresql_binary_arrays():
    dumped = Float8ArrayDumper(np.ndarray).dump(np.array([1.5, -2.0]))
    assert (
        dumped
        == ((1).to_bytes(4, "big") + (0).to_bytes(4, "big") + (701).to_bytes(4, "big") + (2).to_bytes(4, "big") + (1).to_bytes(4, "big"))
        + (8).to_bytes(4, "big")
        + np.array([1.5], ">f8").tobytes()
        + (8).to_bytes(4, "big")
        + np.array([-2.0], ">f8").tobytes()
    )
    with pytest.raises(TypeError):
        Float8ArrayDumper(np.ndarray).dump(np.array([1, 2]))


def _batch(rows: int, price: float = 1.0) -> Batch:
    matrix = np.tile([3.0, 2.0, 0.25, 1800.0, 43.0], (rows, 1))
    return Batch(datetime(2026, 1, 2, tzinfo=UTC), "house-price", "7", "/predict", matrix, np.full(rows, price))


def test_spool_keeps_batches_up_to_its_row_bound_and_reads_them_back(tmp_path):
    spool = Spool(tmp_path / "spool.jsonl", max_rows=1_000)
    assert spool.append([_batch(600, 1.0), _batch(300, 2.0)]) == 0
    assert spool.append([_batch(250, 3.0)]) == 150  # only 100 rows of room were left
    assert spool.rows == 1_000
    again = Spool(tmp_path / "spool.jsonl", max_rows=1_000)  # after a restart
    assert again.rows == 1_000
    batches = again.read()
    assert [len(b) for b in batches] == [600, 300, 100]
    assert batches[2].predictions.tolist() == [3.0] * 100
    assert np.array_equal(batches[0].matrix, _batch(600).matrix)
    assert batches[0].logged_at == datetime(2026, 1, 2, tzinfo=UTC) and batches[0].version == "7"


@pytest.mark.parametrize("rows", CONTRACT_CASES)
@pytest.mark.parametrize("as_frame", [False, True], ids=["json columns", "dataframe"])
def test_column_fast_path_accepts_only_what_pydantic_accepts_identically(rows, as_frame):
    columns = pd.DataFrame(rows).to_dict("series") if as_frame else {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r}}
    fast = matrix_from_columns(columns)
    try:
        reference = rows_to_matrix(_listings.validate_python(rows))
    except ValidationError:
        reference = None
    assert (fast is None) == (reference is None)  # same verdict both ways
    if fast is not None:
        assert np.array_equal(fast, reference)


def test_pyfunc_predicts_through_the_fast_path_and_names_bad_rows(tmp_path):
    from mlops_services import synth
    from mlops_services.contract import FEATURES, validate_batch
    from mlops_services.features import frame_to_matrix
    from mlops_services.model import HousePriceModel, InvalidInput, TrainingParams, fit_booster

    frame = validate_batch(synth.generate(2_000, seed=2)).valid
    booster = fit_booster(frame_to_matrix(frame), frame["price"].to_numpy(), TrainingParams(n_estimators=5))
    model = HousePriceModel()
    model.booster = booster
    features = frame[list(FEATURES)].head(50)
    assert np.array_equal(model.predict(None, features), booster.predict(frame_to_matrix(features), num_threads=1))
    bad = features.head(3).copy()
    bad.loc[bad.index[1], "bath"] = -1.0
    with pytest.raises(InvalidInput, match=r"row 1: bath: outside \[0, 30\]") as raised:
        model.predict(None, bad)
    assert raised.value.get_http_status_code() == 400  # what an MLflow scoring server answers with it
    with pytest.raises(InvalidInput, match="missing columns"):
        model.predict(None, features.drop(columns=["state"]))


def test_model_gauges_follow_loads_and_the_served_versions_drift_verdict():
    """mlops_model_loaded is 0 until a load succeeds (and a failed reload keeps it); the drift
    gauges carry the verdict tagged on the version loaded, replaced by the next load's."""
    metrics = ApiMetrics()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    loads = iter([RuntimeError("registry down"), (True, 0.375), (False, 0.0)])

    def loader(_: Settings) -> LoadedModel:
        outcome = next(loads)
        if isinstance(outcome, Exception):
            raise outcome
        return LoadedModel("houses", "3", model=None, explainer=None, base_value=0.0, drift_detected=outcome[0], drifted_share=outcome[1])

    holder = ModelHolder(Settings(), loader, metrics)

    async def reload() -> None:
        assert holder.start_reload()
        await holder.reloading

    assert value("mlops_model_loaded") == 0 and value("mlops_drift_detected", model="houses") is None
    asyncio.run(reload())
    assert value("mlops_model_loaded") == 0 and value("mlops_drift_detected", model="houses") is None
    asyncio.run(reload())
    assert value("mlops_model_loaded") == 1
    assert (value("mlops_drift_detected", model="houses"), value("mlops_drift_drifted_features_ratio", model="houses")) == (1, 0.375)
    asyncio.run(reload())
    assert (value("mlops_drift_detected", model="houses"), value("mlops_drift_drifted_features_ratio", model="houses")) == (0, 0)


def test_drift_verdict_of_a_never_checked_version_is_no_drift():
    assert drift_verdict({}) == (False, 0.0)
    assert drift_verdict({"mlops.drift_detected": "true", "mlops.drift_share": "0.25"}) == (True, 0.25)
