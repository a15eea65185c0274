"""Run a plan as a dependency graph against the control plane: no printing, only events.

How it works:
- Each actionable change becomes a ``Task``: a short queue of remote *steps*
  (its kind says which) followed, unless ``--no-wait``, by a wait for the
  step's goal (ready, gone, stopped).
- A task starts only once every change it depends on (``Change.depends_on``)
  has finished OK; if one did not, it ends "skipped: dependency failed"
  without a single request.
- Steps run on a thread pool of ``parallelism`` workers: that bounds how many
  mutating requests are in flight. Waiting does not hold a worker: each poll
  round observes every waiting resource at once (one round per kind: LIST
  pages or per-resource GETs, backing off from 0.5 s to 5 s), so 100 creates
  wait together instead of in batches.
- State is written through ``StateWriter`` after every remote change, and
  once per poll round for observations. One task failing never stops the
  others.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rlorinfra.apply.control_plane import ControlPlane
from rlorinfra.apply.kinds import ApplyKind
from rlorinfra.apply.kinds.deployment import DeploymentSteps
from rlorinfra.apply.kinds.job import JobSteps
from rlorinfra.apply.model import (
    NOT_STARTED,
    SKIPPED,
    ApplyOptions,
    ApplyResult,
    Event,
    EventKind,
    Goal,
    Outcome,
    Task,
)
from rlorinfra.apply.writer import StateWriter
from rlorinfra.errors import ApiError
from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.model import Action, Change, Plan

# The poll interval never exceeds this fraction of how long the jobs have waited, so
# readiness is noticed at most ~10% late (the interval still backs off to poll_max_s).
POLL_LAG_FRACTION = 0.1
# How often the driver looks for finished steps while only steps are in flight.
STEP_CHECK_S = 0.02
DEFAULT_OPTIONS = ApplyOptions()
# Actions that delete the resource they act on (a replace: its delete half).
_DELETING = frozenset({Action.DELETE, Action.REPLACE})


class Executor:
    """Carries out a plan in dependency order; reports ``Event``s through ``on_event``."""

    def __init__(
        self,
        client: ControlPlane,
        writer: StateWriter,
        *,
        options: ApplyOptions = DEFAULT_OPTIONS,
        on_event: Callable[[Event], None] = lambda e: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shape_versions: Mapping[str, str] | None = None,
        list_pages: float = 0,
        deployment_list_pages: float = 0,
    ) -> None:
        self.client = client
        self.writer = writer
        self.options = options
        self._emit = on_event
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._dependent_deletes: dict[Address, list[Task]] = {}
        jobs = JobSteps(client, writer, self, shape_versions=shape_versions, list_pages=list_pages)
        deployments = DeploymentSteps(client, writer, self, list_pages=deployment_list_pages)
        self._kinds: Mapping[Kind, ApplyKind[Any]] = {Kind.JOB: jobs, Kind.DEPLOYMENT: deployments}

    # -- driver -----------------------------------------------------------

    def run(self, plan: Plan) -> ApplyResult:
        """Execute every actionable change; returns when all are settled or on Ctrl-C."""
        tasks = [self._new_task(c) for c in plan.actionable]
        for kind, handler in self._kinds.items():
            handler.prepare([t for t in tasks if t.change.kind is kind])
        result = ApplyResult()
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.parallelism), thread_name_prefix="apply")
        try:
            self._drive(tasks, pool)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for kind, handler in self._kinds.items():
                handler.release_unstarted([t for t in tasks if t.change.kind is kind])
            self.writer.flush()
        result.outcomes = [t.outcome or self._unsettled(t) for t in tasks]
        result.state = self.writer.state
        return result

    def _kind(self, task: Task) -> ApplyKind[Any]:
        return self._kinds[task.change.kind]

    def _new_task(self, change: Change) -> Task:
        now = self._clock()
        return Task(
            change=change,
            steps=self._kinds[change.kind].steps(change),
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
            if not waiting:
                self._sleep(STEP_CHECK_S)  # only steps in flight: check back soon
                continue
            round_started = self._clock()
            progressed = self._poll(waiting)
            if all(t.outcome for t in tasks):
                return  # the last wait just ended: no reason to sleep once more
            self._dispatch(tasks, pool)  # start what this round unblocked now, not one interval later
            # Grow gently (x1.5) so a job that turns ready is seen soon after it does,
            # and never past a tenth of the shortest wait so far: at most ~10% late.
            delay = self.options.poll_min_s if progressed else min(delay * 1.5, self.options.poll_max_s)
            delay = min(delay, max(self.options.poll_min_s, POLL_LAG_FRACTION * self._shortest_wait(waiting)))
            self._sleep(max(0.0, delay - (self._clock() - round_started)))  # the interval includes the round

    def _shortest_wait(self, waiting: list[Task]) -> float:
        return self._clock() - max(t.waiting_since for t in waiting)

    # -- the graph ----------------------------------------------------------

    def _dispatch(self, tasks: list[Task], pool: ThreadPoolExecutor) -> None:
        by_address = _tasks_by_address(tasks)
        self._dependent_deletes = _dependent_deletes(tasks)
        for task in tasks:
            if task.outcome or task.busy or task.goal:
                continue
            blocked = self._blocked(task, by_address)
            if blocked is None:
                continue  # a dependency is still running
            if blocked:
                self._skip(task)
                continue
            if not task.steps:  # nothing left to do or wait for
                self.finish(task, ok=True, message="done")
                continue
            task.busy = True
            future = pool.submit(self._kind(task).run_step, task, task.steps.pop(0))
            future.add_done_callback(functools.partial(self._step_done, task))

    def _blocked(self, task: Task, by_address: Mapping[Address, list[Task]]) -> bool | None:
        """False: every task it waits for finished OK; True: one did not; None: one is still running.

        A create, update or wait waits for what it depends on. A delete runs the
        other way round (dependents first): it does not wait for its own
        dependencies, and a delete or replace of X waits for the deletes of the
        resources that depend on X (a deployment goes before its trainer).
        """
        waits_for: list[Task] = (
            []
            if task.change.action is Action.DELETE
            else [dependency for address in task.change.depends_on for dependency in by_address.get(address, ())]
        )
        if task.change.action in _DELETING:
            waits_for += self._dependent_deletes.get(task.address, [])
        for other in waits_for:
            if other.outcome is None:
                return None
            if not other.outcome.ok:
                return True
        return False

    def _skip(self, task: Task) -> None:
        """A dependency did not converge: end without a request (an ID reserved up front is released)."""
        task.steps.clear()
        self._kind(task).release_unstarted([task])
        task.outcome = _outcome(task, ok=False, message=SKIPPED)
        self.event(task, EventKind.FAILED, message=SKIPPED)

    def _step_done(self, task: Task, future: Future[None]) -> None:
        if future.cancelled():  # Ctrl-C: queued steps are dropped, not failed
            task.busy = False
            return
        exc = future.exception()
        if exc is not None:
            message = exc.summary if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
            self.finish(task, ok=False, message=message)
        task.busy = False

    def _unsettled(self, task: Task) -> Outcome:
        message = (
            NOT_STARTED
            if task.job_id is None and task.last_state is None
            else f"still {task.last_state or 'in progress'}"
        )
        return _outcome(task, ok=False, message=message, pending=True)

    # -- poll rounds (main thread) ------------------------------------------

    def _poll(self, waiting: list[Task]) -> bool:
        """One observation round for every waiting task, one per kind; True if any progressed."""
        progressed = False
        for kind, handler in self._kinds.items():
            mine = [t for t in waiting if t.change.kind is kind]
            if mine:
                progressed |= self._poll_kind(handler, mine)
        return progressed

    def _poll_kind(self, handler: ApplyKind[Any], waiting: list[Task]) -> bool:
        try:
            observations = handler.observe_round(waiting)
        except ApiError as exc:
            self._note_poll_failure(waiting, exc)
            return False
        progressed = False
        with self.writer.deferred():  # observations only: one state write per round, not per resource
            for task, observation in zip(waiting, observations, strict=True):
                progressed |= handler.judge(task, observation)
        return progressed

    def _note_poll_failure(self, waiting: list[Task], exc: ApiError) -> None:
        now = self._clock()
        for task in waiting:
            if task.placed_deadline is not None and now > task.placed_deadline:
                self.finish(task, ok=False, message=f"control plane unreachable while waiting: {exc.summary}")

    # -- TaskHost: what the kinds' steps call back --------------------------

    def now(self) -> float:
        """The scheduler's clock."""
        return self._clock()

    def pause(self, seconds: float) -> None:
        """Sleep on the scheduler's clock."""
        self._sleep(seconds)

    def start_wait(self, task: Task, goal: Goal, state: str | None) -> None:
        """Park ``task`` until a poll round sees ``goal`` reached."""
        task.last_state = state
        task.waiting_since = self._clock()
        task.goal = goal

    def finish(
        self, task: Task, *, ok: bool, message: str, pending: bool = False, kind: EventKind = EventKind.DONE
    ) -> None:
        """Settle ``task``: a failure is recorded in state by its kind."""
        task.goal = None
        task.steps.clear()
        if not ok:
            self._kind(task).settle_failed(task)
        task.outcome = _outcome(task, ok=ok, message=message, pending=pending)
        self.event(task, kind if ok else EventKind.FAILED, state=task.last_state, message=message)

    def event(
        self, task: Task, kind: EventKind, *, state: str | None = None, message: str = "", job_id: str | None = None
    ) -> None:
        """Report an event about ``task`` (serialized: views are not thread-safe)."""
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
                    str(task.change.address),
                )
            )


def _outcome(task: Task, *, ok: bool, message: str, pending: bool = False) -> Outcome:
    """How ``task`` ended, named by its change's name and address."""
    return Outcome(
        task.name,
        task.change.action.value,
        ok=ok,
        job_id=task.job_id,
        message=message,
        pending=pending,
        address=str(task.change.address),
    )


def _tasks_by_address(tasks: Sequence[Task]) -> dict[Address, list[Task]]:
    """Tasks grouped by the resource they change (a job and its deposed deletes share one)."""
    grouped: dict[Address, list[Task]] = {}
    for task in tasks:
        grouped.setdefault(task.address, []).append(task)
    return grouped


def _dependent_deletes(tasks: Sequence[Task]) -> dict[Address, list[Task]]:
    """For each address, the DELETE tasks of resources that depend on it (they must finish before it goes)."""
    dependents: dict[Address, list[Task]] = {}
    for task in tasks:
        if task.change.action is Action.DELETE:
            for address in task.change.depends_on:
                dependents.setdefault(address, []).append(task)
    return dependents
