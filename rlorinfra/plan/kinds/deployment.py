"""The serving deployment (``deployment.NAME``, NAME = the deployment ID): the second ``ResourceKind``.

The decision table is documented in ``docs/planning.md``; in short, for a deployment:

* declared, not in state: create (after its trainer, ``depends_on``);
* in state, gone (404, DELETING, DELETED): create again under the same ID;
* FAILED, ``--replace``, or a field the API cannot update changed (base model,
  shape, accelerator, region, ...): replace: delete, then create under the same
  ID (the ID is the config key, so never create-before-destroy);
* replica counts, transition type or description changed (here or outside
  rlorinfra), or the trainer link points elsewhere: update in place (PATCH);
* its trainer gets a new job ID in this plan (replaced, or re-created after an
  out-of-band deletion): update ``hot_load_trainer`` (re-attach) after it;
* CREATING/UPDATING: wait for READY;
* in state, not declared (or ``--destroy``): delete (before its trainer).

Drift: deleted, tombstoned, failed, scaled, re-attached elsewhere, changed.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import fields
from typing import Any

from rlorinfra.config.model import DeploymentSpec, JobSpec
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import (
    DEPLOYMENT_SPEC_DEFAULTS,
    IN_PLACE_FIELDS,
    DeploymentState,
    LiveDeployment,
    canonical_deployment_spec,
    trainer_link,
)
from rlorinfra.model.jobs import ShapeVersion
from rlorinfra.plan.diff import changed_fields, difference, negated
from rlorinfra.plan.kinds.job import find_shape
from rlorinfra.plan.model import Action, Change, Drift, LiveWorld, PlanContext
from rlorinfra.plan.problems import PlanProblem, ProtectedProblem
from rlorinfra.state.model import PHASE_CREATING, DeploymentRecord

REASON_RECREATE_SAME_ID = "previous create did not complete; creating it again"
REASON_REPLACE_REQUESTED = "requested with --replace"
REASON_NOT_DECLARED = "not in configuration"
# The spec key naming the trainer (its display name); the link itself is the trainer's job name.
TRAINER_FIELD = "hot_load_trainer"
# Changed here or there, these are PATCHed; everything else forces a replacement.
UPDATABLE_FIELDS = frozenset((*IN_PLACE_FIELDS, TRAINER_FIELD))
# The spec marker of a shape still to be taken from the trainer's training shape.
SHAPE_FROM_TRAINER = "deployment_shape_from"
REPLICA_FIELDS = ("min_replica_count", "max_replica_count")


class DeploymentKind:
    """The serving deployment's planning rules (satisfies ``ResourceKind[DeploymentSpec, DeploymentRecord]``)."""

    @property
    def kind(self) -> Kind:
        """``Kind.DEPLOYMENT``."""
        return Kind.DEPLOYMENT

    @property
    def config_fields(self) -> tuple[str, ...]:
        """Every ``[deployments.NAME]`` field (``DeploymentSpec``'s fields)."""
        return tuple(f.name for f in fields(DeploymentSpec))

    def canonical_spec(self, spec: DeploymentSpec) -> dict[str, Any]:
        """``DeploymentSpec.spec()`` (a trainer-derived shape is still a marker here)."""
        return spec.spec()

    def dependencies(self, spec: DeploymentSpec) -> tuple[Address, ...]:
        """The hot-load trainer's address, if one is named."""
        return (Address.job(spec.hot_load_trainer),) if spec.hot_load_trainer else ()

    def plan(
        self,
        name: str,
        spec: DeploymentSpec | None,
        record: DeploymentRecord | None,
        live: LiveWorld,
        *,
        force_replace: bool,
        context: PlanContext,
    ) -> Change | None:
        """The change for one deployment in scope (``None``: nothing to say about it)."""
        if spec is None:
            return _plan_delete(name, record, live, REASON_NOT_DECLARED) if record is not None else None
        desired = resolved_spec(name, spec, record, live, context)
        if record is None:
            return _create(name, spec, desired, live)
        return _plan_declared(name, spec, desired, record, live, force_replace, context)

    def plan_destroy(self, name: str, spec: DeploymentSpec | None, record: DeploymentRecord, live: LiveWorld) -> Change:
        """``--destroy``: delete the deployment; prevent_destroy still applies."""
        change = _plan_delete(name, record, live, "")
        if spec is not None and spec.prevent_destroy and not _is_gone(_live_state(record, live)):
            raise _prevent_destroy(
                name,
                "delete",
                (
                    "`rlorinfra destroy` deletes every managed resource; `rlorinfra destroy --exclude-protected` "
                    "deletes the others and leaves this one."
                ),
            )
        return change

    def plan_leftovers(self, name: str, record: DeploymentRecord | None, live: LiveWorld) -> list[Change]:
        """Nothing: a deployment is replaced under its own ID, so nothing is ever deposed."""
        return []

    def drift(self, name: str, record: DeploymentRecord, live: LiveWorld) -> list[Drift]:
        """Existence, state, replica, link and spec drift of one managed deployment."""
        return _drift(name, record, live)

    def accelerators(self, spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
        """The floor a deployment holds: ``min_replica_count`` × its accelerators per replica."""
        return _floor(spec, live)

    def tracked_ids(self, record: DeploymentRecord) -> Iterable[str]:
        """The deployment ID (it never changes)."""
        return record.tracked_ids

    def untracked_problem(self, name: str, live: LiveWorld, tracked: Set[str]) -> PlanProblem | None:
        """A declared ID that already exists live and state does not track: suggest ``rlorinfra import``."""
        found = live.deployments.get(name)
        if found is None or found.is_gone or name in tracked:
            return None
        return PlanProblem(
            f'Deployment "{name}" already exists on the control plane but is not in state',
            f"Live deployment {found.name or name} is {found.state.value}. The ID is the key of "
            f"[deployments.{name}], so rlorinfra cannot create another. To manage it, run "
            f"`rlorinfra import deployment.{name} {name}`; to start fresh, delete it first.",
        )

    def after_dependencies(self, change: Change, dependencies: Sequence[Change], context: PlanContext) -> Change:
        """Re-attach to a trainer this plan gives a new job ID (replaced, or created again).

        A deployment that is kept (no-op, wait or another update) gets
        ``hot_load_trainer`` added to its update; a deployment being created or
        replaced needs nothing: it is created with the new link.
        """
        if change.action not in (Action.NOOP, Action.WAIT, Action.UPDATE):
            return change
        renewed = [d for d in dependencies if d.kind is Kind.JOB and _gives_new_job_id(d)]
        if not renewed:
            return change
        trainer = renewed[0].name
        return dataclasses.replace(
            change,
            action=Action.UPDATE,
            reason=_join(
                change.reason if change.action is Action.UPDATE else "", f"re-attach to the new job.{trainer}"
            ),
            changed_fields=tuple(sorted({*change.changed_fields, TRAINER_FIELD})),
            before=change.before,
            after=change.after,
        )


DEPLOYMENT_KIND = DeploymentKind()


def _gives_new_job_id(change: Change) -> bool:
    """A job change after which the trainer has another job ID than state records."""
    if change.action is Action.REPLACE:
        return True
    # A create under the recorded ID (an interrupted create) keeps the ID.
    return change.action is Action.CREATE and change.job_id is None


# --- the desired spec ------------------------------------------------------------------


def resolved_spec(
    name: str, spec: DeploymentSpec, record: DeploymentRecord | None, live: LiveWorld, context: PlanContext
) -> dict[str, Any]:
    """The spec to create or compare: a trainer-derived shape filled in (raises PlanProblem when unknown).

    As ``DeploymentConfig.from_training_profile``: the trainer's training-shape
    version names the deployment shape. Refresh resolves the latest version, so
    a deployment whose recorded shape is the same shape at another version keeps
    its recorded version (the managed SDK compares shapes ignoring versions).
    """
    desired = spec.spec()
    if desired.pop(SHAPE_FROM_TRAINER, None) is None:
        return desired
    recorded = str(record.spec.get("deployment_shape") or "") if record is not None else ""
    shape = _trainer_deployment_shape(spec, live, context)
    if shape and recorded and _shape_family(shape) == _shape_family(recorded):
        shape = recorded
    shape = shape or recorded
    if not shape:
        raise PlanProblem(
            f'Cannot plan deployment "{name}": its deployment shape is not known',
            f'It defaults to the deployment shape of job "{spec.hot_load_trainer}"\'s training shape, and that '
            "shape version names none (or it was not resolved). Set deployment_shape in "
            f"[deployments.{name}], or run the plan with refresh on.",
        )
    desired["deployment_shape"] = shape
    return dict(sorted(desired.items()))


def _trainer_deployment_shape(spec: DeploymentSpec, live: LiveWorld, context: PlanContext) -> str:
    """The deployment shape version the hot-load trainer's resolved training shape names ("" if unknown)."""
    trainer = context.declared.get(Address.job(spec.hot_load_trainer or ""))
    if not isinstance(trainer, JobSpec) or not trainer.training_shape:
        return ""
    version = find_shape(trainer.training_shape, live.shapes)
    return version.deployment_shape_version if version is not None else ""


def _shape_family(shape: str) -> str:
    """A shape name without its version."""
    return shape.split("/versions/", 1)[0]


# --- one deployment ----------------------------------------------------------------------


def _plan_declared(
    name: str,
    spec: DeploymentSpec,
    desired: dict[str, Any],
    record: DeploymentRecord,
    live: LiveWorld,
    force_replace: bool,
    context: PlanContext,
) -> Change:
    """A managed deployment the configuration declares."""
    state = _live_state(record, live)
    if state is None and record.phase == PHASE_CREATING:
        return _create(name, spec, desired, live, reason=REASON_RECREATE_SAME_ID, record=record)
    if _is_gone(state):
        reason = "being deleted outside rlorinfra" if state == DeploymentState.DELETING else "deleted outside rlorinfra"
        return _create(name, spec, desired, live, reason=reason, record=record, live_state=state)
    assert state is not None  # not gone
    immutable = tuple(f for f in _spec_changes(record, desired) if f not in UPDATABLE_FIELDS)
    if force_replace or immutable:
        return _replace(
            name, spec, desired, record, live, state, immutable, REASON_REPLACE_REQUESTED if force_replace else ""
        )
    if state == DeploymentState.FAILED:
        return _replace(name, spec, desired, record, live, state, (), _state_reason(record, live, state))
    updates = _updates(record, desired, live, context)
    if updates:
        return _update(name, spec, desired, record, live, state, updates)
    if state in (DeploymentState.READY,):
        return _change(name, Action.NOOP, spec, desired, record, state, reason=f"deployment is {state}")
    return _change(name, Action.WAIT, spec, desired, record, state, reason=f"deployment is {state}")


def _spec_changes(record: DeploymentRecord, desired: Mapping[str, Any]) -> tuple[str, ...]:
    """Fields whose desired value differs from state's; fields import could not read are unknown."""
    unread = set(record.unread_fields)
    recorded = {k: v for k, v in record.spec.items() if k not in unread}
    return changed_fields(recorded, {k: v for k, v in desired.items() if k not in unread})


def _updates(
    record: DeploymentRecord, desired: Mapping[str, Any], live: LiveWorld, context: PlanContext
) -> tuple[str, ...]:
    """In-place fields to PATCH: changed in the file, changed live (scaled outside), or a link elsewhere."""
    found = _live(record, live)
    wanted = {k: desired.get(k, DEPLOYMENT_SPEC_DEFAULTS.get(k)) for k in IN_PLACE_FIELDS}
    current = {k: record.spec.get(k, DEPLOYMENT_SPEC_DEFAULTS.get(k)) for k in IN_PLACE_FIELDS}
    if found is not None:
        reported = found.spec_dict()
        current.update(
            {k: reported.get(k, DEPLOYMENT_SPEC_DEFAULTS.get(k)) for k in IN_PLACE_FIELDS if k in found.reported}
        )
    fields = {k for k in IN_PLACE_FIELDS if k != "hot_load_trainer_job" and wanted[k] != current[k]}
    if desired.get(TRAINER_FIELD) != record.spec.get(TRAINER_FIELD) or _link_elsewhere(record, desired, live, context):
        fields.add(TRAINER_FIELD)
    return tuple(sorted(fields))


def _link_elsewhere(
    record: DeploymentRecord, desired: Mapping[str, Any], live: LiveWorld, context: PlanContext
) -> bool:
    """The deployment hot-loads from another trainer than the one it names (state's job ID)."""
    trainer = desired.get(TRAINER_FIELD)
    job = context.state.job(str(trainer)) if trainer else None
    if job is None:
        return False  # no trainer yet: its create re-attaches (after_dependencies)
    wanted = trainer_link(live.account_id, job.job_id)
    found = _live(record, live)
    if found is not None and "hot_load_trainer_job" in found.reported:
        return found.hot_load_trainer_job != wanted
    return (record.hot_load_trainer_job or "") != wanted


def _create(
    name: str,
    spec: DeploymentSpec,
    desired: dict[str, Any],
    live: LiveWorld,
    *,
    reason: str = "",
    record: DeploymentRecord | None = None,
    live_state: str | None = None,
) -> Change:
    """A CREATE change under the deployment's own ID."""
    return _declared_change(
        spec,
        name=name,
        action=Action.CREATE,
        reason=reason,
        job_id=name if record is not None else None,
        live_state=live_state,
        after=desired,
        accelerators=_floor(desired, live),
    )


def _replace(
    name: str,
    spec: DeploymentSpec,
    desired: dict[str, Any],
    record: DeploymentRecord,
    live: LiveWorld,
    state: str,
    fields: tuple[str, ...],
    reason: str,
) -> Change:
    """Delete, then create under the same ID; fails when the deployment has prevent_destroy."""
    if spec.prevent_destroy:
        why = f"Its fields {', '.join(fields)} changed and force a replacement." if fields else f"Reason: {reason}."
        raise _prevent_destroy(name, "replace", why)
    held = _held(record, live) if state != DeploymentState.FAILED else {}
    return _declared_change(
        spec,
        name=name,
        action=Action.REPLACE,
        reason=reason,
        job_id=record.deployment_id,
        live_state=state,
        before=dict(record.spec),
        after=desired,
        changed_fields=fields,
        accelerators=difference(_floor(desired, live), held),
    )


def _update(
    name: str,
    spec: DeploymentSpec,
    desired: dict[str, Any],
    record: DeploymentRecord,
    live: LiveWorld,
    state: str,
    updates: tuple[str, ...],
) -> Change:
    """A PATCH of the in-place fields (the trainer link included)."""
    before = dict(record.spec)
    found = _live(record, live)
    if found is not None:  # show what is live now for fields scaled or moved outside rlorinfra
        reported = found.spec_dict()
        for key in updates:
            if key in found.reported:
                before[key] = reported.get(key, DEPLOYMENT_SPEC_DEFAULTS.get(key))
        before = canonical_deployment_spec(before)  # a live default is left out, as in every spec
    reason = "re-attach to " + str(Address.job(desired[TRAINER_FIELD])) if updates == (TRAINER_FIELD,) else ""
    return _declared_change(
        spec,
        name=name,
        action=Action.UPDATE,
        reason=reason,
        job_id=record.deployment_id,
        live_state=state,
        before=before,
        after=desired,
        changed_fields=updates,
        accelerators=difference(_floor(desired, live), _held(record, live)),
    )


def _change(
    name: str,
    action: Action,
    spec: DeploymentSpec,
    desired: dict[str, Any],
    record: DeploymentRecord,
    state: str,
    *,
    reason: str,
) -> Change:
    """A NOOP or WAIT on a managed deployment.

    It carries both specs: a re-attach (``after_dependencies``) may turn it into
    an UPDATE, which apply records as ``after`` and the plan text shows.
    """
    return _declared_change(
        spec,
        name=name,
        action=action,
        reason=reason,
        job_id=record.deployment_id,
        live_state=state,
        before=dict(record.spec),
        after=desired,
    )


def _declared_change(spec: DeploymentSpec, **fields: Any) -> Change:
    """A change of a declared deployment: its kind, and its edge to the trainer it names."""
    return Change(kind=Kind.DEPLOYMENT, depends_on=DEPLOYMENT_KIND.dependencies(spec), **fields)


def _plan_delete(name: str, record: DeploymentRecord, live: LiveWorld, reason: str) -> Change:
    """Delete a managed deployment (before its trainer); one already gone is just forgotten."""
    state = _live_state(record, live)
    if _is_gone(state):
        reason = "already deleted outside rlorinfra; forget it"
        if state is None and record.phase == PHASE_CREATING:
            reason = "its create never reached the control plane; forget it"
    held = {} if _is_gone(state) or state == DeploymentState.FAILED else _held(record, live)
    return Change(
        name=name,
        action=Action.DELETE,
        reason=reason,
        job_id=record.deployment_id,
        live_state=state,
        before=dict(record.spec),
        accelerators=negated(held),
        kind=Kind.DEPLOYMENT,
        depends_on=record.depends_on,
    )


def _prevent_destroy(name: str, verb: str, why: str) -> ProtectedProblem:
    """The error for a delete or replace of a deployment with prevent_destroy."""
    return ProtectedProblem(
        f'Deployment "{name}" has prevent_destroy set, but this plan would {verb} it',
        f"{why} To proceed, remove `prevent_destroy = true` from [deployments.{name}] in the "
        f'configuration, or undo the change (leave "deployment.{name}" out with --target).',
    )


# --- live facts ----------------------------------------------------------------------------


def _live(record: DeploymentRecord, live: LiveWorld) -> LiveDeployment | None:
    """What refresh saw for the record's ID (None without refresh, or when it is gone)."""
    return live.deployments.get(record.deployment_id) if live.refreshed else None


def _live_state(record: DeploymentRecord, live: LiveWorld) -> str | None:
    """The deployment's live state; ``None`` when not found.

    Without refresh, state's memory stands in (unknown counts as READY unless
    the create was in flight, so nothing is re-created on a guess).
    """
    if not live.refreshed:
        if record.observed_state is None:
            return None if record.phase == PHASE_CREATING else DeploymentState.READY.value
        return record.observed_state
    found = live.deployments.get(record.deployment_id)
    return found.state.value if found is not None else None


def _is_gone(state: str | None) -> bool:
    """404, DELETING or DELETED: for planning, not there."""
    return state is None or state in (DeploymentState.DELETING, DeploymentState.DELETED)


def _state_reason(record: DeploymentRecord, live: LiveWorld, state: str) -> str:
    """``FAILED: out of capacity`` (state plus status message, if any)."""
    found = _live(record, live)
    if found is not None and found.status_message:
        return f"{state}: {found.status_message}"
    return f"deployment is {state}"


# --- drift ---------------------------------------------------------------------------------


def _drift(name: str, record: DeploymentRecord, live: LiveWorld) -> list[Drift]:
    """What changed outside rlorinfra for one managed deployment (never without refresh)."""
    if not live.refreshed:
        return []
    drift = functools.partial(
        Drift,
        name=name,
        job_id=record.deployment_id,
        recorded_state=record.observed_state,
        resource_kind=Kind.DEPLOYMENT,
    )
    found = live.deployments.get(record.deployment_id)
    if found is None:
        if record.phase == PHASE_CREATING:
            return []  # our own create never landed
        return [drift(kind="deleted", detail="was deleted outside rlorinfra (not found)")]
    state = found.state.value
    if found.is_gone:
        verb = "is being deleted" if found.state == DeploymentState.DELETING else "was deleted"
        return [drift(kind="tombstoned", live_state=state, detail=f"{verb} outside rlorinfra ({state})")]
    out = []
    if found.is_failed and record.observed_state != state:
        detail = f"failed: {record.observed_state or 'unknown'} -> {state}"
        out.append(drift(kind="failed", live_state=state, detail=detail + _status(found)))
    link = found.hot_load_trainer_job if "hot_load_trainer_job" in found.reported else None
    if link is not None and record.hot_load_trainer_job and link != record.hot_load_trainer_job:
        shown = f"{record.hot_load_trainer_job} -> {link or 'none'}"
        out.append(
            drift(
                kind="reattached",
                live_state=state,
                detail=f"was re-attached outside rlorinfra: {shown}",
                changed_fields=("hot_load_trainer_job",),
            )  # fmt: skip
        )
    out.extend(_spec_drift(record, found, drift))
    return out


def _spec_drift(record: DeploymentRecord, found: LiveDeployment, drift: Any) -> list[Drift]:
    """Reported fields that differ from state's spec: replica counts ("scaled"), others ("changed")."""
    reported = found.spec_dict()
    keys = sorted(set(found.reported) - {"hot_load_trainer_job"} - set(record.unread_fields))
    before = {k: record.spec.get(k, DEPLOYMENT_SPEC_DEFAULTS.get(k)) for k in keys}
    after = {k: reported.get(k, DEPLOYMENT_SPEC_DEFAULTS.get(k)) for k in keys}
    if "deployment_shape" in keys and _shape_family(str(before["deployment_shape"] or "")) == _shape_family(
        str(after["deployment_shape"] or "")
    ):
        after["deployment_shape"] = before["deployment_shape"]  # the server stores a version of the same shape
    if "accelerator_type" in keys and record.spec.get("deployment_shape"):
        after["accelerator_type"] = before["accelerator_type"]  # a shape's accelerator is the shape's business
    fields = changed_fields(before, after)
    scaled = tuple(f for f in fields if f in REPLICA_FIELDS)
    others = tuple(f for f in fields if f not in REPLICA_FIELDS)
    out = []
    state = found.state.value
    if scaled:
        out.append(
            drift(
                kind="scaled",
                live_state=state,
                detail="was scaled outside rlorinfra: " + _shown(scaled, before, after),
                changed_fields=scaled,
            )
        )
    if others:
        out.append(
            drift(
                kind="changed",
                live_state=state,
                detail="changed outside rlorinfra: " + _shown(others, before, after),
                changed_fields=others,
            )
        )
    return out


def _shown(keys: Sequence[str], before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} ({_short(before[k])} -> {_short(after[k])})" for k in keys)


def _short(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _status(found: LiveDeployment) -> str:
    return f" ({found.status_message})" if found.status_message else ""


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# --- accelerators --------------------------------------------------------------------------


def per_replica(spec: Mapping[str, Any], shapes: Mapping[str, ShapeVersion]) -> dict[str, int]:
    """Accelerators one replica holds: ``{type: count}`` (``{}`` when unknown).

    Manual path: one ``accelerator_type``. Shape path: the accelerators of the
    training shape whose deployment shape this is (the only shapes refresh
    resolves); another shape is unknown.
    """
    if spec.get("accelerator_type") and not spec.get("deployment_shape"):
        return {str(spec["accelerator_type"]): 1}
    shape = str(spec.get("deployment_shape") or "")
    for version in shapes.values():
        if version.deployment_shape_version and _shape_family(version.deployment_shape_version) == _shape_family(shape):
            if version.accelerator_type and version.accelerator_count:
                return {version.accelerator_type: version.accelerator_count}
    return {}


def _floor(spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
    """min_replica_count × per-replica accelerators: what the deployment holds at least."""
    replicas = int(spec.get("min_replica_count") or 0)
    return {k: v * replicas for k, v in per_replica(spec, live.shapes).items() if v * replicas}


def _held(record: DeploymentRecord, live: LiveWorld) -> dict[str, int]:
    """The floor the deployment holds now: state's spec, with the replica count refresh saw (scaled outside)."""
    found = _live(record, live)
    spec = dict(record.spec)
    if found is not None and "min_replica_count" in found.reported:
        spec["min_replica_count"] = found.min_replica_count
    return _floor(spec, live)
