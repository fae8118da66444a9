"""`mlops` command line: the pipeline's steps, serving and the UI. (The local dev stack and the
demo are `mlops-dev`, in services/dev: not shipped.)"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
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

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
