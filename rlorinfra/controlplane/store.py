"""SQLite store of the emulator, with a lifecycle driven by stored timestamps.

There is no background thread. Every job row carries ``due_at``, the time of
its next automatic transition, and every read or write first "advances the
world to now" inside a ``BEGIN IMMEDIATE`` transaction: due events fire one at
a time in time order (an indexed lookup, so only jobs that are due are
touched). Separate threads, server processes and CLI runs sharing one
database file therefore see one consistent world. WAL mode lets readers run
while one writer holds the lock; each thread has its own connection.

Lifecycle (times relative to the event that caused them):

* create / resume -> ``JOB_STATE_CREATING`` for ``provision_seconds``;
* then ``JOB_STATE_RUNNING`` if the job's accelerators (count x nodes) fit in
  the free ``capacity`` and nobody is queued ahead of it, else
  ``JOB_STATE_PENDING``; pending jobs start in FIFO order as capacity frees
  (a job larger than the whole capacity waits forever without blocking others);
* RUNNING with no trainer activity (health checks count) for the job's
  ``inactivityTimeout`` (default 3600 s) -> ``JOB_STATE_CANCELLED`` with status
  ``CANCELLED`` / "auto-stopped after ... of inactivity". CANCELLED (not FAILED)
  because the SDK treats inactivity auto-stop as a *stopped* state, and it is
  resumable like any cancelled job;
* cancel -> ``JOB_STATE_CANCELLING`` -> ``JOB_STATE_CANCELLED`` after
  ``settle_seconds``; delete -> ``JOB_STATE_DELETING`` -> ``JOB_STATE_DELETED``
  (a tombstone: readable, hidden from lists, its ID never reused). Both release
  capacity at once.

Fault injection: ``preempt`` (-> FAILED, status UNAVAILABLE "pod preempted"),
``fail`` (-> FAILED, status INTERNAL), ``set_idle`` (RUNNING -> IDLE: the
trainer stays up and keeps its accelerators but has no active training; its
health probe answers 503 and its inactivity timer keeps running), ``mark_unhealthy`` (health probe answers 503 while set; a resume
starts a fresh pod and clears it).

Settings: the ``provision_seconds``, ``capacity`` and ``account_id`` given to
the constructor win for this process; the values of the process that created
the database are recorded in the ``settings`` table for inspection.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from rlorinfra.controlplane.errors import AlreadyExists, FailedPrecondition, NotFound
from rlorinfra.controlplane.requests import parse_create

__all__ = ["Store", "NotFound", "ACTIVE_STATES", "RESUMABLE_STATES", "TOMBSTONE_STATES"]

CREATING = "JOB_STATE_CREATING"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
IDLE = "JOB_STATE_IDLE"
FAILED = "JOB_STATE_FAILED"
CANCELLING = "JOB_STATE_CANCELLING"
CANCELLED = "JOB_STATE_CANCELLED"
DELETING = "JOB_STATE_DELETING"
DELETED = "JOB_STATE_DELETED"

ACTIVE_STATES = frozenset({CREATING, PENDING, RUNNING, IDLE})
RESUMABLE_STATES = frozenset({FAILED, CANCELLED, "JOB_STATE_PAUSED", "JOB_STATE_COMPLETED"})
TOMBSTONE_STATES = frozenset({DELETED, "JOB_STATE_ARCHIVED"})
STOPPED_STATES = RESUMABLE_STATES | {"JOB_STATE_EARLY_STOPPED"}

PREEMPT_MESSAGE = "pod preempted"
DEFAULT_FAIL_MESSAGE = "trainer process exited unexpectedly (injected failure)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    status_code TEXT NOT NULL DEFAULT 'OK',
    status_message TEXT NOT NULL DEFAULT '',
    echo TEXT NOT NULL,
    demand INTEGER NOT NULL,
    inactivity_s REAL NOT NULL,
    unhealthy INTEGER NOT NULL DEFAULT 0,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    completed_time REAL,
    due_at REAL,
    queue_seq INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(queue_seq) WHERE queue_seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, job_id);
CREATE INDEX IF NOT EXISTS jobs_display ON jobs(display_name, job_id);
"""


def rfc3339(ts: float) -> str:
    """An RFC 3339 UTC timestamp with microseconds, e.g. ``2025-01-02T03:04:05.000006Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Store:
    """The emulator's world: jobs in one SQLite file, advanced lazily to ``clock()``."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        provision_seconds: float = 2.0,
        capacity: int = 256,
        account_id: str = "local",
        clock: Callable[[], float] = time.time,
        settle_seconds: float = 0.2,
    ) -> None:
        self.db_path = Path(db_path)
        self.provision_seconds = float(provision_seconds)
        self.capacity = int(capacity)
        self.account_id = account_id
        self.clock = clock
        self.settle_seconds = float(settle_seconds)
        self._local = threading.local()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._init_db()

    # -- connections and transactions ----------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _init_db(self) -> None:
        conn = self._conn()
        for attempt in range(50):  # switching to WAL needs a moment without other writers
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.05 * (attempt + 1))
        with self._write(advance=False) as (conn, now):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            settings = {"provision_seconds": self.provision_seconds, "capacity": self.capacity,
                        "account_id": self.account_id, "created": rfc3339(now)}
            conn.executemany("INSERT OR IGNORE INTO settings(key, value) VALUES (?, ?)",
                             [(k, str(v)) for k, v in settings.items()])
            self._advance(conn, now)
            self._drain_queue(conn, now)  # this process may have more capacity

    @contextmanager
    def _write(self, advance: bool = True) -> Iterator[tuple[sqlite3.Connection, float]]:
        """A write transaction; the world is advanced to now before the caller acts."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = self.clock()  # read after taking the lock: times stay ordered across processes
            if advance:
                self._advance(conn, now)
            yield conn, now
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """Read access; takes the write lock only when some job is due to change."""
        conn = self._conn()
        now = self.clock()
        due = conn.execute("SELECT 1 FROM jobs WHERE due_at IS NOT NULL AND due_at <= ? LIMIT 1", (now,))
        if due.fetchone() is None:
            yield conn, now
            return
        with self._write() as pair:
            yield pair

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def settings(self) -> dict[str, str]:
        """The settings recorded by the process that created the database."""
        return {r["key"]: r["value"] for r in self._conn().execute("SELECT key, value FROM settings")}

    # -- the lifecycle engine ------------------------------------------------

    def _advance(self, conn: sqlite3.Connection, now: float) -> None:
        """Fire every due transition, earliest first, each at its own due time."""
        while True:
            row = conn.execute(
                "SELECT * FROM jobs WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, job_id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return
            self._fire(conn, row, row["due_at"])

    def _fire(self, conn: sqlite3.Connection, row: sqlite3.Row, at: float) -> None:
        state = row["state"]
        if state == CREATING:
            self._place(conn, row, at)
        elif state in (RUNNING, IDLE):
            timeout = f"{row['inactivity_s']:g}s"
            self._stop(conn, row["job_id"], at, CANCELLED, "CANCELLED",
                       f"auto-stopped after {timeout} of inactivity (inactivityTimeout)")
        elif state == CANCELLING:
            self._set(conn, row["job_id"], at, state=CANCELLED, due_at=None, completed_time=at,
                      status_code="CANCELLED", status_message="cancelled by request")
        elif state == DELETING:
            self._set(conn, row["job_id"], at, state=DELETED, due_at=None)
        else:  # a due time on a state without a timer: clear it
            self._set(conn, row["job_id"], at, due_at=None)

    def _used(self, conn: sqlite3.Connection) -> int:
        return conn.execute(
            "SELECT COALESCE(SUM(demand), 0) FROM jobs WHERE state IN (?, ?)", (RUNNING, IDLE)
        ).fetchone()[0]

    def _place(self, conn: sqlite3.Connection, row: sqlite3.Row, at: float) -> None:
        """End of provisioning: run now, or queue for capacity."""
        queued = conn.execute(
            "SELECT 1 FROM jobs WHERE queue_seq IS NOT NULL AND demand <= ? LIMIT 1", (self.capacity,)
        ).fetchone()
        used = self._used(conn)
        if queued is None and used + row["demand"] <= self.capacity:
            self._start(conn, row, at)
            return
        seq = conn.execute("SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs").fetchone()[0]
        self._set(conn, row["job_id"], at, state=PENDING, due_at=None, queue_seq=seq,
                  status_message=f"waiting for accelerator capacity: needs {row['demand']}, "
                  f"{used} of {self.capacity} in use")

    def _start(self, conn: sqlite3.Connection, row: sqlite3.Row, at: float) -> None:
        due = at + row["inactivity_s"] if row["inactivity_s"] > 0 else None
        self._set(conn, row["job_id"], at, state=RUNNING, due_at=due, queue_seq=None, status_message="")

    def _drain_queue(self, conn: sqlite3.Connection, at: float) -> None:
        """Start queued jobs in FIFO order while the head fits."""
        while True:
            head = conn.execute(
                "SELECT * FROM jobs WHERE queue_seq IS NOT NULL AND demand <= ? ORDER BY queue_seq LIMIT 1",
                (self.capacity,),
            ).fetchone()
            if head is None or self._used(conn) + head["demand"] > self.capacity:
                return
            self._start(conn, head, at)

    def _stop(self, conn: sqlite3.Connection, job_id: str, at: float, state: str, code: str, message: str) -> None:
        """Move to a stopped state, free the job's accelerators, start queued jobs."""
        self._set(conn, job_id, at, state=state, due_at=None, queue_seq=None, completed_time=at,
                  status_code=code, status_message=message)
        self._drain_queue(conn, at)

    @staticmethod
    def _set(conn: sqlite3.Connection, job_id: str, at: float, **columns: Any) -> None:
        """Update columns of one job; any state change also resets the status to OK."""
        if "state" in columns:
            columns.setdefault("status_code", "OK")
            columns.setdefault("status_message", "")
        columns["update_time"] = at
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*columns.values(), job_id))

    # -- rendering -----------------------------------------------------------

    def job_name(self, job_id: str) -> str:
        """``accounts/{account}/rlorTrainerJobs/{job_id}``."""
        return f"accounts/{self.account_id}/rlorTrainerJobs/{job_id}"

    def _render(self, row: sqlite3.Row) -> dict[str, Any]:
        """The job resource (PROTOCOL.md §3.1) of one row."""
        resource: dict[str, Any] = {"name": self.job_name(row["job_id"])}
        resource.update(json.loads(row["echo"]))
        resource["state"] = row["state"]
        resource["status"] = {"code": row["status_code"], "message": row["status_message"]}
        resource["createTime"] = rfc3339(row["create_time"])
        resource["updateTime"] = rfc3339(row["update_time"])
        if row["completed_time"] is not None:
            resource["completedTime"] = rfc3339(row["completed_time"])
        if row["state"] == RUNNING:
            # Relative; the HTTP app makes it absolute with the request's host.
            resource["directRouteHandle"] = f"/training/v1/rlorTrainerJobs/{self.account_id}/{row['job_id']}"
        return resource

    def _row(self, conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"RLOR trainer job {self.job_name(job_id)} not found")
        return row

    def _reload(self, conn: sqlite3.Connection, job_id: str) -> dict[str, Any]:
        return self._render(self._row(conn, job_id))

    # -- API operations --------------------------------------------------------

    def create_job(self, body: Any, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """E2: validate (400), refuse a taken ID (409, tombstones too), insert as CREATING."""
        new = parse_create(body, dict(query or {}), account_id=self.account_id,
                           created_by=f"{self.account_id}@emulator.local")
        job_id = new.job_id or str(uuid.uuid4())
        with self._write() as (conn, now):
            existing = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if existing is not None:
                raise AlreadyExists(self._exists_message(job_id, existing["state"]))
            conn.execute(
                "INSERT INTO jobs(job_id, display_name, state, echo, demand, inactivity_s, create_time,"
                " update_time, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, new.display_name, CREATING, json.dumps(new.echo), new.demand, new.inactivity_s,
                 now, now, now + self.provision_seconds),
            )
            return self._reload(conn, job_id)

    def _exists_message(self, job_id: str, state: str) -> str:
        if state in TOMBSTONE_STATES:
            return (f"RLOR trainer job {self.job_name(job_id)} already exists in state {state}; "
                    "a deleted job's ID cannot be reused, choose a new rlorTrainerJobId")
        return f"RLOR trainer job {self.job_name(job_id)} already exists (state {state})"

    def get_job(self, job_id: str) -> dict[str, Any]:
        """E3: the job resource, tombstones included (NotFound otherwise)."""
        with self._read() as (conn, _now):
            return self._reload(conn, job_id)

    def list_jobs(
        self,
        *,
        page_size: int = 50,
        after: str | None = None,
        filters: tuple[tuple[str, str, str], ...] = (),
        descending: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """E4: one page ordered by ID (keyset), tombstones hidden.

        ``filters`` are ``(column, op, value)`` with column ``display_name`` or
        ``state`` and op ``=`` or ``!=``. Returns the jobs and the last ID when
        more pages follow (else None).
        """
        where = ["state NOT IN (?, ?)"]
        args: list[Any] = sorted(TOMBSTONE_STATES)
        for column, op, value in filters:
            assert column in ("display_name", "state") and op in ("=", "!=")
            where.append(f"{column} {op} ?")
            args.append(value)
        if after is not None:
            where.append("job_id < ?" if descending else "job_id > ?")
            args.append(after)
        order = "DESC" if descending else "ASC"
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY job_id {order} LIMIT ?"
        with self._read() as (conn, _now):
            rows = conn.execute(sql, (*args, page_size + 1)).fetchall()
        more = len(rows) > page_size
        rows = rows[:page_size]
        return [self._render(r) for r in rows], (rows[-1]["job_id"] if more else None)

    def delete_job(self, job_id: str) -> dict[str, Any]:
        """E5: DELETING now, DELETED after ``settle_seconds``; a tombstone is left alone."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] in TOMBSTONE_STATES or row["state"] == DELETING:
                return self._render(row)
            completed = row["completed_time"]
            self._set(conn, job_id, now, state=DELETING, due_at=now + self.settle_seconds, queue_seq=None,
                      completed_time=completed if completed is not None else now)
            self._drain_queue(conn, now)
            return self._reload(conn, job_id)

    def resume_job(self, job_id: str) -> dict[str, Any]:
        """E6: a resumable job goes back to CREATING before this returns (never FAILED after)."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] not in RESUMABLE_STATES:
                raise FailedPrecondition(
                    f"cannot resume job in state: {row['state']}; only FAILED, CANCELLED, PAUSED or "
                    "COMPLETED jobs can be resumed"
                )
            self._set(conn, job_id, now, state=CREATING, due_at=now + self.provision_seconds,
                      completed_time=None, unhealthy=0)
            return self._reload(conn, job_id)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """E7: CANCELLING now, CANCELLED after ``settle_seconds``; accelerators freed at once."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] in (CANCELLING, CANCELLED):
                return self._render(row)
            if row["state"] not in ACTIVE_STATES:
                raise FailedPrecondition(f"cannot cancel job in state: {row['state']}")
            self._set(conn, job_id, now, state=CANCELLING, due_at=now + self.settle_seconds, queue_seq=None)
            self._drain_queue(conn, now)
            return self._reload(conn, job_id)

    def check_health(self, job_id: str) -> tuple[bool, str]:
        """E11: ``(healthy, reason)``; a probe of a running trainer counts as activity."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] != RUNNING:
                return False, f"trainer is not running (state {row['state']})"
            if row["unhealthy"]:
                return False, "trainer is unhealthy"
            if row["inactivity_s"] > 0:
                self._set(conn, job_id, row["update_time"], due_at=now + row["inactivity_s"])
            return True, "ok"

    # -- fault injection -------------------------------------------------------

    def _fault(self, job_id: str, verb: str, allowed: frozenset[str],
               act: Callable[[sqlite3.Connection, sqlite3.Row, float], None]) -> dict[str, Any]:
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] not in allowed:
                raise FailedPrecondition(f"cannot {verb} job in state: {row['state']}")
            act(conn, row, now)
            return self._reload(conn, job_id)

    def preempt(self, job_id: str) -> dict[str, Any]:
        """The pod dies: FAILED with status UNAVAILABLE "pod preempted"."""
        return self._fault(job_id, "preempt", ACTIVE_STATES, lambda conn, row, now: self._stop(
            conn, job_id, now, FAILED, "UNAVAILABLE", PREEMPT_MESSAGE))

    def fail(self, job_id: str, message: str = DEFAULT_FAIL_MESSAGE) -> dict[str, Any]:
        """The trainer crashes: FAILED with status INTERNAL and ``message``."""
        return self._fault(job_id, "fail", ACTIVE_STATES, lambda conn, row, now: self._stop(
            conn, job_id, now, FAILED, "INTERNAL", message or DEFAULT_FAIL_MESSAGE))

    def set_idle(self, job_id: str) -> dict[str, Any]:
        """RUNNING -> IDLE: a service-mode trainer with no active training (still holds its GPUs)."""
        return self._fault(job_id, "set idle", frozenset({RUNNING}), lambda conn, row, now: self._set(
            conn, job_id, now, state=IDLE, status_message="service-mode trainer is idle (no active training)"))

    def mark_unhealthy(self, job_id: str, unhealthy: bool = True) -> dict[str, Any]:
        """Make the health probe answer 503 (or 200 again with ``unhealthy=False``)."""
        alive = frozenset(ACTIVE_STATES | STOPPED_STATES | {CANCELLING})
        return self._fault(job_id, "mark unhealthy", alive, lambda conn, row, now: self._set(
            conn, job_id, row["update_time"], unhealthy=int(unhealthy)))
