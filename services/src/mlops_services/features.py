"""Records -> the model's numeric matrix. The one encoding shared by training, serving and drift."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd

from .schema import FEATURES, NUMERIC_FEATURES, STATES

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


def feature_names() -> list[str]:
    return list(FEATURES)
