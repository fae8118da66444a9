"""The API's request and response bodies, and the JSON Schemas the OpenAPI document states for
them. Ranges and states come from the data contract (contract.py)."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from ..contract import FEATURES, NUMERIC_FEATURES, STATES

MAX_BATCH_ROWS = 10_000
_BOUNDS = {f.name: (f.minimum, f.maximum, f.description) for f in NUMERIC_FEATURES}

_KNOWN_STATES = frozenset(STATES)


def _known_state(value: str) -> str:
    if value not in _KNOWN_STATES:
        close = difflib.get_close_matches(value, STATES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (full name, e.g. 'Texas')"
        raise ValueError(f"{value!r} is not a US state or territory{hint}")
    return value


STATE_SCHEMA: dict[str, Any] = {"type": "string", "enum": list(STATES), "description": "US state or territory, full name"}
# Validated as a str with a suggestion for typos; documented as what it is, one of the states.
State = Annotated[str, AfterValidator(_known_state), WithJsonSchema(STATE_SCHEMA)]


def _bounded(name: str):
    low, high, description = _BOUNDS[name]
    # strict: a JSON number only (not "3", not true), as the schema says; an int is a number.
    return Field(ge=low, le=high, description=f"{description} ({low:g} to {high:g})", allow_inf_nan=False, strict=True)


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


class ScoringPredictions(BaseModel):
    """MLflow's scoring protocol answer: one price per row, in the rows' order."""

    predictions: list[float]


class Explanation(BaseModel):
    price: float = Field(description="predicted listing price, US dollars")
    base_value: float = Field(description="expected price over the training data, US dollars")
    contributions: dict[str, float] = Field(description="SHAP value per feature, US dollars; base + sum = price")
    model_version: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', then keys and row numbers down to the field")
    msg: str
    type: str


class ValidationFailure(BaseModel):
    """422 from /predict and /explain: every problem, each naming its field."""

    detail: list[FieldError] | str


class ScoringError(BaseModel):
    """MLflow's error body (as `mlflow models serve` answers), with `detail` naming fields when values break the contract."""

    error_code: Literal["BAD_REQUEST", "INVALID_PARAMETER_VALUE"]
    message: str
    detail: list[FieldError] = []


class Problem(BaseModel):
    detail: str


# -- /invocations: the body shapes MLflow's scoring protocol allows, as this model accepts them --


def _feature_schema(name: str) -> dict[str, Any]:
    return Listing.model_json_schema()["properties"][name]


def _rows(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_BATCH_ROWS}


def _csv_pattern() -> str:
    """A regex for CSV in the model's column order with plain decimals inside the contract's ranges."""
    fraction = r"(\.[0-9]{1,2})?"
    up_to_30 = rf"(30|[12]?[0-9]{fraction})"
    cells = {
        "bed": up_to_30,
        "bath": up_to_30,
        "acre_lot": rf"(1000|[0-9]{{1,3}}{fraction})",
        "house_size": rf"(50000|([1-9][0-9]{{2,3}}|[1-4][0-9]{{4}}){fraction})",
        "state": "(" + "|".join(STATES) + ")",
    }
    assert tuple(cells) == FEATURES
    row = ",".join(cells.values())
    return rf"^{','.join(FEATURES)}\n{row}(\n{row}){{0,19}}\n?$"


def invocation_schemas() -> dict[str, dict[str, Any]]:
    """Component schemas for /invocations (JSON Schema 2020-12, as OpenAPI 3.1 takes it). What JSON
    Schema cannot say is in the descriptions: split rows line up with `columns` (the model's order
    is stated exactly; other orders are accepted too), `index` is as long as `data`, and columns
    are as long as each other."""
    listing = {"$ref": "#/components/schemas/Listing"}
    columns = {
        "type": "object",
        "description": "one column per feature; all scalars (one row) or all lists of the same length",
        "oneOf": [
            {
                "properties": {name: _feature_schema(name) for name in FEATURES},
                "required": list(FEATURES),
                "additionalProperties": False,
            },
            {
                "properties": {name: _rows(_feature_schema(name)) for name in FEATURES},
                "required": list(FEATURES),
                "additionalProperties": False,
            },
        ],
    }
    in_order = {
        "type": "array",
        "prefixItems": [_feature_schema(name) for name in FEATURES],
        "items": False,
        "minItems": len(FEATURES),
    }
    split = {
        "type": "object",
        "description": (
            "pandas' 'split' orientation (DataFrame.to_dict(orient='split')): each row of `data` holds the values of "
            f"`columns` in that order. Shown with the model's order {list(FEATURES)}; any order of the same five names is "
            "accepted, with the rows in that order. `index`, when given, has one label per row and is ignored."
        ),
        "properties": {
            "columns": {"type": "array", "prefixItems": [{"const": name} for name in FEATURES], "items": False, "minItems": len(FEATURES)},
            "data": _rows(in_order),
            "index": {"type": "array", "items": {"type": ["string", "integer"]}, "maxItems": MAX_BATCH_ROWS},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    params = {"type": "object", "description": "MLflow inference params; this model declares none, so they are accepted and ignored"}

    def body(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {key: value, "params": params},
            "required": [key],
            "additionalProperties": False,
        }

    return {
        "DataframeSplit": split,
        "Columns": columns,
        "InvocationBody": {
            "description": "MLflow's scoring protocol: one of dataframe_split, dataframe_records, inputs, instances; optional params",
            "oneOf": [
                body("dataframe_split", {"$ref": "#/components/schemas/DataframeSplit"}),
                body("dataframe_records", _rows(listing)),
                body("inputs", {"oneOf": [_rows(listing), {"$ref": "#/components/schemas/Columns"}]}),
                body("instances", {"oneOf": [_rows(listing), {"$ref": "#/components/schemas/Columns"}]}),
            ],
        },
        "InvocationCsv": {
            "type": "string",
            "description": (
                "CSV, UTF-8: a header line naming the five features, then 1 to 10,000 rows (as pandas.DataFrame.to_csv writes "
                "it). The pattern shows the model's column order with plain decimals; any column order and any number "
                "notation pandas reads are accepted, within the same ranges."
            ),
            "pattern": _csv_pattern(),
        },
    }


# The batch fast path: the same contract (bounds and states from contract.py, unknown fields
# refused) decoded by msgspec, ~5x faster than pydantic for 1,000 rows (0.5 vs 2.8 ms). It is
# strict: anything it refuses (a number sent as a string, a typo, a value out of range) goes to
# pydantic, which either accepts it the same way or produces the 422 that names the field.
_FastListing = msgspec.defstruct(
    "_FastListing",
    [(name, Annotated[float, msgspec.Meta(ge=low, le=high)]) for name, (low, high, _) in _BOUNDS.items()] + [("state", Literal[STATES])],
    forbid_unknown_fields=True,
    gc=False,  # holds only floats and str: no cycles to track
)
_fast_batch = msgspec.json.Decoder(list[_FastListing])


def decode_batch_fast(body: bytes) -> list | None:
    """A JSON list of listings -> objects with the Listing attributes, or None when the fast
    decoder refuses it (the caller then validates with pydantic for the exact error)."""
    try:
        return _fast_batch.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
