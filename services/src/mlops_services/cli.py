"""`mlops` command line: the pipeline's steps, serving, the UI and the local stack."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from .settings import Settings


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def _settings() -> Settings:
    return Settings()


def cmd_generate(args: argparse.Namespace) -> None:
    from . import synth

    synth.generate(args.rows, seed=args.seed, drift=args.drift).to_csv(args.out, index=False)
    print(f"{args.rows} listings written to {args.out}")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from . import pipeline

    _print(pipeline.run(_settings(), args.csv, args.rows, args.seed, args.drift))


def cmd_ingest(args: argparse.Namespace) -> None:
    from . import pipeline

    _print(pipeline.ingest(_settings(), args.csv, args.rows, args.seed, args.drift))


def cmd_promote(args: argparse.Namespace) -> None:
    from . import pipeline

    _print(pipeline.evaluate_and_promote(_settings(), args.version, args.snapshot))


def cmd_rollback(_: argparse.Namespace) -> None:
    from . import pipeline, registry

    settings = _settings()
    demoted, restored = registry.rollback(settings)
    print(f"@champion: v{demoted} -> v{restored}; API reload: {pipeline.reload_api(settings)}")


def cmd_history(_: argparse.Namespace) -> None:
    from . import registry

    _print(registry.history(_settings()))


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .serving.app import create_app

    settings = _settings()
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        log_level="warning",
        access_log=False,
    )


def cmd_ui(args: argparse.Namespace) -> None:
    script = Path(__file__).parent / "ui" / "app.py"
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.address",
            args.host,
            "--server.port",
            str(args.port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
    )


def cmd_stack(args: argparse.Namespace) -> None:
    from .stack import Stack

    stack = Stack.load(args.state)
    if args.action == "up":
        stack.up()
        print(f"stack up; environment in {stack.state / 'env'}")
    elif args.action == "down":
        stack.down()
        print("stack stopped; state kept in", stack.state)
    else:
        print(stack.write_env_file().read_text(), end="")


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole local platform: stack, one pipeline run, API and UI; a second `up` keeps the registry and data."""
    from .stack import Stack

    stack = Stack.load(args.state)
    if args.action == "down":
        stack.down()
        print(f"demo stopped; state kept in {stack.state} (delete it to start from scratch)")
        return
    started = time.monotonic()
    environment = stack.up()
    os.environ.update(environment)
    api_url = f"http://127.0.0.1:{args.api_port}"
    apps_env = {
        "MLOPS_API_PORT": str(args.api_port),
        "MLOPS_API_URL": api_url,
        "MLOPS_SPOOL_DIR": str(stack.state / "spool"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    os.environ.update(apps_env)
    from . import pipeline
    from .ingest import batch_uris
    from .storage import DataStore

    settings = Settings()
    store = DataStore(settings)
    store.ensure_bucket()
    runs = len(batch_uris(store))
    # Each demo run brings a new batch; later ones drift a little, as real data would.
    summary = pipeline.run(settings, rows=args.rows, seed=runs, drift_level=min(0.15 * runs, 1.0))
    mlops = str(Path(sys.executable).parent / "mlops")
    stack.start_app("api", [mlops, "serve", "--host", "127.0.0.1", "--port", str(args.api_port)], f"{api_url}/ready", apps_env)
    ui_url = f"http://127.0.0.1:{args.ui_port}"
    stack.start_app("ui", [mlops, "ui", "--port", str(args.ui_port)], f"{ui_url}/_stcore/health", apps_env)
    decision = summary["promotion"]
    verdict = "promoted to @champion" if decision["promoted"] else "kept as challenger: " + "; ".join(decision["reasons"])
    metrics = summary["train"]["metrics"]
    print(f"""
demo up in {time.monotonic() - started:.0f} s (state: {stack.state})
  batch {summary["ingest"]["batch_id"]}: {summary["ingest"]["valid_rows"]} valid rows, {summary["ingest"]["quarantined_rows"]} quarantined
  drift vs champion's data: {summary["drift"] or "no champion before this run"}
  model v{summary["train"]["version"]}: holdout RMSE ${metrics["rmse"]:,.0f}, R2 {metrics["r2"]:.3f}, {verdict}
  API     {api_url}  (docs: {api_url}/docs)
  UI      {ui_url}
  MLflow  {environment["MLFLOW_TRACKING_URI"]}
  S3      {environment["MLFLOW_S3_ENDPOINT_URL"]}  (credentials in {stack.state / "env"})
try:
  curl -s -X POST {api_url}/predict -H 'content-type: application/json' \\
       -d '{{"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Texas"}}'
stop with: make demo-down""")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def batch_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--csv", type=Path, help="a CSV in the USA Real Estate layout (default: a synthetic batch)")
        p.add_argument("--rows", type=int, default=20_000, help="synthetic rows")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--drift", type=float, default=0.0, help="0 = reference population, 1 = strongly drifted")

    p = sub.add_parser("generate", help="write a synthetic CSV")
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drift", type=float, default=0.0)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("pipeline", help="ingest -> validate -> drift -> train -> evaluate -> promote -> reload")
    batch_args(p)
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser("ingest", help="validate and store one batch")
    batch_args(p)
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("promote", help="evaluate a registered version against the champion and promote it if better")
    p.add_argument("--version", required=True)
    p.add_argument("--snapshot", required=True, help="s3:// URI of the snapshot whose holdout both are scored on")
    p.set_defaults(func=cmd_promote)
    sub.add_parser("rollback", help="@champion back to @previous, then reload the API").set_defaults(func=cmd_rollback)
    sub.add_parser("history", help="registered versions with aliases and promotion records").set_defaults(func=cmd_history)
    p = sub.add_parser("serve", help="run the API (uvicorn)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("ui", help="run the Streamlit UI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("stack", help="local PostgreSQL + SeaweedFS + MLflow on loopback")
    p.add_argument("action", choices=["up", "down", "env"])
    p.add_argument("--state", type=Path, default=Path(os.environ.get("MLOPS_STATE_DIR", ".mlops-state")))
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo", help="the local platform: stack + pipeline + API + UI (up), or stop it all (down)")
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--state", type=Path, default=Path(os.environ.get("MLOPS_STATE_DIR", ".mlops-state")))
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--api-port", type=int, default=8000)
    p.add_argument("--ui-port", type=int, default=8501)
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
