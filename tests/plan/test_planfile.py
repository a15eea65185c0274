"""Saved plan files: atomic 0600 write, strict read, staleness check."""

from __future__ import annotations

import json
import os
import stat

import pytest

from rlorinfra.errors import PlanFileError, StalePlanError
from rlorinfra.plan.document import plan_document, plan_from_document
from rlorinfra.plan.model import Action, Change, Plan
from rlorinfra.plan.planfile import SavedPlan, check_plan_fresh, read_plan_file, write_plan_file

CONTROL_PLANE = {"url": "local", "account_id": "acme"}
PLAN = Plan(
    changes=(
        Change(name="trainer", action=Action.CREATE, after={"base_model": "m"}, accelerators={"NVIDIA_H100_80GB": 8}),
    )
)
DOC = plan_document(PLAN, control_plane=CONTROL_PLANE)
FACTS = dict(state_lineage="lin-1", state_serial=4, config_digest="sha256:abc", control_plane=CONTROL_PLANE)


def _write(path, **overrides):
    write_plan_file(path, DOC, **{**FACTS, **overrides})


def test_round_trip(tmp_path):
    path = tmp_path / "tfplan"
    _write(path)
    saved = read_plan_file(path)
    assert saved == SavedPlan(DOC, "lin-1", 4, "sha256:abc", CONTROL_PLANE)
    assert plan_from_document(saved.document) == PLAN


def test_file_is_private_json_with_a_marker(tmp_path):
    path = tmp_path / "tfplan"
    _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    payload = json.loads(path.read_text())
    assert payload["rlorinfra_plan"] == 1
    assert set(payload) == {
        "rlorinfra_plan",
        "state_lineage",
        "state_serial",
        "config_digest",
        "control_plane",
        "request",
        "plan",
    }


def test_overwrite_is_atomic_and_stays_private(tmp_path):
    path = tmp_path / "tfplan"
    path.write_text("old")
    os.chmod(path, 0o644)
    _write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_plan_file(path).state_serial == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tfplan"]  # no temp files left


def test_no_api_key_is_ever_written(tmp_path):
    path = tmp_path / "tfplan"
    _write(path, control_plane={**CONTROL_PLANE, "api_key": "fw-SECRET", "api_key_env": "FIREWORKS_API_KEY"})
    text = path.read_text()
    assert "fw-SECRET" not in text
    assert read_plan_file(path).control_plane == {**CONTROL_PLANE, "api_key_env": "FIREWORKS_API_KEY"}


def test_unwritable_folder_is_a_plan_file_error(tmp_path):
    with pytest.raises(PlanFileError, match="Cannot write plan file"):
        _write(tmp_path / "missing-dir" / "tfplan")


@pytest.mark.parametrize(
    ("content", "summary"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ('{"hello": 1}', "is not an rlorinfra plan file"),
        ("[1, 2]", "is not an rlorinfra plan file"),
        ('{"rlorinfra_plan": 99}', "unsupported version 99"),
        ('{"rlorinfra_plan": 1, "state_serial": "4"}', "is damaged"),
        (b"\xff\xfe\x00garbage", "Cannot read plan file"),
    ],
    ids=["missing", "garbled", "not-a-plan", "not-an-object", "future-version", "wrong-types", "binary"],
)
def test_bad_plan_files_are_refused_clearly(tmp_path, content, summary):
    path = tmp_path / "tfplan"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(PlanFileError) as err:
        read_plan_file(path)
    assert summary in err.value.summary
    assert str(path) in err.value.summary
    assert err.value.detail


def test_fresh_plan_passes(tmp_path):
    _write(tmp_path / "tfplan")
    check_plan_fresh(read_plan_file(tmp_path / "tfplan"), **FACTS)


@pytest.mark.parametrize(
    ("change", "mentions"),
    [
        ({"state_serial": 5}, "the state changed (serial 4 -> 5)"),
        ({"state_lineage": "lin-2"}, "the state is a different one (lineage lin-1 -> lin-2)"),
        ({"config_digest": "sha256:def"}, "the configuration file changed"),
        ({"control_plane": {"url": "https://api.fireworks.ai", "account_id": "acme"}}, "the control plane changed"),
        ({"control_plane": {"url": "local", "account_id": "other"}}, "account_id=other"),
    ],
)
def test_stale_plan_is_refused(tmp_path, change, mentions):
    _write(tmp_path / "tfplan")
    with pytest.raises(StalePlanError) as err:
        check_plan_fresh(read_plan_file(tmp_path / "tfplan"), **{**FACTS, **change})
    assert err.value.summary == "Saved plan is stale"
    assert mentions in err.value.detail
    assert "rlorinfra plan --out" in err.value.detail


def test_stale_message_lists_every_change(tmp_path):
    _write(tmp_path / "tfplan")
    with pytest.raises(StalePlanError) as err:
        check_plan_fresh(read_plan_file(tmp_path / "tfplan"), **{**FACTS, "state_serial": 9, "config_digest": "x"})
    assert "serial 4 -> 9" in err.value.detail and "configuration file changed" in err.value.detail


def test_first_plan_against_no_state_has_no_lineage(tmp_path):
    _write(tmp_path / "tfplan", state_lineage=None, state_serial=0)
    saved = read_plan_file(tmp_path / "tfplan")
    check_plan_fresh(saved, **{**FACTS, "state_lineage": None, "state_serial": 0})
    with pytest.raises(StalePlanError):
        check_plan_fresh(saved, **{**FACTS, "state_lineage": "lin-new", "state_serial": 1})
