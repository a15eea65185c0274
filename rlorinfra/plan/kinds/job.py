"""The trainer job (``job.NAME``): the first ``ResourceKind`` the planner core dispatches on.

The decision table is documented in ``docs/planning.md``; in short, for a job:

* declared, not in state: create (unless declared stopped);
* in state, gone (404, tombstone, being deleted): create a new job (or, if its
  create never landed, create again under the recorded ID);
* spec changed, ``--replace``, or dead (EARLY_STOPPED/EXPIRED): replace;
* stopped and resumable (FAILED, CANCELLED, PAUSED, COMPLETED): resume;
* transitional, or RUNNING but not yet confirmed ready: wait;
* declared stopped and running: stop;
* in state, not declared (or ``--destroy``): delete;
* replaced but not yet deleted (deposed): delete.

Drift rules and accelerators live here too. Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import fields
from typing import Any

from rlorinfra.config.model import JobSpec
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.jobs import SPEC_DEFAULTS, LiveJob, ShapeVersion, comparable_fields
from rlorinfra.model.states import (
    ALREADY_STOPPED_STATES,
    DEAD_STATES,
    DELETING_STATES,
    GONE_STATES,
    RELEASED_STATES,
    RESUMABLE_STATES,
    SERVING_STATES,
    TRANSITIONAL_STATES,
    UNKNOWN_STATE,
)
from rlorinfra.plan.diff import changed_fields, difference, negated
from rlorinfra.plan.model import Action, Change, Drift, LiveWorld, PlanContext
from rlorinfra.plan.problems import PlanProblem, ProtectedProblem
from rlorinfra.state.model import PHASE_CREATING, PHASE_READY, PHASE_STOPPED, JobRecord

REASON_RECREATE_SAME_ID = "previous create did not complete; creating with recorded ID"
REASON_REPLACE_REQUESTED = "requested with --replace"
REASON_NOT_DECLARED = "not in configuration"
REASON_STOPPED_ABSENT = "declared stopped and absent; nothing to create"


class JobKind:
    """The trainer job's planning rules (satisfies ``plan.kinds.ResourceKind[JobSpec]``)."""

    @property
    def kind(self) -> Kind:
        """``Kind.JOB``."""
        return Kind.JOB

    @property
    def config_fields(self) -> tuple[str, ...]:
        """Every ``[jobs.NAME]`` field (``JobSpec``'s fields)."""
        return tuple(f.name for f in fields(JobSpec))

    def canonical_spec(self, spec: JobSpec) -> dict[str, Any]:
        """``JobSpec.spec()``: the normalized control-plane fields."""
        return spec.spec()

    def dependencies(self, spec: JobSpec) -> tuple[Address, ...]:
        """A trainer job depends on nothing."""
        return ()

    def plan(
        self,
        name: str,
        spec: JobSpec | None,
        record: JobRecord | None,
        live: LiveWorld,
        *,
        force_replace: bool,
        context: PlanContext | None = None,
    ) -> Change | None:
        """The change for one job in scope (``None``: nothing to say about it; ``context`` is not needed)."""
        foreign = _foreign_job(name, record, live)
        if foreign is not None and record is not None:
            return _plan_foreign(name, spec, record, foreign, destroy=False)
        if record is None:
            return _plan_new(name, spec, live) if spec is not None else None
        if spec is None:
            return _plan_delete(name, record, live, REASON_NOT_DECLARED)
        if spec.desired_state == "stopped":
            return _plan_declared_stopped(name, spec, record, live, force_replace)
        return _plan_declared_running(name, spec, record, live, force_replace)

    def plan_destroy(self, name: str, spec: JobSpec | None, record: JobRecord, live: LiveWorld) -> Change:
        """``--destroy``: delete the job (or forget a record whose ID another job holds)."""
        foreign = _foreign_job(name, record, live)
        if foreign is not None:
            return _plan_foreign(name, spec, record, foreign, destroy=True)
        return _plan_destroy(name, spec, record, live)

    def plan_leftovers(self, name: str, record: JobRecord | None, live: LiveWorld) -> list[Change]:
        """Deposed jobs (replaced, not yet deleted): delete each."""
        return _plan_deposed(name, record, live)

    def drift(self, name: str, record: JobRecord, live: LiveWorld) -> list[Drift]:
        """Existence, state and spec drift of one managed job."""
        return _drift(name, record, live)

    def accelerators(self, spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
        """``accelerators_for`` against the shapes refresh resolved."""
        return accelerators_for(spec, live.shapes)

    def tracked_ids(self, record: JobRecord) -> Iterable[str]:
        """The record's job ID and its deposed jobs' IDs."""
        return (record.job_id, *record.deposed_job_ids)

    def untracked_problem(self, name: str, live: LiveWorld, tracked: Set[str]) -> PlanProblem | None:
        """A declared name whose live job(s) state does not track: suggest ``rlorinfra import``."""
        jobs = [j for j in live.by_display_name(name) if j.job_id not in tracked and j.state not in GONE_STATES]
        return _untracked_problem(name, sorted(jobs, key=lambda j: j.job_id)) if jobs else None

    def after_dependencies(self, change: Change, dependencies: Sequence[Change], context: PlanContext) -> Change:
        """A job has no dependencies: its change stands."""
        return change


JOB_KIND = JobKind()


# --- deposed jobs and jobs state does not track --------------------------------------


def _plan_deposed(name: str, record: JobRecord | None, live: LiveWorld) -> list[Change]:
    """Jobs replaced but not yet deleted: delete each now (also on destroy and removed blocks).

    Each is a change under the same name whose ``job_id`` differs from the
    record's; apply drops it from ``deposed_job_ids`` once it is deleted. A
    deposed job that is already gone needs no change (apply forgets it).
    Without a refresh nothing is known to be gone, so each one is deleted.
    """
    changes = []
    for job_id in record.deposed_job_ids if record is not None else ():
        job = live.jobs.get(job_id)
        if live.refreshed and (job is None or job.state in GONE_STATES):
            continue
        changes.append(
            Change(
                name=name,
                action=Action.DELETE,
                job_id=job_id,
                live_state=job.state if job else None,
                reason=f"deposed job {job_id} (replaced, not yet deleted) is still running",
            )
        )
    return changes


def _untracked_problem(name: str, jobs: list[LiveJob]) -> PlanProblem:
    """The error for one declared name whose live job(s) are not in state."""
    if len(jobs) == 1:
        job = jobs[0]
        return PlanProblem(
            f'Job "{name}" already exists on the control plane but is not in state',
            f'Live job {job.job_id} ({job.state}) has the display name "{name}". Creating '
            f"another would leave two jobs with one name. To manage the existing job, run "
            f"`rlorinfra import {name} {job.job_id}`; to start fresh, delete it first.",
        )
    ids = ", ".join(f"{j.job_id} ({j.state})" for j in jobs)
    return PlanProblem(
        f'Job "{name}" is ambiguous: {len(jobs)} live jobs have this display name and none is in state',
        f"Live jobs: {ids}. Import the one to keep with "
        f"`rlorinfra import {name} {jobs[0].job_id}` and delete the others.",
    )


# --- one job -----------------------------------------------------------------------


def _foreign_job(name: str, record: JobRecord | None, live: LiveWorld) -> LiveJob | None:
    """The live job holding a ``creating`` record's ID when it is not the job this record meant.

    A run killed before its POST leaves the ID recorded; if another job took
    that ID meanwhile (another tool, another team: another display name), it
    must never be adopted, waited for, stopped or deleted under this name.
    """
    if record is None or record.phase != PHASE_CREATING or not live.refreshed:
        return None
    job = live.jobs.get(record.job_id)
    if job is None or job.state in GONE_STATES or job.display_name == name:
        return None  # (same name: ours, from an earlier spec at worst, which a replace then fixes)
    return job


def _plan_foreign(name: str, spec: JobSpec | None, record: JobRecord, job: LiveJob, destroy: bool) -> Change:
    """Our create never landed and another job holds its ID: create anew, or just forget the record."""
    why = f'recorded ID {record.job_id} is held by another job ("{job.display_name}")'
    if spec is not None and not destroy and spec.desired_state == "running":
        after = spec.spec()
        return Change(
            name=name,
            action=Action.CREATE,
            reason=f"{why}; creating under a new ID",
            after=after,
            create_before_destroy=spec.create_before_destroy,
            max_resumes=spec.max_resumes,
        )
    return Change(
        name=name,
        action=Action.DELETE,
        reason=f"{why}; forget the record, leave that job alone",
        job_id=None,
        before=dict(record.spec),
    )


def _plan_new(name: str, spec: JobSpec, live: LiveWorld) -> Change:
    """Declared but not in state: create it (a declared-stopped job is not created)."""
    if spec.desired_state == "stopped":
        return Change(name=name, action=Action.NOOP, reason=REASON_STOPPED_ABSENT)
    return _create(name, spec, live)


def _plan_destroy(name: str, spec: JobSpec | None, record: JobRecord, live: LiveWorld) -> Change:
    """``--destroy``: every managed job is deleted; prevent_destroy still applies."""
    change = _plan_delete(name, record, live, "")
    if spec is not None and spec.prevent_destroy and not _is_gone(_live_state(record, live)):
        raise _prevent_destroy(
            name,
            "delete",
            (
                "`rlorinfra destroy` deletes every managed job; `rlorinfra destroy --exclude-protected` "
                "deletes the others and leaves this one."
            ),
        )
    return change


def _plan_delete(name: str, record: JobRecord, live: LiveWorld, reason: str) -> Change:
    """Delete a managed job; one that is already gone is just forgotten."""
    state = _live_state(record, live)
    if state is None or state in GONE_STATES:
        reason = "already deleted outside rlorinfra; forget it"
        if state is None and record.phase == PHASE_CREATING:
            reason = "its create never reached the control plane; forget it"
    return Change(
        name=name,
        action=Action.DELETE,
        reason=reason,
        job_id=record.job_id,
        live_state=state,
        before=dict(record.spec),
        accelerators=negated(_held(record.spec, state, live)),
    )


def _plan_declared_running(name: str, spec: JobSpec, record: JobRecord, live: LiveWorld, force_replace: bool) -> Change:
    """A managed job the configuration wants running."""
    state = _live_state(record, live)
    if state is None and record.phase == PHASE_CREATING:
        return _create(name, spec, live, job_id=record.job_id, reason=REASON_RECREATE_SAME_ID)
    if state is None or state in GONE_STATES:
        return _create(name, spec, live, reason=_gone_reason(state), live_state=state)
    fields = _spec_changes(record, spec)
    if force_replace or fields:
        return _replace(name, spec, record, live, state, fields, REASON_REPLACE_REQUESTED if force_replace else "")
    if state in DEAD_STATES:
        return _replace(name, spec, record, live, state, (), f"job is {state} and cannot be resumed")
    return _keep_running(name, spec, record, live, state)


def _spec_changes(record: JobRecord, spec: JobSpec) -> tuple[str, ...]:
    """Fields whose desired value differs from state's; fields import could not read are unknown, not changed."""
    unread = set(record.unread_fields)
    desired = {k: v for k, v in spec.spec().items() if k not in unread}
    return changed_fields({k: v for k, v in record.spec.items() if k not in unread}, desired)


def _keep_running(name: str, spec: JobSpec, record: JobRecord, live: LiveWorld, state: str) -> Change:
    """Same spec, job exists: resume it, wait for it, or leave it alone."""
    reconciled = f"; reconciled by recorded ID {record.job_id}" if record.phase == PHASE_CREATING else ""
    if state == "JOB_STATE_RUNNING" and _confirmed_ready(record, live):
        return Change(
            name=name, action=Action.NOOP, reason=f"job is {state}" + reconciled, job_id=record.job_id, live_state=state
        )
    if state in RESUMABLE_STATES:
        action, reason = Action.RESUME, _state_reason(state, record, live)
    elif state == "JOB_STATE_RUNNING" and _health(record, live) is False:
        action, reason = Action.WAIT, "job is RUNNING but its trainer health check fails; waiting for health"
    elif state == "JOB_STATE_RUNNING":
        action, reason = Action.WAIT, f"job is RUNNING; confirming readiness (recorded phase: {record.phase})"
    elif state == "JOB_STATE_IDLE":
        # The SDK never treats IDLE as ready (no healthy trainer to connect to): wait for it.
        action, reason = Action.WAIT, "job is IDLE, not serving; waiting for it to run"
    else:
        action, reason = Action.WAIT, f"job is {state}"
    # Once resumed or waited for, the job holds its accelerators again.
    accelerators = difference(_accelerators(record.spec, live), _held(record.spec, state, live))
    return Change(
        name=name,
        action=action,
        reason=reason + reconciled,
        job_id=record.job_id,
        live_state=state,
        accelerators=accelerators,
        max_resumes=spec.max_resumes,
    )


def _plan_declared_stopped(name: str, spec: JobSpec, record: JobRecord, live: LiveWorld, force_replace: bool) -> Change:
    """A managed job the configuration wants stopped (cancelled, kept)."""
    state = _live_state(record, live)
    if force_replace:
        raise PlanProblem(
            f'Cannot replace job "{name}": it is declared stopped',
            'A replacement would start a new job. Set desired_state = "running" in '
            f'[jobs.{name}] first, or drop --replace "{name}".',
        )
    if _is_gone(state):  # nothing to stop, and a stopped job is never re-created: forget it
        change = _plan_delete(name, record, live, "")
        return dataclasses.replace(change, reason="declared stopped and " + change.reason)
    if state in ALREADY_STOPPED_STATES:
        fields = _spec_changes(record, spec)
        reason = f"declared stopped; job is {state}"
        if fields:  # replacing would start a job; wait until it is wanted running
            reason = 'declared stopped; the replacement these changes force waits until desired_state = "running"'
        return Change(
            name=name, action=Action.NOOP, reason=reason, job_id=record.job_id, live_state=state, changed_fields=fields
        )
    return Change(
        name=name,
        action=Action.STOP,
        reason=f"declared stopped; job is {state}",
        job_id=record.job_id,
        live_state=state,
        accelerators=negated(_held(record.spec, state, live)),
    )


def _create(
    name: str,
    spec: JobSpec,
    live: LiveWorld,
    *,
    job_id: str | None = None,
    reason: str = "",
    live_state: str | None = None,
) -> Change:
    """A CREATE change (``job_id`` is set only to retry a create under its recorded ID)."""
    after = spec.spec()
    return Change(
        name=name,
        action=Action.CREATE,
        reason=reason,
        job_id=job_id,
        live_state=live_state,
        after=after,
        accelerators=_accelerators(after, live),
        create_before_destroy=spec.create_before_destroy,
        max_resumes=spec.max_resumes,
    )


def _replace(
    name: str,
    spec: JobSpec,
    record: JobRecord,
    live: LiveWorld,
    state: str,
    fields: tuple[str, ...],
    reason: str,
) -> Change:
    """A REPLACE change; fails when the job has prevent_destroy."""
    if spec.prevent_destroy:
        why = (
            f"Its fields {', '.join(fields)} changed and force a replacement."
            if fields
            else f"Replacement reason: {reason}."
        )
        raise _prevent_destroy(name, "replace", why)
    after = spec.spec()
    return Change(
        name=name,
        action=Action.REPLACE,
        reason=reason,
        job_id=record.job_id,
        live_state=state,
        before=dict(record.spec),
        after=after,
        changed_fields=fields,
        accelerators=difference(_accelerators(after, live), _held(record.spec, state, live)),
        create_before_destroy=spec.create_before_destroy,
        max_resumes=spec.max_resumes,
    )


def _prevent_destroy(name: str, verb: str, why: str) -> ProtectedProblem:
    """The error for a delete or replace of a job with prevent_destroy."""
    return ProtectedProblem(
        f'Job "{name}" has prevent_destroy set, but this plan would {verb} it',
        f"{why} To proceed, remove `prevent_destroy = true` from [jobs.{name}] in the "
        f'configuration, or undo the change (leave "{name}" out with --target).',
    )


# --- live facts ----------------------------------------------------------------------


def _live_state(record: JobRecord, live: LiveWorld) -> str | None:
    """The job's live state; ``None`` when it was not found (404 or never created).

    Without refresh, state's memory (``observed_state``) stands in for the live
    state; a record that never observed anything counts as not found only while
    its create is in flight, otherwise as unknown.
    """
    if not live.refreshed:
        if record.observed_state is None and record.phase != PHASE_CREATING:
            return UNKNOWN_STATE
        return record.observed_state
    job = live.jobs.get(record.job_id)
    return job.state if job is not None else None


def _health(record: JobRecord, live: LiveWorld) -> bool | None:
    """What refresh's trainer health check said (None: not checked, e.g. --no-health-check)."""
    job = live.jobs.get(record.job_id) if live.refreshed else None
    return job.healthy if job is not None else None


def _confirmed_ready(record: JobRecord, live: LiveWorld) -> bool:
    """RUNNING and healthy: by this refresh's health check, else by state's memory."""
    healthy = _health(record, live)
    return healthy if healthy is not None else record.phase == PHASE_READY


def _is_gone(state: str | None) -> bool:
    """Deleted outside rlorinfra: 404, tombstoned, or being deleted."""
    return state is None or state in GONE_STATES


def _gone_reason(state: str | None) -> str:
    """Why a managed job is created again (the live state is in ``Change.live_state``)."""
    if state in DELETING_STATES:
        return "being deleted outside rlorinfra"
    return "deleted outside rlorinfra"


def _state_reason(state: str, record: JobRecord, live: LiveWorld) -> str:
    """``JOB_STATE_FAILED: pod preempted`` (state plus status message, if any)."""
    job = live.jobs.get(record.job_id) if live.refreshed else None
    if job is not None and job.status_message:
        return f"{state}: {job.status_message}"
    return state


# --- drift ---------------------------------------------------------------------------


def _drift(name: str, record: JobRecord, live: LiveWorld) -> list[Drift]:
    """What changed outside rlorinfra for one managed job (never without refresh)."""
    if not live.refreshed:
        return []
    job = live.jobs.get(record.job_id)
    found = [] if job is None else _spec_drift(name, record, job)
    state_drift = _state_drift(name, record, job)
    return ([state_drift] if state_drift else []) + found


def _state_drift(name: str, record: JobRecord, job: LiveJob | None) -> Drift | None:
    """Drift in the job's existence or state, or ``None`` if nothing unexpected happened."""
    recorded = record.observed_state
    drift = functools.partial(Drift, name=name, job_id=record.job_id, recorded_state=recorded)
    if job is None:
        if record.phase == PHASE_CREATING:
            return None  # our own create never landed: nothing changed outside
        return drift(kind="deleted", detail="was deleted outside rlorinfra (not found)")
    state = job.state
    if state in GONE_STATES:
        verb = "is being deleted" if state in DELETING_STATES else "was deleted"
        return drift(kind="tombstoned", live_state=state, detail=f"{verb} outside rlorinfra ({state})")
    if record.phase == PHASE_CREATING and job.display_name != name:
        return drift(
            kind="foreign",
            live_state=state,
            detail=f'is not ours: its recorded ID is held by another job ("{job.display_name}")',
        )
    if recorded is None and record.phase == PHASE_CREATING:
        return drift(kind="creating", live_state=state, detail=f"was created by an interrupted apply: now {state}")
    if state == "JOB_STATE_RUNNING" and job.healthy is False:
        return drift(kind="unhealthy", live_state=state, detail="is RUNNING but its trainer health check fails")
    if _expected_progress(recorded, state, record.phase):
        return None
    kind = _drift_kind(job)
    detail = f"{_DRIFT_VERBS[kind]}: {recorded or 'unknown'} -> {state}"
    if job.status_message:
        detail += f" ({job.status_message})"
    return drift(kind=kind, live_state=state, detail=detail)


_DRIFT_VERBS = {
    "preempted": "was preempted",
    "failed": "failed",
    "cancelled": "was cancelled outside rlorinfra",
    "stopped": "stopped outside rlorinfra",
    "idle": "became idle",
    "state": "changed state",
}


def _expected_progress(recorded: str | None, state: str, phase: str) -> bool:
    """True when the live state is one the job reaches on its own, not drift.

    A job recorded while provisioning that is now RUNNING, a RUNNING/IDLE flip
    towards activity, or a cancel rlorinfra issued settling into CANCELLED.
    """
    if recorded == state:
        return True
    if recorded in TRANSITIONAL_STATES and (state in SERVING_STATES or state in TRANSITIONAL_STATES):
        return True
    if recorded == "JOB_STATE_IDLE" and state == "JOB_STATE_RUNNING":
        return True
    return phase == PHASE_STOPPED and state in {"JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"}


def _drift_kind(job: LiveJob) -> str:
    """Classify an unexpected live state (see ``Drift``)."""
    state = job.state
    if state == "JOB_STATE_FAILED":
        preempted = job.status_code == "UNAVAILABLE" or "preempt" in job.status_message.lower()
        return "preempted" if preempted else "failed"
    if state in {"JOB_STATE_CANCELLED", "JOB_STATE_CANCELLING"}:
        return "cancelled"
    if state in {"JOB_STATE_PAUSED", "JOB_STATE_COMPLETED"} | DEAD_STATES:
        return "stopped"
    if state == "JOB_STATE_IDLE":
        return "idle"
    return "state"


def _spec_drift(name: str, record: JobRecord, job: LiveJob) -> list[Drift]:
    """Spec fields the live job reports differently from what state recorded.

    Only fields the real API is known to return are compared, and only those
    the resource actually carried (``wire.comparable_fields``); for every other
    field the spec recorded in state is the truth (PROTOCOL.md §3.5).
    """
    keys = sorted(set(comparable_fields(record.spec)) & job.reported - set(record.unread_fields))
    before = {k: record.spec.get(k, SPEC_DEFAULTS.get(k)) for k in keys}
    after = {k: job.reported_value(k) for k in keys}
    fields = changed_fields(before, after)
    if not fields:
        return []
    shown = ", ".join(f"{k} ({_short(before[k])} -> {_short(after[k])})" for k in fields)
    return [
        Drift(
            name=name,
            job_id=record.job_id,
            kind="changed",
            recorded_state=record.observed_state,
            live_state=job.state,
            detail=f"changed outside rlorinfra: {shown}",
            changed_fields=fields,
        )
    ]


def _short(value: Any) -> str:
    """A value as shown inside a drift line."""
    return f'"{value}"' if isinstance(value, str) else str(value)


# --- accelerators --------------------------------------------------------------------


def accelerators_for(spec: Mapping[str, Any], shapes: Mapping[str, ShapeVersion]) -> dict[str, int]:
    """Accelerators a job with this spec holds when running: ``{type: count}``.

    Shape path: the resolved shape version's ``accelerator_count × node_count``.
    Manual path: ``accelerator_count × node_count`` (each defaulting to 1 once
    ``accelerator_type`` is set). Auto path, or an unresolved shape: unknown, ``{}``.
    """
    shape_ref = spec.get("training_shape")
    if shape_ref:
        shape = find_shape(str(shape_ref), shapes)
        if shape is None or not shape.accelerator_type or not shape.accelerator_count:
            return {}
        return {shape.accelerator_type: shape.accelerator_count * max(shape.node_count, 1)}
    kind = spec.get("accelerator_type")
    if not kind:
        return {}
    return {str(kind): int(spec.get("accelerator_count") or 1) * int(spec.get("node_count") or 1)}


def find_shape(ref: str, shapes: Mapping[str, ShapeVersion]) -> ShapeVersion | None:
    """The resolved version for a shape reference, by exact name or parent shape."""
    if ref in shapes:
        return shapes[ref]
    parent = ref.split("/versions/", 1)[0]
    if parent in shapes:
        return shapes[parent]
    return next((s for s in shapes.values() if s.shape == parent), None)


def _accelerators(spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
    return accelerators_for(spec, live.shapes)


def _held(spec: Mapping[str, Any], state: str | None, live: LiveWorld) -> dict[str, int]:
    """Accelerators the job holds now: none once it is stopped, dead or gone."""
    if state is None or state in RELEASED_STATES:
        return {}
    return _accelerators(spec, live)
