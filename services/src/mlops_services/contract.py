"""The declared data contract: columns, types and plausible ranges, one place for every consumer.

Training batches, the API's request models and the drift tests all read these declarations,
so a range changes in one place only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TARGET = "price"

# US states and territories as the "USA Real Estate" dataset spells them.
STATES: tuple[str, ...] = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware",
    "District of Columbia", "Florida", "Georgia", "Guam", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa",
    "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota",
    "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey", "New Mexico",
    "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Puerto Rico",
    "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont",
    "Virgin Islands", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming",
)  # fmt: skip


@dataclass(frozen=True)
class NumericFeature:
    name: str
    minimum: float
    maximum: float
    description: str


# Bounds are "plausible for a residential listing", not the data's observed extremes.
NUMERIC_FEATURES: tuple[NumericFeature, ...] = (
    NumericFeature("bed", 0, 30, "bedrooms"),
    NumericFeature("bath", 0, 30, "bathrooms"),
    NumericFeature("acre_lot", 0, 1_000, "lot size in acres"),
    NumericFeature("house_size", 100, 50_000, "living area in square feet"),
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("state",)
FEATURES: tuple[str, ...] = tuple(f.name for f in NUMERIC_FEATURES) + CATEGORICAL_FEATURES
PRICE_RANGE: tuple[float, float] = (1_000.0, 100_000_000.0)

# The public "USA Real Estate" dataset's columns, in its order.
RAW_COLUMNS: tuple[str, ...] = (
    "brokered_by", "status", "price", "bed", "bath", "acre_lot", "street", "city", "state", "zip_code",
    "house_size", "prev_sold_date",
)  # fmt: skip


@dataclass(frozen=True)
class ValidationResult:
    """Rows that passed, and rows that did not with the reason for each (nothing is dropped silently)."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame

    @property
    def counts(self) -> dict[str, int]:
        return {"valid": len(self.valid), "quarantined": len(self.quarantined)}


def validate_batch(frame: pd.DataFrame, *, require_target: bool = True) -> ValidationResult:
    """Check every row against the contract; quarantined rows keep their data plus `reason`."""
    required = list(FEATURES) + ([TARGET] if require_target else [])
    missing_columns = [c for c in required if c not in frame.columns]
    if missing_columns:
        raise ValueError(f"batch lacks required columns {missing_columns}; expected at least {required}")

    work = frame.copy()
    reasons = pd.Series([""] * len(work), index=work.index, dtype=object)

    def flag(mask: pd.Series, reason: str) -> None:
        hit = mask & (reasons == "")
        reasons[hit] = reason

    bounds = [(f.name, f.minimum, f.maximum) for f in NUMERIC_FEATURES]
    if require_target:
        bounds.append((TARGET, *PRICE_RANGE))
    for name, low, high in bounds:
        values = pd.to_numeric(work[name], errors="coerce")
        flag(work[name].isna(), f"{name}: missing")
        flag(values.isna() & work[name].notna(), f"{name}: not a number")
        flag(~np.isfinite(values.fillna(0)) | (values < low) | (values > high), f"{name}: outside [{low:g}, {high:g}]")
        work[name] = values
    state = work["state"]
    flag(state.isna(), "state: missing")
    flag(~state.isin(STATES) & state.notna(), "state: not a known US state or territory")

    bad = reasons != ""
    quarantined = frame.loc[bad].copy()
    quarantined["reason"] = reasons[bad]
    valid = work.loc[~bad].copy()
    for feature in NUMERIC_FEATURES:
        valid[feature.name] = valid[feature.name].astype("float64")
    if require_target:
        valid[TARGET] = valid[TARGET].astype("float64")
    valid["state"] = valid["state"].astype(str)
    return ValidationResult(valid=valid.reset_index(drop=True), quarantined=quarantined.reset_index(drop=True))
