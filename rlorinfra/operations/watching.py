"""The watch loop: refresh, plan, act on what heals, report the rest, sleep (DESIGN.md §8).

A cycle takes the state lock with a short timeout (a busy lock skips the cycle,
it is never queued), plans through ``build_plan``, runs what it may through the
apply executor (``execute``: every resume is recorded in state before it is
sent, as apply's steps are), writes state and releases the lock; the sleep
between cycles holds nothing, so a human's ``apply`` always gets in.

Heal-only by default: resumes of stopped trainers and waits on transitional
ones run, everything else is reported. A resume needs two consecutive
resumable observations, fits a per-resource budget with exponential backoff,
and a resource whose budget is spent is quarantined in state until a human
runs ``apply`` or ``state unquarantine``. ``--converge`` runs every change,
through the same protection and budget gates as ``apply``.

Nothing here prints, reads the environment or installs signal handlers: the CLI
gives the loop an event sink and a stop event.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from rlorinfra.errors import ApiError, PlanError, RlorinfraError, StateError, StateLockedError
from rlorinfra.model.address import Address, Kind
from rlorinfra.operations.planning import PlanOutcome, PlanRequest, build_plan
from rlorinfra.operations.ui import Operation
from rlorinfra.operations.watch_status import WatchStatus
from rlorinfra.operations.workspace import Workspace
from rlorinfra.plan.model import Action, Change, LiveWorld, Plan
from rlorinfra.state.model import PHASE_STOPPED, State, WatchRecord

if TYPE_CHECKING:
    from rlorinfra.apply import ApplyResult, Event
    from rlorinfra.config.model import Config, JobSpec

# Observations in a row a resume needs: one bad read never resumes a healthy job.
CONFIRMATIONS = 2
DEFAULT_LOCK_TIMEOUT_S = 2.0
# The status message of the control plane's idle stop (a CANCELLED job; controlplane/store.py).
INACTIVITY_MARK = "inactivity"


class WatchEventType(StrEnum):
    """What a watch event reports (the ``type`` of a JSON line)."""

    STARTED = "started"  # the loop began (before its first cycle)
    STOPPED = "stopped"  # the loop ended (state written, lock released)
    CYCLE_SKIPPED = "cycle_skipped"  # the lock was busy
    REFRESH_FAILED = "refresh_failed"  # no action this cycle (the control plane or the state backend failed)
    CONFIG_RELOADED = "config_reloaded"  # the config file changed and validated: this cycle uses it
    DRIFT = "drift"  # reported once until it changes
    CHANGE = "change"  # a change watch does not make (heal-only), reported once
    OBSERVED = "observed"  # resumable once; resumes if the next cycle agrees
    NOT_RESUMED = "not_resumed"  # a stop resume_on does not name
    BACKOFF = "backoff"
    QUARANTINED = "quarantined"
    SUSPENDED = "suspended"
    REFUSED = "refused"  # a gate refused changes (protection; --converge: budget); heals still run
    ACTION = "action"  # watch ran a change (the what says which)
    ERROR = "error"


@dataclass(frozen=True)
class WatchEvent:
    """One thing a cycle reports: ``address`` is ``kind.name`` or ``""`` for the whole cycle."""

    type: WatchEventType
    address: str = ""
    what: str = ""


@dataclass(frozen=True)
class ResumeBudget:
    """How often watch may resume one resource: ``max_resumes`` per ``window_s``, with backoff.

    After the n-th resume in the window the next waits ``backoff_base_s * 2**(n-1)``
    (at most ``backoff_max_s``).
    """

    max_resumes: int = 5
    window_s: float = 6 * 3600.0
    backoff_base_s: float = 60.0
    backoff_max_s: float = 3600.0

    def backoff_after(self, resumes_in_window: int) -> float:
        """Seconds to wait after the ``resumes_in_window``-th resume."""
        return float(min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, resumes_in_window - 1)))


@dataclass(frozen=True)
class WatchSettings:
    """The knobs of one watch process."""

    interval_s: float = 60.0
    converge: bool = False
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    budget: ResumeBudget = field(default_factory=ResumeBudget)
    # Off: no heal-only action depends on it, and checking 1,000 trainers each cycle costs ~3 % of a
    # core at 60 s (benchmarks/bench_watch.py), over the 1 % budget.
    health_check: bool = False


@dataclass
class CycleResult:
    """What one cycle did: ``skipped`` (lock busy), ``error`` (refresh or apply failed), ``pending``
    (changes or drift it did not resolve), ``actions`` (by action value)."""

    skipped: bool = False
    error: str = ""
    pending: bool = False
    actions: dict[str, int] = field(default_factory=dict)


@dataclass
class _Decision:
    """A cycle's verdict over the plan: what to run, the new watch records, what to report."""

    run: set[Address] = field(default_factory=set)
    records: dict[Address, WatchRecord] = field(default_factory=dict)
    events: list[WatchEvent] = field(default_factory=list)
    pending: bool = False


class WatchLoop:
    """The watch process's loop over one workspace.

    ``emit`` gets every event; ``status`` is updated under its lock after every
    cycle (the metrics server reads it); ``on_cycle`` runs after every cycle,
    skipped or not (a watchdog ping). ``clock`` is unix time (tests pass their own).
    """

    def __init__(
        self,
        ws: Workspace,
        settings: WatchSettings,
        status: WatchStatus,
        emit: Callable[[WatchEvent], None],
        on_cycle: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        load_config: Callable[[], Config] | None = None,
    ) -> None:
        self._ws = ws
        self._settings = settings
        self._status = status
        self._emit = emit
        self._on_cycle = on_cycle
        self._clock = clock
        self._reported: dict[tuple[str, str], str] = {}  # (address, topic) -> fingerprint last reported
        # The config is read again whenever its file changes (a human's edit must win over the config
        # watch started with); ``load_config`` is the CLI's loader (with its overrides), else the plain one.
        self._load_config = load_config or self._plain_load
        self._config_digest = ws.config.digest  # of the bytes last loaded (or refused)
        self._config_error: RlorinfraError | None = None  # the file does not validate: no action until it does

    def run(self, stop: threading.Event) -> None:
        """Run cycles until ``stop`` is set; sleeps (holding nothing) ``interval_s`` between them.

        A cycle under way when ``stop`` is set finishes (its steps are short:
        nothing is waited for), so state is written and the lock released.
        """
        mode = "converge" if self._settings.converge else "heal-only"
        self._emit(WatchEvent(WatchEventType.STARTED, what=f"every {self._settings.interval_s:g}s, {mode}"))
        while not stop.is_set():
            self.run_cycle()
            if stop.wait(self._settings.interval_s):
                break
        self._emit(WatchEvent(WatchEventType.STOPPED, what="state written, lock released"))

    def run_cycle(self) -> CycleResult:
        """One cycle: reload a changed config → lock (short timeout) → refresh and plan → act → write state → unlock.

        A config that no longer validates, or a state backend that fails (lock, read, write or
        unlock; a busy lock only skips the cycle), fails the cycle with no action; the next
        cycle tries again.
        """
        config_error = self._reload_config()
        if config_error is not None:
            result = self._failed(config_error, WatchEventType.ERROR, "config")
            self._finish(result, skipped=False)
            return result
        try:
            with ExitStack() as stack:
                try:
                    stack.enter_context(self._ws.lock(Operation.WATCH, self._settings.lock_timeout_s))
                except StateLockedError as exc:
                    result = CycleResult(skipped=True)
                    self._emit(WatchEvent(WatchEventType.CYCLE_SKIPPED, what=f"state lock busy: {exc.summary}"))
                    self._finish(result, skipped=True)
                    return result
                result = self._locked_cycle()
        except StateError as exc:  # a backend blip (PostgreSQL, S3, the file): not the end of watching
            result = self._failed(exc, WatchEventType.REFRESH_FAILED, "state")
        self._finish(result, skipped=False)
        return result

    def _plain_load(self) -> Config:
        from rlorinfra.config.load import load_config

        return load_config(self._ws.config.path, self._ws.environ)

    def _reload_config(self) -> RlorinfraError | None:
        """Load the config again if its file changed; the error while it does not validate, else None."""
        path = self._ws.config.path
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            digest = f"unreadable: {exc}"
        if digest == self._config_digest:
            return self._config_error
        self._config_digest = digest
        try:
            config = self._load_config()
            _check_same_backends(self._ws.config, config)
        except RlorinfraError as exc:
            self._config_error = exc
            return exc
        self._ws.config = config
        self._config_digest = config.digest
        self._config_error = None
        self._reported.pop(("", "config"), None)
        self._emit(WatchEvent(WatchEventType.CONFIG_RELOADED, what=f"{path} changed: this cycle plans with it"))
        return None

    def _failed(self, exc: RlorinfraError, kind: WatchEventType, topic: str) -> CycleResult:
        """A cycle that could not run (config, state backend): degraded, no action, reported once per cause."""
        with self._status.lock:
            self._status.last_error = exc.summary
        key = ("", topic)
        if self._reported.get(key) != exc.summary or topic == "state":
            self._reported[key] = exc.summary
            self._emit(WatchEvent(kind, what=f"{exc.summary}; no action this cycle. {exc.detail}".strip()))
        return CycleResult(error=exc.summary)

    def _finish(self, result: CycleResult, *, skipped: bool) -> None:
        with self._status.lock:
            self._status.cycles += 1
            if skipped:
                self._status.skipped_cycles += 1
            for kind, count in result.actions.items():
                self._status.actions[kind] = self._status.actions.get(kind, 0) + count
        if self._on_cycle is not None:
            self._on_cycle()

    def _locked_cycle(self) -> CycleResult:
        ws = self._ws
        state = ws.store.read()
        try:
            # Protected resources the plan would delete or replace are held out (and reported), not a
            # reason to skip the cycle: a refused replace elsewhere must not keep a preempted trainer down.
            request = PlanRequest(health_check=self._settings.health_check, exclude_protected=True)
            outcome = build_plan(ws, state, request, budget_gate=False)
        except ApiError as exc:  # an API error or timeout: no action on what could not be read
            return self._refresh_failed(exc)
        except RlorinfraError as exc:  # a plan refused (another control plane's state, a cycle): no action
            return self._plan_failed(exc)
        now = self._clock()
        decision = self._decide(outcome, now)
        self._report_drift(outcome.plan)
        to_run = self._gated(outcome, decision)
        for event in decision.events:
            self._emit(event)
        state = _with_watch_records(state, decision.records)
        result = CycleResult(pending=decision.pending)
        try:
            applied = self._execute(state, outcome, to_run)
        except RlorinfraError as exc:
            result.error = exc.summary
            with self._status.lock:
                self._status.last_error = exc.summary
            self._emit(WatchEvent(WatchEventType.ERROR, what=exc.summary))
            return result
        self._record_run(applied, result)
        self._update_status(outcome, applied.state or state, now)
        return result

    def _refresh_failed(self, exc: RlorinfraError) -> CycleResult:
        with self._status.lock:
            self._status.last_error = exc.summary
        self._emit(WatchEvent(WatchEventType.REFRESH_FAILED, what=f"{exc.summary}; no action this cycle"))
        return CycleResult(error=exc.summary)

    def _plan_failed(self, exc: RlorinfraError) -> CycleResult:
        """Planning itself refused: nothing runs, and watch is degraded until a human fixes the cause."""
        with self._status.lock:
            self._status.last_error = exc.summary
        self._emit(WatchEvent(WatchEventType.ERROR, what=f"{exc.summary}; no action this cycle. {exc.detail}".strip()))
        return CycleResult(error=exc.summary)

    # -- deciding ---------------------------------------------------------------------------

    def _decide(self, outcome: PlanOutcome, now: float) -> _Decision:
        decision = _Decision()
        for change in outcome.plan.changes:
            self._decide_change(change, outcome, now, decision)
        for address, why in outcome.plan.held:  # protection refused a delete or replace: left unchanged
            decision.pending = True
            what = f"{why}: left unchanged, the rest is still healed (`rlorinfra plan` shows the ways out)"
            self._once(decision, address, "protected", why, WatchEventType.REFUSED, what)
        return decision

    def _decide_change(self, change: Change, outcome: PlanOutcome, now: float, decision: _Decision) -> None:
        address = change.address
        record = outcome.state.record(address)
        watch = record.watch if record is not None else WatchRecord()
        spec = self._ws.config.jobs.get(change.name) if change.kind is Kind.JOB else None
        if change.action is not Action.RESUME and watch.resumable_seen:
            decision.records[address] = replace(watch, resumable_seen=0)  # it recovered: start counting again
        if change.action is Action.NOOP:
            return
        if spec is not None and spec.suspend:
            decision.pending = True
            self._once(decision, address, "suspend", change.action.value, WatchEventType.SUSPENDED,
                       f"suspend = true: {change.action.value} left to a human")  # fmt: skip
            return
        if watch.quarantined:
            decision.pending = True
            self._once(decision, address, "quarantine", "yes", WatchEventType.QUARANTINED,
                       "quarantined: left alone until `rlorinfra apply` or `rlorinfra state unquarantine`")  # fmt: skip
            return
        if change.action is Action.RESUME and record is not None and record.phase == PHASE_STOPPED:
            # Cancelled on purpose (desired_state = "stopped" was applied): never undone by a watcher
            # that has not seen the config say otherwise; apply resumes it once the config does.
            decision.pending = True
            decision.records[address] = replace(watch, resumable_seen=0)
            what = 'stopped on purpose (state phase "stopped"): not resumed; `rlorinfra apply` resumes it'
            self._once(decision, address, "not_resumed", "stopped", WatchEventType.NOT_RESUMED, what)
            return
        if change.action is Action.RESUME:
            self._decide_resume(change, outcome.live, spec, watch, now, decision)
        elif change.action is Action.WAIT:
            decision.run.add(address)
        elif self._settings.converge:
            decision.run.add(address)
        else:
            decision.pending = True
            self._once(decision, address, "change", f"{change.action.value}|{change.reason}|{change.job_id}",
                       WatchEventType.CHANGE, _change_text(change) + " (not made: heal-only; run apply or watch "
                       "--converge)")  # fmt: skip

    def _decide_resume(
        self,
        change: Change,
        live: LiveWorld | None,
        spec: JobSpec | None,
        watch: WatchRecord,
        now: float,
        decision: _Decision,
    ) -> None:
        """Resume only past every gate: wanted, seen twice, within budget, not backing off."""
        gates = (self._not_wanted, self._unconfirmed, self._over_budget, self._backing_off)
        if any(gate(change, live, spec, watch, now, decision) for gate in gates):
            return
        budget = self._settings.budget
        resumes = (*self._recent(watch, now), now)
        decision.records[change.address] = WatchRecord(
            resumes=resumes, resumable_seen=0, backoff_until=now + budget.backoff_after(len(resumes))
        )
        decision.run.add(change.address)

    def _recent(self, watch: WatchRecord, now: float) -> tuple[float, ...]:
        """The resumes inside the budget's window."""
        return tuple(t for t in watch.resumes if now - t < self._settings.budget.window_s)

    def _not_wanted(
        self, change: Change, live: LiveWorld | None, spec: JobSpec | None, watch: WatchRecord, now: float,
        decision: _Decision,
    ) -> bool:  # fmt: skip
        """Stopped by inactivity or completion, and ``resume_on`` does not name it."""
        cause = _stop_cause(change, live)
        if not cause or (spec is not None and cause in spec.resume_on):
            return False
        decision.pending = True
        decision.records[change.address] = replace(watch, resumable_seen=0)
        self._once(decision, change.address, "not_resumed", cause, WatchEventType.NOT_RESUMED,
                   f"stopped by {cause}: not resumed (resume_on does not name \"{cause}\")")  # fmt: skip
        return True

    def _unconfirmed(
        self, change: Change, live: LiveWorld | None, spec: JobSpec | None, watch: WatchRecord, now: float,
        decision: _Decision,
    ) -> bool:  # fmt: skip
        """Seen resumable once only: no action on one read."""
        seen = watch.resumable_seen + 1
        if seen >= CONFIRMATIONS:
            return False
        decision.pending = True
        decision.records[change.address] = replace(watch, resumable_seen=seen)
        decision.events.append(
            WatchEvent(
                WatchEventType.OBSERVED, str(change.address), f"{change.live_state}: resumes if the next cycle agrees"
            )
        )
        return True

    def _over_budget(
        self, change: Change, live: LiveWorld | None, spec: JobSpec | None, watch: WatchRecord, now: float,
        decision: _Decision,
    ) -> bool:  # fmt: skip
        """The budget's window already holds its resumes: quarantine."""
        budget, recent = self._settings.budget, self._recent(watch, now)
        if len(recent) < budget.max_resumes:
            return False
        address = change.address
        decision.pending = True
        decision.records[address] = replace(
            watch, resumes=recent, resumable_seen=watch.resumable_seen + 1, quarantined=True
        )
        decision.events.append(
            WatchEvent(
                WatchEventType.QUARANTINED,
                str(address),
                f"{len(recent)} resumes in {budget.window_s:g}s spent its budget: quarantined",
            )  # fmt: skip
        )
        self._reported[(str(address), "quarantine")] = "yes"
        return True

    def _backing_off(
        self, change: Change, live: LiveWorld | None, spec: JobSpec | None, watch: WatchRecord, now: float,
        decision: _Decision,
    ) -> bool:  # fmt: skip
        """Too soon after the last resume (exponential backoff)."""
        if watch.backoff_until is None or now >= watch.backoff_until:
            return False
        decision.pending = True
        decision.records[change.address] = replace(watch, resumable_seen=watch.resumable_seen + 1)
        self._once(decision, change.address, "backoff", str(watch.backoff_until), WatchEventType.BACKOFF,
                   f"backing off: no resume for another {watch.backoff_until - now:.0f}s")  # fmt: skip
        return True

    def _once(
        self, decision: _Decision, address: Address, topic: str, fingerprint: str, kind: WatchEventType, what: str
    ) -> None:
        """Report ``what`` unless the same thing (``fingerprint``) was reported last time for this topic."""
        key = (str(address), topic)
        if self._reported.get(key) != fingerprint:
            self._reported[key] = fingerprint
            decision.events.append(WatchEvent(kind, str(address), what))

    def _report_drift(self, plan: Plan) -> None:
        """Each drift once until it changes; a drift that went away is forgotten (a return is new)."""
        current: dict[tuple[str, str], str] = {}
        for drift in plan.drift:
            key = (str(drift.address), "drift")
            fingerprint = f"{drift.kind}|{drift.job_id}|{drift.live_state}|{','.join(drift.changed_fields)}"
            current[key] = fingerprint
            if self._reported.get(key) != fingerprint:
                what = f"{drift.kind}: {drift.detail or drift.live_state or ''}".rstrip(": ")
                self._emit(WatchEvent(WatchEventType.DRIFT, str(drift.address), what))
        for key in [k for k in self._reported if k[1] == "drift" and k not in current]:
            del self._reported[key]
        self._reported.update(current)

    def _gated(self, outcome: PlanOutcome, decision: _Decision) -> set[Address]:
        """--converge runs config changes only through apply's budget gate; a refusal keeps the heals."""
        if not self._settings.converge:
            return decision.run
        from rlorinfra.plan.cost import check_budget, plan_cost

        plan = _restricted(outcome.plan, decision.run)
        if outcome.live is None:
            return decision.run
        try:
            check_budget(plan_cost(plan, outcome.state, outcome.live, self._ws.config.pricing), self._ws.config.policy)
        except PlanError as exc:
            heals = {c.address for c in outcome.plan.changes if c.action in _HEALS and c.address in decision.run}
            decision.pending = True
            self._once(decision, Address(Kind.JOB, "*"), "refused", exc.summary, WatchEventType.REFUSED,
                       f"{exc.summary}: config changes not made (resumes and waits still run)")  # fmt: skip
            return heals
        return decision.run

    # -- acting -----------------------------------------------------------------------------

    def _execute(self, state: State, outcome: PlanOutcome, to_run: set[Address]) -> ApplyResult:
        """Run ``to_run`` through the apply executor without waiting (the next cycles wait instead)."""
        from rlorinfra.apply import ApplyOptions
        from rlorinfra.operations.applying import execute

        plan = _restricted(outcome.plan, to_run)
        return execute(self._ws, state, plan, outcome.live, ApplyOptions(wait=False), self._on_apply_event)

    def _on_apply_event(self, event: Event) -> None:
        """The executor's events are summed up by the cycle's outcomes instead."""

    def _record_run(self, applied: ApplyResult, result: CycleResult) -> None:
        for outcome in applied.outcomes:
            address = outcome.address or f"job.{outcome.name}"
            if outcome.ok:
                result.actions[outcome.action] = result.actions.get(outcome.action, 0) + 1
                if outcome.action != Action.WAIT.value:
                    what = outcome.action + (f" ({outcome.job_id})" if outcome.job_id else "")
                    self._emit(WatchEvent(WatchEventType.ACTION, address, what))
            else:
                result.error = f"{outcome.label}: {outcome.message}"
                self._emit(WatchEvent(WatchEventType.ERROR, address, f"{outcome.action} failed: {outcome.message}"))

    def _update_status(self, outcome: PlanOutcome, state: State, now: float) -> None:
        quarantined = tuple(str(a) for a in state.addresses() if _watch_of(state, a).quarantined)
        with self._status.lock:
            self._status.drift_count = len(outcome.plan.drift)
            self._status.quarantined = quarantined
            self._status.last_refresh_ok = now
            self._status.last_error = ""


def _check_same_backends(old: Config, new: Config) -> None:
    """A reloaded config must keep the control plane and state backend the running watch opened."""
    from rlorinfra.errors import ConfigError

    def where(config: Config) -> tuple[object, object]:
        return replace(config.control_plane, retry_budget_s=0.0), config.state_settings

    if where(old) != where(new):
        raise ConfigError(
            "The config now names another control plane or state backend",
            "A running watch keeps the [control_plane] and [state] it started with. Restart watch to use the "
            "new ones, or put them back; until then it takes no action.",
        )


# The changes heal-only mode makes.
_HEALS = (Action.RESUME, Action.WAIT)


def _stop_cause(change: Change, live: LiveWorld | None) -> str:
    """The ``ResumeOn`` value that must allow this resume, or ``""`` (a failure or preemption: always)."""
    from rlorinfra.config.model import ResumeOn

    job = live.jobs.get(change.job_id or "") if live is not None else None
    state = job.state if job is not None else change.live_state
    if state == "JOB_STATE_COMPLETED":
        return ResumeOn.COMPLETED.value
    if state == "JOB_STATE_CANCELLED" and job is not None and INACTIVITY_MARK in job.status_message.lower():
        return ResumeOn.INACTIVITY.value
    return ""


def _restricted(plan: Plan, addresses: Iterable[Address]) -> Plan:
    """``plan`` with every change outside ``addresses`` turned into a no-op (still recorded as seen)."""
    keep = set(addresses)
    changes = tuple(
        c if c.address in keep or c.action is Action.NOOP else replace(c, action=Action.NOOP) for c in plan.changes
    )
    return replace(plan, changes=changes)


def _with_watch_records(state: State, records: dict[Address, WatchRecord]) -> State:
    for address, watch in records.items():
        record = state.record(address)
        if record is not None and record.watch != watch:
            state = state.with_record(address, replace(record, watch=watch))
    return state


def _watch_of(state: State, address: Address) -> WatchRecord:
    record = state.record(address)
    return record.watch if record is not None else WatchRecord()


def _change_text(change: Change) -> str:
    return f"{change.action.value}" + (f": {change.reason}" if change.reason else "")


def clear_quarantine(state: State, addresses: Iterable[Address] | None = None) -> State:
    """``state`` with the quarantine (and resume history) of ``addresses`` (None: all) cleared.

    A human's ``apply`` clears every quarantine: they looked, and chose to go on.
    """
    chosen = set(state.addresses() if addresses is None else addresses)
    for address in chosen:
        record = state.record(address)
        if record is not None and record.watch.quarantined:
            state = state.with_record(address, replace(record, watch=WatchRecord()))
    return state
