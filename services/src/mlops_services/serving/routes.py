"""The API's routes. Everything they use comes from `app.state` through the dependencies below
(set up by `create_app`); nothing here is global. Requests are counted by the middleware, not here."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from mlflow.version import VERSION as MLFLOW_VERSION
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..contract import FEATURES
from ..features import rows_to_matrix
from ..settings import Settings
from . import scoring
from .bodies import (
    MAX_BATCH_ROWS,
    Explanation,
    Listing,
    Prediction,
    Predictions,
    Problem,
    ScoringError,
    ScoringPredictions,
    ValidationFailure,
    decode_batch_fast,
)
from .inference_log import InferenceLog
from .loader import LoadedModel, ModelHolder
from .metrics import ApiMetrics

router = APIRouter()
_listings = TypeAdapter(list[Listing])
# Scored off the event loop above this many rows, so a big batch does not stall small requests.
THREAD_ROWS = 2_000


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def model_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


@dataclass(frozen=True)
class Scorer:
    """The model a request started with, and where its predictions are recorded."""

    model: LoadedModel
    metrics: ApiMetrics
    inference_log: InferenceLog

    def __call__(self, endpoint: str, matrix: np.ndarray) -> list[float]:
        predicted = self.model.predict(matrix)
        self.metrics.predictions.observe_many(predicted)
        self.inference_log.record(endpoint, self.model.name, self.model.version, matrix, predicted)
        return predicted.tolist()

    async def score(self, endpoint: str, matrix: np.ndarray) -> list[float]:
        if len(matrix) > THREAD_ROWS:
            return await asyncio.to_thread(self, endpoint, matrix)
        return self(endpoint, matrix)


async def scorer(request: Request) -> Scorer:
    """503 until a model is loaded. Async, so FastAPI does not send it to the thread pool."""
    state = request.app.state
    model = state.holder.current
    if model is None:
        raise HTTPException(status_code=503, detail="no model loaded yet: see GET /ready")
    return Scorer(model, state.metrics, state.inference_log)


ScorerDep = Annotated[Scorer, Depends(scorer)]
HolderDep = Annotated[ModelHolder, Depends(model_holder)]
SettingsDep = Annotated[Settings, Depends(app_settings)]

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "body larger than MLOPS_MAX_BODY_BYTES"},
    415: {"model": Problem, "description": "a Content-Type other than application/json"},
    422: {"model": ValidationFailure, "description": "the body breaks the contract; each error names its field"},
    503: {"model": Problem, "description": "no model loaded yet"},
}


_LISTING = "#/components/schemas/Listing"


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _json_bytes(request: Request) -> bytes:
    content_type = request.headers.get("content-type")
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, f"Content-Type must be application/json, not {content_type!r}")
    return await request.body()


def _invalid(error: ValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": readable(error.errors(include_input=False), prefix="body")})


@router.post(
    "/predict",
    response_model=Prediction | Predictions,
    responses=_PROBLEMS,
    openapi_extra=_json_body(
        {
            "oneOf": [
                {"$ref": _LISTING},
                {"type": "array", "items": {"$ref": _LISTING}, "minItems": 1, "maxItems": MAX_BATCH_ROWS},
            ]
        }
    ),
)
async def predict(request: Request, score: ScorerDep) -> Response:
    """One listing (a JSON object) or many (a JSON list of 1 to 10,000); parsed here so errors name the field."""
    body = await _json_bytes(request)
    try:
        if body.lstrip()[:1] == b"[":
            listings = decode_batch_fast(body) or _listings.validate_json(body)
        else:
            listings = None
            listing = Listing.model_validate_json(body)
    except ValidationError as error:
        return _invalid(error)
    if listings is None:
        prices = score("/predict", rows_to_matrix([listing]))
        return _json(Prediction(price=prices[0], model_version=score.model.version))
    if not 0 < len(listings) <= MAX_BATCH_ROWS:
        raise HTTPException(422, f"a batch holds 1 to {MAX_BATCH_ROWS} records, got {len(listings)}")
    prices = await score.score("/predict", rows_to_matrix(listings))
    return _json(Predictions(prices=prices, model_version=score.model.version))


@router.post(
    "/invocations",
    response_model=ScoringPredictions,
    responses={
        400: {"model": ScoringError, "description": "MLflow's error body: a body of the wrong shape, or values that break the contract"},
        413: _PROBLEMS[413],
        415: {"model": ScoringError, "description": "a Content-Type MLflow's scoring server refuses too"},
        503: _PROBLEMS[503],
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                scoring.JSON: {"schema": {"$ref": "#/components/schemas/InvocationBody"}},
                scoring.CSV: {"schema": {"$ref": "#/components/schemas/InvocationCsv"}},
                scoring.PARQUET: {"schema": {"type": "string", "format": "binary", "description": "a Parquet file of the same table"}},
            },
        }
    },
)
async def invocations(request: Request, score: ScorerDep) -> Response:
    """MLflow's scoring protocol, as `mlflow models serve` speaks it (see serving/scoring.py)."""
    try:
        kind = scoring.media_type(request.headers.get("content-type"))
        matrix = scoring.parse(await request.body(), kind)
    except scoring.ScoringFailure as failure:
        return JSONResponse(status_code=failure.status, content=failure.body())
    prices = await score.score("/invocations", matrix)
    return _json(ScoringPredictions(predictions=prices))


@router.post(
    "/explain", response_model=Explanation, responses=_PROBLEMS, openapi_extra=_json_body({"$ref": "#/components/schemas/Listing"})
)
async def explain(request: Request, score: ScorerDep) -> Response:
    """One listing: price, base value and SHAP contributions in dollars."""
    try:
        listing = Listing.model_validate_json(await _json_bytes(request))
    except ValidationError as error:
        return _invalid(error)
    model = score.model
    matrix = rows_to_matrix([listing])
    values, base = model.explain(matrix)
    return _json(
        Explanation(
            price=float(model.predict(matrix)[0]),
            base_value=base,
            model_version=model.version,
            contributions={name: float(v) for name, v in zip(FEATURES, values[0], strict=True)},
        )
    )


@router.get("/ping", response_class=Response, responses={200: {"content": {"text/plain": {}}}, 503: {"content": {"text/plain": {}}}})
async def ping(holder: HolderDep) -> Response:
    """MLflow's health route: 200 once a model is loaded (what `ScoringServerClient.wait_server_ready` waits for)."""
    return Response("\n", status_code=200 if holder.current else 503, media_type="text/plain")


@router.get("/version", response_class=Response, responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def version() -> Response:
    """MLflow's version route: the MLflow version whose scoring protocol this server speaks."""
    return Response(MLFLOW_VERSION, media_type="text/plain")


class Health(BaseModel):
    status: str


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness only: touches neither the database nor the registry (readiness: /ready, /ping)."""
    return Health(status="ok")


class Readiness(BaseModel):
    ready: bool
    model: str
    version: str | None
    last_error: str | None
    inference_log_pending: int


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness, "description": "no model loaded yet"}})
async def ready(request: Request, holder: HolderDep, settings: SettingsDep) -> JSONResponse:
    model = holder.current
    body = Readiness(
        ready=model is not None,
        model=settings.model_name,
        version=model.version if model else None,
        last_error=holder.last_error,
        inference_log_pending=request.app.state.inference_log.pending,
    )
    return JSONResponse(body.model_dump(), status_code=200 if model else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class Reloading(BaseModel):
    status: str
    serving: str | None


@router.post(
    "/reload",
    status_code=202,
    response_model=Reloading,
    responses={
        401: {"model": Problem, "description": "no or a wrong bearer token"},
        403: {"model": Problem, "description": "reload disabled"},
    },
)
async def reload(holder: HolderDep, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> Reloading:
    """Load the registry's @champion in the background and swap it in; needs `Authorization: Bearer $MLOPS_RELOAD_TOKEN`."""
    token = settings.reload_token.get_secret_value() if settings.reload_token else None
    if not token:
        raise HTTPException(403, "reload is disabled: set MLOPS_RELOAD_TOKEN")
    offered = (authorization or "").removeprefix("Bearer ").strip()
    if not secrets.compare_digest(offered.encode(), token.encode()):
        raise HTTPException(401, "a valid 'Authorization: Bearer <MLOPS_RELOAD_TOKEN>' header is required")
    started = holder.start_reload()
    return Reloading(status="reloading" if started else "already reloading", serving=holder.current.version if holder.current else None)


def _json(body: BaseModel) -> Response:
    """Serialised by pydantic-core in one call: FastAPI's response_model path (validate, then
    jsonable_encoder) costs ~2 ms for a 1,000-price batch. The response_model stays for the docs."""
    return Response(body.model_dump_json(), media_type="application/json")


def readable(errors: list[dict], prefix: str | None = None) -> list[dict]:
    """Validation errors naming the field (loc) with a message; never echoes whole inputs back."""
    head = [prefix] if prefix else []
    return [{"loc": head + list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
