"""Deployment domain values: states, names, trainer links, canonical specs."""

from __future__ import annotations

import pytest

from rlorinfra.model.deployments import (
    BAD_STATES,
    GONE_STATES,
    READY_STATES,
    TRANSITIONAL_STATES,
    DeploymentState,
    HotLoadReplica,
    HotLoadTransition,
    LiveDeployment,
    canonical_deployment_spec,
    deployment_name,
    deployment_not_ours,
    is_valid_deployment_id,
    snake_to_camel,
    trainer_job_id,
    trainer_link,
    update_request_for,
)


def test_every_state_is_in_exactly_one_of_ready_transitional_failed_gone():
    sets = [READY_STATES, TRANSITIONAL_STATES, frozenset({DeploymentState.FAILED}), GONE_STATES]
    for state in DeploymentState:
        assert sum(state in s for s in sets) == 1, state
    assert BAD_STATES == {DeploymentState.FAILED, DeploymentState.DELETING, DeploymentState.DELETED}


@pytest.mark.parametrize(
    ("raw", "state"),
    [("READY", DeploymentState.READY), ("DELETED", DeploymentState.DELETED), (None, DeploymentState.UNSPECIFIED),
     ("UNKNOWN", DeploymentState.UNSPECIFIED), ("STATE_UNSPECIFIED", DeploymentState.UNSPECIFIED)],
)  # fmt: skip
def test_state_parse(raw, state):
    assert DeploymentState.parse(raw) is state


@pytest.mark.parametrize(
    ("raw", "value"),
    [("sync", HotLoadTransition.SYNC), ("ASYNC", HotLoadTransition.ASYNC), ("", None), (None, None),
     ("HOT_LOAD_TRANSITION_TYPE_UNSPECIFIED", None), ("UNSPECIFIED", None), ("bogus", None)],
)  # fmt: skip
def test_transition_parse(raw, value):
    assert HotLoadTransition.parse(raw) is value


def test_names_and_trainer_link_round_trip():
    assert deployment_name("acme", "roll") == "accounts/acme/deployments/roll"
    link = trainer_link("acme", "grpo-policy")
    assert link == "accounts/acme/rlorTrainerJobs/grpo-policy"
    assert trainer_job_id(link) == "grpo-policy"
    assert trainer_job_id("accounts/acme/deployments/x") is None
    assert trainer_job_id("accounts/acme/rlorTrainerJobs/Bad_ID") is None
    assert trainer_job_id(None) is None
    assert is_valid_deployment_id("grpo-rollout") and not is_valid_deployment_id("..")


def test_canonical_spec_drops_defaults_and_normalizes():
    spec = {
        "base_model": "m",
        "description": "Fireworks training deployment",
        "min_replica_count": 0,
        "max_replica_count": 2,
        "enable_hot_load": True,
        "hot_load_transition_type": "sync",
        "deployment_shape": "accounts/f/deploymentShapes/s/versions/1",
        "accelerator_type": "NVIDIA_H100_80GB",
        "extra_args": ("--a",),
        "region": None,
    }
    assert canonical_deployment_spec(spec) == {
        "base_model": "m",
        "deployment_shape": "accounts/f/deploymentShapes/s/versions/1",
        "extra_args": ["--a"],
        "hot_load_transition_type": "SYNC",
        "max_replica_count": 2,
    }


def test_snake_to_camel():
    assert snake_to_camel("hot_load_trainer_job") == "hotLoadTrainerJob"
    assert snake_to_camel("description") == "description"


def test_live_deployment_properties_and_spec_of_reported_fields_only():
    live = LiveDeployment(
        deployment_id="d",
        name="accounts/a/deployments/d",
        state=DeploymentState.UPDATING,
        base_model="m",
        max_replica_count=3,
        min_replica_count=None,
        hot_load_trainer_job="accounts/a/rlorTrainerJobs/t1",
        reported=frozenset({"base_model", "max_replica_count", "hot_load_trainer_job"}),
    )
    assert live.is_transitional and not live.is_ready and not live.is_gone and not live.is_failed
    assert live.trainer_job_id == "t1"
    assert live.effective_transition is HotLoadTransition.ASYNC
    assert live.spec_dict() == {
        "base_model": "m",
        "hot_load_trainer_job": "accounts/a/rlorTrainerJobs/t1",
        "max_replica_count": 3,
    }


def test_hot_load_replica_done_and_failed_rules():
    replica = HotLoadReplica(current_snapshot_identity="s1", readiness=True, loaded_identities=("s2",))
    assert replica.has_loaded("s1") and replica.has_loaded("s2") and not replica.has_loaded("s3")
    assert not HotLoadReplica(current_snapshot_identity="s1", readiness=False).has_loaded("s1")
    failing = HotLoadReplica(stage="error", target_snapshot_identity="s3")
    assert failing.failed_loading("s3") and not failing.failed_loading("s4")


def test_update_request_for_orders_the_mask_and_fills_defaults():
    fields, mask = update_request_for(
        {
            "hot_load_transition_type": "sync",
            "hot_load_trainer_job": "accounts/a/rlorTrainerJobs/t2",
            "min_replica_count": None,
        }
    )
    assert mask == ["min_replica_count", "hot_load_trainer_job", "hot_load_transition_type"]
    assert fields == {
        "min_replica_count": 0,
        "hot_load_trainer_job": "accounts/a/rlorTrainerJobs/t2",
        "hot_load_transition_type": "SYNC",
    }
    with pytest.raises(ValueError, match="base_model"):
        update_request_for({"base_model": "other"})


def _live(**kw):
    fields = {"base_model": "m", **kw}
    return LiveDeployment(deployment_id="d", name="accounts/a/deployments/d", state=DeploymentState.READY,
                          reported=frozenset(fields), **fields)  # fmt: skip


@pytest.mark.parametrize(
    ("live_fields", "spec", "why"),
    [
        ({}, {"base_model": "m"}, ""),
        ({}, {"base_model": "other"}, "base_model is 'm', not 'other'"),
        ({"max_replica_count": 1}, {"base_model": "m"}, ""),  # the SDK default, echoed
        ({"max_replica_count": 3}, {"base_model": "m"}, "max_replica_count is 3, not 1"),
        ({"deployment_shape": "accounts/f/deploymentShapes/s/versions/2"},
         {"base_model": "m", "deployment_shape": "accounts/f/deploymentShapes/s"}, ""),
        ({"deployment_shape": "accounts/f/deploymentShapes/s/versions/2"},
         {"base_model": "m", "deployment_shape": "accounts/f/deploymentShapes/s/versions/1"}, "deployment_shape"),
        ({"deployment_shape": "accounts/f/deploymentShapes/s/versions/2"},
         {"base_model": "m", "deployment_shape": "default"}, ""),
        ({"hot_load_transition_type": HotLoadTransition.ASYNC}, {"base_model": "m"}, ""),
        ({"hot_load_transition_type": HotLoadTransition.SYNC}, {"base_model": "m"}, "hot_load_transition_type"),
        ({"hot_load_trainer_job": "accounts/a/rlorTrainerJobs/x"},
         {"base_model": "m", "hot_load_trainer_job": "accounts/a/rlorTrainerJobs/y"}, "hot_load_trainer_job"),
    ],
)  # fmt: skip
def test_deployment_not_ours_compares_reported_fields_only(live_fields, spec, why):
    reason = deployment_not_ours(_live(**live_fields), spec)
    assert (reason == "") if why == "" else (why in reason)
