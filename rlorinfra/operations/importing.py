"""Import: adopt a live job into state under a display name; print its TOML block on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlorinfra.config.model import Config
from rlorinfra.errors import PlanError
from rlorinfra.model.jobs import REPORTED_FIELDS
from rlorinfra.operations.applying import with_control_plane
from rlorinfra.operations.planning import check_state_owner
from rlorinfra.operations.ui import Operation
from rlorinfra.operations.workspace import Workspace
from rlorinfra.state.model import JobRecord, State

if TYPE_CHECKING:
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
    from rlorinfra.state.model import PHASE_PROVISIONING, PHASE_READY

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
