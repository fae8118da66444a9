"""Request accounting as plain ASGI middleware: every request is counted once, by route and
status, and timed, whatever answered it (a route, a validation handler, the body limit, a 404)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import ApiMetrics


class RequestMetrics:
    """Counts `mlops_api_requests_total{endpoint, status}` and observes the latency histogram. The
    endpoint is the route's path template (never the raw path: a scanner's URLs must not mint
    label values); requests no route matched are counted as `unmatched`. Pure ASGI, not
    BaseHTTPMiddleware: no extra task or stream per request on the hot path."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, the server error handler answers 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
