"""Configuration from environment variables: the same names locally (`make demo`) and on K3s."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore", populate_by_name=True)

    # Names fixed by MLflow and boto3 keep their own spelling (no MLOPS_ prefix).
    mlflow_tracking_uri: str = Field("http://127.0.0.1:5000", validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    s3_endpoint_url: str = Field("http://127.0.0.1:8333", validation_alias=AliasChoices("MLFLOW_S3_ENDPOINT_URL"))

    db_url: str = Field("postgresql://mlops@127.0.0.1:15432/mlops", description="PostgreSQL for the inference log")
    # Used inside MLflow search filters: letters, digits, dot, dash and underscore only.
    model_name: str = Field("house-price", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    experiment: str = "house-price"
    data_bucket: str = "mlops-data"
    reload_token: SecretStr | None = Field(None, description="POST /reload is refused while unset")
    # How often each API replica asks the registry whether @champion moved (0: only on POST /reload).
    model_poll_seconds: float = Field(30.0, ge=0)

    # Promotion: the challenger must beat the champion's holdout RMSE by this fraction and meet the floors.
    promotion_margin: float = Field(0.01, ge=0, lt=1)
    min_r2: float = Field(0.6, gt=-1, le=1)
    max_rmse: float = Field(250_000, gt=0)
    holdout_percent: int = Field(20, ge=5, le=50)

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_url: str = "http://127.0.0.1:8000"
    spool_dir: Path = Path("/var/tmp/mlops-inference-spool")
    spool_max_rows: int = Field(1_000_000, ge=1_000)
    log_batch_rows: int = Field(500, ge=1)
    log_flush_seconds: float = Field(0.5, gt=0)
    # A 10,000-row batch is ~1.3 MB of JSON; larger bodies get 413 before they are read whole.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
