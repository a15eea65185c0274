"""The plan JSON document: pinned schema, round trip, garbage refused."""

from __future__ import annotations

import copy
import json

import pytest

from rlorinfra.errors import PlanFileError
from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.document import plan_document, plan_from_document
from rlorinfra.plan.model import Action, Change, Plan
from tests.render.renderplans import CONTROL_PLANE, MIXED, SAMPLES, planned

TOP_KEYS = {
    "format_version",
    "control_plane",
    "destroy",
    "refresh_only",
    "pricing_source",
    "changes",
    "drift",
    "summary",
}
COST_KEYS = {"hourly_cost_delta", "hourly_cost_delta_max", "hourly_cost_unknown"}
CHANGE_KEYS = {
    "address",
    "kind",
    "depends_on",
    "name",
    "action",
    "reason",
    "job_id",
    "live_state",
    "before",
    "after",
    "changed_fields",
    "accelerators",
    "create_before_destroy",
    "max_resumes",
    "lifecycle",
    "state_updates",
    *COST_KEYS,
}
DRIFT_KEYS = {
    "address",
    "resource_kind",
    "name",
    "job_id",
    "kind",
    "recorded_state",
    "live_state",
    "detail",
    "changed_fields",
}
SUMMARY_KEYS = {
    "create",
    "resume",
    "wait",
    "update",
    "replace",
    "stop",
    "delete",
    "noop",
    "accelerators",
    "has_changes",
    "has_drift",
    *COST_KEYS,
    "hourly_cost_after",
}


def _doc(plan: Plan) -> dict:
    return plan_document(plan, control_plane=CONTROL_PLANE)


def test_schema_is_pinned():
    doc = _doc(MIXED)
    assert doc["format_version"] == 2
    assert set(doc) == TOP_KEYS
    assert all(set(c) == CHANGE_KEYS for c in doc["changes"])
    assert all(set(d) == DRIFT_KEYS for d in doc["drift"])
    assert set(doc["summary"]) == SUMMARY_KEYS


def test_summary_values():
    summary = _doc(MIXED)["summary"]
    assert summary == {
        "create": 1,
        "resume": 1,
        "wait": 1,
        "update": 0,
        "replace": 1,
        "stop": 1,
        "delete": 1,
        "noop": 1,
        "accelerators": {"NVIDIA_A100_80GB": -8, "NVIDIA_H100_80GB": 8},
        "has_changes": True,
        "has_drift": True,
        "hourly_cost_delta": None,
        "hourly_cost_delta_max": None,
        "hourly_cost_unknown": "no pricing",
        "hourly_cost_after": None,
    }
    empty = _doc(Plan())["summary"]
    assert empty["has_changes"] is False and empty["has_drift"] is False and empty["accelerators"] == {}


def test_change_entry_values():
    doc = _doc(MIXED)
    replace = next(c for c in doc["changes"] if c["action"] == "replace")
    assert replace == {
        "address": "job.lora-trainer",
        "kind": "job",
        "depends_on": [],
        "lifecycle": None,
        "state_updates": [],
        "name": "lora-trainer",
        "action": "replace",
        "reason": "",
        "job_id": "lora-trainer-5c5c",
        "live_state": "JOB_STATE_RUNNING",
        "before": {
            "base_model": "accounts/fireworks/models/qwen3-8b",
            "training_shape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy",
        },
        "after": {
            "base_model": "accounts/fireworks/models/qwen3-8b",
            "lora_rank": 16,
            "training_shape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy",
        },
        "changed_fields": ["lora_rank"],
        "accelerators": {},
        "create_before_destroy": False,
        "max_resumes": 3,
        "hourly_cost_delta": None,
        "hourly_cost_delta_max": None,
        "hourly_cost_unknown": "no pricing",
    }


def test_noop_changes_are_listed():
    assert [c["action"] for c in _doc(MIXED)["changes"]].count("noop") == 1


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_through_json(name):
    plan = SAMPLES[name]
    text = json.dumps(_doc(plan))
    assert plan_from_document(json.loads(text)) == plan


def test_round_trip_of_a_real_plan_with_tuples():
    plan = planned()
    assert plan_from_document(json.loads(json.dumps(_doc(plan)))) == plan


def test_control_plane_never_carries_a_key():
    doc = plan_document(
        Plan(), control_plane={"url": "local", "api_key": "fw-1", "API_KEY_ENV": "X", "bearer_token": "t"}
    )
    assert doc["control_plane"] == {"url": "local"}


def test_control_plane_keeps_only_whitelisted_keys():
    # A whitelist, not a blacklist: a credential under a name nobody thought of is dropped too.
    control_plane = {
        "url": "https://api.fireworks.ai",
        "account_id": "acme",
        "instance": "emu-1",
        "api_key_env": "FIREWORKS_API_KEY",
        "conn_str": "postgresql://u:pw@db/x",
        "aws_session": "IQoJb3JpZ2lu",
    }
    doc = plan_document(Plan(), control_plane=control_plane)
    assert doc["control_plane"] == {
        "account_id": "acme",
        "api_key_env": "FIREWORKS_API_KEY",
        "instance": "emu-1",
        "url": "https://api.fireworks.ai",
    }


def _broken(mutate):
    doc = copy.deepcopy(_doc(MIXED))
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        "not a dict",
        _broken(lambda d: d.update(format_version=3)),
        _broken(lambda d: d.pop("changes")),
        _broken(lambda d: d.update(changes={"a": 1})),
        _broken(lambda d: d["changes"][0].update(action="explode")),
        _broken(lambda d: d["changes"][0].pop("name")),
        _broken(lambda d: d["changes"][0].update(name="")),
        _broken(lambda d: d["changes"][0].update(before=[1])),
        _broken(lambda d: d["changes"][0].update(max_resumes="many")),
        _broken(lambda d: d["changes"].append(7)),
        _broken(lambda d: d["drift"][0].update(job_id=None)),
        _broken(lambda d: d["changes"][0].update(kind="volcano")),
        _broken(lambda d: d["changes"][0].update(address="job.someone-else")),
        _broken(lambda d: d["changes"][0].update(depends_on="job.a")),
        _broken(lambda d: d["changes"][0].update(depends_on=["a-bare-name"])),
        _broken(lambda d: d["changes"][0].update(depends_on=[7])),
        _broken(lambda d: d["drift"][0].update(resource_kind="volcano")),
        _broken(lambda d: d["drift"][0].update(address="deployment.x")),
    ],
    ids=[
        "not-object",
        "future-version",
        "no-changes",
        "changes-not-list",
        "bad-action",
        "no-name",
        "empty-name",
        "bad-before",
        "bad-int",
        "change-not-object",
        "drift-no-id",
        "bad-kind",
        "address-disagrees",
        "depends-on-not-list",
        "depends-on-bare-name",
        "depends-on-not-text",
        "drift-bad-kind",
        "drift-address-disagrees",
    ],
)
def test_garbage_documents_are_refused(doc):
    with pytest.raises(PlanFileError) as err:
        plan_from_document(doc)
    assert "plan" in err.value.summary.lower()
    assert "rlorinfra plan --out" in err.value.detail


def test_addresses_and_dependencies_are_written_and_read_back():
    plan = Plan(
        changes=(
            Change("policy", Action.CREATE, after={"base_model": "m"}),
            Change("serving", Action.CREATE, kind=Kind.DEPLOYMENT, depends_on=(Address.job("policy"),)),
        ),
        drift=MIXED.drift,
    )
    doc = _doc(plan)
    assert [(c["address"], c["kind"], c["depends_on"]) for c in doc["changes"]] == [
        ("job.policy", "job", []),
        ("deployment.serving", "deployment", ["job.policy"]),
    ]
    assert {(d["address"], d["resource_kind"]) for d in doc["drift"]} == {
        ("job.rollout-trainer", "job"),
        ("job.eval-trainer", "job"),
    }
    assert plan_from_document(json.loads(json.dumps(doc))) == plan


def test_documents_saved_before_addresses_still_load():
    # A format-1 document from before addresses: no address, kind or depends_on keys.
    doc = _doc(MIXED)
    for entry in doc["changes"]:
        for key in ("address", "kind", "depends_on"):
            del entry[key]
    for entry in doc["drift"]:
        del entry["address"], entry["resource_kind"]
    plan = plan_from_document(doc)
    assert plan == MIXED
    assert all(c.address == Address.job(c.name) and c.depends_on == () for c in plan.changes)
