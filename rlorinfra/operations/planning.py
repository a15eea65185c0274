"""Planning: refresh and plan, save a plan, load a saved one (refused when stale), the plan flow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rlorinfra.errors import StalePlanError, StateError
from rlorinfra.model.address import Kind
from rlorinfra.operations.ui import UI, Operation
from rlorinfra.operations.workspace import Workspace
from rlorinfra.plan.model import Action, LiveWorld, Plan
from rlorinfra.state.model import State

PlanDocument = dict[str, Any]


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked the planner for."""

    refresh: bool = True
    destroy: bool = False
    refresh_only: bool = False
    targets: Sequence[str] = ()
    replace: Sequence[str] = ()
    health_check: bool = True
    # destroy: leave protected resources out; otherwise (watch): hold their deletes and replaces out
    exclude_protected: bool = False

    @property
    def record(self) -> dict[str, Any]:
        """The request as saved with a plan file."""
        return {
            "destroy": self.destroy,
            "exclude_protected": self.exclude_protected,
            "refresh_only": self.refresh_only,
            "targets": list(self.targets),
            "replace": list(self.replace),
            "health_check": self.health_check,
            "refresh": self.refresh,
        }


@dataclass
class PlanOutcome:
    """A plan plus everything needed to show, save or apply it.

    ``saved`` is the plan file it was loaded from (None for a plan made now).
    """

    plan: Plan
    live: LiveWorld | None
    state: State
    document: PlanDocument
    notes: list[str] = field(default_factory=list)
    request: PlanRequest | None = None
    saved: Path | None = None

    @property
    def request_record(self) -> dict[str, Any]:
        """The request as saved with a plan file."""
        return (self.request or PlanRequest()).record

    @property
    def targets(self) -> tuple[str, ...]:
        """The --target names of a plan made now (a saved plan's were seen when it was made)."""
        return tuple(self.request.targets) if self.request and self.saved is None else ()


def check_state_owner(ws: Workspace, state: State, account_hint: str | None = None) -> list[str]:
    """Refuse a state recorded for another account or emulator world; note a different URL."""
    from rlorinfra.state.store import check_control_plane

    cp = ws.control_plane(account_hint)
    # A local state is named by its file, any other backend's by its describe() (never "state file").
    local = ws.is_local_state
    note = check_control_plane(
        state,
        cp["url"],
        cp["account_id"],
        path=ws.config.state_path if local else None,
        where=None if local else ws.state_where(),
    )
    check_instance(state, cp, ws.state_where(), local=local)
    return [note] if note else []


def check_instance(state: State, control_plane: Mapping[str, str], where: str, *, local: bool = True) -> None:
    """One control plane, one state: an emulator's world is its database, not its URL.

    A state records the emulator instance it was made against (``""`` for a
    control plane that names none, such as the real API). Talking to another
    instance, or to a real control plane with an emulator's state (or the
    reverse), is refused. A state from before instances were recorded (no key)
    fits anyone and is stamped on its next write. ``local``: the state is a file
    (the hint then names `[state] path`, else the other backends' keys).
    """
    from rlorinfra.state.store import other_state_hint

    recorded, current = state.control_plane.get("instance"), control_plane.get("instance")
    if recorded is None or current is None or recorded == current or not state.addresses():
        return
    raise StateError(
        "State belongs to another control plane",
        f"The state in {where} was made against {_world(recorded)}, but this run talks to "
        f"{_world(current)} at {control_plane.get('url')}. Its job IDs mean nothing there (the embedded "
        "emulator and a served one are different worlds, and so are two emulator databases), so "
        "rlorinfra will not plan or apply with it. Point [control_plane] url back at the control plane "
        f"the state was made with, or {other_state_hint(local=local)} for this one.",
    )


def _world(instance: str) -> str:
    return f"emulator instance {instance}" if instance else "a control plane that is not an emulator (the real API)"


def build_plan(ws: Workspace, state: State, request: PlanRequest, *, budget_gate: bool = True) -> PlanOutcome:
    """Refresh (unless asked not to), run the pure planner and price the plan. Changes nothing.

    Raises ``PlanError`` when the plan's cost increase is above ``[policy] max_hourly_delta``
    (unless ``budget_gate`` is False: ``watch`` gates only the part of the plan it will run).
    """
    from rlorinfra.plan.cost import check_budget, plan_cost
    from rlorinfra.plan.document import plan_document
    from rlorinfra.plan.planner import make_plan
    from rlorinfra.plan.refresh import offline_world, refresh

    # --no-refresh trusts the state: take its account rather than asking for it.
    account_hint = None if request.refresh else state.control_plane.get("account_id")
    notes = check_state_owner(ws, state, account_hint)  # the account, before any job is read
    client = ws.client()
    if request.refresh:
        live = refresh(
            client, ws.config.jobs, state, health_check=request.health_check, deployments=ws.config.deployments
        )
        check_instance(state, ws.control_plane(), ws.state_where(), local=ws.is_local_state)  # known once answers came
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
        desired_by_kind=declared_by_kind(ws),
        now=datetime.now(UTC),  # the planner is pure: the clock ttl expiry is judged by comes from here
        exclude_protected=request.exclude_protected,
    )
    cost = plan_cost(plan, state, live, ws.config.pricing)
    if budget_gate:
        check_budget(cost, ws.config.policy)  # before any change; a saved plan is re-checked here too
    document = plan_document(plan, control_plane=ws.control_plane(), cost=cost)
    notes = [*notes, *plan.notes]
    return PlanOutcome(plan=plan, live=live, state=state, document=document, notes=notes, request=request)


def declared_by_kind(ws: Workspace) -> dict[Kind, Mapping[str, Any]]:
    """The declared resources of the kinds beside jobs, for the kinds the planner knows.

    A kind whose decision table is not registered yet is left out rather than
    failing every plan (the deployment kind lands in its own change).
    """
    from rlorinfra.plan.kinds import KINDS

    others: dict[Kind, Mapping[str, Any]] = {Kind.DEPLOYMENT: ws.config.deployments}
    return {kind: specs for kind, specs in others.items() if kind in KINDS}


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


def load_saved_plan(ws: Workspace, state: State, path: Path) -> PlanOutcome:
    """Read a saved plan and refuse it if anything it was made from changed, or it was edited.

    Beyond lineage, serial, config digest and control plane, the plan is made
    again from the same config, state and options against the live world;
    every change's name, action and job ID must be what the file says. An
    edited file (a delete of an unmanaged job, a create pointed at another
    job's ID) or one made against another state is refused, never run. The
    fresh plan also passes the budget gate with the prices and policy in force
    now (``build_plan``), so a limit set after the plan was saved still holds.
    """
    from rlorinfra.plan.document import plan_from_document
    from rlorinfra.plan.planfile import check_plan_fresh, read_plan_file

    saved = read_plan_file(path)
    saved_plan = plan_from_document(saved.document)
    request = _request_from_record(saved.request, saved_plan)
    fresh = build_plan(ws, state, request)
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
    return PlanOutcome(
        plan=saved_plan, live=fresh.live, state=state, document=saved.document, request=request, saved=path
    )


def _request_from_record(record: Mapping[str, Any], plan: Plan) -> PlanRequest:
    """The PlanRequest a saved plan was made with (files from before requests were saved: its flags)."""
    return PlanRequest(
        destroy=bool(record.get("destroy", plan.destroy)),
        refresh_only=bool(record.get("refresh_only", plan.refresh_only)),
        targets=tuple(str(t) for t in record.get("targets", ())),
        replace=tuple(str(r) for r in record.get("replace", ())),
        health_check=bool(record.get("health_check", True)),
        refresh=bool(record.get("refresh", True)),
        exclude_protected=bool(record.get("exclude_protected", False)),
    )


def _change_keys(plan: Plan) -> list[tuple[str, str, str]]:
    """What must match between a saved plan and planning it again: every change that acts.

    Waits are left out: a job that was still provisioning when the plan was
    saved and is ready now turns a wait into a no-op, which is no reason to
    refuse the plan (its other changes are what the user approved).
    """
    return sorted((c.name, c.action.value, c.job_id or "") for c in plan.actionable if c.action is not Action.WAIT)


def _check_same_changes(saved: Plan, fresh: Plan, path: Path) -> None:
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


def tell_notes(ui: UI, outcome: PlanOutcome) -> None:
    """Pass the planner's notes (a state made at another URL...) on to the user."""
    for note in outcome.notes:
        ui.note(note)


def run_plan(
    ws: Workspace, request: PlanRequest, ui: UI, *, lock_timeout: float = 0, out: Path | None = None
) -> PlanOutcome:
    """The plan flow: lock, read state, refresh and plan, save to ``out`` if given, show it once.

    Never confirms and never changes anything remote or in state.
    """
    with ws.lock(Operation.PLAN, lock_timeout):
        outcome = build_plan(ws, ws.store.read(), request)
        if out is not None:
            save_plan(ws, outcome, out)
    tell_notes(ui, outcome)
    ui.show_plan(outcome)
    return outcome


def has_pending_changes(outcome: PlanOutcome) -> bool:
    """Whether a plan has something to do (for --refresh-only: whether anything drifted)."""
    request = outcome.request or PlanRequest()
    return bool(outcome.plan.drift) if request.refresh_only else outcome.plan.has_changes
