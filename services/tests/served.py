"""A real uvicorn server for an app, in a thread, on a free loopback port."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import httpx
import uvicorn
from mlops_dev.stack import free_port

from mlops_services.serving.app import create_app
from mlops_services.settings import Settings


@contextmanager
def running(app, ready_path: str, ready=lambda status: status == 200):
    """Any ASGI app under a real uvicorn server in a thread; yields an httpx client once
    `ready(status of GET ready_path)` holds."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                if ready(client.get(ready_path).status_code):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError(f"{ready_path} not ready")
        try:
            yield client
        finally:
            server.should_exit = True
            thread.join(30)


@contextmanager
def serve(settings: Settings, wait_ready: bool = True):
    app = create_app(settings)
    with running(app, "/ready", lambda status: status == 200 or (not wait_ready and status == 503)) as client:
        yield client, app


def promote_first_model(settings: Settings, rows: int, params) -> tuple[str, object]:
    """Ingest a synthetic batch, train with `params` and make that version @champion; returns (snapshot URI, frame)."""
    from mlops_services import pipeline
    from mlops_services.train import train_and_register

    pipeline.ingest(settings, rows=rows, seed=1)
    snapshot_uri, frame = pipeline.build_snapshot(settings)
    version = train_and_register(frame, snapshot_uri, settings, params).version
    assert pipeline.evaluate_and_promote(settings, version, snapshot_uri, frame).promoted
    return snapshot_uri, frame
