"""Training: a fixed holdout by row hash, fit, score, log everything to MLflow and register a version."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from .contract import FEATURES, TARGET
from .features import frame_to_matrix
from .model import HousePriceModel, TrainingParams, fit_booster
from .settings import Settings


def split_holdout(frame: pd.DataFrame, percent: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout). A row's side is a function of its content, so it never changes between runs:
    no model version ever trains on a row that another version is scored on, and duplicates stay together."""
    bucket = pd.util.hash_pandas_object(frame[[*list(FEATURES), TARGET]], index=False).to_numpy() % 100
    in_holdout = bucket < percent
    return frame.loc[~in_holdout].reset_index(drop=True), frame.loc[in_holdout].reset_index(drop=True)


def score(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(mean_squared_error(actual, predicted))),
        "mae": float(mean_absolute_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)),
    }


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    seconds: float


def train_and_register(snapshot: pd.DataFrame, snapshot_uri: str, settings: Settings, params: TrainingParams | None = None) -> TrainResult:
    """Train on the snapshot's training side, score on its holdout, log to MLflow and register a version."""
    params = params or TrainingParams()
    train, holdout = split_holdout(snapshot, settings.holdout_percent)
    if len(train) < 100 or len(holdout) < 20:
        raise ValueError(f"snapshot too small to train: {len(train)} training rows, {len(holdout)} holdout rows")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name="train") as run, tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        booster = fit_booster(frame_to_matrix(train), train[TARGET].to_numpy(), params)
        seconds = time.perf_counter() - started
        metrics = score(booster.predict(frame_to_matrix(holdout)), holdout[TARGET].to_numpy())
        mlflow.log_params({**asdict(params), "model": "lightgbm", "features": ",".join(FEATURES)})
        mlflow.log_params({"train_rows": len(train), "holdout_rows": len(holdout), "holdout_percent": settings.holdout_percent})
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()} | {"train_seconds": seconds})
        mlflow.set_tags({"mlops.kind": "train", "mlops.data_snapshot": snapshot_uri})

        booster_path = Path(scratch) / "booster.txt"
        booster.save_model(str(booster_path))
        example = holdout[list(FEATURES)].head(5)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=HousePriceModel(),
            artifacts={"booster": str(booster_path)},
            signature=infer_signature(example, booster.predict(frame_to_matrix(example))),
            input_example=example,
            registered_model_name=settings.model_name,
            pip_requirements=["lightgbm", "pandas", "numpy", "mlflow"],
            code_paths=[str(Path(__file__).parent)],
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    client.set_model_version_tag(settings.model_name, version, "mlops.data_snapshot", snapshot_uri)
    client.set_registered_model_alias(settings.model_name, "challenger", version)
    return TrainResult(run.info.run_id, version, metrics, len(train), len(holdout), seconds)
