"""The serving deployment's apply steps and readiness rule (DESIGN.md §6, PROTOCOL.md §10).

- The deployment ID is the config key, so a create records it (phase
  ``creating``) *before* the POST; a 409 adopts the deployment only when it is
  the one this spec would have made (``deployment_not_ours``).
- The trainer link is built when the step runs, from the trainer's job ID in
  the *current* state: a trainer replaced earlier in this run has a new ID.
- A PATCH is never blindly retried: after a lost answer the deployment is read
  back, and the PATCH counts as landed when the live fields already match.
- Ready means READY (and, after a create or re-attach, the link we set).
  FAILED, DELETING or DELETED while awaited is a failure ("entered bad
  state"), never an automatic recreate.
- A replace deletes, waits until the ID is free (404 or DELETED), then
  creates again under the same ID: never create-before-destroy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

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
from rlorinfra.model.deployments import (
    BAD_STATES,
    GONE_STATES,
    TOMBSTONE_STATES,
    DeploymentState,
    HotLoadTransition,
    LiveDeployment,
    deployment_not_ours,
    trainer_link,
    update_request_for,
)
from rlorinfra.plan.model import Action, Change
from rlorinfra.state import model as sm
from rlorinfra.state.model import DeploymentRecord, State

GONE_VALUES = frozenset(state.value for state in GONE_STATES)
# How often a PATCH is sent again after its answer was lost and a re-read showed it had not landed.
# Spec keys of ``Change.after`` that are rlorinfra's, not the API's: never sent as they are.
TRAINER_KEY = "hot_load_trainer"  # the trainer's display name; sent as the link ``hot_load_trainer_job``
SHAPE_FROM_KEY = "deployment_shape_from"  # the planner resolves it; a leftover is never sent
# Changed fields that mean "point the deployment at the trainer's current job" (a re-attach).
REATTACH_KEYS = frozenset({TRAINER_KEY, "hot_load_trainer_job"})

_STEPS: Mapping[Action, list[Step]] = {
    Action.CREATE: [Step.CREATE],
    Action.WAIT: [Step.WAIT_READY],
    Action.UPDATE: [Step.UPDATE],
    Action.REPLACE: [Step.DELETE, Step.CREATE],  # same ID: the old one must be gone first
    Action.DELETE: [Step.DELETE],
}


class DeploymentSteps:
    """``ApplyKind`` of the serving deployment: its steps, its poll round and its readiness rule."""

    kind = Kind.DEPLOYMENT

    def __init__(self, client: ControlPlane, writer: StateWriter, host: TaskHost, *, list_pages: float = 0) -> None:
        self.client = client
        self.writer = writer
        self.host = host
        # LIST requests one poll round would cost (0 = unknown): with fewer awaited
        # deployments than that, a round GETs each of them instead (DESIGN.md §6).
        self._list_pages = list_pages

    def steps(self, change: Change) -> list[Step]:
        """The steps of ``change`` (a replace deletes, waits until gone, then creates)."""
        if change.action not in _STEPS:
            raise ApiError(
                f'A deployment cannot be "{change.action.value}"d',
                f"deployment.{change.name}: the plan asks for an action deployments do not have; re-plan.",
            )
        return list(_STEPS[change.action])

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Nothing to reserve: a deployment's ID is its config key."""

    def release_unstarted(self, tasks: Sequence[Task]) -> None:
        """Nothing was reserved up front, so nothing to undo."""

    # -- steps (worker threads) ------------------------------------------------

    def run_step(self, task: Task, step: Step) -> None:
        """Announce and run ``step``."""
        task.job_id = task.job_id or task.change.job_id or task.name
        self.host.event(task, EventKind.STARTED, message=step)
        runners: Mapping[Step, Callable[[Task], None]] = {
            Step.CREATE: self._step_create,
            Step.WAIT_READY: self._step_wait_ready,
            Step.UPDATE: self._step_update,
            Step.DELETE: self._step_delete,
        }
        runners[step](task)

    def _trainer_link(self, change: Change) -> str | None:
        """The link to the trainer's *current* job (None when the deployment names no trainer)."""
        trainer = (change.after or {}).get(TRAINER_KEY)
        if not trainer:
            return None
        record = self.writer.job(str(trainer))
        if record is None:
            raise ApiError(
                f'Trainer "{trainer}" of deployment.{change.name} is not in state',
                "The deployment hot-loads a job rlorinfra does not manage (yet). Run `rlorinfra apply` again "
                "once the trainer is created.",
            )
        return trainer_link(self.client.account_id, record.job_id)

    def _wire_spec(self, change: Change, link: str | None) -> dict[str, Any]:
        """What the create sends: the plan's spec, the trainer's name turned into its link."""
        spec = spec_to_create(change)
        spec.pop(TRAINER_KEY, None)
        spec.pop(SHAPE_FROM_KEY, None)
        if link:
            spec["hot_load_trainer_job"] = link
        return spec

    def _step_create(self, task: Task) -> None:
        deployment_id = require_id(task)
        link = self._trainer_link(task.change)
        wire = self._wire_spec(task.change, link)
        task.trainer_link = link
        old = self.writer.deployment(task.name)
        self.writer.set_record(task.address, self._record(task, phase=sm.PHASE_CREATING, link=link))
        try:
            try:
                live = self.client.create_deployment(deployment_id, wire)
            except AlreadyExistsError:
                live = self._adopt(deployment_id, wire)
        except ApiError as exc:
            if is_definite_refusal(exc):
                self._undo_create_record(task.address, old)
            raise  # otherwise the POST may have landed: the record stays creating, reconciled by ID
        self._placed(task, live)

    def _adopt(self, deployment_id: str, wire: dict[str, Any]) -> LiveDeployment:
        """A 409 for our ID: adopt the deployment only if this spec would have made it."""
        live = self.client.get_deployment(deployment_id)
        if live is None or live.state in TOMBSTONE_STATES:
            raise NotOursError(
                f"Deployment ID {deployment_id} is taken by a deleted deployment",
                "The control plane still holds the ID. Run `rlorinfra apply` again once it is released.",
            )
        reason = deployment_not_ours(live, wire)
        if reason:
            raise NotOursError(
                f"Deployment ID {deployment_id} already belongs to another deployment ({reason})",
                "A deployment with this ID exists but is not the one this config declares, so it was not "
                f"adopted. Delete it, pick another deployment ID, or `rlorinfra import deployment.{deployment_id} "
                f"{deployment_id}` to manage it.",
            )
        return live

    def _undo_create_record(self, address: Address, old: DeploymentRecord | None) -> None:
        """A definite refusal: nothing was created; state goes back to what it held before."""
        if old is not None and old.phase != sm.PHASE_CREATING:
            self.writer.set_record(address, old)
        else:
            self.writer.forget(address)

    def _placed(self, task: Task, live: LiveDeployment) -> None:
        self.writer.set_record(task.address, self._record(task, phase=sm.PHASE_PROVISIONING, live=live))
        self.host.event(task, EventKind.STATE, state=live.state)
        self._wait_for(task, Goal.READY, live.state, "accepted (not waiting)")

    def _wait_for(self, task: Task, goal: Goal, state: str | None, no_wait_message: str) -> None:
        if not self.host.options.wait:
            self.host.finish(task, ok=True, message=no_wait_message, pending=True)
            return
        self.host.start_wait(task, goal, state)

    def _step_wait_ready(self, task: Task) -> None:
        # Only READY: this run set no link, so none is waited for (drift in it is the planner's to see).
        self._wait_for(task, Goal.READY, task.change.live_state, "still provisioning (not waiting)")

    # -- update in place -------------------------------------------------------

    def _step_update(self, task: Task) -> None:
        deployment_id = require_id(task)
        record = self.writer.deployment(task.name)
        link = record.hot_load_trainer_job if record is not None else None
        wanted: dict[str, Any] = {}
        for key in task.change.changed_fields:
            if key in REATTACH_KEYS:  # re-attach: the link to the trainer's job now (it may just have been replaced)
                link = self._trainer_link(task.change)
                wanted["hot_load_trainer_job"] = task.trainer_link = link or ""
            else:
                wanted[key] = (task.change.after or {}).get(key)
        try:
            fields, mask = update_request_for(wanted)
        except ValueError as exc:
            raise ApiError(
                f"Cannot update deployment {deployment_id} in place: {exc}",
                "Only replica counts, the trainer link, the transition type and the description change in "
                "place; the plan asks for more. Make a new plan with `rlorinfra plan`.",
            ) from None
        live = self._patch(task, deployment_id, fields, mask)
        self.writer.set_record(task.address, self._record(task, phase=sm.PHASE_PROVISIONING, live=live, link=link))
        self.host.event(task, EventKind.STATE, state=live.state, message=f"updated {', '.join(mask)}")
        self._wait_for(task, Goal.READY, live.state, "update accepted (not waiting)")

    def _patch(self, task: Task, deployment_id: str, fields: dict[str, Any], mask: list[str]) -> LiveDeployment:
        """PATCH; after a lost answer, read back before sending it again (never a blind retry)."""
        for attempt in range(LOST_ANSWER_RETRIES + 1):
            try:
                return self.client.update_deployment(deployment_id, fields, mask)
            except OutcomeUnknownError as exc:
                live = read_back(lambda: self.client.get_deployment(deployment_id), exc, "deployment")
                if live is not None and _fields_match(live, fields):
                    self.host.event(task, EventKind.STATE, state=live.state, message="answer lost; the update landed")
                    return live
                if attempt == LOST_ANSWER_RETRIES:
                    raise
                self.host.pause(lost_answer_backoff(attempt))  # it had not landed: send it again
        raise AssertionError("unreachable")

    # -- delete --------------------------------------------------------------------

    def _step_delete(self, task: Task) -> None:
        deployment_id = require_id(task)
        record = self.writer.deployment(task.name)
        if record is None or record.deployment_id != deployment_id:
            raise ApiError(
                f'Refusing to delete deployment {deployment_id}: state does not manage it as "{task.name}"',
                "A plan may only delete deployments the state tracks. Make a new plan with `rlorinfra plan`.",
            )
        if record.phase == sm.PHASE_CREATING and not self._ours_to_delete(record):
            self._forget_or_continue(task, "forgotten (the deployment holding its ID is not ours)")
            return
        existed = self.client.delete_deployment(deployment_id)
        if not existed:
            self._gone(task)
            return
        self._set_observed(task.address, DeploymentState.DELETING.value)
        self._wait_for(task, Goal.GONE, DeploymentState.DELETING.value, "delete accepted (not waiting)")

    def _ours_to_delete(self, record: DeploymentRecord) -> bool:
        """A record still ``creating`` never learnt whether its POST landed: delete only what it would have made."""
        live = self.client.get_deployment(record.deployment_id)
        if live is None:
            return False
        wire = {k: v for k, v in record.spec.items() if k not in (TRAINER_KEY, SHAPE_FROM_KEY)}
        if record.hot_load_trainer_job:
            wire["hot_load_trainer_job"] = record.hot_load_trainer_job
        return not deployment_not_ours(live, wire)

    def _forget_or_continue(self, task: Task, message: str) -> None:
        """Nothing of ours to delete: a delete ends here, a replace goes on to its create."""
        if task.steps:
            return
        self.writer.forget(task.address)
        self.host.finish(task, ok=True, message=message)

    def _gone(self, task: Task) -> None:
        """The deployment is gone: a replace creates it again next, a delete forgets it."""
        if task.steps:
            task.goal = None  # the create step follows
            self.host.event(task, EventKind.STATE, state=DeploymentState.DELETED.value, message="gone")
            return
        self.writer.forget(task.address)
        self.host.finish(task, ok=True, message="deleted")

    # -- one poll round (main thread) ------------------------------------------

    def observe_round(self, waiting: Sequence[Task]) -> list[LiveDeployment | None]:
        """LIST pages or a GET per awaited deployment, whichever is fewer requests."""
        ids = sorted({t.job_id for t in waiting if t.job_id})
        if len(ids) >= self._list_pages:
            wanted = set(ids)
            seen = {d.deployment_id: d for page in self.client.iter_deployment_pages() for d in page}
            seen = {k: v for k, v in seen.items() if k in wanted}
        else:
            with ThreadPoolExecutor(max_workers=fan_out(len(ids), self.host.options.parallelism)) as pool:
                answers = list(pool.map(self.client.get_deployment, ids))
            seen = {d.deployment_id: d for d in answers if d is not None}
        return [seen.get(t.job_id) if t.job_id else None for t in waiting]

    # -- readiness -----------------------------------------------------------------

    def judge(self, task: Task, observation: LiveDeployment | None) -> bool:
        """Advance one waiting task from what the poll saw; True if anything changed."""
        live = observation
        state = live.state.value if live is not None else None
        changed = state != task.last_state
        if changed and state:
            task.last_state = state
            self.host.event(task, EventKind.STATE, state=state, message=live.status_message if live else "")
            if task.goal is Goal.READY:
                self._set_observed(task.address, state)
        if task.goal is Goal.GONE:
            return self._observe_gone(task, live) or changed
        return self._observe_ready(task, live) or changed

    def _observe_gone(self, task: Task, live: LiveDeployment | None) -> bool:
        # A listing hides DELETED rows and a GET answers 404 once purged: absent is gone.
        if live is None or live.state in TOMBSTONE_STATES:
            self._gone(task)
            return True
        return self._check_deadline(task)

    def _observe_ready(self, task: Task, live: LiveDeployment | None) -> bool:
        if live is None:
            return self._check_deadline(task)
        if live.state in BAD_STATES:
            why = f" ({live.status_message})" if live.status_message else ""
            self.host.finish(task, ok=False, message=f"deployment {task.job_id} entered bad state {live.state}{why}")
            return True
        if live.is_ready and (not task.trainer_link or live.hot_load_trainer_job == task.trainer_link):
            self._ready(task, live)
            return True
        return self._check_deadline(task)

    def _check_deadline(self, task: Task) -> bool:
        now = self.host.now()
        if task.placed_deadline is None:
            task.placed_deadline = now + self.host.options.timeout_s
            return False
        if now > task.placed_deadline:
            budget = f"{self.host.options.timeout_s:g}s (--timeout)"
            what = "ready" if task.goal is Goal.READY else "gone"
            self.host.finish(
                task,
                ok=False,
                message=f"deployment {task.job_id} did not become {what} within {budget} "
                f"(last state {task.last_state})",
            )
            return True
        return False

    def _ready(self, task: Task, live: LiveDeployment) -> None:
        self.writer.set_record(task.address, self._record(task, phase=sm.PHASE_READY, live=live))
        self.host.finish(task, ok=True, message="ready", kind=EventKind.READY)

    # -- records -------------------------------------------------------------------

    def settle_failed(self, task: Task) -> None:
        """Mark the record failed, unless it is still ``creating`` (the next run reconciles it by ID)."""
        record = self.writer.deployment(task.name)
        if record is not None and record.phase != sm.PHASE_CREATING:
            self.writer.update(
                lambda s: _with_record_changed(s, task.address, phase=sm.PHASE_FAILED, updated_at=now_rfc3339())
            )

    def _set_observed(self, address: Address, state: str) -> None:
        self.writer.update(lambda s: _with_record_changed(s, address, observed_state=state))

    def _record(
        self, task: Task, *, phase: str, live: LiveDeployment | None = None, link: str | None = None
    ) -> DeploymentRecord:
        """The record of ``task``'s deployment: the plan's spec, the link set, and what the server reported."""
        previous = self.writer.deployment(task.name)
        deployment_id = require_id(task)
        same = previous is not None and previous.deployment_id == deployment_id and not _replaced(task, previous)
        created = previous.created_at if previous is not None and same else now_rfc3339()
        declared = task.change.after is not None
        spec = dict(task.change.after or {}) if declared else dict(previous.spec if previous else {})
        spec.pop(SHAPE_FROM_KEY, None)
        if live is not None:
            link = live.hot_load_trainer_job or link or task.trainer_link
        protected, expires_at = lifecycle_fields(task.change.lifecycle, previous if same else None, created)
        return DeploymentRecord(
            deployment_id=deployment_id,
            deployment_name=self.client.deployment_name(deployment_id),
            spec=spec,
            phase=phase,
            observed_state=live.state.value if live is not None else None,
            hot_load_trainer_job=link or task.trainer_link,
            hot_load_bucket_url=(live.hot_load_bucket_url if live is not None else None)
            or (previous.hot_load_bucket_url if same and previous else None),
            deployment_shape_version=(live.deployment_shape if live is not None else None)
            or (previous.deployment_shape_version if same and previous else None),
            created_at=created,
            updated_at=now_rfc3339(),
            unread_fields=previous.unread_fields if previous is not None and same else (),
            depends_on=task.change.depends_on if declared else (previous.depends_on if previous else ()),
            protected=protected,
            expires_at=expires_at,
        )


def _replaced(task: Task, previous: DeploymentRecord) -> bool:
    """Is ``previous`` the record of the deployment a replace just deleted (so the new one starts afresh)?"""
    return task.change.action is Action.REPLACE and previous.observed_state in GONE_VALUES


def _fields_match(live: LiveDeployment, fields: dict[str, Any]) -> bool:
    """Does ``live`` already show every PATCHed field (so a PATCH whose answer was lost landed)?

    A field the resource does not report proves nothing, so it counts as not
    landed: sending the same values again is harmless, a missed re-attach is not.
    """
    for key, value in fields.items():
        if key == "hot_load_transition_type":
            found: Any = live.effective_transition.value
            value = str(value or HotLoadTransition.ASYNC.value).upper()
        else:
            found = getattr(live, key, None)
        if (found or "") != (value or "") and found != value:
            return False
    return True


def _with_record_changed(state: State, address: Address, **changes: Any) -> State:
    """``state`` with some fields of ``address``'s deployment record replaced (no-op when it is gone)."""
    record = state.deployment(address.name)
    if record is None:
        return state
    return state.with_record(address, replace(record, **changes))
