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
* RUNNING with no trainer activity (health probes are not activity) for the job's
  ``inactivityTimeout`` (default 3600 s) -> ``JOB_STATE_CANCELLED`` with status
  ``CANCELLED`` / "auto-stopped after ... of inactivity". CANCELLED (not FAILED)
  because the SDK treats inactivity auto-stop as a *stopped* state, and it is
  resumable like any cancelled job;
* cancel -> ``JOB_STATE_CANCELLING`` -> ``JOB_STATE_CANCELLED`` after
  ``settle_seconds``; delete -> ``JOB_STATE_DELETING`` -> ``JOB_STATE_ARCHIVED``
  (the tombstone the public API shows, PROTOCOL.md §2.2/§7.7: readable, hidden
  from lists, its ID never reused, a second delete a no-op). Both release
  capacity at once.

``acceleratorSeconds`` accrues while a job holds accelerators (RUNNING and
IDLE, the states counted against ``capacity``): ``held_since`` marks when it
started holding them and ``accel_seconds`` keeps the total of earlier spells,
so the value is computed from timestamps on every read.

Fault injection: ``preempt`` (-> FAILED, status UNAVAILABLE "pod preempted"),
``fail`` (-> FAILED, status INTERNAL), ``set_idle`` (RUNNING -> IDLE: the
trainer stays up and keeps its accelerators but has no active training; its
health probe answers 503 and its inactivity timer keeps running),
``mark_unhealthy`` (health probe answers 503 while set; a resume starts a fresh
pod and clears it), ``complete``, ``pause``, ``early_stop``, ``expire`` (to
COMPLETED, PAUSED, EARLY_STOPPED, EXPIRED, freeing the accelerators), ``flap``
(a crash loop: every ``period`` seconds of RUNNING end in FAILED until turned
off) and ``arm_drop`` (the app answers the next N successful create / resume /
cancel / delete requests with a 503 after doing them). Flap settings and armed
drops live in the database, so every app over it sees them.

Settings: the ``provision_seconds``, ``capacity`` and ``account_id`` given to
the constructor win for this process; the values of the process that created
the database are recorded in the ``settings`` table for inspection, with the
database's ``instance_id`` (a uuid4 fixed at creation: the emulator's identity).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rlorinfra.controlplane.deployments import SCHEMA as DEPLOYMENTS_SCHEMA
from rlorinfra.controlplane.deployments import Deployments
from rlorinfra.controlplane.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from rlorinfra.controlplane.requests import DEFAULT_ACCELERATOR_TYPE, parse_create, public_fields

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
ARCHIVED = "JOB_STATE_ARCHIVED"
COMPLETED = "JOB_STATE_COMPLETED"
PAUSED = "JOB_STATE_PAUSED"
EARLY_STOPPED = "JOB_STATE_EARLY_STOPPED"
EXPIRED = "JOB_STATE_EXPIRED"

ACTIVE_STATES = frozenset({CREATING, PENDING, RUNNING, IDLE})
HOLDING_STATES = frozenset({RUNNING, IDLE})  # the states that use accelerators
RESUMABLE_STATES = frozenset({FAILED, CANCELLED, PAUSED, COMPLETED})
TOMBSTONE_STATES = frozenset({DELETED, ARCHIVED})
STOPPED_STATES = RESUMABLE_STATES | {EARLY_STOPPED, EXPIRED}

PREEMPT_MESSAGE = "pod preempted"
DEFAULT_FAIL_MESSAGE = "trainer process exited unexpectedly (injected failure)"
FLAP_MESSAGE = "trainer crashed (flapping)"
DROP_OPERATIONS = ("create", "resume", "cancel", "delete")
DEFAULT_FLAP_PERIOD_S = 1.0

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
CREATE TABLE IF NOT EXISTS drops (operation TEXT PRIMARY KEY, remaining INTEGER NOT NULL);
"""
# Added with deployments (PROTOCOL.md §10); IF NOT EXISTS also upgrades older databases.
_SCHEMA += DEPLOYMENTS_SCHEMA

# Columns added after the first release: added to older databases on open.
# public: the returned static fields (JSON); accel_type/accel_seconds/held_since:
# acceleratorSeconds; inactive_due/flap_due: the two timers of a running job
# (due_at is the earlier one); flap_period: the crash loop's period (NULL = off).
_ADDED_COLUMNS = (
    ("public", "TEXT"),
    ("accel_type", f"TEXT NOT NULL DEFAULT '{DEFAULT_ACCELERATOR_TYPE}'"),
    ("accel_seconds", "REAL NOT NULL DEFAULT 0"),
    ("held_since", "REAL"),
    ("inactive_due", "REAL"),
    ("flap_period", "REAL"),
    ("flap_due", "REAL"),
)


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` (and missing parents) 0700 whatever the umask; existing ones are left alone."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)


def _create_private(db_path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal/-shm files copy the mode).

    Its rows hold every job's spec: not for other users of the machine, whatever the umask.
    """
    if db_path.exists():
        return
    try:
        fd = os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(db_path, 0o600)


def rfc3339(ts: float) -> str:
    """An RFC 3339 UTC timestamp with microseconds, e.g. ``2025-01-02T03:04:05.000006Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


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
        # Which view responses use: False = the fields the real API returns;
        # True = everything sent (make_app(echo_create_fields=True) sets it).
        self.echo_create_fields = False
        self._local = threading.local()
        _make_private_folder(self.db_path.parent)
        _create_private(self.db_path)
        self._init_db()
        self.instance_id = self.settings()["instance_id"]
        self.deployments = Deployments(self)  # the deployments table, in this store's transactions

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
            self._migrate(conn)
            # INSERT OR IGNORE: the first process to create the database fixes these.
            settings = {
                "provision_seconds": self.provision_seconds,
                "capacity": self.capacity,
                "account_id": self.account_id,
                "created": rfc3339(now),
                "instance_id": str(uuid.uuid4()),
            }
            conn.executemany(
                "INSERT OR IGNORE INTO settings(key, value) VALUES (?, ?)", [(k, str(v)) for k, v in settings.items()]
            )
            self._advance(conn, now)
            self._drain_queue(conn, now)  # this process may have more capacity

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Add the columns an older database lacks (jobs already holding accelerators start accruing now)."""
        present = {r["name"] for r in conn.execute("PRAGMA table_info(jobs)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in present:
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
        if "held_since" not in present:
            conn.execute(
                "UPDATE jobs SET held_since = update_time, inactive_due = due_at WHERE state IN (?, ?)", (RUNNING, IDLE)
            )

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
        elif state in HOLDING_STATES:
            self._fire_timer(conn, row, at)
        elif state == CANCELLING:
            self._set(
                conn,
                row["job_id"],
                at,
                state=CANCELLED,
                due_at=None,
                completed_time=at,
                status_code="CANCELLED",
                status_message="cancelled by request",
            )
        elif state == DELETING:
            self._set(conn, row["job_id"], at, state=ARCHIVED, due_at=None)
        else:  # a due time on a state without a timer: clear it
            self._set(conn, row["job_id"], at, due_at=None)

    def _fire_timer(self, conn: sqlite3.Connection, row: sqlite3.Row, at: float) -> None:
        """A running job's due time: the flap crash or the inactivity stop, whichever is due."""
        if row["flap_due"] is not None and row["flap_due"] <= at:
            self._stop(conn, row["job_id"], at, FAILED, "INTERNAL", FLAP_MESSAGE)
        elif row["inactive_due"] is None or row["inactive_due"] <= at:
            timeout = f"{row['inactivity_s']:g}s"
            self._stop(
                conn,
                row["job_id"],
                at,
                CANCELLED,
                "CANCELLED",
                f"auto-stopped after {timeout} of inactivity (inactivityTimeout)",
            )
        else:  # a timer was moved or turned off: wait for the one left
            self._set(conn, row["job_id"], row["update_time"], due_at=_earliest(row["inactive_due"], row["flap_due"]))

    def _used(self, conn: sqlite3.Connection) -> int:
        return int(
            conn.execute("SELECT COALESCE(SUM(demand), 0) FROM jobs WHERE state IN (?, ?)", (RUNNING, IDLE)).fetchone()[
                0
            ]
        )

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
        message = self._queue_message(conn, seq, row["demand"], row["accel_type"], used)
        self._set(conn, row["job_id"], at, state=PENDING, due_at=None, queue_seq=seq, status_message=message)

    def _queue_message(self, conn: sqlite3.Connection, seq: int, need: int, accel: str, used: int) -> str:
        """What a queued job waits for, in words that are true (never a sum that looks like it fits)."""
        # Only queued jobs that fit the capacity are ahead: the FIFO drain skips the others.
        ahead = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE queue_seq IS NOT NULL AND queue_seq < ? AND demand <= ?",
            (seq, self.capacity),
        ).fetchone()[0]
        if need > self.capacity:
            return f"waiting for capacity: needs {need} × {accel}, more than the {self.capacity} there are in all"
        if ahead:
            return f"queued behind {ahead} job{'s' if ahead != 1 else ''} for {accel}"
        return f"waiting for capacity: needs {need} × {accel}, only {max(0, self.capacity - used)} free"

    def _refresh_queue_messages(self, conn: sqlite3.Connection) -> None:
        """After the queue moved, every waiting job's message says where it stands now."""
        used = self._used(conn)
        for row in conn.execute(
            "SELECT job_id, queue_seq, demand, accel_type FROM jobs WHERE queue_seq IS NOT NULL ORDER BY queue_seq"
        ).fetchall():
            message = self._queue_message(conn, row["queue_seq"], row["demand"], row["accel_type"], used)
            conn.execute("UPDATE jobs SET status_message = ? WHERE job_id = ?", (message, row["job_id"]))

    def _start(self, conn: sqlite3.Connection, row: sqlite3.Row, at: float) -> None:
        inactive = at + row["inactivity_s"] if row["inactivity_s"] > 0 else None
        flap = at + row["flap_period"] if row["flap_period"] else None
        self._set(
            conn,
            row["job_id"],
            at,
            state=RUNNING,
            due_at=_earliest(inactive, flap),
            inactive_due=inactive,
            flap_due=flap,
            queue_seq=None,
            status_message="",
        )

    def _drain_queue(self, conn: sqlite3.Connection, at: float) -> None:
        """Start queued jobs in FIFO order while the head fits."""
        started = False
        while True:
            head = conn.execute(
                "SELECT * FROM jobs WHERE queue_seq IS NOT NULL AND demand <= ? ORDER BY queue_seq LIMIT 1",
                (self.capacity,),
            ).fetchone()
            if head is None or self._used(conn) + head["demand"] > self.capacity:
                if started:
                    self._refresh_queue_messages(conn)
                return
            self._start(conn, head, at)
            started = True

    def _stop(self, conn: sqlite3.Connection, job_id: str, at: float, state: str, code: str, message: str) -> None:
        """Move to a stopped state, free the job's accelerators, start queued jobs."""
        self._set(
            conn,
            job_id,
            at,
            state=state,
            due_at=None,
            queue_seq=None,
            completed_time=at,
            status_code=code,
            status_message=message,
            inactive_due=None,
            flap_due=None,
        )
        self._drain_queue(conn, at)

    @staticmethod
    def _set(conn: sqlite3.Connection, job_id: str, at: float, **columns: Any) -> None:
        """Update columns of one job; any state change also resets the status to OK and books usage."""
        if "state" in columns:
            columns.setdefault("status_code", "OK")
            columns.setdefault("status_message", "")
            columns.update(_usage_change(conn, job_id, at, columns["state"]))
        columns["update_time"] = at
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*columns.values(), job_id))

    # -- rendering -----------------------------------------------------------

    def job_name(self, job_id: str) -> str:
        """``accounts/{account}/rlorTrainerJobs/{job_id}``."""
        return f"accounts/{self.account_id}/rlorTrainerJobs/{job_id}"

    def _render(self, row: sqlite3.Row, now: float) -> dict[str, Any]:
        """The job resource (PROTOCOL.md §3.5, or everything sent in echo mode) of one row at ``now``."""
        resource: dict[str, Any] = {"name": self.job_name(row["job_id"])}
        resource.update(self._static_fields(row))
        resource["state"] = shown_state(row["state"])
        resource["status"] = {"code": row["status_code"], "message": row["status_message"]}
        resource["createTime"] = rfc3339(row["create_time"])
        if self.echo_create_fields:
            resource["updateTime"] = rfc3339(row["update_time"])
        if row["completed_time"] is not None:
            resource["completedTime"] = rfc3339(row["completed_time"])
        if row["state"] == RUNNING:
            # Relative; the HTTP app makes it absolute with the request's host.
            resource["directRouteHandle"] = f"/training/v1/rlorTrainerJobs/{self.account_id}/{row['job_id']}"
        resource["acceleratorSeconds"] = {row["accel_type"]: str(_accelerator_seconds(row, now))}
        return resource

    def _static_fields(self, row: sqlite3.Row) -> dict[str, Any]:
        # Both columns hold a JSON object this store wrote itself.
        echo: dict[str, Any] = json.loads(row["echo"])
        if self.echo_create_fields:
            return echo
        # Rows from before the public column: cut the echo down (no server-filled values known).
        public: dict[str, Any] = json.loads(row["public"]) if row["public"] else public_fields(echo)
        return public

    def _row(self, conn: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"RLOR trainer job {self.job_name(job_id)} not found")
        return row

    def _reload(self, conn: sqlite3.Connection, job_id: str, now: float) -> dict[str, Any]:
        return self._render(self._row(conn, job_id), now)

    # -- API operations --------------------------------------------------------

    def create_job(
        self, body: Any, query: Mapping[str, str] | None = None, *, superuser: bool = True
    ) -> dict[str, Any]:
        """E2: validate (400), refuse a taken ID (409, tombstones too), insert as CREATING.

        ``superuser`` is whether the caller may send key-gated parameters (the
        HTTP app passes the key's role; direct store calls are privileged).
        """
        new = parse_create(
            body,
            dict(query or {}),
            account_id=self.account_id,
            created_by=f"{self.account_id}@emulator.local",
            superuser=superuser,
        )
        job_id = new.job_id or str(uuid.uuid4())
        with self._write() as (conn, now):
            existing = conn.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if existing is not None:
                raise AlreadyExists(self._exists_message(job_id, existing["state"]))
            keyed = new.echo.get("hotLoadDeploymentId")
            if isinstance(keyed, str) and keyed:
                self.deployments.check_deployment_first(conn, keyed, now)
            conn.execute(
                "INSERT INTO jobs(job_id, display_name, state, echo, public, demand, accel_type, inactivity_s,"
                " create_time, update_time, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    new.display_name,
                    CREATING,
                    json.dumps(new.echo),
                    json.dumps(new.public) if new.public is not None else None,
                    new.demand,
                    new.accelerator_type,
                    new.inactivity_s,
                    now,
                    now,
                    now + self.provision_seconds,
                ),
            )
            return self._reload(conn, job_id, now)

    def _exists_message(self, job_id: str, state: str) -> str:
        if state in TOMBSTONE_STATES:
            return (
                f"RLOR trainer job {self.job_name(job_id)} already exists in state {shown_state(state)}; "
                "a deleted job's ID cannot be reused, choose a new rlorTrainerJobId"
            )
        return f"RLOR trainer job {self.job_name(job_id)} already exists (state {state})"

    def get_job(self, job_id: str) -> dict[str, Any]:
        """E3: the job resource, tombstones included (NotFound otherwise)."""
        with self._read() as (conn, now):
            return self._reload(conn, job_id, now)

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
        with self._read() as (conn, now):
            rows = conn.execute(sql, (*args, page_size + 1)).fetchall()
        more = len(rows) > page_size
        rows = rows[:page_size]
        return [self._render(r, now) for r in rows], (rows[-1]["job_id"] if more else None)

    def delete_job(self, job_id: str) -> dict[str, Any]:
        """E5: DELETING now, ARCHIVED after ``settle_seconds``; a tombstone is left alone."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] in TOMBSTONE_STATES or row["state"] == DELETING:
                return self._render(row, now)
            completed = row["completed_time"]
            self._set(
                conn,
                job_id,
                now,
                state=DELETING,
                due_at=now + self.settle_seconds,
                queue_seq=None,
                completed_time=completed if completed is not None else now,
            )
            self._drain_queue(conn, now)
            return self._reload(conn, job_id, now)

    def resume_job(self, job_id: str) -> dict[str, Any]:
        """E6: a resumable job goes back to CREATING before this returns (never FAILED after)."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] not in RESUMABLE_STATES:
                raise FailedPrecondition(
                    f"cannot resume job in state: {shown_state(row['state'])}; only FAILED, CANCELLED, PAUSED or "
                    "COMPLETED jobs can be resumed"
                )
            self._set(
                conn, job_id, now, state=CREATING, due_at=now + self.provision_seconds, completed_time=None, unhealthy=0
            )
            return self._reload(conn, job_id, now)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """E7: CANCELLING now, CANCELLED after ``settle_seconds``; accelerators freed at once."""
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] in (CANCELLING, CANCELLED):
                return self._render(row, now)
            if row["state"] not in ACTIVE_STATES:
                raise FailedPrecondition(f"cannot cancel job in state: {shown_state(row['state'])}")
            self._set(conn, job_id, now, state=CANCELLING, due_at=now + self.settle_seconds, queue_seq=None)
            self._drain_queue(conn, now)
            return self._reload(conn, job_id, now)

    def check_health(self, job_id: str) -> tuple[bool, str]:
        """E11: ``(healthy, reason)``. A read: a probe is not trainer activity.

        Inactivity is measured from trainer API calls and session heartbeats
        (PROTOCOL.md §6.1), not from health probes: a tool that checks health
        (``plan``, ``watch``) must never keep an idle trainer, and its GPUs, alive.
        """
        with self._read() as (conn, _now):
            row = self._row(conn, job_id)
            if row["state"] != RUNNING:
                return False, f"trainer is not running (state {shown_state(row['state'])})"
            if row["unhealthy"]:
                return False, "trainer is unhealthy"
            return True, "ok"

    # -- fault injection -------------------------------------------------------

    def _fault(
        self,
        job_id: str,
        verb: str,
        allowed: frozenset[str],
        act: Callable[[sqlite3.Connection, sqlite3.Row, float], None],
    ) -> dict[str, Any]:
        with self._write() as (conn, now):
            row = self._row(conn, job_id)
            if row["state"] not in allowed:
                raise FailedPrecondition(f"cannot {verb} job in state: {shown_state(row['state'])}")
            act(conn, row, now)
            return self._reload(conn, job_id, now)

    def _stop_fault(self, job_id: str, verb: str, state: str, code: str, message: str) -> dict[str, Any]:
        """A live job stops in ``state``: its accelerators are freed and queued jobs start."""
        return self._fault(
            job_id, verb, ACTIVE_STATES, lambda conn, row, now: self._stop(conn, job_id, now, state, code, message)
        )

    def preempt(self, job_id: str) -> dict[str, Any]:
        """The pod dies: FAILED with status UNAVAILABLE "pod preempted"."""
        return self._stop_fault(job_id, "preempt", FAILED, "UNAVAILABLE", PREEMPT_MESSAGE)

    def fail(self, job_id: str, message: str = DEFAULT_FAIL_MESSAGE) -> dict[str, Any]:
        """The trainer crashes: FAILED with status INTERNAL and ``message``."""
        return self._stop_fault(job_id, "fail", FAILED, "INTERNAL", message or DEFAULT_FAIL_MESSAGE)

    def complete(self, job_id: str) -> dict[str, Any]:
        """Training finished: COMPLETED (resumable), accelerators freed."""
        return self._stop_fault(job_id, "complete", COMPLETED, "OK", "training completed (injected)")

    def pause(self, job_id: str) -> dict[str, Any]:
        """The platform pauses the job (e.g. account suspension): PAUSED (resumable)."""
        return self._stop_fault(job_id, "pause", PAUSED, "OK", "paused by the platform (injected)")

    def early_stop(self, job_id: str) -> dict[str, Any]:
        """EARLY_STOPPED: stopped for good (the SDK never resumes it)."""
        return self._stop_fault(job_id, "early-stop", EARLY_STOPPED, "OK", "stopped early (injected)")

    def expire(self, job_id: str) -> dict[str, Any]:
        """EXPIRED, status DEADLINE_EXCEEDED (not resumable)."""
        return self._stop_fault(job_id, "expire", EXPIRED, "DEADLINE_EXCEEDED", "job expired (injected)")

    def set_idle(self, job_id: str) -> dict[str, Any]:
        """RUNNING -> IDLE: a service-mode trainer with no active training (still holds its GPUs)."""
        return self._fault(
            job_id,
            "set idle",
            frozenset({RUNNING}),
            lambda conn, row, now: self._set(
                conn,
                job_id,
                now,
                state=IDLE,
                status_message="service-mode trainer is idle (no active training)",
                flap_due=None,
                due_at=row["inactive_due"],
            ),
        )

    def mark_unhealthy(self, job_id: str, unhealthy: bool = True) -> dict[str, Any]:
        """Make the health probe answer 503 (or 200 again with ``unhealthy=False``)."""
        alive = frozenset(ACTIVE_STATES | STOPPED_STATES | {CANCELLING})
        return self._fault(
            job_id,
            "mark unhealthy",
            alive,
            lambda conn, row, now: self._set(conn, job_id, row["update_time"], unhealthy=int(unhealthy)),
        )

    def flap(self, job_id: str, period: float = DEFAULT_FLAP_PERIOD_S, *, off: bool = False) -> dict[str, Any]:
        """Crash loop: from now on every ``period`` s of RUNNING ends in FAILED "trainer crashed (flapping)".

        A resume brings the job back through CREATING to RUNNING, and it fails
        again. ``off=True`` ends the loop. The setting is stored with the job.
        """
        if not off and not (isinstance(period, (int, float)) and 0 < period < float("inf")):
            raise InvalidArgument(f"flap period must be a positive number of seconds, got {period!r}")
        alive = frozenset(ACTIVE_STATES | STOPPED_STATES | {CANCELLING})

        def act(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> None:
            flap_due = now + period if not off and row["state"] == RUNNING else None
            due = _earliest(row["inactive_due"], flap_due) if row["state"] in HOLDING_STATES else row["due_at"]
            self._set(
                conn,
                job_id,
                row["update_time"],
                flap_period=None if off else float(period),
                flap_due=flap_due,
                due_at=due,
            )

        return self._fault(job_id, "flap", alive, act)

    def job_fault(
        self, fault: str, job_id: str, *, message: str | None = None, period: float | None = None, off: bool = False
    ) -> dict[str, Any]:
        """Apply the job fault named as on the admin route and the CLI (``preempt``, ``early-stop``...)."""
        actions: dict[str, Callable[[], dict[str, Any]]] = {
            "preempt": lambda: self.preempt(job_id),
            "fail": lambda: self.fail(job_id, message) if message else self.fail(job_id),
            "set-idle": lambda: self.set_idle(job_id),
            "mark-unhealthy": lambda: self.mark_unhealthy(job_id, True),
            "mark-healthy": lambda: self.mark_unhealthy(job_id, False),
            "complete": lambda: self.complete(job_id),
            "pause": lambda: self.pause(job_id),
            "early-stop": lambda: self.early_stop(job_id),
            "expire": lambda: self.expire(job_id),
            "flap": lambda: self.flap(job_id, DEFAULT_FLAP_PERIOD_S if period is None else float(period), off=off),
        }
        if fault not in actions:
            raise InvalidArgument(f'unknown fault "{fault[:40]}"; use one of {", ".join(actions)}')
        return actions[fault]()

    def arm_drop(self, operation: str, count: int = 1) -> dict[str, Any]:
        """Drop the responses of the next ``count`` successful ``operation`` requests (503 after acting)."""
        if operation not in DROP_OPERATIONS:
            raise InvalidArgument(f'unknown operation "{str(operation)[:40]}"; use one of {", ".join(DROP_OPERATIONS)}')
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgument(f"count must be a non-negative integer, got {count!r}")
        with self._write(advance=False) as (conn, _now):
            conn.execute(
                "INSERT INTO drops(operation, remaining) VALUES (?, ?) ON CONFLICT(operation) "
                "DO UPDATE SET remaining = excluded.remaining",
                (operation, count),
            )
        return {"fault": "drop-response", "operation": operation, "count": count}

    def take_drop(self, operation: str) -> bool:
        """Whether this ``operation``'s response is to be dropped (uses up one armed drop)."""
        conn = self._conn()
        armed = conn.execute("SELECT 1 FROM drops WHERE operation = ? AND remaining > 0", (operation,)).fetchone()
        if armed is None:  # the common case: a read, no write lock
            return False
        cursor = conn.execute(
            "UPDATE drops SET remaining = remaining - 1 WHERE operation = ? AND remaining > 0", (operation,)
        )
        return cursor.rowcount == 1

    def armed_drops(self) -> dict[str, int]:
        """Responses still to drop, by operation."""
        rows = self._conn().execute("SELECT operation, remaining FROM drops WHERE remaining > 0")
        return {r["operation"]: r["remaining"] for r in rows}


def shown_state(state: str) -> str:
    """The state the public API shows: tombstones appear as ``JOB_STATE_ARCHIVED`` (PROTOCOL.md §2.2)."""
    return ARCHIVED if state in TOMBSTONE_STATES else state


def _earliest(*times: float | None) -> float | None:
    """The earliest of the set timers (None when none is set)."""
    return min((t for t in times if t is not None), default=None)


def _usage_change(conn: sqlite3.Connection, job_id: str, at: float, new_state: str) -> dict[str, Any]:
    """Columns that book accelerator use when a job enters or leaves the holding states."""
    row = conn.execute("SELECT demand, held_since, accel_seconds FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        return {}
    holding = row["held_since"] is not None
    if new_state in HOLDING_STATES:
        return {} if holding else {"held_since": at}
    if not holding:
        return {}
    spell = max(0.0, at - row["held_since"]) * row["demand"]
    return {"held_since": None, "accel_seconds": row["accel_seconds"] + spell}


def _accelerator_seconds(row: sqlite3.Row, now: float) -> int:
    """Whole accelerator-seconds used so far: earlier spells plus the current one."""
    total = row["accel_seconds"]
    if row["held_since"] is not None:
        total += max(0.0, now - row["held_since"]) * row["demand"]
    return int(total + 1e-6)  # float sums such as 0.1 * 30 must not lose a whole second
