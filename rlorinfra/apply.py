"""Execute a plan against the control plane: no printing, only events.

How it works:
- Each actionable change becomes a ``Task``: a short queue of remote *steps*
  (create, resume, delete, cancel) followed, unless ``--no-wait``, by a wait
  for the step's goal (ready, gone, stopped).
- Steps run on a thread pool of ``parallelism`` workers: that bounds how many
  mutating requests are in flight. Waiting does not hold a worker: one poller
  watches every waiting job with a single LIST per round (backing off from
  0.5 s to 5 s) and health-checks only RUNNING jobs, so 100 creates wait
  together instead of in batches.
- State is written through ``StateWriter`` after every remote change; a create
  records its client-chosen ID with phase ``creating`` *before* the POST, so a
  crash can never lead to a duplicate job.
- A job that fails or is preempted while waited for is resumed, at most
  ``max_resumes`` times. One task failing never stops the others.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rlorinfra.api.client import RETRY_STATUSES, ControlPlaneClient
from rlorinfra.config.model import JobSpec
from rlorinfra.errors import AlreadyExistsError, ApiError, OutcomeUnknownError
from rlorinfra.model.jobs import LiveJob, canonical_spec, comparable_fields, not_ours
from rlorinfra.model.states import ACTIVE_STATES, DEAD_STATES, RESUMABLE_STATES, STOPPED_STATES, TOMBSTONE_STATES
from rlorinfra.plan.model import Action, Change, Plan
from rlorinfra.state import model as sm
from rlorinfra.state.model import JobRecord, State

MAX_ID_LEN = 63
SUFFIX_LEN = 6
# How often a non-idempotent call is made again after its answer was lost and a
# re-read showed the server had not acted on it.
LOST_ANSWER_RETRIES = 5
# Right after :resume the control plane may still report the old stopped state
# for a moment; the SDK tolerates that for 30 s, and so do we (FAILED excepted).
RESUME_GRACE_S = 30.0
NOT_STARTED = "not started"  # outcome message of a change an interrupt kept from starting
# The poll interval never exceeds this fraction of how long the jobs have waited, so
# readiness is noticed at most ~10% late (the interval still backs off to poll_max_s).
POLL_LAG_FRACTION = 0.1


@dataclass(frozen=True)
class ApplyOptions:
    """Knobs of one apply run."""

    parallelism: int = 10
    wait: bool = True
    timeout_s: float = 900.0  # readiness budget after placement
    pending_timeout_s: float = 172800.0  # budget while PENDING for capacity (as the SDK)
    poll_min_s: float = 0.5
    poll_max_s: float = 5.0


@dataclass(frozen=True)
class Event:
    """Something that happened to one job, for the view to show."""

    name: str
    kind: str  # started | state | ready | done | failed | retry
    action: str
    job_id: str | None = None
    state: str | None = None
    message: str = ""
    elapsed: float = 0.0
    create_before_destroy: bool = False  # a replace that creates first (shown as +/-)


@dataclass(frozen=True)
class Outcome:
    """How one change ended."""

    name: str
    action: str
    ok: bool
    job_id: str | None = None
    message: str = ""
    pending: bool = False  # still provisioning (no-wait or interrupted)


@dataclass
class ApplyResult:
    """Everything apply did, for the summary."""

    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    state: State | None = None

    @property
    def failed(self) -> list[Outcome]:
        """Outcomes that did not converge."""
        return [o for o in self.outcomes if not o.ok and not o.pending]

    def count(self, action: Action) -> int:
        """Successful outcomes of ``action``."""
        return sum(1 for o in self.outcomes if o.ok and o.action == action.value)


def now_rfc3339() -> str:
    """Current UTC time as RFC 3339 (state timestamps)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id(display_name: str, rng: random.Random | None = None, *, taken: Collection[str] = ()) -> str:
    """A readable, valid job ID: a slug of the display name plus a random suffix, not in ``taken``.

    A name with no ASCII letters or digits (``训练``, ``🚀``) gets a slug from a
    hash of the name, so two such names never share a slug.
    """
    slug = _slug(display_name)
    pick = rng or random.SystemRandom()
    for _ in range(1000):
        job_id = f"{slug}-{''.join(pick.choice('0123456789abcdef') for _ in range(SUFFIX_LEN))}"
        if job_id not in taken:
            return job_id
    raise RuntimeError(f"no free job ID for {display_name!r} after 1000 tries")  # 16^6 suffixes: never


def _slug(display_name: str) -> str:
    """The readable part of a job ID: lowercase ASCII letters, digits and hyphens, starting with a letter."""
    ascii_slug = re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")
    if len(re.sub(r"[^a-z0-9]", "", ascii_slug)) < len(re.sub(r"\W", "", display_name)) / 2 or not ascii_slug:
        # Mostly non-ASCII: keep what is readable and add a digest of the whole name.
        digest = hashlib.sha256(display_name.encode("utf-8")).hexdigest()[:8]
        ascii_slug = f"{ascii_slug}-{digest}".strip("-")
    slug = ascii_slug[: MAX_ID_LEN - SUFFIX_LEN - 1].rstrip("-")
    if not slug[0].isalpha():
        slug = f"j-{slug}"[: MAX_ID_LEN - SUFFIX_LEN - 1].rstrip("-")
    return slug


class NotOursError(ApiError):
    """A create's ID is held by a job this record did not create (never adopted)."""


class StateWriter:
    """Serializes state updates from worker threads; each update is on disk when it returns.

    ``persist`` is the state store's ``write`` (the one writer of state bytes);
    the caller holds the state lock for the whole run. A write costs O(jobs),
    so writes are grouped: an update made while another thread is writing
    waits for that write to end and then one write covers every update made
    meanwhile (group commit: still durable before ``update`` returns). Inside
    ``deferred()`` a thread's updates (observations, not remote changes) are
    kept in memory and written once when the block ends.
    """

    def __init__(self, state: State, persist: Callable[[State], State]) -> None:
        self._state = state
        self._persist = persist
        self._lock = threading.Lock()  # guards _state and the version counters
        self._write_lock = threading.Lock()  # one write at a time
        self._version = 0  # bumped by every update
        self._written = 0  # the version last written
        self._local = threading.local()

    @property
    def state(self) -> State:
        """The latest state written."""
        return self._state

    def set_job(self, name: str, record: JobRecord) -> None:
        """Record ``name`` and write."""
        self.update(lambda s: s.with_job(name, record))

    def forget(self, name: str) -> None:
        """Drop ``name`` and write."""
        self.update(lambda s: s.without_job(name))

    def update(self, change: Callable[[State], State]) -> None:
        """Apply ``change`` to the current state and write the result (unless deferred)."""
        with self._lock:
            self._state = change(self._state)
            self._version += 1
            version = self._version
        if not getattr(self._local, "deferred", False):
            self._write_through(version)

    def note(self, change: Callable[[State], State]) -> None:
        """Apply ``change`` in memory only; the next write (anyone's) or ``flush`` persists it."""
        with self._lock:
            self._state = change(self._state)
            self._version += 1

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """This thread's updates inside the block are written once, when it ends."""
        self._local.deferred = True
        try:
            yield
        finally:
            self._local.deferred = False
            self.flush()

    def flush(self) -> None:
        """Write every update made so far (no-op when all are written)."""
        with self._lock:
            version = self._version
        self._write_through(version)

    def _write_through(self, version: int) -> None:
        with self._write_lock:
            if self._written >= version:
                return  # a write that started after our update already covered it
            with self._lock:
                snapshot, latest = self._state, self._version
            written = self._persist(snapshot)
            with self._lock:
                # Later updates were applied on top of the old serial; keep the disk's.
                self._state = replace(self._state, serial=written.serial, lineage=written.lineage)
                self._written = latest

    def record(self, name: str) -> JobRecord | None:
        """The current record of ``name``."""
        return self._state.jobs.get(name)


@dataclass
class Task:
    """One change being carried out: pending steps, then (maybe) a wait."""

    change: Change
    steps: list[str]
    job_id: str | None = None
    goal: str | None = None  # ready | gone | stopped while waiting
    started: float = 0.0
    placed_deadline: float | None = None
    pending_deadline: float = 0.0
    resumes: int = 0
    resumed_at: float | None = None
    waiting_since: float = 0.0  # when the current wait began
    reserved: bool = False  # its ID was recorded up front and its create step has not started
    last_state: str | None = None
    busy: bool = False
    outcome: Outcome | None = None
    old_job_id: str | None = None  # replace: the job being replaced

    @property
    def name(self) -> str:
        return self.change.name


def _steps_for(change: Change) -> list[str]:
    if change.action is Action.REPLACE:
        return ["create", "delete_old"] if change.create_before_destroy else ["delete", "create"]
    return {
        Action.CREATE: ["create"],
        Action.RESUME: ["resume"],
        Action.WAIT: ["wait_ready"],
        Action.STOP: ["cancel"],
        Action.DELETE: ["delete"],
    }[change.action]


class Executor:
    """Carries out a plan; reports ``Event``s through ``on_event``."""

    def __init__(
        self,
        client: ControlPlaneClient,
        writer: StateWriter,
        desired: Mapping[str, JobSpec],
        *,
        options: ApplyOptions = ApplyOptions(),
        on_event: Callable[[Event], None] = lambda e: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shape_versions: Mapping[str, str] | None = None,
        list_pages: float = 0,
    ) -> None:
        self.client = client
        # LIST requests one poll round would cost (from refresh's listing; 0 = unknown):
        # with fewer awaited jobs than that, a round GETs each of them instead (DESIGN.md §6).
        self._list_pages = list_pages
        self.writer = writer
        self.desired = desired
        self.options = options
        self._emit = on_event
        self._clock = clock
        self._sleep = sleep
        self._shape_versions = dict(shape_versions or {})
        self._lock = threading.Lock()
        self._reserved_ids: set[str] = set()  # every job ID chosen in this run
        self._deleted_current: set[str] = set()  # names whose current job this run deleted
        self._health: dict[str, bool] = {}  # this poll round's health checks, by job ID

    # -- driver -----------------------------------------------------------

    def run(self, plan: Plan) -> ApplyResult:
        """Execute every actionable change; returns when all are settled or on Ctrl-C."""
        tasks = [self._new_task(c) for c in plan.actionable]
        self._reserve_ids(tasks)
        result = ApplyResult()
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallelism), thread_name_prefix="apply")
        try:
            self._drive(tasks, pool)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._release_unposted(tasks)
            self.writer.flush()
        result.outcomes = [t.outcome or self._unsettled(t) for t in tasks]
        result.state = self.writer.state
        return result

    def _reserve_ids(self, tasks: list[Task]) -> None:
        """Choose the IDs of brand-new jobs up front and record them (phase creating) in one write.

        Otherwise every create waits for its own O(jobs) state write before its POST.
        """
        new = [
            t for t in tasks if t.change.action is Action.CREATE and not t.job_id and self.writer.record(t.name) is None
        ]
        records = {}
        for task in new:
            task.job_id, task.reserved = self._new_id(task.name), True
            spec = dict(task.change.after or self.desired[task.name].spec())
            records[task.name] = self._record(task.name, task.job_id, spec, phase=sm.PHASE_CREATING)
        if records:
            self.writer.update(lambda s: s.with_jobs({**s.jobs, **records}))

    def _new_id(self, name: str) -> str:
        """A fresh job ID, unique within this run and against every ID state tracks."""
        with self._lock:
            taken = self._ids_in_use()
            job_id = new_job_id(name, taken=taken)
            self._reserved_ids.add(job_id)
            return job_id

    def _ids_in_use(self) -> set[str]:
        state = self.writer.state
        ids = {record.job_id for record in state.jobs.values()}
        ids |= {job_id for record in state.jobs.values() for job_id in record.deposed_job_ids}
        return ids | self._reserved_ids

    def _release_unposted(self, tasks: list[Task]) -> None:
        """Creates that never started (Ctrl-C) leave no record behind, as if never reserved."""
        for task in tasks:
            if task.reserved:
                name, job_id = task.name, task.job_id
                self.writer.note(
                    lambda s, n=name, j=job_id: s.without_job(n) if s.jobs.get(n) and s.jobs[n].job_id == j else s
                )
                task.job_id = None

    def _new_task(self, change: Change) -> Task:
        now = self._clock()
        return Task(
            change=change,
            steps=_steps_for(change),
            job_id=change.job_id,
            started=now,
            pending_deadline=now + self.options.pending_timeout_s,
        )

    def _drive(self, tasks: list[Task], pool: ThreadPoolExecutor) -> None:
        delay = self.options.poll_min_s
        while True:
            self._dispatch(tasks, pool)
            waiting = [t for t in tasks if t.goal and not t.busy and not t.outcome]
            if not waiting and all(t.outcome for t in tasks):
                return
            if waiting:
                round_started = self._clock()
                progressed = self._poll(waiting)
                if all(t.outcome for t in tasks):
                    return  # the last wait just ended: no reason to sleep once more
                # Grow gently (x1.5) so a job that turns ready is seen soon after it does,
                # and never past a tenth of the shortest wait so far: at most ~10% late.
                delay = self.options.poll_min_s if progressed else min(delay * 1.5, self.options.poll_max_s)
                delay = min(delay, max(self.options.poll_min_s, POLL_LAG_FRACTION * self._shortest_wait(waiting)))
                self._sleep(max(0.0, delay - (self._clock() - round_started)))  # the interval includes the round
            else:
                self._sleep(0.02)  # only steps in flight: check back soon

    def _shortest_wait(self, waiting: list[Task]) -> float:
        return self._clock() - max(t.waiting_since for t in waiting)

    def _dispatch(self, tasks: list[Task], pool: ThreadPoolExecutor) -> None:
        for task in tasks:
            if task.outcome or task.busy or task.goal:
                continue
            if not task.steps:  # nothing left to do or wait for
                self._finish(task, ok=True, message="done")
                continue
            task.busy = True
            future = pool.submit(self._run_step, task, task.steps.pop(0))
            future.add_done_callback(lambda f, t=task: self._step_done(t, f))

    def _step_done(self, task: Task, future: Future) -> None:
        if future.cancelled():  # Ctrl-C: queued steps are dropped, not failed
            task.busy = False
            return
        exc = future.exception()
        if exc is not None:
            message = exc.summary if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
            self._finish(task, ok=False, message=message)
        task.busy = False

    def _unsettled(self, task: Task) -> Outcome:
        message = (
            NOT_STARTED
            if task.job_id is None and task.last_state is None
            else f"still {task.last_state or 'in progress'}"
        )
        return Outcome(task.name, task.change.action.value, ok=False, job_id=task.job_id, message=message, pending=True)

    # -- steps (run on worker threads) -----------------------------------

    def _run_step(self, task: Task, step: str) -> None:
        if step == "delete_old":  # name the job being deleted: the replaced one, not the new one
            self._event(task, "started", message=step, job_id=task.old_job_id)
        elif step != "create":  # a create announces itself once its new job ID is chosen
            self._event(task, "started", message=step)
        {
            "create": self._step_create,
            "resume": self._step_resume,
            "wait_ready": self._step_wait_ready,
            "cancel": self._step_cancel,
            "delete": self._step_delete,
            "delete_old": self._step_delete_old,
        }[step](task)

    def _step_create(self, task: Task) -> None:
        name = task.name
        task.reserved = False
        spec = dict(task.change.after or self.desired[name].spec())
        if task.change.action is Action.REPLACE:
            task.old_job_id = task.old_job_id or task.change.job_id
            task.job_id = None
        job_id = task.job_id or self._new_id(name)
        task.job_id = job_id
        self._event(task, "started", message="create")
        old = self.writer.record(name)
        deposed = self._deposed_after_create(task, old, job_id)
        if old is None or old.job_id != job_id or old.phase != sm.PHASE_CREATING:  # else already on disk
            self.writer.set_job(name, self._record(name, job_id, spec, phase=sm.PHASE_CREATING, deposed=deposed))
        try:
            try:
                live = self.client.create_job(job_id, name, spec)
            except AlreadyExistsError:
                live, spec = self._adopt(task, job_id, spec)
        except ApiError as exc:
            if isinstance(exc, NotOursError) or (
                400 <= exc.status_code < 500 and exc.status_code not in RETRY_STATUSES
            ):
                self._undo_create_record(name, old, job_id)
            raise  # 408/429/5xx after retries: an earlier attempt may have landed; reconcile by ID
        self._placed(task, live, spec)

    def _undo_create_record(self, name: str, old: JobRecord | None, job_id: str) -> None:
        """A definite refusal: nothing was created, so state must not claim ``job_id``.

        The record it replaced (with every job it still tracks) comes back as it
        was; a record that was only this create's reservation goes, unless it
        still tracks deposed jobs.
        """
        if old is not None and old.job_id != job_id:
            self.writer.set_job(name, old)
        elif old is not None and old.deposed_job_ids:
            return  # keep tracking the deposed jobs; the next plan retries the create
        else:
            self.writer.forget(name)

    def _adopt(self, task: Task, job_id: str, spec: dict) -> tuple[LiveJob, dict]:
        """A 409 for our ID: adopt the job only if it is the one this record intended.

        The earlier POST landed (a retry, or a run killed after its POST): same
        display name. A job with another display name (or a tombstone) is not
        ours: nothing is recorded under it. Ours but made from an earlier spec
        (the config changed after the killed run) is adopted with the values it
        reports, so the next plan replaces it instead of leaving it untracked.
        Returns the job and the spec to record.
        """
        live = self.client.get_job(job_id)
        if live is None or live.is_tombstone:
            raise NotOursError(
                f"Job ID {job_id} is taken by a deleted job",
                "Deleted job IDs cannot be reused during retention. Run `rlorinfra apply` again: "
                "the next plan creates the job under a new ID.",
            )
        if live.display_name != task.name:
            raise NotOursError(
                f"Job ID {job_id} already belongs to another job ({not_ours(live, task.name, spec)})",
                f'rlorinfra chose the ID for "{task.name}", but the job holding it is not the one it meant to '
                "create, so it was not adopted and nothing was recorded under it. Run `rlorinfra apply` "
                "again: the next plan picks a new ID.",
            )
        if not not_ours(live, task.name, spec):
            return live, spec
        reported = {k: live.reported_value(k) for k in comparable_fields(spec) if k in live.reported}
        self._event(
            task,
            "state",
            state=live.state,
            message="adopted our earlier job (made from an older spec); the next plan replaces it",
        )
        return live, canonical_spec({**spec, **reported})

    def _deposed_after_create(self, task: Task, old: JobRecord | None, job_id: str) -> tuple[str, ...]:
        """The jobs the record must still track once ``job_id`` becomes its job.

        Every job deposed before stays; a create_before_destroy replacement
        deposes the job it replaces (tracked until its deletion is confirmed, so
        a crash or a failed delete can never leave it running untracked).
        """
        if old is None or old.job_id == job_id:
            return old.deposed_job_ids if old is not None else ()
        task.old_job_id = old.job_id
        deposed = list(old.deposed_job_ids)
        if task.change.create_before_destroy and task.change.action is Action.REPLACE and old.job_id not in deposed:
            deposed.append(old.job_id)
        return tuple(deposed)

    def _placed(self, task: Task, live: LiveJob, spec: dict) -> None:
        phase = sm.PHASE_PROVISIONING
        record = self._record(task.name, live.job_id, spec, phase=phase, observed=live.state)
        # Not waited for: the ID is on disk already (phase creating), so a crash before the next
        # write (the poll round's, or the end of the run) is reconciled by ID like any other.
        self.writer.note(lambda s: s.with_job(task.name, record))
        self._event(task, "state", state=live.state)
        if not self.options.wait:
            self._finish(task, ok=True, message="accepted (not waiting)", pending=True)
            return
        self._start_wait(task, "ready", live.state)

    def _step_resume(self, task: Task) -> None:
        live = self._call_then_look(task, lambda: self.client.resume_job(task.job_id), settled=RESUMABLE_STATES)
        task.resumes += 1
        task.resumed_at = self._clock()
        self._update_record(task.name, phase=sm.PHASE_PROVISIONING, observed=live.state)
        self._event(task, "state", state=live.state, message="resumed")
        if not self.options.wait:
            self._finish(task, ok=True, message="resume accepted (not waiting)", pending=True)
            return
        self._start_wait(task, "ready", live.state)

    def _call_then_look(self, task: Task, call: Callable[[], Any], *, settled: frozenset[str]) -> Any:
        """Run a non-idempotent call (``:resume``, ``:cancel``); after a lost answer, look before acting again.

        A lost answer (OutcomeUnknownError), or a 400 that may come from our own
        earlier attempt, is followed by a GET: a job still in one of the
        ``settled`` states was not acted on, so the call is made again (a few
        times, with backoff); any other state means it was, and the step
        carries on from what the job shows (DESIGN.md §6: never a blind retry).
        """
        for attempt in range(LOST_ANSWER_RETRIES + 1):
            try:
                return call()
            except ApiError as exc:
                if not isinstance(exc, OutcomeUnknownError) and exc.status_code != 400:
                    raise
                try:
                    live = self.client.get_job(task.job_id)
                except ApiError as look:
                    raise OutcomeUnknownError(
                        f"{exc.summary}; reading the job back failed too ({look.summary})",
                        "Whether the call was carried out is unknown; nothing was sent again. Run "
                        "`rlorinfra plan` once the control plane answers: it reads the job and plans from there.",
                    ) from None
                if live is not None and not live.is_tombstone and live.state not in settled:
                    self._event(task, "state", state=live.state, message="answer lost; the job shows it was done")
                    return live
                if not isinstance(exc, OutcomeUnknownError) or attempt == LOST_ANSWER_RETRIES:
                    raise
                self._sleep(min(2.0**attempt * 0.5, 8.0))  # the server had not acted: try again
        raise AssertionError("unreachable")

    def _step_wait_ready(self, task: Task) -> None:
        if not self.options.wait:
            self._finish(task, ok=True, message="still provisioning (not waiting)", pending=True)
            return
        self._start_wait(task, "ready", task.change.live_state)

    def _step_cancel(self, task: Task) -> None:
        self._call_then_look(task, lambda: self.client.cancel_job(task.job_id), settled=ACTIVE_STATES)
        self._update_record(task.name, phase=sm.PHASE_STOPPED, observed="JOB_STATE_CANCELLING")
        self._event(task, "state", state="JOB_STATE_CANCELLING")
        if not self.options.wait:
            self._finish(task, ok=True, message="cancel accepted (not waiting)")
            return
        self._start_wait(task, "stopped", "JOB_STATE_CANCELLING")

    def _step_delete(self, task: Task) -> None:
        job_id = task.job_id or task.change.job_id
        if not job_id and task.change.action is Action.DELETE:
            self._forget_record(task.name)  # a record with no job of ours to delete
            self._finish(task, ok=True, message="forgotten")
            return
        if job_id and not self._ours_to_delete(task.name, job_id):
            self._forget_record(task.name)
            self._finish(task, ok=True, message="forgotten (its recorded ID is not our job)")
            return
        if job_id:
            self.client.delete_job(job_id)
        record = self.writer.record(task.name)
        if record is not None and record.job_id == job_id:
            self._forget_current(task.name, record)
        elif record is not None and job_id and job_id in record.deposed_job_ids:
            self._clear_deposed(task.name, job_id)  # a deposed job, now deleted
        if task.change.action is Action.REPLACE:
            task.old_job_id, task.job_id = job_id, None
            return  # the create step follows
        task.job_id = job_id
        if not self.options.wait or not job_id:
            self._finish(task, ok=True, message="deleted")
            return
        self._start_wait(task, "gone", "JOB_STATE_DELETING")

    def _ours_to_delete(self, name: str, job_id: str) -> bool:
        """May ``job_id`` be deleted as ``name``'s job? Managed by state, and if only recorded, really ours.

        A record still ``creating`` never learnt whether its POST landed: the ID
        may be held by another job by now (without a refresh the planner cannot
        tell), so it is looked at first and deleted only under our display name.
        """
        self._check_managed(name, job_id)
        record = self.writer.record(name)
        if record is None or record.job_id != job_id or record.phase != sm.PHASE_CREATING:
            return True
        live = self.client.get_job(job_id)
        return live is not None and live.display_name == name

    def _forget_record(self, name: str) -> None:
        """Drop ``name``'s record, unless it still tracks deposed jobs (it goes with the last of them)."""
        record = self.writer.record(name)
        if record is not None:
            self._forget_current(name, record)

    def _check_managed(self, name: str, job_id: str) -> None:
        """Nothing is deleted that state does not manage under ``name`` (current or deposed)."""
        record = self.writer.record(name)
        if record is None or (job_id != record.job_id and job_id not in record.deposed_job_ids):
            raise ApiError(
                f'Refusing to delete job {job_id}: state does not manage it as "{name}"',
                "A plan may only delete jobs the state tracks. The plan file may have been edited; make a new "
                "plan with `rlorinfra plan`.",
            )

    def _forget_current(self, name: str, record: JobRecord) -> None:
        """The record's own job is deleted: forget it, unless it still tracks deposed jobs.

        Those stay recorded (under the same name) until their own deletes are
        confirmed; the record goes with the last of them.
        """
        with self._lock:
            self._deleted_current.add(name)
        job_id = record.job_id

        def change(state: State) -> State:  # decided on the current record: a deposed clear may race
            current = state.jobs.get(name)
            if current is None or current.job_id != job_id:
                return state
            if current.deposed_job_ids:
                return state.with_job(name, replace(current, observed_state="JOB_STATE_DELETING"))
            return state.without_job(name)

        self.writer.update(change)

    def _step_delete_old(self, task: Task) -> None:
        if task.old_job_id:
            self._check_managed(task.name, task.old_job_id)
            self.client.delete_job(task.old_job_id)
            self._clear_deposed(task.name, task.old_job_id)
        self._finish(task, ok=True, message=f"replaced {task.old_job_id}")

    # -- waiting (main thread) -------------------------------------------

    def _start_wait(self, task: Task, goal: str, state: str | None) -> None:
        task.last_state = state
        task.waiting_since = self._clock()
        task.goal = goal

    def _poll(self, waiting: list[Task]) -> bool:
        """One observation round: LIST pages or a GET per awaited job, whichever is fewer requests."""
        try:
            seen, by_id = self._observe_round(waiting)
        except ApiError as exc:
            self._note_poll_failure(waiting, exc)
            return False
        progressed = False
        self._health = self._check_health(waiting, seen)
        with self.writer.deferred():  # observations only: one state write per round, not per job
            for task in waiting:
                live = seen.get(task.job_id) if task.job_id else None
                if live is None and task.goal != "gone" and not by_id:
                    live = self._get_unlisted(task)  # lists hide tombstones
                progressed |= self._observe(task, live)
        return progressed

    def _observe_round(self, waiting: list[Task]) -> tuple[dict[str, LiveJob], bool]:
        """The live jobs of this round by ID, and whether each awaited job was read by ID."""
        ids = sorted({t.job_id for t in waiting if t.job_id})
        if len(ids) >= self._list_pages:
            return {job.job_id: job for job in self.client.list_jobs()}, False
        if not ids:
            return {}, True
        with ThreadPoolExecutor(max_workers=min(len(ids), max(1, self.options.parallelism)),
                                thread_name_prefix="poll-get") as pool:  # fmt: skip
            answers = list(pool.map(self.client.get_job, ids))
        return {job.job_id: job for job in answers if job is not None}, True

    def _check_health(self, waiting: list[Task], seen: Mapping[str, LiveJob]) -> dict[str, bool]:
        """Health-check this round's RUNNING jobs concurrently (one round trip each)."""
        ids = [
            t.job_id
            for t in waiting
            if t.goal == "ready" and t.job_id and getattr(seen.get(t.job_id), "state", None) == "JOB_STATE_RUNNING"
        ]
        if len(ids) < 2:
            return {}  # checked inline, when observed
        with ThreadPoolExecutor(
            max_workers=min(len(ids), max(1, self.options.parallelism)), thread_name_prefix="health"
        ) as pool:
            return dict(zip(ids, pool.map(self.client.healthy, ids), strict=True))

    def _healthy(self, job_id: str) -> bool:
        checked = self._health.pop(job_id, None)
        return self.client.healthy(job_id) if checked is None else checked

    def _get_unlisted(self, task: Task) -> LiveJob | None:
        try:
            return self.client.get_job(task.job_id)
        except ApiError:
            return None

    def _note_poll_failure(self, waiting: list[Task], exc: ApiError) -> None:
        now = self._clock()
        for task in waiting:
            if task.placed_deadline is not None and now > task.placed_deadline:
                self._finish(task, ok=False, message=f"control plane unreachable while waiting: {exc.summary}")

    def _observe(self, task: Task, live: LiveJob | None) -> bool:
        """Advance one waiting task from what the poll saw; True if anything changed."""
        state = live.state if live else None
        changed = state != task.last_state
        if changed and state:
            task.last_state = state
            self._event(task, "state", state=state, message=live.status_message if live else "")
            self._update_record(task.name, observed=state)
        if task.goal == "gone":
            return self._observe_gone(task, live) or changed
        if task.goal == "stopped":
            return self._observe_stopped(task, state) or changed
        return self._observe_ready(task, live) or changed

    def _observe_gone(self, task: Task, live: LiveJob | None) -> bool:
        if live is None or live.state in TOMBSTONE_STATES:
            self._finish(task, ok=True, message="deleted")
            return True
        return self._check_deadline(task)

    def _observe_stopped(self, task: Task, state: str | None) -> bool:
        if state in STOPPED_STATES or state is None:
            self._update_record(task.name, phase=sm.PHASE_STOPPED, observed=state)
            self._finish(task, ok=True, message=f"stopped ({state or 'gone'})")
            return True
        return self._check_deadline(task)

    def _observe_ready(self, task: Task, live: LiveJob | None) -> bool:
        state = live.state if live else None
        if live is None:
            return self._check_deadline(task)
        if live.is_tombstone or state in DEAD_STATES:
            self._finish(task, ok=False, message=f"job {task.job_id} is {state}; it cannot become ready")
            return True
        if state in RESUMABLE_STATES and not self._in_resume_grace(task, state):
            return self._retry_resume(task, live)
        if state == "JOB_STATE_PENDING":
            return self._check_pending(task)
        # Ready is what the SDK means by ready: RUNNING and the health check answers 200.
        # IDLE never is (no active trainer to connect to): it is waited out like any other state.
        if state == "JOB_STATE_RUNNING" and self._healthy(task.job_id):
            self._ready(task, state)
            return True
        return self._check_deadline(task)

    def _in_resume_grace(self, task: Task, state: str) -> bool:
        if state == "JOB_STATE_FAILED" or task.resumed_at is None:
            return False
        return self._clock() - task.resumed_at < RESUME_GRACE_S

    def _retry_resume(self, task: Task, live: LiveJob) -> bool:
        why = live.status_message or live.state
        if task.resumes >= task.change.max_resumes:
            self._finish(
                task,
                ok=False,
                message=f"job {task.job_id} is {live.state} ({why}) after "
                f"{task.resumes} resume(s); giving up (max_resumes = {task.change.max_resumes})",
            )
            return True
        self._event(task, "retry", state=live.state, message=f"{why}; resuming")
        task.goal = None
        task.steps.insert(0, "resume")
        return True

    def _check_pending(self, task: Task) -> bool:
        if self._clock() > task.pending_deadline:
            self._finish(
                task,
                ok=False,
                message=f"job {task.job_id} remained PENDING for capacity "
                f"longer than {self.options.pending_timeout_s:.0f}s (--pending-timeout)",
            )
            return True
        return False

    def _check_deadline(self, task: Task) -> bool:
        now = self._clock()
        if task.placed_deadline is None:
            task.placed_deadline = now + self.options.timeout_s
            return False
        if now > task.placed_deadline:
            self._finish(task, ok=False, message=self._not_ready_message(task))
            return True
        return False

    def _not_ready_message(self, task: Task) -> str:
        """Why a wait ran out, naming the option that sets its budget."""
        budget = f"{self.options.timeout_s:g}s (--timeout)"
        if task.last_state == "JOB_STATE_IDLE":
            return (
                f"job {task.job_id} stayed JOB_STATE_IDLE for {budget}: an idle trainer is not ready "
                "(the SDK never treats IDLE as ready); start training on it, or resume or replace it, "
                "or raise --timeout"
            )
        if task.last_state == "JOB_STATE_RUNNING":
            return (
                f"job {task.job_id} is RUNNING but its trainer health check did not pass within {budget}; "
                "raise --timeout, or check the trainer"
            )
        return f"job {task.job_id} did not become ready within {budget} after placement (last state {task.last_state})"

    def _ready(self, task: Task, state: str) -> None:
        self._update_record(task.name, phase=sm.PHASE_READY, observed=state)
        if task.steps:  # create-before-destroy: now delete the old job
            self._event(task, "ready", state=state)
            task.goal = None
            return
        self._finish(task, ok=True, message="ready", kind="ready")

    # -- records and events ----------------------------------------------

    def _record(
        self,
        name: str,
        job_id: str,
        spec: dict,
        *,
        phase: str,
        observed: str | None = None,
        deposed: tuple[str, ...] | None = None,
    ) -> JobRecord:
        previous = self.writer.record(name)
        same = previous is not None and previous.job_id == job_id
        created = previous.created_at if same else now_rfc3339()
        return JobRecord(
            job_id=job_id,
            job_name=self.client.job_name(job_id),
            endpoint=self.client.endpoint(job_id),
            spec=spec,
            phase=phase,
            observed_state=observed,
            training_shape_version=self._shape_versions.get(spec.get("training_shape", "")),
            created_at=created,
            updated_at=now_rfc3339(),
            deposed_job_ids=deposed if deposed is not None else (previous.deposed_job_ids if previous else ()),
        )

    def _clear_deposed(self, name: str, job_id: str) -> None:
        """The deposed job ``job_id`` of ``name`` is deleted: stop tracking it."""

        def change(state: State) -> State:
            record = state.jobs.get(name)
            if record is None or job_id not in record.deposed_job_ids:
                return state
            kept = tuple(j for j in record.deposed_job_ids if j != job_id)
            if not kept and name in self._deleted_current and record.observed_state == "JOB_STATE_DELETING":
                return state.without_job(name)  # its own job went first; now nothing is left to track
            return state.with_job(name, replace(record, deposed_job_ids=kept))

        self.writer.update(change)

    def _update_record(self, name: str, *, phase: str | None = None, observed: str | None = None) -> None:
        def change(state: State) -> State:
            record = state.jobs.get(name)
            if record is None:
                return state
            updated = replace(record, phase=phase or record.phase, observed_state=observed or record.observed_state)
            if updated == record:
                return state
            return state.with_job(name, replace(updated, updated_at=now_rfc3339()))

        self.writer.update(change)

    def _finish(self, task: Task, *, ok: bool, message: str, pending: bool = False, kind: str = "done") -> None:
        task.goal = None
        task.steps.clear()
        record = self.writer.record(task.name)
        if not ok and record is not None and record.job_id == task.job_id and record.phase != sm.PHASE_CREATING:
            # A record still "creating" keeps that phase: the next run reconciles it by ID.
            self._update_record(task.name, phase=sm.PHASE_FAILED)
        task.outcome = Outcome(
            task.name, task.change.action.value, ok=ok, job_id=task.job_id, message=message, pending=pending
        )
        self._event(task, kind if ok else "failed", state=task.last_state, message=message)

    def _event(self, task: Task, kind: str, *, state: str | None = None, message: str = "",
               job_id: str | None = None) -> None:  # fmt: skip
        with self._lock:
            self._emit(
                Event(
                    task.name,
                    kind,
                    task.change.action.value,
                    job_id or task.job_id,
                    state,
                    message,
                    round(self._clock() - task.started, 1),
                    task.change.create_before_destroy,
                )
            )
