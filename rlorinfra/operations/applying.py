"""Applying: plan (or load a saved plan) → confirm → execute → write state; destroy is the same flow.

State is written before the first change (what refresh saw) and after every
remote change (by the executor's writer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rlorinfra.errors import (
    ApiError,
    ApplyError,
    InterruptedRun,
    RlorinfraError,
    StateChangedError,
    StateError,
    StateLockedError,
)
from rlorinfra.model.address import Kind
from rlorinfra.model.times import format_rfc3339
from rlorinfra.operations.planning import (
    PlanOutcome,
    PlanRequest,
    build_plan,
    check_instance,
    load_saved_plan,
    tell_notes,
)
from rlorinfra.operations.ui import APPLY_QUESTION, UI, Operation, Question
from rlorinfra.operations.workspace import Workspace
from rlorinfra.plan.model import Action, LiveWorld, Plan
from rlorinfra.state.model import State

if TYPE_CHECKING:
    from rlorinfra.apply import ApplyOptions, ApplyResult, Event, Outcome
    from rlorinfra.config.model import JobSpec

# Actions whose job stays as it is, so refresh's view of it can be recorded.
_KEPT = (Action.NOOP, Action.WAIT, Action.RESUME, Action.STOP)


class ApplyCancelled(RlorinfraError):
    """The user did not confirm: nothing was changed."""


@dataclass
class ApplyRun:
    """What an apply or destroy flow did: the plan it ran and the executor's result."""

    outcome: PlanOutcome
    result: ApplyResult
    executed: bool  # False when the plan had no changes (only refreshed live states were recorded)

    @property
    def plan(self) -> Plan:
        """The plan that was run."""
        return self.outcome.plan


def run_apply(
    ws: Workspace,
    request: PlanRequest,
    ui: UI,
    options: ApplyOptions,
    *,
    planfile: Path | None = None,
    auto_approve: bool = False,
    lock_timeout: float = 0,
) -> ApplyRun:
    """The apply flow: lock, plan (or load ``planfile``), show, confirm, execute, write state.

    A saved plan was reviewed when it was made, so it is never confirmed again.
    Raises :class:`ApplyCancelled` when the user says no (nothing changed).
    """
    operation = Operation.DESTROY if request.destroy else Operation.APPLY
    from rlorinfra.operations.watching import clear_quarantine

    with ws.lock(operation, lock_timeout):
        # A human's apply is the human acting: watch's quarantines end here (written with the run's first write).
        state = clear_quarantine(ws.store.read())
        outcome = load_saved_plan(ws, state, planfile) if planfile else build_plan(ws, state, request)
        tell_notes(ui, outcome)
        ui.show_plan(outcome)
        if not outcome.plan.has_changes:
            result = execute(ws, state, outcome.plan, outcome.live, options, _ignore)  # records live states
            return ApplyRun(outcome, result, executed=False)
        if not (auto_approve or planfile):
            _confirm(ui, operation)
        return ApplyRun(outcome, _execute_shown(ws, state, outcome, options, ui), executed=True)


def run_destroy(
    ws: Workspace,
    targets: tuple[str, ...],
    ui: UI,
    options: ApplyOptions,
    *,
    auto_approve: bool = False,
    lock_timeout: float = 0,
    exclude_protected: bool = False,
) -> ApplyRun:
    """The destroy flow: plan the deletion of every managed job (or ``targets``), confirm, run it.

    ``exclude_protected`` leaves protected resources out (noted) instead of failing the plan.
    """
    request = PlanRequest(destroy=True, targets=targets, exclude_protected=exclude_protected)
    return run_apply(ws, request, ui, options, auto_approve=auto_approve, lock_timeout=lock_timeout)


def _confirm(ui: UI, operation: Operation) -> None:
    if not ui.confirm(Question(operation, APPLY_QUESTION)):
        raise ApplyCancelled(f"{operation.value.capitalize()} cancelled.", "Nothing was changed.")


def _execute_shown(ws: Workspace, state: State, outcome: PlanOutcome, options: ApplyOptions, ui: UI) -> ApplyResult:
    ui.begin_execution(outcome.plan)
    try:
        return execute(ws, state, outcome.plan, outcome.live, options, ui.on_event)
    finally:
        ui.end_execution()  # stop a live view before any error or summary is shown


def _ignore(event: object) -> None:
    """Events of a run without changes: nobody is watching."""


def raise_for_result(result: ApplyResult) -> None:
    """Raise the typed error for an interrupted run or changes that did not converge."""
    if result.interrupted:
        raise InterruptedRun("Interrupted: stopped waiting", _interrupted_detail(result.outcomes))
    if result.failed:
        raise ApplyError(
            f"{len(result.failed)} of {len(result.outcomes)} job(s) did not converge", _failure_detail(result)
        )


def _failure_detail(result: ApplyResult) -> str:
    """What failed, and only when something else succeeded, that the rest was applied."""
    lines = "\n".join(f"  {o.label}: {o.message}" for o in result.failed)
    applied = [o for o in result.outcomes if o.ok]
    if applied:
        rest = "The other jobs were applied and recorded."
    else:
        rest = "No change was applied: every one failed (state records what the control plane did)."
    return f"{lines}\n{rest} Fix the cause and run `rlorinfra apply` again; `rlorinfra plan` shows what is left."


def _interrupted_detail(outcomes: list[Outcome]) -> str:
    from rlorinfra.apply import NOT_STARTED

    waiting = [o.label for o in outcomes if o.pending and o.message != NOT_STARTED]
    unstarted = [o.label for o in outcomes if o.message == NOT_STARTED]
    parts = ["State was written for everything that happened."]
    if waiting:
        parts.append(f"Still provisioning: {', '.join(waiting)}.")
    if unstarted:
        parts.append(f"Not started: {', '.join(unstarted)}.")
    return " ".join(parts) + " Run `rlorinfra apply` again to finish."


def sync_observed(state: State, plan: Plan) -> State:
    """Record the live state refresh saw of resources the plan keeps (left alone, waited for, ...).

    A job left alone while RUNNING was confirmed ready (by refresh's health
    check, or already recorded ready), and a deployment left alone is READY, so
    its phase becomes ``ready``.
    """
    from rlorinfra.state.model import PHASE_READY

    for change in plan.changes:
        record = state.record(change.address)
        if change.action not in _KEPT or record is None or not change.live_state:
            continue
        if record.resource_id != change.job_id:
            continue  # a deposed job's change, or a record another run rewrote
        ready = change.action is Action.NOOP and change.live_state in _READY_STATES[change.kind]
        phase = PHASE_READY if ready else record.phase
        if record.observed_state != change.live_state or record.phase != phase:
            state = state.with_record(change.address, replace(record, observed_state=change.live_state, phase=phase))
    return state


def record_lifecycle(state: State, plan: Plan, now: datetime) -> State:
    """Carry out the plan's state-only updates: protection and ttl expiry of the records it keeps.

    No API call: ``prevent_destroy`` becomes ``protected`` and ``ttl`` becomes
    ``expires_at`` (``created_at + ttl``) on each record the plan shows an update for.
    """
    from rlorinfra.plan.planner import recorded_expiry

    for change in plan.state_only:
        record, lifecycle = state.record(change.address), change.lifecycle
        if record is None or lifecycle is None or change.job_id not in (None, record.resource_id):
            continue
        expires_at = recorded_expiry(record, lifecycle, now)
        updated = replace(record, protected=lifecycle.protected, expires_at=expires_at)
        if updated != record:
            state = state.with_record(change.address, replace(updated, updated_at=format_rfc3339(now)))
    return state


# The live state in which a kept resource left alone is ready, by kind.
_READY_STATES = {Kind.JOB: frozenset({"JOB_STATE_RUNNING"}), Kind.DEPLOYMENT: frozenset({"READY"})}


def forget_gone_deposed(state: State, live: LiveWorld | None) -> State:
    """Drop deposed job IDs whose jobs are gone (deleted, or never listed again)."""
    from rlorinfra.model.states import GONE_STATES

    if live is None or not live.refreshed:
        return state
    for name, record in state.jobs.items():
        kept = tuple(j for j in record.deposed_job_ids if j in live.jobs and live.jobs[j].state not in GONE_STATES)
        if kept != record.deposed_job_ids:
            state = state.with_job(name, replace(record, deposed_job_ids=kept))
    return state


def with_control_plane(state: State, control_plane: Mapping[str, str]) -> State:
    """Stamp the control plane on state while it has no jobs (and the instance once known).

    An empty state (never applied, or emptied by destroy) belongs to whichever
    control plane it is used with next, so its record is replaced, never kept.
    """
    if not state.control_plane.get("account_id") or not state.addresses():
        return replace(state, control_plane=dict(control_plane))
    if "instance" not in state.control_plane and "instance" in control_plane:
        return replace(state, control_plane={**state.control_plane, "instance": control_plane["instance"]})
    return state


def with_listing(state: State, live: LiveWorld | None) -> State:
    """Remember how many jobs and deployments the account listed (the next refresh may then GET instead)."""
    if live is None or not live.refreshed:
        return state
    jobs = state.listed_jobs if live.listed_jobs is None else live.listed_jobs
    deployments = state.listed_deployments if live.listed_deployments is None else live.listed_deployments
    if (jobs, deployments) == (state.listed_jobs, state.listed_deployments):
        return state
    return replace(state, listed_jobs=jobs, listed_deployments=deployments)


def adopt_unread_fields(state: State, plan: Plan, desired: Mapping[str, JobSpec]) -> State:
    """Fields import could not read become the declared values once a plan keeps the job.

    Until then they are unknown (never a reason to replace); from then on the
    state's spec is complete and a later change is seen as one.
    """
    kept = {c.name for c in plan.changes if c.action in _KEPT and c.kind is Kind.JOB}
    for name in kept & set(desired):
        record = state.jobs.get(name)
        if record is None or not record.unread_fields:
            continue
        declared = desired[name].spec()
        spec = {k: v for k, v in record.spec.items() if k not in record.unread_fields}
        spec.update({k: declared[k] for k in record.unread_fields if k in declared})
        state = state.with_job(name, replace(record, spec=dict(sorted(spec.items())), unread_fields=()))
    return state


def execute(
    ws: Workspace,
    state: State,
    plan: Plan,
    live: LiveWorld | None,
    options: ApplyOptions,
    on_event: Callable[[Event], None],
) -> ApplyResult:
    """Run ``plan`` through the executor, writing state after every remote change."""
    from rlorinfra.apply import Executor, StateWriter
    from rlorinfra.plan.refresh import list_pages

    store = ws.store
    if plan.has_changes and "instance" not in ws.control_plane():
        # --no-refresh sent nothing yet: learn which world answers before the first change.
        ws.client().identify()
        check_instance(state, ws.control_plane(), ws.state_where(), local=ws.is_local_state)
    state = adopt_unread_fields(forget_gone_deposed(sync_observed(state, plan), live), plan, ws.config.jobs)
    state = record_lifecycle(state, plan, datetime.now(UTC))
    state = store.write(with_listing(with_control_plane(state, ws.control_plane()), live))
    shape_versions = {shape: v.name for shape, v in (live.shapes if live else {}).items()}
    if live is None:
        shape_versions = _resolve_shape_versions(ws, plan)
    executor = Executor(
        ws.client(),
        StateWriter(state, store.write),
        options=options,
        on_event=on_event,
        shape_versions=shape_versions,
        list_pages=list_pages(state.listed_jobs),
        deployment_list_pages=list_pages(live.listed_deployments if live else None),
    )
    try:
        return executor.run(plan)
    except (StateChangedError, StateLockedError):
        raise  # they say what happened and what to run already
    except StateError as exc:  # the backend failed mid-run (a server gone away): say what is left and what to run
        raise StateError(exc.summary, _unwritten_detail(exc.detail, plan, ws.state_where())) from None


def _unwritten_detail(detail: str, plan: Plan, where: str) -> str:
    """``detail``, then which jobs this run was changing and how the next run finishes them."""
    names = ", ".join(c.name for c in plan.actionable) or "none"
    return (
        f"{detail}\n\nThis run stopped while changing: {names}. The control plane goes on with what it was "
        f"sent (jobs may still be provisioning); each job ID is recorded in {where} before its create is sent, "
        "so none is lost. Once the state backend answers again, run `rlorinfra apply` again: it adopts those "
        "jobs and finishes, without creating any twice."
    )


def _resolve_shape_versions(ws: Workspace, plan: Plan) -> dict[str, str]:
    versions: dict[str, str] = {}
    for change in plan.actionable:
        shape = (change.after or {}).get("training_shape")
        if shape and shape not in versions:
            try:
                versions[shape] = ws.client().resolve_shape(shape).name
            except ApiError:
                pass  # recorded as unknown; the create itself reports a bad shape
    return versions
