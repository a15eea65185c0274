"""The trainer job's apply steps and readiness rule (DESIGN.md §6).

- A create records its client-chosen ID with phase ``creating`` *before* the
  POST, so a crash can never lead to a duplicate job; a 409 for our own ID
  adopts the job, never someone else's.
- Non-idempotent calls (``:resume``, ``:cancel``) are never blindly retried
  after a lost answer: the job is read back first.
- A job that fails or is preempted while waited for is resumed, at most
  ``max_resumes`` times (the seed's ``reconnect_and_wait``); ready means
  RUNNING and a passing health check, as the SDK means it.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from rlorinfra.apply.control_plane import ControlPlane
from rlorinfra.apply.kinds import TaskHost
from rlorinfra.apply.kinds.common import (
    LOST_ANSWER_RETRIES,
    NotOursError,
    fan_out,
    is_definite_refusal,
    lifecycle_fields,
    lost_answer_backoff,
    read_back,
    require_id,
    spec_to_create,
)
from rlorinfra.apply.model import EventKind, Goal, Step, Task, now_rfc3339
from rlorinfra.apply.writer import StateWriter
from rlorinfra.errors import AlreadyExistsError, ApiError, OutcomeUnknownError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.jobs import LiveJob, canonical_spec, comparable_fields, not_ours
from rlorinfra.model.states import ACTIVE_STATES, DEAD_STATES, RESUMABLE_STATES, STOPPED_STATES, TOMBSTONE_STATES
from rlorinfra.plan.model import Action, Change
from rlorinfra.state import model as sm
from rlorinfra.state.model import JobRecord, State

MAX_ID_LEN = 63
SUFFIX_LEN = 6
# How often a non-idempotent call is made again after its answer was lost and a
# re-read showed the server had not acted on it.
# Right after :resume the control plane may still report the old stopped state
# for a moment; the SDK tolerates that for 30 s, and so do we (FAILED excepted).
RESUME_GRACE_S = 30.0

Answer = TypeVar("Answer")


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


_STEPS: Mapping[Action, list[Step]] = {
    Action.CREATE: [Step.CREATE],
    Action.RESUME: [Step.RESUME],
    Action.WAIT: [Step.WAIT_READY],
    Action.STOP: [Step.CANCEL],
    Action.DELETE: [Step.DELETE],
}


class JobSteps:
    """``ApplyKind`` of the trainer job: its steps, its poll round and its readiness rule."""

    kind = Kind.JOB

    def __init__(
        self,
        client: ControlPlane,
        writer: StateWriter,
        host: TaskHost,
        *,
        shape_versions: Mapping[str, str] | None = None,
        list_pages: float = 0,
    ) -> None:
        self.client = client
        self.writer = writer
        self.host = host
        self._shape_versions = dict(shape_versions or {})
        # LIST requests one poll round would cost (from refresh's listing; 0 = unknown):
        # with fewer awaited jobs than that, a round GETs each of them instead (DESIGN.md §6).
        self._list_pages = list_pages
        self._lock = threading.Lock()
        self._reserved_ids: set[str] = set()  # every job ID chosen in this run
        self._deleted_current: set[Address] = set()  # addresses whose current job this run deleted
        self._health: dict[str, bool] = {}  # this poll round's health checks, by job ID

    def steps(self, change: Change) -> list[Step]:
        """Create-before-destroy creates first; otherwise a replace deletes first."""
        if change.action is Action.REPLACE:
            return [Step.CREATE, Step.DELETE_OLD] if change.create_before_destroy else [Step.DELETE, Step.CREATE]
        return list(_STEPS[change.action])

    # -- IDs ----------------------------------------------------------------

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Choose the IDs of brand-new jobs up front and record them (phase creating) in one write.

        Otherwise every create waits for its own O(jobs) state write before its POST.
        """
        new = [
            t
            for t in tasks
            if t.change.action is Action.CREATE and not t.job_id and self.writer.record(t.address) is None
        ]
        records = {}
        for task in new:
            task.job_id, task.reserved = self._new_id(task.name), True
            records[task.name] = self._record(task, task.job_id, spec_to_create(task.change), phase=sm.PHASE_CREATING)
        if records:
            self.writer.update(lambda s: s.with_jobs({**s.jobs, **records}))

    def _new_id(self, name: str) -> str:
        """A fresh job ID, unique within this run and against every ID state tracks."""
        with self._lock:
            job_id = new_job_id(name, taken=self._ids_in_use())
            self._reserved_ids.add(job_id)
            return job_id

    def _ids_in_use(self) -> set[str]:
        state = self.writer.state
        ids = {record.job_id for record in state.jobs.values()}
        ids |= {job_id for record in state.jobs.values() for job_id in record.deposed_job_ids}
        return ids | self._reserved_ids

    def release_unstarted(self, tasks: Sequence[Task]) -> None:
        """Creates that never started (Ctrl-C, a failed dependency) leave no record behind, as if never reserved."""
        for task in tasks:
            if task.reserved:
                self.writer.note(functools.partial(_without_if_current, address=task.address, job_id=task.job_id))
                task.job_id, task.reserved = None, False

    # -- steps (worker threads) ------------------------------------------------

    def run_step(self, task: Task, step: Step) -> None:
        """Announce and run ``step``."""
        if step is Step.DELETE_OLD:  # name the job being deleted: the replaced one, not the new one
            self.host.event(task, EventKind.STARTED, message=step, job_id=task.old_job_id)
        elif step is not Step.CREATE:  # a create announces itself once its new job ID is chosen
            self.host.event(task, EventKind.STARTED, message=step)
        runners: Mapping[Step, Callable[[Task], None]] = {
            Step.CREATE: self._step_create,
            Step.RESUME: self._step_resume,
            Step.WAIT_READY: self._step_wait_ready,
            Step.CANCEL: self._step_cancel,
            Step.DELETE: self._step_delete,
            Step.DELETE_OLD: self._step_delete_old,
        }
        runners[step](task)

    def _step_create(self, task: Task) -> None:
        task.reserved = False
        spec = spec_to_create(task.change)
        if task.change.action is Action.REPLACE:
            task.old_job_id = task.old_job_id or task.change.job_id
            task.job_id = None
        job_id = task.job_id or self._new_id(task.name)
        task.job_id = job_id
        self.host.event(task, EventKind.STARTED, message=Step.CREATE)
        old = self.writer.job(task.address.name)
        deposed = self._deposed_after_create(task, old, job_id)
        if old is None or old.job_id != job_id or old.phase != sm.PHASE_CREATING:  # else already on disk
            record = self._record(task, job_id, spec, phase=sm.PHASE_CREATING, deposed=deposed)
            self.writer.set_record(task.address, record)
        try:
            try:
                live = self.client.create_job(job_id, task.name, spec)
            except AlreadyExistsError:
                live, spec = self._adopt(task, job_id, spec)
        except ApiError as exc:
            if is_definite_refusal(exc):
                self._undo_create_record(task.address, old, job_id)
            raise  # 408/429/5xx after retries: an earlier attempt may have landed; reconcile by ID
        self._placed(task, live, spec)

    def _undo_create_record(self, address: Address, old: JobRecord | None, job_id: str) -> None:
        """A definite refusal: nothing was created, so state must not claim ``job_id``.

        The record it replaced (with every job it still tracks) comes back as it
        was; a record that was only this create's reservation goes, unless it
        still tracks deposed jobs.
        """
        if old is not None and old.job_id != job_id:
            self.writer.set_record(address, old)
        elif old is not None and old.deposed_job_ids:
            return  # keep tracking the deposed jobs; the next plan retries the create
        else:
            self.writer.forget(address)

    def _adopt(self, task: Task, job_id: str, spec: dict[str, Any]) -> tuple[LiveJob, dict[str, Any]]:
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
        self.host.event(
            task,
            EventKind.STATE,
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

    def _placed(self, task: Task, live: LiveJob, spec: dict[str, Any]) -> None:
        record = self._record(task, live.job_id, spec, phase=sm.PHASE_PROVISIONING, observed=live.state)
        # Not waited for: the ID is on disk already (phase creating), so a crash before the next
        # write (the poll round's, or the end of the run) is reconciled by ID like any other.
        self.writer.note(lambda s: s.with_record(task.address, record))
        self.host.event(task, EventKind.STATE, state=live.state)
        if not self.host.options.wait:
            self.host.finish(task, ok=True, message="accepted (not waiting)", pending=True)
            return
        self.host.start_wait(task, Goal.READY, live.state)

    def _step_resume(self, task: Task) -> None:
        job_id = require_id(task)
        live = self._call_then_look(task, lambda: self.client.resume_job(job_id), settled=RESUMABLE_STATES)
        state = live.state if live is not None else None
        task.resumes += 1
        task.resumed_at = self.host.now()
        self._update_record(task.address, phase=sm.PHASE_PROVISIONING, observed=state)
        self.host.event(task, EventKind.STATE, state=state, message="resumed")
        if not self.host.options.wait:
            self.host.finish(task, ok=True, message="resume accepted (not waiting)", pending=True)
            return
        self.host.start_wait(task, Goal.READY, state)

    def _call_then_look(self, task: Task, call: Callable[[], Answer], *, settled: frozenset[str]) -> Answer | LiveJob:
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
                live = read_back(lambda: self.client.get_job(require_id(task)), exc, "job")
                if live is not None and not live.is_tombstone and live.state not in settled:
                    self.host.event(
                        task, EventKind.STATE, state=live.state, message="answer lost; the job shows it was done"
                    )
                    return live
                if not isinstance(exc, OutcomeUnknownError) or attempt == LOST_ANSWER_RETRIES:
                    raise
                self.host.pause(lost_answer_backoff(attempt))  # the server had not acted: try again
        raise AssertionError("unreachable")

    def _step_wait_ready(self, task: Task) -> None:
        if not self.host.options.wait:
            self.host.finish(task, ok=True, message="still provisioning (not waiting)", pending=True)
            return
        self.host.start_wait(task, Goal.READY, task.change.live_state)

    def _step_cancel(self, task: Task) -> None:
        job_id = require_id(task)
        self._call_then_look(task, lambda: self.client.cancel_job(job_id), settled=ACTIVE_STATES)
        self._update_record(task.address, phase=sm.PHASE_STOPPED, observed="JOB_STATE_CANCELLING")
        self.host.event(task, EventKind.STATE, state="JOB_STATE_CANCELLING")
        if not self.host.options.wait:
            self.host.finish(task, ok=True, message="cancel accepted (not waiting)")
            return
        self.host.start_wait(task, Goal.STOPPED, "JOB_STATE_CANCELLING")

    def _step_delete(self, task: Task) -> None:
        job_id = task.job_id or task.change.job_id
        if not job_id and task.change.action is Action.DELETE:
            self._forget_record(task.address)  # a record with no job of ours to delete
            self.host.finish(task, ok=True, message="forgotten")
            return
        if job_id and not self._ours_to_delete(task.address, job_id):
            self._forget_record(task.address)
            self.host.finish(task, ok=True, message="forgotten (its recorded ID is not our job)")
            return
        if job_id:
            self.client.delete_job(job_id)
        self._forget_deleted(task.address, job_id)
        if task.change.action is Action.REPLACE:
            task.old_job_id, task.job_id = job_id, None
            return  # the create step follows
        task.job_id = job_id
        if not self.host.options.wait or not job_id:
            self.host.finish(task, ok=True, message="deleted")
            return
        self.host.start_wait(task, Goal.GONE, "JOB_STATE_DELETING")

    def _forget_deleted(self, address: Address, job_id: str | None) -> None:
        """``job_id`` is deleted: forget it as the current job, or as a deposed one."""
        record = self.writer.job(address.name)
        if record is not None and record.job_id == job_id:
            self._forget_current(address, record)
        elif record is not None and job_id and job_id in record.deposed_job_ids:
            self._clear_deposed(address, job_id)  # a deposed job, now deleted

    def _ours_to_delete(self, address: Address, job_id: str) -> bool:
        """May ``job_id`` be deleted as ``address``'s job? Managed by state, and if only recorded, really ours.

        A record still ``creating`` never learnt whether its POST landed: the ID
        may be held by another job by now (without a refresh the planner cannot
        tell), so it is looked at first and deleted only under our display name.
        """
        self._check_managed(address, job_id)
        record = self.writer.job(address.name)
        if record is None or record.job_id != job_id or record.phase != sm.PHASE_CREATING:
            return True
        live = self.client.get_job(job_id)
        return live is not None and live.display_name == address.name

    def _forget_record(self, address: Address) -> None:
        """Drop the record, unless it still tracks deposed jobs (it goes with the last of them)."""
        record = self.writer.job(address.name)
        if record is not None:
            self._forget_current(address, record)

    def _check_managed(self, address: Address, job_id: str) -> None:
        """Nothing is deleted that state does not manage at ``address`` (current or deposed)."""
        record = self.writer.job(address.name)
        if record is None or (job_id != record.job_id and job_id not in record.deposed_job_ids):
            raise ApiError(
                f'Refusing to delete job {job_id}: state does not manage it as "{address.name}"',
                "A plan may only delete jobs the state tracks. The plan file may have been edited; make a new "
                "plan with `rlorinfra plan`.",
            )

    def _forget_current(self, address: Address, record: JobRecord) -> None:
        """The record's own job is deleted: forget it, unless it still tracks deposed jobs.

        Those stay recorded (under the same name) until their own deletes are
        confirmed; the record goes with the last of them.
        """
        with self._lock:
            self._deleted_current.add(address)
        job_id = record.job_id

        def change(state: State) -> State:  # decided on the current record: a deposed clear may race
            current = state.job(address.name)
            if current is None or current.job_id != job_id:
                return state
            if current.deposed_job_ids:
                return state.with_record(address, replace(current, observed_state="JOB_STATE_DELETING"))
            return state.without_record(address)

        self.writer.update(change)

    def _step_delete_old(self, task: Task) -> None:
        if task.old_job_id:
            self._check_managed(task.address, task.old_job_id)
            self.client.delete_job(task.old_job_id)
            self._clear_deposed(task.address, task.old_job_id)
        self.host.finish(task, ok=True, message=f"replaced {task.old_job_id}")

    # -- one poll round (main thread) ------------------------------------------

    def observe_round(self, waiting: Sequence[Task]) -> list[LiveJob | None]:
        """LIST pages or a GET per awaited job, whichever is fewer requests; health-checks RUNNING jobs."""
        seen, by_id = self._read_round(waiting)
        self._health = self._check_health(waiting, seen)
        observed = []
        for task in waiting:
            live = seen.get(task.job_id) if task.job_id else None
            if live is None and task.goal is not Goal.GONE and not by_id:
                live = self._get_unlisted(task)  # lists hide tombstones
            observed.append(live)
        return observed

    def _read_round(self, waiting: Sequence[Task]) -> tuple[dict[str, LiveJob], bool]:
        """The live jobs of this round by ID, and whether each awaited job was read by ID."""
        ids = sorted({t.job_id for t in waiting if t.job_id})
        if len(ids) >= self._list_pages:
            return {job.job_id: job for job in self.client.list_jobs()}, False
        if not ids:
            return {}, True
        with ThreadPoolExecutor(max_workers=self._fan_out(len(ids)), thread_name_prefix="poll-get") as pool:
            answers = list(pool.map(self.client.get_job, ids))
        return {job.job_id: job for job in answers if job is not None}, True

    def _fan_out(self, requests: int) -> int:
        return fan_out(requests, self.host.options.parallelism)

    def _check_health(self, waiting: Sequence[Task], seen: Mapping[str, LiveJob]) -> dict[str, bool]:
        """Health-check this round's RUNNING jobs concurrently (one round trip each)."""
        ids = [
            t.job_id
            for t in waiting
            if t.goal is Goal.READY and t.job_id and getattr(seen.get(t.job_id), "state", None) == "JOB_STATE_RUNNING"
        ]
        if len(ids) < 2:
            return {}  # checked inline, when observed
        with ThreadPoolExecutor(max_workers=self._fan_out(len(ids)), thread_name_prefix="health") as pool:
            return dict(zip(ids, pool.map(self.client.healthy, ids), strict=True))

    def _healthy(self, job_id: str) -> bool:
        checked = self._health.pop(job_id, None)
        return self.client.healthy(job_id) if checked is None else checked

    def _get_unlisted(self, task: Task) -> LiveJob | None:
        try:
            return self.client.get_job(require_id(task))
        except ApiError:
            return None

    # -- readiness -----------------------------------------------------------------

    def judge(self, task: Task, observation: LiveJob | None) -> bool:
        """Advance one waiting task from what the poll saw; True if anything changed."""
        live = observation
        state = live.state if live else None
        changed = state != task.last_state
        if changed and state:
            task.last_state = state
            self.host.event(task, EventKind.STATE, state=state, message=live.status_message if live else "")
            self._update_record(task.address, observed=state)
        if task.goal is Goal.GONE:
            return self._observe_gone(task, live) or changed
        if task.goal is Goal.STOPPED:
            return self._observe_stopped(task, state) or changed
        return self._observe_ready(task, live) or changed

    def _observe_gone(self, task: Task, live: LiveJob | None) -> bool:
        if live is None or live.state in TOMBSTONE_STATES:
            self.host.finish(task, ok=True, message="deleted")
            return True
        return self._check_deadline(task)

    def _observe_stopped(self, task: Task, state: str | None) -> bool:
        if state in STOPPED_STATES or state is None:
            self._update_record(task.address, phase=sm.PHASE_STOPPED, observed=state)
            self.host.finish(task, ok=True, message=f"stopped ({state or 'gone'})")
            return True
        return self._check_deadline(task)

    def _observe_ready(self, task: Task, live: LiveJob | None) -> bool:
        if live is None:
            return self._check_deadline(task)
        state = live.state
        if live.is_tombstone or state in DEAD_STATES:
            self.host.finish(task, ok=False, message=f"job {task.job_id} is {state}; it cannot become ready")
            return True
        if state in RESUMABLE_STATES and not self._in_resume_grace(task, state):
            return self._retry_resume(task, live)
        if state == "JOB_STATE_PENDING":
            return self._check_pending(task)
        # Ready is what the SDK means by ready: RUNNING and the health check answers 200.
        # IDLE never is (no active trainer to connect to): it is waited out like any other state.
        if state == "JOB_STATE_RUNNING" and self._healthy(require_id(task)):
            self._ready(task, state)
            return True
        return self._check_deadline(task)

    def _in_resume_grace(self, task: Task, state: str) -> bool:
        if state == "JOB_STATE_FAILED" or task.resumed_at is None:
            return False
        return self.host.now() - task.resumed_at < RESUME_GRACE_S

    def _retry_resume(self, task: Task, live: LiveJob) -> bool:
        why = live.status_message or live.state
        if task.resumes >= task.change.max_resumes:
            self.host.finish(
                task,
                ok=False,
                message=f"job {task.job_id} is {live.state} ({why}) after "
                f"{task.resumes} resume(s); giving up (max_resumes = {task.change.max_resumes})",
            )
            return True
        self.host.event(task, EventKind.RETRY, state=live.state, message=f"{why}; resuming")
        task.goal = None
        task.steps.insert(0, Step.RESUME)
        return True

    def _check_pending(self, task: Task) -> bool:
        if self.host.now() > task.pending_deadline:
            self.host.finish(
                task,
                ok=False,
                message=f"job {task.job_id} remained PENDING for capacity "
                f"longer than {self.host.options.pending_timeout_s:.0f}s (--pending-timeout)",
            )
            return True
        return False

    def _check_deadline(self, task: Task) -> bool:
        now = self.host.now()
        if task.placed_deadline is None:
            task.placed_deadline = now + self.host.options.timeout_s
            return False
        if now > task.placed_deadline:
            self.host.finish(task, ok=False, message=self._not_ready_message(task))
            return True
        return False

    def _not_ready_message(self, task: Task) -> str:
        """Why a wait ran out, naming the option that sets its budget."""
        budget = f"{self.host.options.timeout_s:g}s (--timeout)"
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
        self._update_record(task.address, phase=sm.PHASE_READY, observed=state)
        if task.steps:  # create-before-destroy: now delete the old job
            self.host.event(task, EventKind.READY, state=state)
            task.goal = None
            return
        self.host.finish(task, ok=True, message="ready", kind=EventKind.READY)

    # -- records -------------------------------------------------------------------

    def settle_failed(self, task: Task) -> None:
        """Mark the record failed, unless it is still ``creating`` (the next run reconciles it by ID)."""
        record = self.writer.job(task.address.name)
        if record is not None and record.job_id == task.job_id and record.phase != sm.PHASE_CREATING:
            self._update_record(task.address, phase=sm.PHASE_FAILED)

    def _record(
        self,
        task: Task,
        job_id: str,
        spec: dict[str, Any],
        *,
        phase: str,
        observed: str | None = None,
        deposed: tuple[str, ...] | None = None,
    ) -> JobRecord:
        previous = self.writer.job(task.address.name)
        same = previous is not None and previous.job_id == job_id
        created = previous.created_at if previous is not None and same else now_rfc3339()
        protected, expires_at = lifecycle_fields(task.change.lifecycle, previous if same else None, created)
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
            protected=protected,
            expires_at=expires_at,
        )

    def _clear_deposed(self, address: Address, job_id: str) -> None:
        """The deposed job ``job_id`` is deleted: stop tracking it."""

        def change(state: State) -> State:
            record = state.job(address.name)
            if record is None or job_id not in record.deposed_job_ids:
                return state
            kept = tuple(j for j in record.deposed_job_ids if j != job_id)
            if not kept and address in self._deleted_current and record.observed_state == "JOB_STATE_DELETING":
                return state.without_record(address)  # its own job went first; now nothing is left to track
            return state.with_record(address, replace(record, deposed_job_ids=kept))

        self.writer.update(change)

    def _update_record(self, address: Address, *, phase: str | None = None, observed: str | None = None) -> None:
        def change(state: State) -> State:
            record = state.job(address.name)
            if record is None:
                return state
            updated = replace(record, phase=phase or record.phase, observed_state=observed or record.observed_state)
            if updated == record:
                return state
            return state.with_record(address, replace(updated, updated_at=now_rfc3339()))

        self.writer.update(change)


def _without_if_current(state: State, address: Address, job_id: str | None) -> State:
    """``state`` without ``address`` when its record still holds ``job_id``."""
    record = state.job(address.name)
    return state.without_record(address) if record is not None and record.job_id == job_id else state
