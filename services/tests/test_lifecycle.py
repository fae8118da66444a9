"""Ingest -> drift -> train -> promote -> rollback against the real PostgreSQL, SeaweedFS and MLflow server."""

from __future__ import annotations

import mlflow
import pytest

from mlops_services import pipeline, registry, synth
from mlops_services.model import TrainingParams
from mlops_services.settings import Settings
from mlops_services.storage import DataStore
from mlops_services.train import train_and_register


def test_first_run_registers_and_promotes_a_champion(settings: Settings) -> None:
    summary = pipeline.run(settings, rows=8_000, seed=1)
    assert summary["ingest"]["valid_rows"] == 8_000
    assert summary["drift"] is None  # no champion to compare with yet
    assert summary["promotion"]["promoted"], summary["promotion"]["reasons"]
    client = registry.client_for(settings)
    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    assert champion.version == summary["train"]["version"]
    # The version records its training snapshot, which is a real object in S3.
    snapshot = champion.tags["mlops.data_snapshot"]
    assert len(DataStore(settings).get_frame(snapshot)) == 8_000
    run = client.get_run(champion.run_id)
    assert {"holdout_rmse", "holdout_r2"} <= run.data.metrics.keys()
    assert run.data.params["holdout_percent"] == "20"


def test_quarantined_rows_are_stored_with_reasons(settings: Settings, tmp_path) -> None:
    frame = synth.generate(500, seed=2)
    frame.loc[0, "state"] = "Atlantis"
    csv = tmp_path / "listings.csv"
    frame.to_csv(csv, index=False)
    report = pipeline.ingest(settings, csv)
    assert (report.valid_rows, report.quarantined_rows) == (499, 1)
    body = DataStore(settings).client.get_object(Bucket=settings.data_bucket, Key=report.quarantine_uri.split("/", 3)[3])
    assert "state: not a known US state or territory" in body["Body"].read().decode()


def test_drift_runs_against_the_champion_snapshot_and_stores_its_report(settings: Settings) -> None:
    pipeline.run(settings, rows=6_000, seed=1)
    drifted = pipeline.ingest(settings, rows=6_000, seed=9, drift_level=1.0)
    summary = pipeline.check_drift(settings, drifted.valid_uri)
    assert summary["dataset_drift"] and "house_size" in summary["drifted_features"]
    runs = mlflow.search_runs(experiment_names=[settings.experiment], filter_string="tags.`mlops.kind` = 'drift'")
    assert len(runs) == 1
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0].run_id)}
    assert {"drift_report.html", "drift.json"} <= artifacts
    # The verdict is tagged on the champion it was measured against, where the API reads it at load.
    tags = registry.client_for(settings).get_model_version(settings.model_name, summary["champion"]).tags
    share = len(summary["drifted_features"]) / len(summary["features"])
    assert registry.drift_verdict(tags) == (True, pytest.approx(share)) and tags["mlops.drift_run"] == runs.iloc[0].run_id
    assert summary["verdict_changed"]  # from "never checked"
    assert not pipeline.check_drift(settings, drifted.valid_uri)["verdict_changed"]  # the same batch again


def test_weaker_challenger_is_rejected_and_champion_kept(settings: Settings) -> None:
    first = pipeline.run(settings, rows=8_000, seed=1)
    champion = first["train"]["version"]
    snapshot_uri, frame = pipeline.build_snapshot(settings)
    weak = train_and_register(frame, snapshot_uri, settings, TrainingParams(n_estimators=5, num_leaves=4))
    decision = pipeline.evaluate_and_promote(settings, weak.version, snapshot_uri)
    assert not decision.promoted
    assert any("does not beat champion" in r for r in decision.reasons)
    client = registry.client_for(settings)
    assert client.get_model_version_by_alias(settings.model_name, "champion").version == champion
    assert client.get_model_version(settings.model_name, weak.version).tags["mlops.promotion"].startswith("rejected")


def test_absolute_floor_blocks_even_a_first_model(settings: Settings) -> None:
    strict = settings.model_copy(update={"min_r2": 0.99})
    report = pipeline.ingest(strict, rows=4_000, seed=1)
    assert report.valid_rows == 4_000
    result, snapshot_uri = pipeline.train(strict)
    decision = pipeline.evaluate_and_promote(strict, result.version, snapshot_uri)
    assert not decision.promoted and "floor 0.99" in decision.reasons[0]
    assert registry.version_for_alias(registry.client_for(strict), strict.model_name, "champion") is None


def test_better_challenger_takes_over_and_rollback_restores(settings: Settings) -> None:
    small = TrainingParams(n_estimators=8, num_leaves=8, learning_rate=0.2)  # deliberately underfit, above the floors
    pipeline.ingest(settings, rows=8_000, seed=1)
    snapshot_uri, frame = pipeline.build_snapshot(settings)
    v1 = train_and_register(frame, snapshot_uri, settings, small)
    assert pipeline.evaluate_and_promote(settings, v1.version, snapshot_uri).promoted
    v2 = train_and_register(frame, snapshot_uri, settings)
    decision = pipeline.evaluate_and_promote(settings, v2.version, snapshot_uri)
    assert decision.promoted and decision.champion_before == v1.version
    assert decision.challenger_metrics["rmse"] < decision.champion_metrics["rmse"]
    client = registry.client_for(settings)
    alias = lambda a: registry.version_for_alias(client, settings.model_name, a)  # noqa: E731
    assert (alias("champion"), alias("previous")) == (v2.version, v1.version)

    assert registry.rollback(settings) == (v2.version, v1.version)
    assert (alias("champion"), alias("previous")) == (v1.version, None)
    with pytest.raises(RuntimeError, match="nothing to roll back"):
        registry.rollback(settings)
