"""The apply, import and state-edit flows record ttl and protection (on the embedded emulator)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from rlorinfra.config.load import load_config
from rlorinfra.errors import PlanError, StateLockedError
from rlorinfra.model.times import parse_rfc3339
from rlorinfra.operations import PlanRequest, Workspace, run_apply, run_import, run_plan, state_rm, state_unprotect
from rlorinfra.state.lock import StateLock
from tests.cli.conftest import write_quickstart
from tests.operations.test_flows import FAST, RecordingUI

POLICY = "grpo-policy-trainer"


def _workspace(tmp_path: Path, lines: str = "") -> Workspace:
    """The quickstart with ``lines`` added to [jobs.grpo-policy-trainer]."""
    config = write_quickstart(tmp_path)
    text = config.read_text().replace(f"[jobs.{POLICY}]\n", f"[jobs.{POLICY}]\n{lines}", 1)
    config.write_text(text)
    return Workspace(config=load_config(config, env={}), api_key=None)


@pytest.fixture
def open_ws(tmp_path):
    opened: list[Workspace] = []

    def make(lines: str = "") -> Workspace:
        for ws in opened:
            ws.close()
        opened.append(_workspace(tmp_path, lines))
        return opened[-1]

    yield make
    for ws in opened:
        ws.close()


def _apply(ws: Workspace, **request):
    return run_apply(ws, PlanRequest(**request), RecordingUI(), FAST, auto_approve=True)


def test_create_records_protection_and_the_expiry_from_created_at(open_ws):
    ws = open_ws('prevent_destroy = true\nttl = "2h"\n')
    _apply(ws)
    record = ws.store.read().jobs[POLICY]
    assert record.protected
    assert parse_rfc3339(record.expires_at) - parse_rfc3339(record.created_at) == timedelta(hours=2)
    assert not run_plan(ws, PlanRequest(), RecordingUI()).plan.has_changes


def test_ttl_and_protection_set_later_are_state_only_updates_apply_writes(open_ws):
    ws = open_ws()
    _apply(ws)
    serial = ws.store.read().serial
    ws = open_ws('prevent_destroy = true\nttl = "12h"\n')
    outcome = run_plan(ws, PlanRequest(), RecordingUI())
    (change,) = outcome.plan.state_only
    assert change.state_updates[0] == "protected: true" and change.state_updates[1].startswith("ttl: expires ")
    assert outcome.plan.actionable == () and outcome.document["changes"][0]["state_updates"]
    ui = RecordingUI()
    run = run_apply(ws, PlanRequest(), ui, FAST, auto_approve=True)
    assert run.executed and ui.events == []  # no API call, no event
    record = ws.store.read().jobs[POLICY]
    assert record.protected and ws.store.read().serial == serial + 1
    assert parse_rfc3339(record.expires_at) - parse_rfc3339(record.created_at) == timedelta(hours=12)

    ws = open_ws("prevent_destroy = false\n")  # and ttl removed
    _apply(ws)
    record = ws.store.read().jobs[POLICY]
    assert (record.protected, record.expires_at) == (False, None)


def test_an_expired_job_is_planned_for_delete_with_the_real_clock(open_ws):
    ws = open_ws()
    _apply(ws)
    state = ws.store.read()
    record = state.jobs[POLICY]
    ws.store.write(state.with_job(POLICY, replace(record, expires_at="2000-01-01T00:00:00Z")))
    outcome = run_plan(ws, PlanRequest(), RecordingUI())
    (delete,) = outcome.plan.actionable
    assert (delete.name, delete.action.value) == (POLICY, "delete") and delete.reason.startswith("ttl expired ")
    assert any("the next plan creates a new one" in note for note in outcome.notes)


def test_import_records_the_declared_protection(open_ws):
    ws = open_ws("prevent_destroy = true\n")
    _apply(ws)
    job_id = ws.store.read().jobs[POLICY].job_id
    state_rm(ws, (POLICY,))
    assert run_import(ws, POLICY, job_id).record.protected


def test_unprotect_takes_the_lock_and_bumps_the_serial(open_ws):
    ws = open_ws("prevent_destroy = true\n")
    _apply(ws)
    before = ws.store.read()
    with StateLock(ws.config.state_path, "someone else", 0, config_path=ws.config.path):
        with pytest.raises(StateLockedError):
            state_unprotect(ws, f"job.{POLICY}")
    assert ws.store.read() == before
    address, record, changed = state_unprotect(ws, POLICY)
    assert (str(address), record.protected, changed) == (f"job.{POLICY}", False, True)
    assert ws.store.read().serial == before.serial + 1


def test_a_removed_protected_block_fails_the_plan_and_apply_changes_nothing(open_ws, tmp_path):
    ws = open_ws("prevent_destroy = true\n")
    _apply(ws)
    config = ws.config.path
    text = config.read_text()
    start = text.index(f"[jobs.{POLICY}]")
    end = text.find("\n[", start + 1)
    config.write_text(text[:start] + (text[end + 1 :] if end != -1 else ""))
    ws.close()
    ws = Workspace(config=load_config(config, env={}), api_key=None)
    try:
        before = ws.store.read()
        with pytest.raises(PlanError, match=f"job.{POLICY} is protected"):
            _apply(ws)
        assert ws.store.read() == before
        live = ws.client().get_job(before.jobs[POLICY].job_id)
        assert live is not None and not live.is_tombstone and live.state != "JOB_STATE_DELETING"
    finally:
        ws.close()


def _grpo(tmp_path: Path, deployment_lines: str) -> Workspace:
    """examples/grpo.toml, fast, with ``deployment_lines`` added to [deployments.grpo-rollout]."""
    text = (Path(__file__).resolve().parents[2] / "examples" / "grpo.toml").read_text()
    text = text.replace("provision_seconds = 2 ", "provision_seconds = 0.1 ")
    text = text.replace("[deployments.grpo-rollout]", f"[deployments.grpo-rollout]\n{deployment_lines}", 1)
    (tmp_path / "grpo.toml").write_text(text)
    return Workspace(config=load_config(tmp_path / "grpo.toml", env={}), api_key=None)


def test_a_deployment_records_protection_and_expiry_and_expires_before_nothing_else(tmp_path):
    ws = _grpo(tmp_path, 'prevent_destroy = true\nttl = "1h"\n')
    try:
        _apply(ws)
        state = ws.store.read()
        record = state.deployments["grpo-rollout"]
        assert record.protected and state.jobs["grpo-policy"].protected
        assert parse_rfc3339(record.expires_at) - parse_rfc3339(record.created_at) == timedelta(hours=1)
        outcome = run_plan(ws, PlanRequest(), RecordingUI())
        assert not outcome.plan.has_changes
        assert any(note.startswith("deployment.grpo-rollout expires in ") for note in outcome.notes)
    finally:
        ws.close()
