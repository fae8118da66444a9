"""The pipeline's steps as plain functions (the CLI and the Airflow DAG call the same ones):
ingest -> validate -> drift -> train -> evaluate -> promote -> reload the API."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import urllib.request
from dataclasses import asdict
from pathlib import Path

import mlflow
import pandas as pd

from . import drift, registry, synth
from .ingest import IngestReport, batch_uris, read_listings_csv, store_batch
from .registry import CHAMPION, Decision, client_for, version_for_alias
from .settings import Settings
from .storage import DataStore, content_id
from .train import TrainResult, split_holdout, train_and_register

log = logging.getLogger(__name__)


def land(settings: Settings, csv: Path | None = None, rows: int = 20_000, seed: int = 0, drift_level: float = 0.0) -> str:
    """Keep the incoming batch as it came (a user CSV in the USA Real Estate layout, or a
    synthetic one when none is given) under raw/, named by its content; returns its URI."""
    store = DataStore(settings)
    store.ensure_bucket()
    body = csv.read_bytes() if csv else synth.generate(rows, seed=seed, drift=drift_level).to_csv(index=False).encode()
    return store.put_bytes(f"raw/{hashlib.sha256(body).hexdigest()[:16]}.csv", body, "text/csv")


def validate(settings: Settings, raw_uri: str) -> IngestReport:
    """Check a landed batch against the contract: valid rows to batches/<id>/, the rest quarantined with reasons."""
    store = DataStore(settings)
    return store_batch(store, read_listings_csv(store.get_bytes(raw_uri), name=raw_uri))


def ingest(settings: Settings, csv: Path | None = None, rows: int = 20_000, seed: int = 0, drift_level: float = 0.0) -> IngestReport:
    return validate(settings, land(settings, csv, rows, seed, drift_level))


def build_snapshot(settings: Settings) -> tuple[str, pd.DataFrame]:
    """Every valid batch so far, as one immutable snapshot named by its content."""
    store = DataStore(settings)
    uris = batch_uris(store)
    if not uris:
        raise RuntimeError("no batches ingested yet: run the ingest step first")
    frame = pd.concat([store.get_frame(u) for u in uris], ignore_index=True)
    key = f"snapshots/{content_id(frame)}.parquet"
    if key not in store.list_keys("snapshots/"):
        store.put_frame(key, frame)
    return store.uri(key), frame


def champion_snapshot(settings: Settings) -> tuple[str, str | None] | None:
    """(@champion's version, its training snapshot URI), or None without a champion."""
    client = client_for(settings)
    version = version_for_alias(client, settings.model_name, CHAMPION)
    if version is None:
        return None
    return version, client.get_model_version(settings.model_name, version).tags.get("mlops.data_snapshot")


def check_drift(settings: Settings, batch_uri: str) -> dict | None:
    """Drift of a batch against the champion's training snapshot; report stored as an MLflow
    artifact, verdict tagged on the champion's version. `verdict_changed`: the API must reload
    to export the new verdict."""
    champion = champion_snapshot(settings)
    if champion is None:
        log.info("no champion yet: nothing to compare the batch with")
        return None
    version, reference_uri = champion
    store = DataStore(settings)
    reference, current = store.get_frame(reference_uri), store.get_frame(batch_uri)
    result = drift.detect(reference, current)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name="drift") as run, tempfile.TemporaryDirectory() as scratch:
        mlflow.set_tags({"mlops.kind": "drift", "mlops.reference": reference_uri, "mlops.batch": batch_uri, "mlops.champion": version})
        mlflow.log_metrics(
            {f"drift_{f.feature}": f.statistic for f in result.features} | {"drifted_features": len(result.drifted_features)}
        )
        report = Path(scratch) / "drift_report.html"
        report.write_text(drift.html_report(result, reference, current, "Feature drift: champion's training data vs new batch"))
        (Path(scratch) / "drift.json").write_text(json.dumps(result.as_dict(), indent=2))
        mlflow.log_artifact(str(report))
        mlflow.log_artifact(str(Path(scratch) / "drift.json"))
    changed = registry.record_drift(client_for(settings), settings.model_name, version, result, run.info.run_id)
    return result.as_dict() | {"champion": version, "verdict_changed": changed}


def train(settings: Settings) -> tuple[TrainResult, str]:
    snapshot_uri, frame = build_snapshot(settings)
    return train_and_register(frame, snapshot_uri, settings), snapshot_uri


def evaluate(settings: Settings, version: str, snapshot_uri: str, snapshot: pd.DataFrame | None = None) -> Decision:
    """Champion and challenger scored on the same rows: the holdout of the challenger's snapshot
    (read from S3 unless the caller already holds it). Decides; changes no alias."""
    frame = snapshot if snapshot is not None else DataStore(settings).get_frame(snapshot_uri)
    _, holdout = split_holdout(frame, settings.holdout_percent)
    return registry.evaluate(settings, version, holdout)


def promote(settings: Settings, decision: Decision) -> Decision:
    return registry.apply(settings, decision)


def evaluate_and_promote(settings: Settings, version: str, snapshot_uri: str, snapshot: pd.DataFrame | None = None) -> Decision:
    return promote(settings, evaluate(settings, version, snapshot_uri, snapshot))


def reload_api(settings: Settings) -> str:
    if settings.reload_token is None:
        return "skipped: MLOPS_RELOAD_TOKEN is not set"
    request = urllib.request.Request(
        f"{settings.api_url}/reload",
        method="POST",
        headers={"Authorization": f"Bearer {settings.reload_token.get_secret_value()}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["status"]
    except OSError as error:
        return f"API not reachable at {settings.api_url}: {error}"


def run(settings: Settings, csv: Path | None = None, rows: int = 20_000, seed: int = 0, drift_level: float = 0.0) -> dict:
    report = ingest(settings, csv, rows, seed, drift_level)
    drift_summary = check_drift(settings, report.valid_uri)
    snapshot_uri, snapshot = build_snapshot(settings)
    result = train_and_register(snapshot, snapshot_uri, settings)
    decision = evaluate_and_promote(settings, result.version, snapshot_uri, snapshot)
    # A new champion, or a new drift verdict on the one served (the API exports it at load).
    stale = decision.promoted or bool(drift_summary and drift_summary["verdict_changed"])
    reloaded = reload_api(settings) if stale else "not needed"
    return {
        "ingest": asdict(report),
        "drift": drift_summary and {k: drift_summary[k] for k in ("dataset_drift", "drifted_features")},
        "train": asdict(result),
        "promotion": asdict(decision),
        "reload": reloaded,
    }
