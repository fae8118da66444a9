"""`mlops-dev`: the local stack (`stack up|down|env`) and the whole demo platform on it (`demo up|down`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from .stack import Stack


def cmd_stack(args: argparse.Namespace) -> None:
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
    from mlops_services import pipeline
    from mlops_services.ingest import batch_uris
    from mlops_services.settings import Settings
    from mlops_services.storage import DataStore

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
    parser = argparse.ArgumentParser(prog="mlops-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    state = Path(os.environ.get("MLOPS_STATE_DIR", ".mlops-state"))

    p = sub.add_parser("stack", help="local PostgreSQL + SeaweedFS + MLflow on loopback")
    p.add_argument("action", choices=["up", "down", "env"])
    p.add_argument("--state", type=Path, default=state)
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo", help="the local platform: stack + pipeline + API + UI (up), or stop it all (down)")
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--state", type=Path, default=state)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--api-port", type=int, default=8000)
    p.add_argument("--ui-port", type=int, default=8501)
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
