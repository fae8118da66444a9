"""Every prediction row goes to PostgreSQL, in batches, off the request path.

The request path appends one batch per request (the feature matrix it scored and the
predictions) and returns. A writer thread inserts what has arrived with one statement (per model
version and endpoint): the columns travel as binary float8 arrays built by numpy and PostgreSQL
unnests them into rows, so no per-row Python runs in the writer to compete with requests for
the GIL (COPY's write_row cost ~5 ms of Python per 1,000 rows). When PostgreSQL is unreachable the
batches go to an on-disk spool (JSON lines, bounded by rows); once PostgreSQL answers again the
spool is written first, so rows arrive in order and none are lost within the bound.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

import numpy as np
from psycopg import Connection, postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import ConnectionPool

from ..contract import STATES
from ..features import NUMERIC_NAMES, STATE_COLUMN
from .metrics import ApiMetrics

log = logging.getLogger(__name__)

TABLE = "inference_log"
CREATE = sql.SQL(
    """CREATE TABLE IF NOT EXISTS {} (
        id bigserial PRIMARY KEY,
        logged_at timestamptz NOT NULL,
        model text NOT NULL,
        model_version text NOT NULL,
        endpoint text NOT NULL,
        bed double precision, bath double precision, acre_lot double precision,
        house_size double precision, state text,
        prediction double precision NOT NULL)"""
).format(sql.Identifier(TABLE))
# One statement per run of batches from the same model version and endpoint (normally the whole
# flush): every per-row value, the time included, travels in a binary float8[] built by numpy;
# the state as its code, named through the STATES array (the order of features.STATE_CODES).
_ROW_ARRAYS = ("logged_epoch", *NUMERIC_NAMES, "state_code", "prediction")
INSERT = sql.SQL(
    "INSERT INTO {table} (logged_at, model, model_version, endpoint, {numeric}, state, prediction) "
    "SELECT to_timestamp(logged_epoch), %s, %s, %s, {numeric}, (%s::text[])[state_code::int + 1], prediction "
    "FROM unnest({arrays}) AS r({unnested})"
).format(
    table=sql.Identifier(TABLE),
    numeric=sql.SQL(", ").join(map(sql.Identifier, NUMERIC_NAMES)),
    arrays=sql.SQL(", ").join(sql.SQL("%b") for _ in _ROW_ARRAYS),
    unnested=sql.SQL(", ").join(map(sql.Identifier, _ROW_ARRAYS)),
)
_STATE_NAMES = list(STATES)  # a list: psycopg sends lists as arrays (a tuple would be a record)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one request leaves for the log: the matrix it scored (features.rows_to_matrix, which
    holds the request's values exactly) and one prediction per row."""

    logged_at: datetime
    model: str
    version: str
    endpoint: str
    matrix: np.ndarray
    predictions: np.ndarray

    def __len__(self) -> int:  # rows, not fields
        return len(self.predictions)

    def head(self, rows: int) -> Batch:
        return replace(self, matrix=self.matrix[:rows], predictions=self.predictions[:rows])

    def to_json(self) -> str:
        return json.dumps(
            {
                "logged_at": self.logged_at.isoformat(),
                "model": self.model,
                "version": self.version,
                "endpoint": self.endpoint,
                "matrix": self.matrix.tolist(),
                "predictions": np.asarray(self.predictions).tolist(),
            }
        )

    @classmethod
    def from_json(cls, line: str) -> Batch:
        d = json.loads(line)
        matrix = np.asarray(d["matrix"], dtype=np.float64).reshape(-1, STATE_COLUMN + 1)
        return cls(datetime.fromisoformat(d["logged_at"]), d["model"], d["version"], d["endpoint"], matrix, np.asarray(d["predictions"]))


def insert_params(batches: list[Batch]) -> tuple:
    """Parameters of INSERT for batches that share model, version and endpoint."""
    first = batches[0]
    matrix = np.concatenate([batch.matrix for batch in batches])
    logged = np.repeat([batch.logged_at.timestamp() for batch in batches], [len(batch) for batch in batches])
    predictions = np.concatenate([np.asarray(batch.predictions, dtype=np.float64) for batch in batches])
    columns = [np.ascontiguousarray(matrix[:, i], dtype=np.float64) for i in range(matrix.shape[1])]
    return (first.model, first.version, first.endpoint, _STATE_NAMES, logged, *columns, predictions)


_ARRAY_HEADER = struct.Struct("!iiIii")  # ndim, has-nulls flag, element type oid, length, lower bound
_FLOAT8 = postgres.types["float8"]


class Float8ArrayDumper(Dumper):
    """A 1-d float64 numpy array as PostgreSQL's binary float8[]: the element framing
    (int32 length 8, big-endian double) is laid out by numpy in one pass."""

    format = Format.BINARY
    oid = _FLOAT8.array_oid
    _element = np.dtype([("length", ">i4"), ("value", ">f8")])

    def dump(self, obj: np.ndarray) -> bytes:
        if obj.ndim != 1 or obj.dtype != np.float64 or not len(obj):
            raise TypeError(f"expected a non-empty 1-d float64 array, got {obj.dtype} with shape {obj.shape}")
        elements = np.empty(len(obj), dtype=self._element)
        elements["length"] = 8
        elements["value"] = obj
        return _ARRAY_HEADER.pack(1, 0, _FLOAT8.oid, len(obj), 1) + elements.tobytes()


def _register_dumpers(conn: Connection) -> None:
    conn.adapters.register_dumper(np.ndarray, Float8ArrayDumper)


@dataclass
class Spool:
    """Batches that could not be written yet, on disk so a restart of the API loses none of them."""

    path: Path
    max_rows: int
    rows: int = 0

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = sum(map(len, self.read()))

    def append(self, batches: list[Batch]) -> int:
        """Keep what fits (the last batch cut to the room left); return how many rows did not
        fit (they are counted, never silently lost)."""
        room = max(self.max_rows - self.rows, 0)
        kept: list[Batch] = []
        for batch in batches:
            if room <= 0:
                break
            kept.append(batch if len(batch) <= room else batch.head(room))
            room -= len(kept[-1])
        if kept:
            with self.path.open("a") as out:
                out.writelines(batch.to_json() + "\n" for batch in kept)
                out.flush()
        kept_rows = sum(map(len, kept))
        self.rows += kept_rows
        return sum(map(len, batches)) - kept_rows

    def read(self) -> list[Batch]:
        if not self.path.exists():
            return []
        with self.path.open() as spooled:
            return [Batch.from_json(line) for line in spooled if line.strip()]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.rows = 0


class InferenceLog:
    def __init__(self, db_url: str, spool: Spool, metrics: ApiMetrics, batch_rows: int = 500, flush_seconds: float = 0.5):
        self.spool = spool
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._buffer: deque[Batch] = deque()
        self._rows_since_wake = 0  # a hint for waking the writer early; pending is counted exactly
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._table_ready = False
        self._inflight = 0
        # open=False: the API starts (and serves) even when PostgreSQL is down at boot.
        self.pool = ConnectionPool(
            db_url,
            min_size=1,
            max_size=2,
            open=False,
            timeout=2.0,
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,
            kwargs={"connect_timeout": 2},
            configure=_register_dumpers,
        )
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self.metrics.log_spooled.set(self.spool.rows)

    def start(self) -> None:
        self.pool.open(wait=False)
        self._thread.start()

    def record(self, endpoint: str, model: str, version: str, matrix: np.ndarray, predictions: np.ndarray) -> None:
        """Called on the request path: appends one batch to memory. `matrix` is what was scored
        (features.rows_to_matrix), one row per prediction."""
        if len(matrix) != len(predictions):
            raise ValueError(f"{len(matrix)} rows but {len(predictions)} predictions")
        self._buffer.append(Batch(datetime.now(UTC), model, version, endpoint, matrix, predictions))
        self._rows_since_wake += len(predictions)
        if self._rows_since_wake >= self.batch_rows:
            self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.pool.close()

    @property
    def pending(self) -> int:
        buffered = sum(map(len, list(self._buffer)))  # list(): a snapshot taken under the GIL
        return buffered + self.spool.rows + self._inflight

    def _take(self) -> list[Batch]:
        self._rows_since_wake = 0
        batches = []
        while self._buffer:
            # Counted in flight before it leaves the buffer: `pending` may over-count for a
            # moment, never under-count (wait_drained relies on that).
            self._inflight += len(self._buffer[0])
            batches.append(self._buffer.popleft())
        return batches

    def _ensure_table(self, conn) -> None:
        if not self._table_ready:
            conn.execute(CREATE)
            conn.commit()
            self._table_ready = True

    def _write(self, batches: list[Batch]) -> None:
        with self.pool.connection() as conn:
            self._ensure_table(conn)
            with conn.cursor() as cur:
                for _, run in groupby(batches, key=lambda batch: (batch.model, batch.version, batch.endpoint)):
                    cur.execute(INSERT, insert_params(list(run)))
        self.metrics.log_written.inc(sum(map(len, batches)))

    def flush_once(self) -> None:
        batches = self._take()
        try:
            if self.spool.rows:
                spooled = self.spool.read()
                if spooled:
                    self._write(spooled)
                self.spool.clear()
                log.info("inference log: wrote %d spooled rows", sum(map(len, spooled)))
            if batches:
                self._write(batches)
        except Exception as error:
            if batches:
                dropped = self.spool.append(batches)
                if dropped:
                    self.metrics.log_dropped.inc(dropped)
                    log.error("inference log: spool full, %d rows dropped", dropped)
            log.warning("inference log: PostgreSQL unavailable (%s); %d rows spooled", type(error).__name__, self.spool.rows)
        self._inflight = 0
        self.metrics.log_spooled.set(self.spool.rows)

    def _run(self) -> None:
        try:  # the table exists before the first request when PostgreSQL is up at start
            with self.pool.connection() as conn:
                self._ensure_table(conn)
        except Exception as error:
            log.warning("inference log: PostgreSQL not reachable at start (%s)", type(error).__name__)
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush_once()
        self.flush_once()  # what arrived before shutdown


def wait_drained(log_: InferenceLog, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_.pending == 0:
            return True
        time.sleep(0.05)
    return False
