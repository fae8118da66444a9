"""MLflow's scoring protocol (`POST /invocations`, as `mlflow models serve` speaks it): every input
format -> the model's matrix, or a ScoringFailure that becomes MLflow's error body.

JSON (dataframe_split with or without index, dataframe_records, inputs and instances as records or
columns, optional params), CSV and Parquet. Bodies are decoded by msgspec (C, bounded nesting),
checked for shape here and for values by the contract's fast path (`matrix_from_columns`, the
same one the registered pyfunc uses); only a refused batch pays for pydantic, which names the
row and field.
"""

from __future__ import annotations

import io
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from ..features import matrix_from_columns, rows_to_matrix
from .bodies import MAX_BATCH_ROWS, Listing

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"
_listings = TypeAdapter(list[Listing])


class ScoringFailure(Exception):
    """A request the protocol refuses: `status`, MLflow's `error_code` and a message, and for values
    that break the contract, `detail` naming each row and field."""

    def __init__(self, message: str, status: int = 400, error_code: str = "BAD_REQUEST", detail: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message, self.detail = status, error_code, message, detail or []

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message, "detail": self.detail}


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header; 415 for anything MLflow's server would refuse
    (another type, a charset other than UTF-8, unknown parameters)."""
    if not content_type:
        raise ScoringFailure(f"a Content-Type is required: one of {JSON}, {CSV}, {PARQUET}", status=415)
    kind, *parameters = (part.strip() for part in content_type.split(";"))
    kind = kind.lower()
    if kind not in (JSON, CSV, PARQUET):
        raise ScoringFailure(f"unsupported Content-Type {kind!r}: one of {JSON}, {CSV}, {PARQUET}", status=415)
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset":
            raise ScoringFailure(f"unsupported Content-Type parameter {name.strip()!r}", status=415)
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise ScoringFailure("the scoring server only supports UTF-8", status=415)
    return kind


def parse(body: bytes, kind: str) -> np.ndarray:
    """A body of the given media type -> the model's matrix (1 to MAX_BATCH_ROWS rows)."""
    if kind == JSON:
        columns, where = _json_columns(body)
    else:
        columns, where = _frame_columns(body, kind), ["body"]
    rows = len(next(iter(columns.values()))) if columns else 0
    if not 0 < rows <= MAX_BATCH_ROWS:
        raise ScoringFailure(f"a batch holds 1 to {MAX_BATCH_ROWS} rows, got {rows}")
    matrix = matrix_from_columns(columns)
    if matrix is not None:
        return matrix
    return _checked_by_pydantic(columns, rows, where)


def _json_columns(body: bytes) -> tuple[dict[str, Any], list[str | int]]:
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as error:
        raise ScoringFailure(f"body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ScoringFailure(f"the body must be a JSON object with exactly one of {', '.join(FORMATS)}")
    keys = [key for key in payload if key in FORMATS]
    unknown = [key for key in payload if key not in FORMATS and key != "params"]
    if len(keys) != 1 or unknown:
        raise ScoringFailure(f"the body must hold exactly one of {', '.join(FORMATS)} (and optionally params); got {list(payload)}")
    if "params" in payload and not isinstance(payload["params"], dict):
        raise ScoringFailure("params must be a JSON object")
    key = keys[0]
    data = payload[key]
    if key == "dataframe_split":
        return _split_columns(data), ["body", key]
    if isinstance(data, list):
        return _record_columns(data, key), ["body", key]
    if isinstance(data, dict) and key != "dataframe_records":
        return _column_arrays(data, key), ["body", key]
    shapes = "a list of records" if key == "dataframe_records" else "a list of records or an object of columns"
    raise ScoringFailure(f"{key} must be {shapes}")


def _split_columns(split: Any) -> dict[str, list]:
    if not isinstance(split, dict) or "data" not in split or "columns" not in split or split.keys() - {"columns", "data", "index"}:
        raise ScoringFailure("dataframe_split needs 'columns' and 'data' (and optionally 'index'), nothing else")
    names, data, index = split["columns"], split["data"], split.get("index")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) or len(set(names)) != len(names):
        raise ScoringFailure("dataframe_split.columns must be a list of distinct column names")
    if not isinstance(data, list) or not all(isinstance(row, list) and len(row) == len(names) for row in data):
        raise ScoringFailure(f"dataframe_split.data must be a list of rows, each a list of {len(names)} values (one per column)")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise ScoringFailure(f"dataframe_split.index must be a list with one label per row ({len(data)})")
    return {name: [row[i] for row in data] for i, name in enumerate(names)}


def _record_columns(records: list, key: str) -> dict[str, list]:
    if not all(isinstance(record, dict) for record in records):
        raise ScoringFailure(f"{key} must be a list of records (JSON objects)")
    names = {name for record in records for name in record}
    return {name: [record.get(name, _MISSING) for record in records] for name in names}


def _column_arrays(columns: dict, key: str) -> dict[str, list]:
    lists = [isinstance(values, list) for values in columns.values()]
    if not any(lists):  # all scalars: one row
        return {name: [value] for name, value in columns.items()}
    if not all(lists) or len({len(values) for values in columns.values()}) != 1:
        raise ScoringFailure(f"{key} as columns: every column a list, all of the same length (or every column one value)")
    return dict(columns)


def _frame_columns(body: bytes, kind: str) -> dict[str, Any]:
    try:
        frame = pd.read_parquet(io.BytesIO(body)) if kind == PARQUET else pd.read_csv(io.BytesIO(body), encoding="utf-8")
    except Exception as error:  # the parsers raise many kinds; each means the body is not a table
        raise ScoringFailure(f"body is not a valid {'Parquet file' if kind == PARQUET else 'CSV table'}: {error}") from None
    if not frame.columns.is_unique or not all(isinstance(name, str) for name in frame.columns):
        raise ScoringFailure("the table's column names must be distinct strings")
    return {name: frame[name] for name in frame.columns}


class _Missing:
    """A record without this field: pydantic reports it as missing."""


_MISSING = _Missing()


def _checked_by_pydantic(columns: dict[str, Any], rows: int, where: list[str | int]) -> np.ndarray:
    values = {name: column.tolist() if isinstance(column, pd.Series) else list(column) for name, column in columns.items()}
    records = [{name: column[i] for name, column in values.items() if column[i] is not _MISSING} for i in range(rows)]
    try:
        listings = _listings.validate_python(records)
    except ValidationError as error:
        detail = [{"loc": where + list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors(include_input=False)[:20]]
        first = detail[0]
        message = f"{len(error.errors())} invalid value(s); first at {'.'.join(map(str, first['loc'][1:]))}: {first['msg']}"
        raise ScoringFailure(message, error_code="INVALID_PARAMETER_VALUE", detail=detail) from None
    return rows_to_matrix(listings)
