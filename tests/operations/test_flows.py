"""The flows of operations/ driven by a recording UI: what they show, ask and change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlorinfra.apply import ApplyOptions, Event
from rlorinfra.config.load import load_config
from rlorinfra.errors import StateError, StateLockedError
from rlorinfra.operations import (
    ApplyCancelled,
    PlanOutcome,
    PlanRequest,
    Question,
    Workspace,
    force_unlock,
    run_apply,
    run_destroy,
    run_import,
    run_plan,
    state_mv,
    state_rm,
)
from rlorinfra.operations.ui import Operation
from rlorinfra.plan.model import Plan
from rlorinfra.state.lock import StateLock
from tests.cli.conftest import write_quickstart

FAST = ApplyOptions(poll_min_s=0.01, poll_max_s=0.05)
JOBS = {"grpo-policy-trainer", "grpo-reference-trainer"}


@dataclass
class RecordingUI:
    """A UI that answers ``answer`` to every question and records everything it is told."""

    answer: bool = True
    shown: list[PlanOutcome] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def show_plan(self, outcome: PlanOutcome) -> None:
        self.calls.append("show_plan")
        self.shown.append(outcome)

    def confirm(self, question: Question) -> bool:
        self.calls.append("confirm")
        self.questions.append(question)
        return self.answer

    def begin_execution(self, plan: Plan) -> None:
        self.calls.append("begin")

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def end_execution(self) -> None:
        self.calls.append("end")


@pytest.fixture
def ws(tmp_path: Path):
    workspace = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None)
    yield workspace
    workspace.close()


def _applied(ws: Workspace) -> Workspace:
    run_apply(ws, PlanRequest(), RecordingUI(), FAST, auto_approve=True)
    return ws


def test_run_plan_shows_the_document_once_and_never_confirms(ws):
    ui = RecordingUI(answer=False)
    outcome = run_plan(ws, PlanRequest(), ui)
    assert ui.calls == ["show_plan"] and ui.shown == [outcome]
    assert {c.name for c in outcome.plan.actionable} == JOBS
    assert not ws.config.state_path.exists() or not ws.store.read().jobs  # planning changes nothing


def test_run_plan_saves_a_plan_file_when_asked(ws, tmp_path):
    run_plan(ws, PlanRequest(), RecordingUI(), out=tmp_path / "p.plan")
    assert (tmp_path / "p.plan").exists()


def test_no_refresh_plan_leaves_the_workspace_as_it_was(ws):
    _applied(ws)
    fresh = Workspace(config=ws.config, api_key=None)
    try:
        run_plan(fresh, PlanRequest(refresh=False), RecordingUI())
        assert not hasattr(fresh, "account_hint")  # the hint is passed, never stored
        assert fresh.client().request_count == 0  # the state's account was used: nothing was asked
    finally:
        fresh.close()


def test_refused_confirmation_changes_nothing(ws):
    ui = RecordingUI(answer=False)
    with pytest.raises(ApplyCancelled, match="Apply cancelled"):
        run_apply(ws, PlanRequest(), ui, FAST)
    assert ui.calls == ["show_plan", "confirm"] and ui.questions[0].operation is Operation.APPLY
    assert not ws.config.state_path.exists() or not ws.store.read().jobs


def test_confirmed_apply_executes_and_writes_state(ws):
    ui = RecordingUI()
    run = run_apply(ws, PlanRequest(), ui, FAST)
    assert ui.calls == ["show_plan", "confirm", "begin", "end"]
    assert run.executed and not run.result.failed
    assert set(ws.store.read().jobs) == JOBS
    assert {e.name for e in ui.events} == JOBS


def test_apply_without_changes_neither_asks_nor_starts_a_view(ws):
    _applied(ws)
    ui = RecordingUI(answer=False)
    run = run_apply(ws, PlanRequest(), ui, FAST)
    assert ui.calls == ["show_plan"] and not run.executed


def test_run_destroy_asks_as_destroy_and_deletes_everything(ws):
    _applied(ws)
    ui = RecordingUI()
    run = run_destroy(ws, (), ui, FAST)
    assert ui.questions[0].operation is Operation.DESTROY
    assert run.plan.destroy and not ws.store.read().jobs


def test_run_import_adopts_a_forgotten_job_and_is_idempotent(ws):
    job_id = _applied(ws).store.read().jobs["grpo-policy-trainer"].job_id
    state_rm(ws, ("grpo-policy-trainer",))
    first = run_import(ws, "grpo-policy-trainer", job_id)
    again = run_import(ws, "grpo-policy-trainer", job_id)
    assert first.record.job_id == job_id and not first.already_managed and again.already_managed


@pytest.mark.parametrize(
    "edit",
    [
        lambda ws: state_rm(ws, ("grpo-policy-trainer",)),
        lambda ws: state_mv(ws, "grpo-policy-trainer", "renamed"),
    ],
)
def test_state_edits_take_the_lock(ws, edit):
    _applied(ws)
    before = ws.store.read()
    with StateLock(ws.config.state_path, "someone else", 0, config_path=ws.config.path):
        with pytest.raises(StateLockedError):
            edit(ws)
    assert ws.store.read() == before
    edit(ws)
    assert ws.store.read().serial == before.serial + 1


def test_state_mv_moves_the_record(ws):
    record = _applied(ws).store.read().jobs["grpo-policy-trainer"]
    assert state_mv(ws, "grpo-policy-trainer", "renamed") == record
    assert set(ws.store.read().jobs) == {"renamed", "grpo-reference-trainer"}


def test_force_unlock_asks_unless_told_not_to(ws):
    stale = StateLock(ws.config.state_path, "apply", 0, config_path=ws.config.path)
    lock_id = stale.__enter__().id
    try:
        with pytest.raises(StateError, match="cancelled"):
            force_unlock(ws, lock_id, RecordingUI(answer=False))
        ui = RecordingUI(answer=False)
        force_unlock(ws, lock_id, ui, ask=False)
        assert ui.questions == []
    finally:
        stale.__exit__(None, None, None)


def test_a_saved_plan_is_applied_without_asking_again(ws, tmp_path):
    run_plan(ws, PlanRequest(), RecordingUI(), out=tmp_path / "p.plan")
    ui = RecordingUI(answer=False)
    run = run_apply(ws, PlanRequest(), ui, FAST, planfile=tmp_path / "p.plan")
    assert ui.calls == ["show_plan", "begin", "end"] and ui.shown[0].saved == tmp_path / "p.plan"
    assert run.executed and set(ws.store.read().jobs) == JOBS
