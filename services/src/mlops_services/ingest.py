"""Batches in: validate against the contract, keep the valid rows, quarantine the rest with reasons."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .contract import RAW_COLUMNS, ValidationResult, validate_batch
from .storage import DataStore, content_id


@dataclass(frozen=True)
class IngestReport:
    batch_id: str
    valid_uri: str
    quarantine_uri: str | None
    valid_rows: int
    quarantined_rows: int
    reasons: dict[str, int]


def read_listings_csv(source: Path | bytes, name: str | None = None) -> pd.DataFrame:
    """A CSV with the public "USA Real Estate" columns; extra columns are kept, missing ones refused."""
    readable = io.BytesIO(source) if isinstance(source, bytes) else source
    frame = pd.read_csv(readable, dtype={"state": "string", "city": "string", "status": "string"}, low_memory=False)
    missing = [c for c in RAW_COLUMNS if c not in frame.columns]
    if missing:
        where = name or (str(source) if isinstance(source, Path) else "batch")
        raise ValueError(f"{where}: missing columns {missing}; expected the USA Real Estate layout {list(RAW_COLUMNS)}")
    return frame


def store_batch(store: DataStore, frame: pd.DataFrame) -> IngestReport:
    """Validate and store one batch under batches/<id>/; the id is the content hash of the input."""
    result: ValidationResult = validate_batch(frame)
    batch_id = content_id(frame)
    valid_uri = store.put_frame(f"batches/{batch_id}/valid.parquet", result.valid)
    quarantine_uri = None
    if len(result.quarantined):
        csv = result.quarantined.to_csv(index=False).encode()
        quarantine_uri = store.put_bytes(f"batches/{batch_id}/quarantine.csv", csv, "text/csv")
    reasons = result.quarantined["reason"].value_counts().to_dict() if len(result.quarantined) else {}
    return IngestReport(batch_id, valid_uri, quarantine_uri, len(result.valid), len(result.quarantined), reasons)


def batch_uris(store: DataStore) -> list[str]:
    return [store.uri(k) for k in store.list_keys("batches/") if k.endswith("/valid.parquet")]
