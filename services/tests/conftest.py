"""Fixtures: one real local stack (PostgreSQL, SeaweedFS, MLflow) per test session, on free loopback ports."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlops_dev.stack import Ports, Stack

from mlops_services.model import TrainingParams
from mlops_services.settings import Settings

from .served import promote_first_model, serve

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # Not under pytest's 0700 temp root: as root, PostgreSQL runs as the postgres user and must reach its data dir.
    state = Path(tempfile.mkdtemp(prefix="mlops-stack-"))
    state.chmod(0o755)
    running = Stack(state, Ports.free())
    try:
        environment = running.up()
    except BaseException:
        running.down()
        raise
    saved = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    yield running
    running.down()
    shutil.rmtree(state, ignore_errors=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def settings(stack: Stack, tmp_path: Path) -> Settings:
    """Settings against the live stack; each test gets its own model name and data bucket."""
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        model_name=f"house-price-{suffix}",
        experiment=f"house-price-{suffix}",
        data_bucket=f"data-{suffix}",
        spool_dir=tmp_path / "spool",
        reload_token="test-token-" + suffix,
        log_flush_seconds=0.1,
    )


@pytest.fixture(scope="module")
def api(stack):
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        model_name=f"api-{suffix}",
        experiment=f"api-{suffix}",
        data_bucket=f"api-{suffix}",
        spool_dir=f"/tmp/mlops-api-spool-{suffix}",
        reload_token="token-" + suffix,
        log_flush_seconds=0.1,
    )
    snapshot_uri, frame = promote_first_model(settings, 6_000, TrainingParams(n_estimators=8, num_leaves=8, learning_rate=0.2))
    with serve(settings) as (client, app):
        yield client, app, settings, (snapshot_uri, frame)
