"""`make bench`: measured figures for docs/benchmarks.md (not a test: nothing here asserts).

Starts a private stack, trains on 100k rows and promotes, then loads the API, `mlflow models
serve` of the registered pyfunc (`@champion`), and `mlflow models serve` of the same booster in
MLflow's native LightGBM flavor (the honest peer: what any MLflow server costs per request) with
wrk on loopback, one after the other, and records wrk's own CPU time so it is visible how much of
the 2 cores the load generator took.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mlops_dev.stack import Ports, Stack, free_port, http_ok, wait_for

from mlops_services import drift, pipeline, synth
from mlops_services.settings import Settings

HOUSE = {"bed": 3, "bath": 2, "acre_lot": 0.25, "house_size": 1800, "state": "Texas"}
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
# Each row is the median (by p50) of this many runs: on a shared 2-core VM one run in a few
# lands 2x off (seen: /predict c1 p50 0.62, 0.64, 1.51, 0.67 ms in four benches).
REPEATS = 3
# BENCH_ONLY=<regex>: run only the matching wrk rows (for iterating on one figure; the report
# is written only for a full run).
ONLY = re.compile(os.environ.get("BENCH_ONLY", ""))
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
"""


def wrk(url: str, body: dict | list, connections: int, threads: int = 1) -> dict:
    """One wrk run: req/s, p50/p99 in ms, and wrk's own CPU seconds per wall second."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % json.dumps(body))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(script.name)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "errors": int(errors.group(1)) if errors else 0,
        "wrk_cpu": cpu / DURATION,
    }


def start(argv: list[str], env: dict, ready: str, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: http_ok(ready), " ".join(argv[:3]), timeout=300, proc=proc)
    except (RuntimeError, TimeoutError):
        print(log.read_text()[-3000:], file=sys.stderr)
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(30)


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (apt-get install wrk)")
    state = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/var/tmp"))
    state.chmod(0o755)
    stack = Stack(state, Ports.free())
    env = {**os.environ, **stack.up(), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    os.environ.update(env)
    results: dict = {}
    procs: list[subprocess.Popen] = []
    try:
        settings = Settings(spool_dir=state / "spool")
        pipeline.ingest(settings, rows=125_000, seed=1)  # 100k training rows after the 20 % holdout
        result, snapshot = pipeline.train(settings)
        assert pipeline.evaluate_and_promote(settings, result.version, snapshot).promoted
        results["training"] = {"train_rows": result.train_rows, "seconds": result.seconds, **result.metrics}

        frame = synth.generate(1_000_000, seed=3)
        current = synth.generate(1_000_000, seed=4, drift=0.5)
        numeric = ("bed", "bath", "acre_lot", "house_size", "zip_code", "street")
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            drift.detect(frame, current, numeric=numeric, categorical=("state", "status"))
            timings.append(time.perf_counter() - started)
        results["drift_1m_x8_seconds"] = min(timings)

        bin_dir = Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"  # mlflow models serve execs `uvicorn` by name
        api_port, mlflow_port, mlflow2_port = free_port(), free_port(), free_port()
        api_env = {**env, "MLOPS_SPOOL_DIR": str(state / "spool")}
        procs.append(
            start(
                [str(bin_dir / "mlops"), "serve", "--port", str(api_port)], api_env, f"http://127.0.0.1:{api_port}/ready", state / "api.log"
            )
        )
        model_uri = f"models:/{settings.model_name}@champion"
        native_uri, native_house = save_native_flavor(model_uri, state / "native")
        native_port = free_port()
        for port, workers, uri in ((mlflow_port, 1, model_uri), (mlflow2_port, 2, model_uri), (native_port, 1, native_uri)):
            procs.append(
                start(
                    [
                        str(bin_dir / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        uri,
                        "--env-manager",
                        "local",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-w",
                        str(workers),
                    ],
                    env,
                    f"http://127.0.0.1:{port}/ping",
                    state / f"mlflow-{port}.log",
                )
            )
        api = f"http://127.0.0.1:{api_port}"
        records = {"dataframe_records": [HOUSE]}
        batch = [dict(HOUSE, house_size=1000 + i) for i in range(1000)]
        runs = {
            "api /predict c1": (f"{api}/predict", HOUSE, 1),
            "api /predict c8": (f"{api}/predict", HOUSE, 8),
            "api /invocations c8": (f"{api}/invocations", records, 8),
            "mlflow serve pyfunc 1 worker c1": (f"http://127.0.0.1:{mlflow_port}/invocations", records, 1),
            "mlflow serve pyfunc 1 worker c8": (f"http://127.0.0.1:{mlflow_port}/invocations", records, 8),
            "mlflow serve pyfunc 2 workers c8": (f"http://127.0.0.1:{mlflow2_port}/invocations", records, 8),
            "mlflow serve native flavor 1 worker c1": (f"http://127.0.0.1:{native_port}/invocations", native_house, 1),
            "mlflow serve native flavor 1 worker c8": (f"http://127.0.0.1:{native_port}/invocations", native_house, 8),
            "api /explain c1": (f"{api}/explain", HOUSE, 1),
            "api /predict 1000 rows c1": (f"{api}/predict", batch, 1),
        }
        selected = {name: run for name, run in runs.items() if ONLY.search(name)}
        results["load_before"] = os.getloadavg()[0]
        for url, body, connections in selected.values():
            wrk(url, body, connections)  # warm-up: lazy imports, caches, JIT of numba in shap
        # Round-robin over the rows, not one row's repeats after another: a drift in the shared
        # machine's load then falls on every row alike, and rows compared with each other (API,
        # pyfunc, native flavor) are measured minutes, not seconds, apart no more.
        measured: dict[str, list[dict]] = {name: [] for name in selected}
        for _ in range(REPEATS):
            for name, (url, body, connections) in selected.items():
                measured[name].append(wrk(url, body, connections))
        results["load_after"] = os.getloadavg()[0]
        for name, runs_of_row in measured.items():
            repeated = sorted(runs_of_row, key=lambda r: r["p50_ms"])
            results[name] = {**repeated[REPEATS // 2], "p50_runs_ms": [r["p50_ms"] for r in repeated]}
            print(name, results[name], flush=True)
    finally:
        for proc in procs:
            stop(proc)
        stack.down()
        shutil.rmtree(state, ignore_errors=True)

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    machine = f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
    print(json.dumps(results, indent=1))
    if not ONLY.pattern:
        write_report(results, machine)


def save_native_flavor(model_uri: str, path: Path) -> tuple[str, dict]:
    """The registered version's own booster saved in MLflow's native LightGBM flavor, and a request
    body for it (the state as its code: that flavor takes the model's matrix as it is)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from mlops_services.contract import FEATURES
    from mlops_services.features import frame_to_matrix

    booster = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().booster
    matrix = pd.DataFrame(frame_to_matrix(pd.DataFrame([HOUSE])), columns=list(FEATURES))
    mlflow.lightgbm.save_model(booster, str(path), signature=infer_signature(matrix, booster.predict(matrix.to_numpy())))
    return str(path), {"dataframe_records": matrix.to_dict(orient="records")}


def verdicts(results: dict) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target of the services issues."""
    c1, c8 = results["api /predict c1"], results["api /predict c8"]
    serve1, serve2 = results["mlflow serve pyfunc 1 worker c8"], results["mlflow serve pyfunc 2 workers c8"]
    native = results["mlflow serve native flavor 1 worker c8"]
    batch, explain = results["api /predict 1000 rows c1"], results["api /explain c1"]
    drift_s = results["drift_1m_x8_seconds"]
    return [
        ("/predict single row p50 ≤ 1.0 ms at concurrency 1", f"{c1['p50_ms']:.2f} ms", c1["p50_ms"] <= 1.0),
        ("/predict c8 ≥ 3× `mlflow models serve` (1 worker)", f"{c8['rps'] / serve1['rps']:.1f}×", c8["rps"] >= 3 * serve1["rps"]),
        ("/predict c8 ≥ 3× `mlflow models serve` (2 workers)", f"{c8['rps'] / serve2['rps']:.1f}×", c8["rps"] >= 3 * serve2["rps"]),
        ("/predict c8 p99 ≤ 15 ms", f"{c8['p99_ms']:.2f} ms", c8["p99_ms"] <= 15),
        ("1,000-row batch p50 ≤ 5 ms", f"{batch['p50_ms']:.2f} ms", batch["p50_ms"] <= 5),
        ("/explain p50 ≤ 2.5 ms", f"{explain['p50_ms']:.2f} ms", explain["p50_ms"] <= 2.5),
        ("drift, 1M rows × 8 features < 2 s", f"{drift_s:.2f} s", drift_s < 2),
        (
            "`@champion` pyfunc under `mlflow models serve` c8 ≥ 2/3 of the native LightGBM flavor (1 worker each)",
            f"{serve1['rps'] / native['rps']:.2f}",
            serve1["rps"] >= 2 / 3 * native["rps"],
        ),
    ]


def write_report(results: dict, machine: str) -> None:
    def row(name: str) -> str:
        r = results[name]
        spread = " / ".join(f"{p50:.2f}" for p50 in r["p50_runs_ms"])
        return f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['wrk_cpu']:.2f} | {spread} |"

    ours, pyfunc = results["api /predict c8"]["rps"], results["mlflow serve pyfunc 1 worker c8"]["rps"]
    native = results["mlflow serve native flavor 1 worker c8"]["rps"]
    training = results["training"]
    text = (
        f"""# Benchmarks

Made by `make bench` on {dt.date.today().isoformat()}: {machine}.
The 1-minute load average was {results["load_before"]:.1f} before the wrk runs and {results["load_after"]:.1f} after; the
bench itself (drift runs just before, servers starting, then a server under load and wrk) makes
about 2 to 3 of it, so more than that means other work shared the 2 cores. Load by `wrk` on loopback for
{DURATION} s per run after a warm-up run; each row is the median run (by p50) of {REPEATS}, with the
p50 of all {REPEATS} in the last column; the runs go round-robin over the rows, so a change in the
machine's load falls on every row alike. One server under load at a time, load generator and
servers on the same 2 cores: the wrk CPU column is the CPU (in cores) that wrk itself used,
taken from the servers. Our API is one uvicorn process; `mlflow models serve` serves the same registered
version (`models:/…@champion`, the pyfunc) with its default one worker, and with two, and the same
booster saved in MLflow's native LightGBM flavor (the peer any MLflow server gives a LightGBM model)
with one.

| run | req/s | p50 ms | p99 ms | non-2xx | wrk CPU (cores) | p50 of each run |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
"""
        + "\n".join(row(name) for name in results if isinstance(results[name], dict) and "rps" in results[name])
        + f"""

- Throughput at concurrency 8 (1 worker each): API /predict vs the pyfunc under `mlflow models serve`
  {ours / pyfunc:.1f}×, vs the native LightGBM flavor {ours / native:.1f}×; the pyfunc reaches
  {pyfunc / native:.2f} of the native flavor's throughput.
- Drift, 1,000,000 rows × 8 features (6 KS, 2 PSI + chi-square): {results["drift_1m_x8_seconds"]:.2f} s (best of 3).
- Training on {training["train_rows"]:,} rows: {training["seconds"]:.1f} s (holdout RMSE ${training["rmse"]:,.0f}, R² {training["r2"]:.3f}).

Targets from the services issue on 2 cores, against this run:

| target | measured | met |
| --- | ---: | :---: |
"""
        + "\n".join(f"| {name} | {measured} | {'yes' if met else '**no**'} |" for name, measured, met in verdicts(results))
        + "\n\nHow the 1,000-row batch went from 21 ms to under 5 ms, and the model change it included, is in\n"
        + "[services.md](services.md#the-batch-path-1000-rows-in-under-5-ms-on-2-cores).\n"
    )
    path = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    path.write_text(text)
    print(f"written {path}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
