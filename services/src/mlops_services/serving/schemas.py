"""Request and response models; ranges come from the data contract in schema.py."""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..schema import NUMERIC_FEATURES, STATES

_BOUNDS = {f.name: (f.minimum, f.maximum, f.description) for f in NUMERIC_FEATURES}

_KNOWN_STATES = frozenset(STATES)


def _known_state(value: str) -> str:
    if value not in _KNOWN_STATES:
        close = difflib.get_close_matches(value, STATES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (full name, e.g. 'Texas')"
        raise ValueError(f"{value!r} is not a US state or territory{hint}")
    return value


State = Annotated[str, AfterValidator(_known_state)]


def _bounded(name: str):
    low, high, description = _BOUNDS[name]
    return Field(ge=low, le=high, description=f"{description} ({low:g} to {high:g})", allow_inf_nan=False)


class Listing(BaseModel):
    """One listing's features; unknown fields are refused so a typo never passes unnoticed."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Texas"}]}
    )

    bed: Annotated[float, _bounded("bed")]
    bath: Annotated[float, _bounded("bath")]
    acre_lot: Annotated[float, _bounded("acre_lot")]
    house_size: Annotated[float, _bounded("house_size")]
    state: State


class Prediction(BaseModel):
    price: float = Field(description="predicted listing price, US dollars")
    model_version: str


class Predictions(BaseModel):
    prices: list[float]
    model_version: str


class Explanation(BaseModel):
    price: float = Field(description="predicted listing price, US dollars")
    base_value: float = Field(description="expected price over the training data, US dollars")
    contributions: dict[str, float] = Field(description="SHAP value per feature, US dollars; base + sum = price")
    model_version: str
