"""The API: FastAPI app factory. `create_app()` builds everything from Settings and puts it on
`app.state`, where the routes' dependencies (serving/routes.py) find it; nothing is global."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from ..settings import Settings, get_settings
from .bodies import Listing, invocation_schemas
from .inference_log import InferenceLog, Spool
from .loader import LoadedModel, ModelHolder, load_champion
from .metrics import ApiMetrics
from .middleware import RequestMetrics
from .routes import readable, router
from .watcher import Champion, champion_version, follow_champion


def create_app(
    settings: Settings | None = None,
    loader: Callable[[Settings], LoadedModel] = load_champion,
    resolve_champion: Callable[[Settings], Champion] = champion_version,
) -> FastAPI:
    settings = settings or get_settings()
    metrics = ApiMetrics()
    holder = ModelHolder(settings, loader, metrics)
    inference_log = InferenceLog(
        settings.db_url,
        Spool(settings.spool_dir / "inference.jsonl", settings.spool_max_rows),
        metrics,
        settings.log_batch_rows,
        settings.log_flush_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        inference_log.start()
        holder.start_reload()
        watcher = asyncio.create_task(follow_champion(holder, settings, resolve_champion)) if settings.model_poll_seconds > 0 else None
        yield
        for task in (watcher, holder.reloading):
            if task:
                task.cancel()
        await asyncio.to_thread(inference_log.close)

    app = FastAPI(title="mlops-metal house-price API", version="1", lifespan=lifespan)
    app.state.settings, app.state.holder, app.state.metrics, app.state.inference_log = settings, holder, metrics, inference_log
    # Starlette's limit, once around the app (FastAPI's max_body_size wraps app, router and route:
    # three layers on every request): 413 from Content-Length, or while a chunked body streams in.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: counts the 413s too
    app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": readable(error.errors())})

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the body schemas that the routes read themselves (for speed
        and for errors that name the field) and so FastAPI cannot see."""
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Listing"] = Listing.model_json_schema()
            schemas.update(invocation_schemas())
        return app.openapi_schema

    app.openapi = openapi
    return app
