"""Model lifecycle by MLflow aliases: @challenger (new), @champion (served), @previous (rollback target)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from .contract import FEATURES, TARGET
from .settings import Settings
from .train import score

if TYPE_CHECKING:
    from .drift import DriftResult

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
# The last drift verdict against a version's training data, tagged on that version: the API
# reads it when it loads the version and exports it to Prometheus (which cannot scrape Airflow).
DRIFT_DETECTED, DRIFT_SHARE, DRIFT_RUN = "mlops.drift_detected", "mlops.drift_share", "mlops.drift_run"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    challenger: str
    champion_before: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    reasons: list[str]


def client_for(settings: Settings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(settings.mlflow_tracking_uri)


def version_for_alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def score_version(name: str, version: str, holdout: pd.DataFrame) -> dict[str, float]:
    """Load the registered version itself (not its logged metrics) and score it on these rows."""
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return score(model.predict(holdout[list(FEATURES)]), holdout[TARGET].to_numpy())


def evaluate(settings: Settings, challenger: str, holdout: pd.DataFrame) -> Decision:
    """Score challenger and champion on the same holdout and decide; changes nothing.
    The challenger wins only if it beats the champion by the margin and meets the absolute floors."""
    client = client_for(settings)
    name = settings.model_name
    champion = version_for_alias(client, name, CHAMPION)
    challenger_metrics = score_version(name, challenger, holdout)
    champion_metrics = score_version(name, champion, holdout) if champion and champion != challenger else None

    reasons = []
    if challenger_metrics["r2"] < settings.min_r2:
        reasons.append(f"holdout R2 {challenger_metrics['r2']:.4f} < floor {settings.min_r2}")
    if challenger_metrics["rmse"] > settings.max_rmse:
        reasons.append(f"holdout RMSE {challenger_metrics['rmse']:.0f} > ceiling {settings.max_rmse:.0f}")
    if champion_metrics is not None:
        needed = champion_metrics["rmse"] * (1 - settings.promotion_margin)
        if challenger_metrics["rmse"] > needed:
            reasons.append(
                f"holdout RMSE {challenger_metrics['rmse']:.0f} does not beat champion v{champion} "
                f"({champion_metrics['rmse']:.0f}) by {settings.promotion_margin:.1%} (needs <= {needed:.0f})"
            )
    return Decision(not reasons, challenger, champion, challenger_metrics, champion_metrics, reasons)


def apply(settings: Settings, decision: Decision) -> Decision:
    """Carry out a decision: the winner gets @champion and the champion it replaces @previous.
    Refuses a decision made against a champion that has changed since."""
    client = client_for(settings)
    name, challenger = settings.model_name, decision.challenger
    champion = version_for_alias(client, name, CHAMPION)
    if champion != decision.champion_before:
        raise RuntimeError(
            f"{name}@champion is v{champion}, but v{challenger} was evaluated against v{decision.champion_before}: evaluate again"
        )
    if decision.promoted:
        if champion and champion != challenger:
            client.set_registered_model_alias(name, PREVIOUS, champion)
        client.set_registered_model_alias(name, CHAMPION, challenger)
        client.delete_registered_model_alias(name, CHALLENGER)
    summary = "promoted" if decision.promoted else "rejected: " + "; ".join(decision.reasons)
    client.set_model_version_tag(name, challenger, "mlops.promotion", summary)
    for key, value in decision.challenger_metrics.items():
        client.set_model_version_tag(name, challenger, f"mlops.holdout_{key}", f"{value:.6g}")
    return decision


def rollback(settings: Settings) -> tuple[str, str]:
    """@champion goes back to @previous. Returns (demoted, restored)."""
    client = client_for(settings)
    name = settings.model_name
    champion = version_for_alias(client, name, CHAMPION)
    previous = version_for_alias(client, name, PREVIOUS)
    if champion is None or previous is None:
        raise RuntimeError(f"nothing to roll back to: {name} has champion={champion}, previous={previous}")
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.delete_registered_model_alias(name, PREVIOUS)
    client.set_model_version_tag(name, champion, "mlops.promotion", f"rolled back to v{previous}")
    return champion, previous


def record_drift(client: MlflowClient, name: str, version: str, result: DriftResult, run_id: str) -> bool:
    """Tag the drift verdict on the version it was measured against; True if the verdict changed
    (a reloaded API then exports the new one)."""
    tags = client.get_model_version(name, version).tags
    verdict = {DRIFT_DETECTED: str(result.dataset_drift).lower(), DRIFT_SHARE: f"{len(result.drifted_features) / len(result.features):.4g}"}
    for key, value in (verdict | {DRIFT_RUN: run_id}).items():
        client.set_model_version_tag(name, version, key, value)
    return any(tags.get(key) != value for key, value in verdict.items())


def drift_verdict(tags: dict[str, str]) -> tuple[bool, float]:
    """(drift detected, share of features drifted) from a version's tags; (False, 0.0) if never checked."""
    return tags.get(DRIFT_DETECTED) == "true", float(tags.get(DRIFT_SHARE, 0.0))


def history(settings: Settings) -> list[dict[str, object]]:
    """Every version, newest first, with its aliases and promotion record (for the UI and the CLI)."""
    client = client_for(settings)
    versions = client.search_model_versions(f"name='{settings.model_name}'", order_by=["version_number DESC"])
    # search results carry no aliases: the registered model has the alias -> version map.
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(settings.model_name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    return [
        {
            "version": v.version,
            "aliases": sorted(aliases.get(str(v.version), [])),
            "created": pd.to_datetime(v.creation_timestamp, unit="ms").isoformat(),
            "promotion": v.tags.get("mlops.promotion", ""),
            "holdout_rmse": v.tags.get("mlops.holdout_rmse"),
            "holdout_r2": v.tags.get("mlops.holdout_r2"),
            "run_id": v.run_id,
        }
        for v in versions
    ]


def latest_drift_report(settings: Settings) -> tuple[str, str] | None:
    """(run id, HTML) of the newest drift run in the experiment, or None."""
    client_for(settings)
    runs = mlflow.search_runs(
        experiment_names=[settings.experiment],
        filter_string="tags.`mlops.kind` = 'drift'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="drift_report.html")
    with open(path, encoding="utf-8") as report:
        return run_id, report.read()
