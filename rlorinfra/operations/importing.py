"""Import: adopt a live job under a display name, or a live deployment under its ID; print its TOML block on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlorinfra.config.model import Config
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.jobs import REPORTED_FIELDS
from rlorinfra.operations.applying import with_control_plane
from rlorinfra.operations.planning import check_state_owner
from rlorinfra.operations.ui import Operation
from rlorinfra.operations.workspace import Workspace
from rlorinfra.state.model import PHASE_PROVISIONING, PHASE_READY, DeploymentRecord, JobRecord, State

if TYPE_CHECKING:
    from rlorinfra.model.deployments import LiveDeployment
    from rlorinfra.model.jobs import LiveJob


@dataclass(frozen=True)
class ImportResult:
    """The imported record, and whether it was already in state (importing again is a no-op)."""

    name: str
    record: JobRecord
    already_managed: bool


def run_import(ws: Workspace, name: str, job_id: str, *, lock_timeout: float = 0) -> ImportResult:
    """The import flow: lock, read state, adopt ``job_id`` as ``name``, write state."""
    with ws.lock(Operation.IMPORT, lock_timeout):
        before = ws.store.read()
        state = import_job(ws, before, name, job_id)
    already = name in before.jobs and before.jobs[name].job_id == job_id
    return ImportResult(name=name, record=state.jobs[name], already_managed=already)


def import_job(ws: Workspace, state: State, name: str, job_id: str) -> State:
    """Adopt live job ``job_id`` under display name ``name`` with its live spec."""
    _check_import_name(name)
    check_state_owner(ws, state)  # never record a job of this account in another account's state
    if name in state.jobs and state.jobs[name].job_id == job_id:
        return state  # already imported: importing again is a no-op
    _check_not_managed(state, name, job_id)
    live = _live_for_import(ws, job_id)
    state = with_control_plane(state, ws.control_plane())
    return ws.store.write(state.with_job(name, _with_declared_lifecycle(ws, name, _imported_record(ws, live))))


def _with_declared_lifecycle(ws: Workspace, name: str, record: JobRecord) -> JobRecord:
    """Protection and ttl recorded at import when ``[jobs.NAME]`` declares them (ttl counts from the import)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from rlorinfra.model.times import expiry

    spec = ws.config.jobs.get(name)
    if spec is None:
        return record
    expires_at = expiry(record.created_at, spec.ttl, datetime.now(UTC))
    return replace(record, protected=spec.prevent_destroy, expires_at=expires_at)


def _check_import_name(name: str) -> None:
    from rlorinfra.config.fields import display_name_problem

    problem = display_name_problem(name)
    if problem:
        raise PlanError(
            f"Cannot import as {name!r}: the display name {problem}",
            "Choose a NAME of 1-63 characters, the key of its [jobs.NAME] table.",
        )


def _check_not_managed(state: State, name: str, job_id: str) -> None:
    """One live job under one name, one name for one live job (deposed jobs included)."""
    deposed_by = next((other for other, rec in state.jobs.items() if job_id in rec.deposed_job_ids), None)
    if deposed_by is not None:
        raise PlanError(
            f'Job {job_id} is a deposed job of "{deposed_by}"',
            f'It was replaced and is tracked under "{deposed_by}" until its deletion is confirmed; the next '
            "`rlorinfra apply` deletes it. Importing it under another name would leave two records fighting "
            "over one job.",
        )
    owner = next((other for other, rec in state.jobs.items() if rec.job_id == job_id), None)
    if owner is not None:
        raise PlanError(
            f'Job {job_id} is already managed as "{owner}"',
            f"One live job can be managed under one name only (two names would fight over it). "
            f"To rename it, run `rlorinfra state mv {owner} {name}` instead.",
        )
    if name in state.jobs:
        raise PlanError(
            f'"{name}" is already managed (job {state.jobs[name].job_id})',
            f"Run `rlorinfra state rm {name}` first if you want to adopt another job under this name.",
        )


def _live_for_import(ws: Workspace, job_id: str) -> LiveJob:
    live = ws.client().get_job(job_id)
    if live is None or live.is_tombstone:
        what = "does not exist" if live is None else f"is deleted ({live.state})"
        raise PlanError(
            f"Cannot import {job_id}: the job {what}",
            "Check the ID with the Fireworks console or `rlorinfra control-plane` and try again. "
            "Only live jobs can be imported.",
        )
    return live


def _imported_record(ws: Workspace, live: LiveJob) -> JobRecord:
    """The state record of an imported job: what the API reports, the rest marked unread.

    The real API returns only some spec fields (PROTOCOL.md §3.5); the others
    (shape, accelerators, image tag, reservation, timeouts...) cannot be read
    back, so they are recorded as ``unread_fields``: unknown, never a reason to
    replace, and adopted from the configuration by the next apply.
    """
    from rlorinfra.apply import now_rfc3339

    client = ws.client()
    spec = {k: v for k, v in live.spec_dict().items() if k in REPORTED_FIELDS}
    phase = PHASE_READY if live.state == "JOB_STATE_RUNNING" else PHASE_PROVISIONING
    return JobRecord(
        job_id=live.job_id,
        job_name=client.job_name(live.job_id),
        endpoint=client.endpoint(live.job_id),
        spec=spec,
        phase=phase,
        observed_state=live.state,
        created_at=now_rfc3339(),
        updated_at=now_rfc3339(),
        unread_fields=unreadable_fields(),
    )


def unreadable_fields() -> tuple[str, ...]:
    """Spec fields a job resource never reports: everything but ``REPORTED_FIELDS``."""
    from rlorinfra.config.fields import JOB_RULES
    from rlorinfra.config.model import LIFECYCLE_FIELDS, UNSENT_FIELDS

    skip = set(REPORTED_FIELDS) | set(LIFECYCLE_FIELDS) | set(UNSENT_FIELDS)
    return tuple(key for key in JOB_RULES if key not in skip)


def generated_job_block(config: Config, name: str, record: JobRecord) -> str:
    """A ``[jobs.NAME]`` block that plans clean against this file's ``[defaults]``.

    Reported values the defaults would change are written out (a default value
    explicitly, a missing one through ``unset``); fields the API does not return
    are listed in a comment, since only the person who created the job knows them.
    """
    from rlorinfra.config.write import render_job_toml
    from rlorinfra.model.jobs import SPEC_DEFAULTS

    known = {k: v for k, v in record.spec.items() if k not in record.unread_fields}
    defaults = {k: v for k, v in config.defaults.items() if k in REPORTED_FIELDS}
    body = {k: v for k, v in known.items() if defaults.get(k, _ABSENT) != v}
    unset: list[str] = []
    for key, value in defaults.items():
        if key in known:
            continue
        if key in SPEC_DEFAULTS and value != SPEC_DEFAULTS[key]:
            body[key] = SPEC_DEFAULTS[key]  # the job has the built-in default; [defaults] says otherwise
        elif key not in SPEC_DEFAULTS:
            unset.append(key)
    text = render_job_toml(name, body, unset=tuple(sorted(unset)))
    if record.unread_fields:
        text += (
            "# The control plane does not return these fields, so import could not read them: "
            f"{', '.join(record.unread_fields)}.\n# Declare the ones the job was created with; "
            "the next apply records the declared values without replacing the job.\n"
        )
    return text


_ABSENT = object()


# -- deployments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentImportResult:
    """The imported deployment record, whether state already had it, and what its trainer link names.

    ``trainer_note`` is empty when the deployment hot-loads nothing or a job state
    manages; otherwise it says which trainer the link names and that it is not managed.
    """

    deployment_id: str
    record: DeploymentRecord
    already_managed: bool
    trainer_note: str = ""


# Config spec fields a deployment resource never returns (sent on create only, or query flags).
UNREAD_DEPLOYMENT_FIELDS = (
    "accept_shapeless_risk",
    "disable_speculative_decoding",
    "annotations",
    "extra_args",
    "extra_values",
    "preemptible",
)
# Reported spec fields that are no config field (the bucket type is always the SDK's default).
_NOT_DECLARED = ("hot_load_bucket_type", "hot_load_trainer_job")


def run_import_deployment(
    ws: Workspace, deployment_id: str, given_id: str, *, lock_timeout: float = 0
) -> DeploymentImportResult:
    """The import flow for ``deployment.<deployment_id>``: lock, read state, adopt the live deployment, write.

    ``given_id`` must be ``deployment_id`` (or its full name): the config key *is* the ID.
    """
    _check_deployment_id(deployment_id, given_id)
    with ws.lock(Operation.IMPORT, lock_timeout):
        before = ws.store.read()
        check_state_owner(ws, before)  # never record a deployment of this account in another account's state
        existing = before.deployment(deployment_id)
        if existing is not None:
            return DeploymentImportResult(deployment_id, existing, True, _trainer_note(before, existing))
        live = _live_deployment_for_import(ws, deployment_id)
        record = imported_deployment_record(before, live)
        state = with_control_plane(before, ws.control_plane())
        ws.store.write(state.with_record(Address(Kind.DEPLOYMENT, deployment_id), record))
    return DeploymentImportResult(deployment_id, record, False, _trainer_note(before, record))


def _check_deployment_id(deployment_id: str, given_id: str) -> None:
    from rlorinfra.model.deployments import deployment_id_of, is_valid_deployment_id

    if not is_valid_deployment_id(deployment_id):
        raise PlanError(
            f"Cannot import as deployment.{deployment_id}: not a valid deployment ID",
            "The NAME of deployment.NAME is the deployment ID: 1-63 lowercase letters, digits or hyphens.",
        )
    if deployment_id_of(given_id) != deployment_id:
        raise PlanError(
            f"Cannot import deployment {given_id} as deployment.{deployment_id}: the NAME must be the ID",
            "A deployment's config key is its deployment ID ([deployments.ID]), so it can only be "
            f"imported under that name: `rlorinfra import deployment.{deployment_id_of(given_id)} "
            f"{deployment_id_of(given_id)}`.",
        )


def _live_deployment_for_import(ws: Workspace, deployment_id: str) -> LiveDeployment:
    live = ws.client().get_deployment(deployment_id)
    if live is None or live.is_gone:
        what = "does not exist" if live is None else f"is deleted ({live.state.value})"
        raise PlanError(
            f"Cannot import deployment {deployment_id}: the deployment {what}",
            "Check the ID in the Fireworks console (Deployments) and try again. Only live deployments can be imported.",
        )
    return live


def imported_deployment_record(state: State, live: LiveDeployment) -> DeploymentRecord:
    """The state record of an imported deployment, in config terms.

    The trainer link becomes ``hot_load_trainer`` (the display name of the state
    job with that job ID) when state manages that job, and ``depends_on`` names it;
    fields the API never returns are ``unread_fields`` (unknown, never a reason to
    replace). On the manual path (an accelerator, no shape) ``accept_shapeless_risk``
    is known to be true: the config cannot declare that path without it.
    """
    from rlorinfra.apply import now_rfc3339

    spec = {k: v for k, v in live.spec_dict().items() if k not in _NOT_DECLARED}
    trainer = trainer_display_name(state, live.trainer_job_id)
    if trainer is not None:
        spec["hot_load_trainer"] = trainer
    unread = list(UNREAD_DEPLOYMENT_FIELDS)
    if spec.get("accelerator_type") and not spec.get("deployment_shape"):
        spec["accept_shapeless_risk"] = True
        unread.remove("accept_shapeless_risk")
    unread += [f for f in ("description", "min_replica_count", "max_replica_count") if f not in live.reported]
    return DeploymentRecord(
        deployment_id=live.deployment_id,
        deployment_name=live.name,
        spec=dict(sorted(spec.items())),
        phase=PHASE_READY if live.is_ready else PHASE_PROVISIONING,
        observed_state=live.state.value,
        hot_load_trainer_job=live.hot_load_trainer_job or None,
        hot_load_bucket_url=live.hot_load_bucket_url or None,
        deployment_shape_version=live.deployment_shape or None,
        created_at=now_rfc3339(),
        updated_at=now_rfc3339(),
        unread_fields=tuple(unread),
        depends_on=(Address.job(trainer),) if trainer is not None else (),
    )


def trainer_display_name(state: State, job_id: str | None) -> str | None:
    """The display name state manages job ``job_id`` under (its current job, not a deposed one), or None."""
    if job_id is None:
        return None
    return next((name for name, record in sorted(state.jobs.items()) if record.job_id == job_id), None)


def _trainer_note(state: State, record: DeploymentRecord) -> str:
    link = record.hot_load_trainer_job
    if not link or record.spec.get("hot_load_trainer"):
        return ""
    from rlorinfra.model.deployments import trainer_job_id

    job_id = trainer_job_id(link) or link
    return (
        f"deployment.{record.deployment_id} hot-loads trainer {link}, which this state does not manage: "
        f"the imported deployment has no hot_load_trainer. To manage the pair, `rlorinfra import NAME {job_id}`, "
        f"then `rlorinfra state rm deployment.{record.deployment_id}` and import the deployment again."
    )


def generated_deployment_block(record: DeploymentRecord, note: str = "") -> str:
    """A ``[deployments.ID]`` block that re-reads to the recorded spec, with the unread fields in a comment."""
    from rlorinfra.config.write import render_deployment_toml

    known = {k: v for k, v in record.spec.items() if k not in record.unread_fields}
    text = render_deployment_toml(record.deployment_id, known)
    if note:
        text += f"# {note}\n"
    if record.unread_fields:
        text += (
            "# The control plane does not return these fields, so import could not read them: "
            f"{', '.join(record.unread_fields)}.\n# Declare the ones the deployment was created with; "
            "the next apply records the declared values without replacing it.\n"
        )
    return text
