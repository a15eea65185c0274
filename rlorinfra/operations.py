"""The flows behind plan, apply, destroy and import: lock → read → refresh →
plan → confirm → apply → write. No printing: the CLI passes callbacks for the
parts a user sees (showing a plan, confirming, events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlorinfra.config.model import Config
from rlorinfra.errors import ApiError, PlanError, RlorinfraError, StateError
from rlorinfra.model.jobs import REPORTED_FIELDS
from rlorinfra.plan.model import Action, LiveWorld, Plan
from rlorinfra.state.model import State


@dataclass
class Workspace:
    """One config, its state store and (lazily) its control-plane client."""

    config: Config
    api_key: str | None
    insecure: bool = False
    trace: Callable[[str], None] | None = None
    # Told once, the first time the client retries (the CLI prints it on stderr).
    notify: Callable[[str], None] | None = None
    # An account to use when the config names none, instead of asking the control
    # plane (set for --no-refresh from the state's record, so it sends no request).
    account_hint: str | None = None
    _client: Any = field(default=None, repr=False)

    @property
    def store(self):
        """The state store (the one writer of the state file)."""
        from rlorinfra.state.store import StateStore

        return StateStore(self.config.state_path)

    def client(self):
        """The control-plane client, opened on first use."""
        if self._client is None:
            from rlorinfra.api.connect import open_client

            self._require_key()
            settings = self.config.control_plane
            if settings.is_local:
                self._make_emulator_folder()
            if self.account_hint and not settings.account_id:
                settings = replace(settings, account_id=self.account_hint)
            self._client = open_client(
                settings,
                api_key=self.api_key,
                emulator_db=self.config.emulator_db_path,
                insecure=self.insecure,
                trace=self.trace,
                notify=self.notify,
            )
        return self._client

    def _make_emulator_folder(self) -> None:
        """``.rlorinfra/`` beside the config, private (0700) whatever the umask."""
        from rlorinfra.state.store import make_private_folder

        try:
            make_private_folder(self.config.emulator_db_path.parent)
        except OSError as exc:
            raise RlorinfraError(
                f"Cannot create the embedded emulator's folder {self.config.emulator_db_path.parent}",
                f"{exc.strerror or exc}. The embedded control plane keeps its database in .rlorinfra/ "
                "beside the config file; make that folder writable.",
            ) from None

    def _require_key(self) -> None:
        settings = self.config.control_plane
        if not settings.is_local and not self.api_key:
            raise RlorinfraError(
                f"No API key: the environment variable {settings.api_key_env} is not set",
                f"rlorinfra reads the Fireworks API key only from the environment. Run "
                f"`export {settings.api_key_env}=...` (in CI, from a secret) and try again. "
                f"The key is never written to any file.",
            )

    def control_plane(self) -> dict[str, str]:
        """``{"url", "account_id"[, "instance"]}`` of the control plane in use (resolves the account).

        ``instance`` is the emulator instance the client has heard from (``""``
        for a control plane that names none, the real API); absent until a
        response has been seen.
        """
        client = self.client()
        url = "local" if self.config.control_plane.is_local else client.base_url
        identity = {"url": url, "account_id": client.account_id}
        instance = getattr(client, "emulator_instance", None)
        if instance is not None:
            identity["instance"] = instance
        return identity

    def close(self) -> None:
        """Close the client if one was opened."""
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked the planner for."""

    refresh: bool = True
    destroy: bool = False
    refresh_only: bool = False
    targets: Sequence[str] = ()
    replace: Sequence[str] = ()
    health_check: bool = True


@dataclass
class PlanOutcome:
    """A plan plus everything needed to show, save or apply it."""

    plan: Plan
    live: LiveWorld
    state: State
    document: dict
    notes: list[str] = field(default_factory=list)
    request: PlanRequest | None = None

    @property
    def request_record(self) -> dict[str, Any]:
        """The request as saved with a plan file."""
        r = self.request or PlanRequest()
        return {
            "destroy": r.destroy,
            "refresh_only": r.refresh_only,
            "targets": list(r.targets),
            "replace": list(r.replace),
            "health_check": r.health_check,
            "refresh": r.refresh,
        }


def check_state_owner(ws: Workspace, state: State) -> list[str]:
    """Refuse a state recorded for another account or emulator world; note a different URL."""
    from rlorinfra.state.store import check_control_plane

    cp = ws.control_plane()
    note = check_control_plane(state, cp["url"], cp["account_id"], path=ws.config.state_path)
    check_instance(state, cp, ws.config.state_path)
    return [note] if note else []


def check_instance(state: State, control_plane: Mapping[str, str], path: Path) -> None:
    """One control plane, one state: an emulator's world is its database, not its URL.

    A state records the emulator instance it was made against (``""`` for a
    control plane that names none, such as the real API). Talking to another
    instance, or to a real control plane with an emulator's state (or the
    reverse), is refused. A state from before instances were recorded (no key)
    fits anyone and is stamped on its next write.
    """
    recorded, current = state.control_plane.get("instance"), control_plane.get("instance")
    if recorded is None or current is None or recorded == current or not state.jobs:
        return
    raise StateError(
        "State belongs to another control plane",
        f"The state file {path} was made against {_world(recorded)}, but this run talks to "
        f"{_world(current)} at {control_plane.get('url')}. Its job IDs mean nothing there (the embedded "
        "emulator and a served one are different worlds, and so are two emulator databases), so "
        "rlorinfra will not plan or apply with it. Point [control_plane] url back at the control plane "
        "the state was made with, or use another state path (`[state] path`) for this one.",
    )


def _world(instance: str) -> str:
    return f"emulator instance {instance}" if instance else "a control plane that is not an emulator (the real API)"


def build_plan(ws: Workspace, state: State, request: PlanRequest) -> PlanOutcome:
    """Refresh (unless asked not to) and run the pure planner."""
    from rlorinfra.plan.planner import make_plan
    from rlorinfra.plan.refresh import offline_world, refresh
    from rlorinfra.render.document import plan_document

    if not request.refresh:
        # --no-refresh trusts the state: take its account rather than asking for it.
        ws.account_hint = state.control_plane.get("account_id")
    notes = check_state_owner(ws, state)  # the account, before any job is read
    client = ws.client()
    if request.refresh:
        live = refresh(client, ws.config.jobs, state, health_check=request.health_check)
        check_instance(state, ws.control_plane(), ws.config.state_path)  # known once answers came
    else:
        live = offline_world(state, client.account_id)
    plan = make_plan(
        ws.config.jobs,  # with --destroy too: prevent_destroy must still be seen
        state,
        live,
        destroy=request.destroy,
        targets=tuple(request.targets),
        replace=tuple(request.replace),
        refresh_only=request.refresh_only,
    )
    document = plan_document(plan, control_plane=ws.control_plane())
    return PlanOutcome(plan=plan, live=live, state=state, document=document, notes=notes, request=request)


def lock(ws: Workspace, operation: str, timeout: float):
    """The state lock for ``operation`` (a context manager)."""
    from rlorinfra.state.lock import StateLock

    return StateLock(ws.config.state_path, operation, timeout, config_path=ws.config.path)


def save_plan(ws: Workspace, outcome: PlanOutcome, path: Path) -> None:
    """Write ``outcome`` as a saved plan file bound to the state and config."""
    from rlorinfra.plan.planfile import write_plan_file

    write_plan_file(
        path,
        outcome.document,
        state_lineage=outcome.state.lineage,
        state_serial=outcome.state.serial,
        config_digest=ws.config.digest,
        control_plane=ws.control_plane(),
        request=outcome.request_record,
    )


def load_saved_plan(ws: Workspace, state: State, path: Path) -> tuple[Plan, dict, LiveWorld]:
    """Read a saved plan and refuse it if anything it was made from changed, or it was edited.

    Beyond lineage, serial, config digest and control plane, the plan is made
    again from the same config, state and options against the live world;
    every change's name, action and job ID must be what the file says. An
    edited file (a delete of an unmanaged job, a create pointed at another
    job's ID) or one made against another state is refused, never run.
    """
    from rlorinfra.plan.planfile import check_plan_fresh, read_plan_file
    from rlorinfra.render.document import plan_from_document

    saved = read_plan_file(path)
    saved_plan = plan_from_document(saved.document)
    fresh = build_plan(ws, state, _request_from_record(saved.request, saved_plan))
    current = dict(ws.control_plane())
    if "instance" not in saved.control_plane:
        current.pop("instance", None)  # made without any answer (--no-refresh): nothing to compare
    check_plan_fresh(
        saved,
        state_lineage=state.lineage,
        state_serial=state.serial,
        config_digest=ws.config.digest,
        control_plane=current,
    )
    _check_same_changes(saved_plan, fresh.plan, path)
    return saved_plan, saved.document, fresh.live


def _request_from_record(record: Mapping[str, Any], plan: Plan) -> PlanRequest:
    """The PlanRequest a saved plan was made with (files from before requests were saved: its flags)."""
    return PlanRequest(
        destroy=bool(record.get("destroy", plan.destroy)),
        refresh_only=bool(record.get("refresh_only", plan.refresh_only)),
        targets=tuple(str(t) for t in record.get("targets", ())),
        replace=tuple(str(r) for r in record.get("replace", ())),
        health_check=bool(record.get("health_check", True)),
        refresh=bool(record.get("refresh", True)),
    )


def _change_keys(plan: Plan) -> list[tuple[str, str, str]]:
    """What must match between a saved plan and planning it again: every change that acts.

    Waits are left out: a job that was still provisioning when the plan was
    saved and is ready now turns a wait into a no-op, which is no reason to
    refuse the plan (its other changes are what the user approved).
    """
    return sorted((c.name, c.action.value, c.job_id or "") for c in plan.actionable if c.action is not Action.WAIT)


def _check_same_changes(saved: Plan, fresh: Plan, path: Path) -> None:
    from rlorinfra.errors import StalePlanError

    saved_keys, fresh_keys = _change_keys(saved), _change_keys(fresh)
    if saved_keys == fresh_keys:
        return
    extra = [k for k in saved_keys if k not in fresh_keys]
    missing = [k for k in fresh_keys if k not in saved_keys]
    shown = "; ".join(
        [f"the file has {a} {n} ({j or 'new'})" for n, a, j in extra][:5]
        + [f"planning now gives {a} {n} ({j or 'new'})" for n, a, j in missing][:5]
    )
    raise StalePlanError(
        "Saved plan does not match the world: it is stale or was edited",
        f"Planning the same configuration against the same state now gives different changes than {path}: "
        f"{shown}. Nothing was changed. Run `rlorinfra plan --out {path}` again and review the new plan.",
    )


def sync_observed(state: State, plan: Plan) -> State:
    """Record the live state refresh saw of jobs the plan keeps (left alone, waited for, ...).

    A job left alone while RUNNING was confirmed ready (by refresh's health
    check, or already recorded ready), so its phase becomes ``ready``.
    """
    from rlorinfra.state.model import PHASE_READY

    observed = (Action.NOOP, Action.WAIT, Action.RESUME, Action.STOP)
    for change in plan.changes:
        record = state.jobs.get(change.name)
        if change.action in observed and record and change.live_state and record.job_id == change.job_id:
            ready = change.action is Action.NOOP and change.live_state == "JOB_STATE_RUNNING"
            phase = PHASE_READY if ready else record.phase
            if record.observed_state != change.live_state or record.phase != phase:
                state = state.with_job(change.name, replace(record, observed_state=change.live_state, phase=phase))
    return state


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
    if not state.control_plane.get("account_id") or not state.jobs:
        return replace(state, control_plane=dict(control_plane))
    if "instance" not in state.control_plane and "instance" in control_plane:
        return replace(state, control_plane={**state.control_plane, "instance": control_plane["instance"]})
    return state


def with_listing(state: State, live: LiveWorld | None) -> State:
    """Remember how many jobs the account listed (the next refresh may then GET instead)."""
    if live is None or not live.refreshed or live.listed_jobs is None or live.listed_jobs == state.listed_jobs:
        return state
    return replace(state, listed_jobs=live.listed_jobs)


def adopt_unread_fields(state: State, plan: Plan, desired: Mapping[str, Any]) -> State:
    """Fields import could not read become the declared values once a plan keeps the job.

    Until then they are unknown (never a reason to replace); from then on the
    state's spec is complete and a later change is seen as one.
    """
    kept = {c.name for c in plan.changes if c.action in (Action.NOOP, Action.WAIT, Action.RESUME, Action.STOP)}
    for name in kept & set(desired):
        record = state.jobs.get(name)
        if record is None or not record.unread_fields:
            continue
        declared = desired[name].spec()
        spec = {k: v for k, v in record.spec.items() if k not in record.unread_fields}
        spec.update({k: declared[k] for k in record.unread_fields if k in declared})
        state = state.with_job(name, replace(record, spec=dict(sorted(spec.items())), unread_fields=()))
    return state


def execute(ws: Workspace, state: State, plan: Plan, live: LiveWorld | None, options, on_event):
    """Run ``plan`` through the executor, writing state after every remote change."""
    from rlorinfra.apply import Executor, StateWriter
    from rlorinfra.plan.refresh import list_pages

    store = ws.store
    if plan.has_changes and "instance" not in ws.control_plane():
        # --no-refresh sent nothing yet: learn which world answers before the first change.
        ws.client().identify()
        check_instance(state, ws.control_plane(), ws.config.state_path)
    state = adopt_unread_fields(forget_gone_deposed(sync_observed(state, plan), live), plan, ws.config.jobs)
    state = store.write(with_listing(with_control_plane(state, ws.control_plane()), live))
    shape_versions = {shape: v.name for shape, v in (live.shapes if live else {}).items()}
    if live is None:
        shape_versions = _resolve_shape_versions(ws, plan)
    writer = StateWriter(state, store.write)
    executor = Executor(
        ws.client(),
        writer,
        options=options,
        on_event=on_event,
        shape_versions=shape_versions,
        list_pages=list_pages(state.listed_jobs),
    )
    return executor.run(plan)


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


def import_job(ws: Workspace, state: State, name: str, job_id: str) -> State:
    """Adopt live job ``job_id`` under display name ``name`` with its live spec."""
    _check_import_name(name)
    check_state_owner(ws, state)  # never record a job of this account in another account's state
    if name in state.jobs and state.jobs[name].job_id == job_id:
        return state  # already imported: importing again is a no-op
    _check_not_managed(state, name, job_id)
    live = _live_for_import(ws, job_id)
    state = with_control_plane(state, ws.control_plane())
    return ws.store.write(state.with_job(name, _imported_record(ws, live)))


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


def _live_for_import(ws: Workspace, job_id: str):
    live = ws.client().get_job(job_id)
    if live is None or live.is_tombstone:
        what = "does not exist" if live is None else f"is deleted ({live.state})"
        raise PlanError(
            f"Cannot import {job_id}: the job {what}",
            "Check the ID with the Fireworks console or `rlorinfra control-plane` and try again. "
            "Only live jobs can be imported.",
        )
    return live


def _imported_record(ws: Workspace, live):
    """The state record of an imported job: what the API reports, the rest marked unread.

    The real API returns only some spec fields (PROTOCOL.md §3.5); the others
    (shape, accelerators, image tag, reservation, timeouts...) cannot be read
    back, so they are recorded as ``unread_fields``: unknown, never a reason to
    replace, and adopted from the configuration by the next apply.
    """
    from rlorinfra.apply import now_rfc3339
    from rlorinfra.state.model import PHASE_PROVISIONING, PHASE_READY, JobRecord

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


def generated_job_block(config: Config, name: str, record) -> str:
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
    unset = []
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
