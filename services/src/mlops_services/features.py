"""Records -> the model's numeric matrix. The one encoding shared by training, serving and drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd

from .contract import FEATURES, NUMERIC_FEATURES, STATES

STATE_CODES: dict[str, int] = {state: code for code, state in enumerate(STATES)}
NUMERIC_NAMES: tuple[str, ...] = tuple(f.name for f in NUMERIC_FEATURES)
# Column index of the categorical feature in the matrix.
STATE_COLUMN = len(NUMERIC_NAMES)


def frame_to_matrix(frame: pd.DataFrame) -> np.ndarray:
    """A validated frame -> float64 matrix in FEATURES order; the state becomes its fixed code."""
    numeric = frame[list(NUMERIC_NAMES)].to_numpy(dtype=np.float64)
    codes = frame["state"].map(STATE_CODES).to_numpy(dtype=np.float64)
    return np.column_stack([numeric, codes])


_numeric_values = attrgetter(*NUMERIC_NAMES)


def rows_to_matrix(rows: Sequence[Any]) -> np.ndarray:
    """Validated request rows (objects with the feature attributes, already range-checked) ->
    matrix: read straight from the objects into preallocated arrays, without dicts or pandas."""
    n = len(rows)
    numeric = np.fromiter(chain.from_iterable(map(_numeric_values, rows)), dtype=np.float64, count=n * len(NUMERIC_NAMES))
    codes = np.fromiter((STATE_CODES[r.state] for r in rows), dtype=np.float64, count=n)
    return np.column_stack([numeric.reshape(n, len(NUMERIC_NAMES)), codes])


_BOUNDS = tuple((f.name, f.minimum, f.maximum) for f in NUMERIC_FEATURES)
_FEATURE_SET = frozenset(FEATURES)


def matrix_from_columns(columns: Mapping[str, Any]) -> np.ndarray | None:
    """The contract's fast path for columns (a DataFrame's, or a request's columns of JSON values)
    -> the model's matrix, or None when anything breaks the contract: exactly the features, equal
    lengths, numbers (not bools or strings) finite and in range, states spelled as the contract
    spells them. Vectorised, so a row costs no Python beyond reading the state's code. Whoever
    gets None asks the slow path (pydantic, or `validate_batch`) for the reason; that path, not
    this one, is the reference, and the tests hold the two to the same answers."""
    if columns.keys() != _FEATURE_SET:
        return None
    numeric = []
    for name, low, high in _BOUNDS:
        values = _numbers(columns[name])
        if values is None or not np.all((values >= low) & (values <= high)):  # NaN fails both
            return None
        numeric.append(values)
    states = columns["state"]
    n = len(numeric[0])
    if n == 0 or any(len(v) != n for v in numeric) or len(states) != n:
        return None
    codes = np.fromiter((STATE_CODES.get(s, -1) if isinstance(s, str) else -1 for s in states), dtype=np.float64, count=n)
    if n and codes.min() < 0:
        return None
    return np.column_stack([*numeric, codes])


def _numbers(column: Any) -> np.ndarray | None:
    """A column of numbers as float64; None when it holds anything else (bools, strings, nulls)."""
    if isinstance(column, np.ndarray | pd.Series | pd.Index):
        kind = column.dtype.kind
        if kind in "iuf":
            return np.asarray(column, dtype=np.float64)
        if kind != "O":
            return None
        column = column.tolist()
    elif not isinstance(column, list):
        return None
    kinds = set(map(type, column))
    if not all(k in (int, float) or (issubclass(k, int | float | np.integer | np.floating) and k is not bool) for k in kinds):
        return None
    return np.asarray(column, dtype=np.float64)


def feature_names() -> list[str]:
    return list(FEATURES)
