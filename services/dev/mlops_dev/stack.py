"""The local stack on loopback: PostgreSQL, SeaweedFS (S3) and an MLflow server, state in one directory.

`make demo`, the integration tests and `make bench` use it; it is not part of the shipped
package. Credentials are generated into the state directory on first start (never committed)
and handed to clients as environment variables, the same names the K3s deployment uses. A
second start reuses the state: registry and data stay.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path

PG_BIN = Path(os.environ.get("MLOPS_PG_BIN", "/usr/lib/postgresql/15/bin"))
BUCKETS = ("mlops-data", "mlflow-artifacts")


# Below Linux's ephemeral range (32768-60999): a port the kernel handed out for bind(0) is
# also handed to outgoing connections, which took one of ours between choosing and listening.
_LISTEN_PORTS = range(20_000, 32_768)
_random = random.SystemRandom()


def free_port(taken: frozenset[int] = frozenset()) -> int:
    """A loopback TCP port nobody listens on, outside the ephemeral range."""
    for _ in range(200):
        port = _random.choice(_LISTEN_PORTS)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_LISTEN_PORTS.start}-{_LISTEN_PORTS.stop - 1}")


def wait_for(check, what: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll a real readiness condition until it holds; fail with the process's exit if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return 200 <= response.status < 300


@dataclass
class Ports:
    postgres: int = 15432  # not 5432: Debian's own cluster may be listening there
    s3: int = 8333
    mlflow: int = 5000
    weed_master: int = 9333
    weed_volume: int = 18080
    weed_filer: int = 18888
    # SeaweedFS would derive these as port + 10000, which overflows for high free ports.
    weed_master_grpc: int = 19333
    weed_volume_grpc: int = 28080
    weed_filer_grpc: int = 28888
    s3_grpc: int = 18333

    @classmethod
    def free(cls) -> Ports:
        ports: list[int] = []
        for _ in fields(cls):
            ports.append(free_port(frozenset(ports)))
        return cls(*ports)


@dataclass
class Stack:
    state: Path
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"

    # -- layout ---------------------------------------------------------------------------
    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.json"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def _pidfile(self, name: str) -> Path:
        return self.state / "run" / f"{name}.pid"

    def credentials(self) -> dict[str, str]:
        if not self.secrets_file.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            values = {
                "pg_password": secrets.token_urlsafe(18),
                "s3_access_key": "mlops" + secrets.token_hex(6),
                "s3_secret_key": secrets.token_urlsafe(30),
                "reload_token": secrets.token_urlsafe(24),
            }
            self.secrets_file.write_text(json.dumps(values))
            self.secrets_file.chmod(0o600)
        return json.loads(self.secrets_file.read_text())

    def environment(self) -> dict[str, str]:
        """What clients (pipeline, API, UI, Airflow) need: the same variables as on K3s."""
        c = self.credentials()
        return {
            "MLFLOW_TRACKING_URI": f"http://{self.host}:{self.ports.mlflow}",
            "MLFLOW_S3_ENDPOINT_URL": f"http://{self.host}:{self.ports.s3}",
            "AWS_ACCESS_KEY_ID": c["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": c["s3_secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLOPS_DB_URL": f"postgresql://mlops:{c['pg_password']}@{self.host}:{self.ports.postgres}/mlops",
            "MLOPS_RELOAD_TOKEN": c["reload_token"],
        }

    def write_env_file(self) -> Path:
        path = self.state / "env"
        path.write_text("".join(f"export {k}='{v}'\n" for k, v in self.environment().items()))
        path.chmod(0o600)
        return path

    # -- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._pidfile(name).parent.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # survives the starting shell; stopped by its pid file
            **_as_user(user),
        )
        self._pidfile(name).write_text(str(proc.pid))
        return proc

    def _running(self, name: str) -> bool:
        pidfile = self._pidfile(name)
        if not pidfile.exists():
            return False
        try:
            os.kill(int(pidfile.read_text()), 0)
            return True
        except (ProcessLookupError, ValueError):
            return False

    def start_postgres(self) -> None:
        data = self.state / "postgres"
        c = self.credentials()
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres system user then.
        user = "postgres" if os.geteuid() == 0 else None
        if user and subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(self.state)], check=False).returncode:
            raise PermissionError(
                f"{self.state}: the {user} user cannot reach this directory (PostgreSQL refuses to run as root). "
                "Fix: point MLOPS_STATE_DIR at a directory whose parents are world-searchable, e.g. /var/tmp/mlops-demo."
            )
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            pwfile = self.state / "pgpass.tmp"
            pwfile.write_text(c["pg_password"])
            if user:
                for path in (data, pwfile):
                    shutil.chown(path, user, user)
            try:
                self._run_as(
                    user,
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "mlops",
                        "--pwfile",
                        str(pwfile),
                        "--auth-host=scram-sha-256",
                        "--auth-local=peer",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ],
                )
            finally:
                pwfile.unlink()
        if self._running("postgres"):
            return
        proc = self._spawn(
            "postgres",
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-h",
                self.host,
                "-p",
                str(self.ports.postgres),
                "-k",
                str(data),
                "-c",
                "max_connections=100",
                "-c",
                "fsync=on",
            ],
            user=user,
        )
        wait_for(lambda: self._pg_ready(), "PostgreSQL", proc=proc)
        self.ensure_database("mlops")
        self.ensure_database("mlflow")

    def _run_as(self, user: str | None, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, **_as_user(user))

    def _pg_ready(self) -> bool:
        return (
            subprocess.run([str(PG_BIN / "pg_isready"), "-h", self.host, "-p", str(self.ports.postgres), "-q"], check=False).returncode == 0
        )

    def ensure_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        c = self.credentials()
        with psycopg.connect(
            host=self.host, port=self.ports.postgres, user="mlops", password=c["pg_password"], dbname="postgres", autocommit=True
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop_postgres(self, fast: bool = True) -> None:
        self._stop("postgres", signal.SIGINT if fast else signal.SIGTERM)

    def start_seaweedfs(self) -> None:
        if self._running("seaweedfs"):
            return
        c = self.credentials()
        data = self.state / "seaweedfs"
        data.mkdir(parents=True, exist_ok=True)
        config = self.state / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "mlops",
                            "credentials": [{"accessKey": c["s3_access_key"], "secretKey": c["s3_secret_key"]}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        p = self.ports
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        proc = self._spawn(
            "seaweedfs",
            [
                weed,
                "server",
                f"-dir={data}",
                f"-ip={self.host}",
                f"-ip.bind={self.host}",
                f"-master.port={p.weed_master}",
                f"-volume.port={p.weed_volume}",
                f"-filer.port={p.weed_filer}",
                f"-master.port.grpc={p.weed_master_grpc}",
                f"-volume.port.grpc={p.weed_volume_grpc}",
                f"-filer.port.grpc={p.weed_filer_grpc}",
                "-s3",
                f"-s3.port={p.s3}",
                f"-s3.port.grpc={p.s3_grpc}",
                # Only S3 is needed; the catalogs would claim fixed ports, telemetry would call out.
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                f"-s3.config={config}",
                "-volume.max=0",
                # The grace lets other volume servers take over; alone on loopback it only delays stop by 10 s.
                "-volume.preStopSeconds=0",
                "-master.volumeSizeLimitMB=256",
            ],
        )
        wait_for(lambda: self._s3_ready(), "SeaweedFS S3", timeout=90, proc=proc)
        self._ensure_buckets()

    def _s3_client(self):
        import boto3
        from botocore.config import Config

        c = self.credentials()
        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.host}:{self.ports.s3}",
            region_name="us-east-1",
            aws_access_key_id=c["s3_access_key"],
            aws_secret_access_key=c["s3_secret_key"],
            config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}),
        )

    def _s3_ready(self) -> bool:
        try:
            self._s3_client().list_buckets()
            return True
        except Exception:
            return False

    def _ensure_buckets(self) -> None:
        client = self._s3_client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in BUCKETS:
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)

    def start_mlflow(self) -> None:
        if self._running("mlflow"):
            return
        c = self.credentials()
        env = self.environment()
        backend = f"postgresql+psycopg://mlops:{c['pg_password']}@{self.host}:{self.ports.postgres}/mlflow"
        proc = self._spawn(
            "mlflow",
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                self.host,
                "--port",
                str(self.ports.mlflow),
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                "s3://mlflow-artifacts",
                "--workers",
                "2",
            ],
            env={k: env[k] for k in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
        )
        wait_for(lambda: http_ok(f"http://{self.host}:{self.ports.mlflow}/health"), "MLflow server", timeout=180, proc=proc)

    def start_app(self, name: str, argv: list[str], ready_url: str, env: dict[str, str], timeout: float = 180) -> None:
        """The API or the UI as a background process with the stack's environment, waited on until it answers."""
        if self._running(name):
            return
        proc = self._spawn(name, argv, env={**self.environment(), **env})
        wait_for(lambda: http_ok(ready_url), name, timeout=timeout, proc=proc)

    def _check_ports_free(self) -> None:
        """Fail before starting anything when a port we would bind is taken by someone else: a readiness
        check would otherwise be answered by the other server."""
        owners = {"postgres": ["postgres"], "seaweedfs": ["s3", "weed_master", "weed_volume", "weed_filer"], "mlflow": ["mlflow"]}
        for process, names in owners.items():
            if self._running(process):
                continue
            for name in names:
                port = getattr(self.ports, name)
                with socket.socket() as probe:
                    if probe.connect_ex((self.host, port)) == 0:
                        raise RuntimeError(
                            f"{self.host}:{port} ({name}) is already taken by another process. Stop it (an earlier "
                            f"demo elsewhere: `mlops-dev demo down --state <its dir>`), or edit {self.state / 'ports.json'}."
                        )

    def up(self) -> dict[str, str]:
        self.state.mkdir(parents=True, exist_ok=True)
        self._check_ports_free()
        (self.state / "ports.json").write_text(json.dumps(self.ports.__dict__))
        self.start_postgres()
        self.start_seaweedfs()
        self.start_mlflow()
        self.write_env_file()
        return self.environment()

    def _stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        pidfile = self._pidfile(name)
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pidfile.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                _reap(pid)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            # SeaweedFS can hang on SIGTERM: after the grace period it is killed.
            os.killpg(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)

    def down(self) -> None:
        for name in ("api", "ui", "mlflow", "seaweedfs"):
            self._stop(name)
        self.stop_postgres()

    @classmethod
    def load(cls, state: Path) -> Stack:
        ports_file = state / "ports.json"
        ports = Ports(**json.loads(ports_file.read_text())) if ports_file.exists() else Ports()
        return cls(state, ports)


def _as_user(user: str | None) -> dict:
    """Popen arguments that run a child as `user` (only meaningful, and only done, when we are root)."""
    if user is None or os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
