"""Every prediction row goes to PostgreSQL, in batches, off the request path.

A writer thread drains an in-memory buffer through a connection pool. When PostgreSQL is
unreachable the rows go to an on-disk spool (JSON lines, bounded); once PostgreSQL answers
again the spool is written first, so rows arrive in order and none are lost within the bound.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from .metrics import ApiMetrics

log = logging.getLogger(__name__)

TABLE = "inference_log"
COLUMNS = ("logged_at", "model", "model_version", "endpoint", "bed", "bath", "acre_lot", "house_size", "state", "prediction")
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
COPY = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


@dataclass
class Spool:
    """Rows that could not be written yet, on disk so a restart of the API loses none of them."""

    path: Path
    max_rows: int
    rows: int = 0

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = sum(1 for _ in self.path.open()) if self.path.exists() else 0

    def append(self, rows: list[tuple]) -> int:
        """Keep what fits; return how many rows did not fit (they are counted, never silently lost)."""
        room = max(self.max_rows - self.rows, 0)
        kept = rows[:room]
        if kept:
            with self.path.open("a") as out:
                out.writelines(json.dumps(row, default=str) + "\n" for row in kept)
                out.flush()
            self.rows += len(kept)
        return len(rows) - len(kept)

    def read(self) -> list[tuple]:
        if not self.path.exists():
            return []
        with self.path.open() as spooled:
            return [tuple(json.loads(line)) for line in spooled if line.strip()]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.rows = 0


class InferenceLog:
    def __init__(self, db_url: str, spool: Spool, metrics: ApiMetrics, batch_rows: int = 500, flush_seconds: float = 0.5):
        self.spool = spool
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._buffer: deque[tuple] = deque()
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
        )
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self.metrics.log_spooled.set(self.spool.rows)

    def start(self) -> None:
        self.pool.open(wait=False)
        self._thread.start()

    def record(self, endpoint: str, model: str, version: str, rows: Sequence[Any], predictions: list[float]) -> None:
        """Called on the request path: appends to memory only. `rows` are validated request
        objects (bed, bath, acre_lot, house_size, state attributes)."""
        now = datetime.now(UTC)
        self._buffer.extend(
            (now, model, version, endpoint, r.bed, r.bath, r.acre_lot, r.house_size, r.state, p)
            for r, p in zip(rows, predictions, strict=True)
        )
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.pool.close()

    @property
    def pending(self) -> int:
        return len(self._buffer) + self.spool.rows + self._inflight

    def _take(self) -> list[tuple]:
        rows = []
        while self._buffer:
            rows.append(self._buffer.popleft())
        return rows

    def _ensure_table(self, conn) -> None:
        if not self._table_ready:
            conn.execute(CREATE)
            conn.commit()
            self._table_ready = True

    def _write(self, rows: list[tuple]) -> None:
        with self.pool.connection() as conn:
            self._ensure_table(conn)
            with conn.cursor() as cur, cur.copy(COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        self.metrics.log_written.inc(len(rows))

    def flush_once(self) -> None:
        rows = self._take()
        self._inflight = len(rows)
        try:
            if self.spool.rows:
                spooled = self.spool.read()
                self._write(spooled)
                self.spool.clear()
                log.info("inference log: wrote %d spooled rows", len(spooled))
            if rows:
                self._write(rows)
        except Exception as error:
            if rows:
                dropped = self.spool.append(rows)
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
