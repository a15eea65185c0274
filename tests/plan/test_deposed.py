"""create_before_destroy leaves the replaced ("deposed") job in state until it is gone."""

from __future__ import annotations

from rlorinfra.config.model import JobSpec
from rlorinfra.model.jobs import LiveJob
from rlorinfra.plan.model import Action, LiveWorld
from rlorinfra.plan.planner import make_plan
from rlorinfra.state.model import JobRecord, State

SPEC = JobSpec(display_name="t", base_model="m", training_shape="accounts/fireworks/trainingShapes/s")


def world(*jobs):
    return LiveWorld(account_id="a", jobs={j.job_id: j for j in jobs})


def live(job_id, state="JOB_STATE_RUNNING"):
    return LiveJob(
        job_id=job_id,
        name=f"accounts/a/rlorTrainerJobs/{job_id}",
        display_name="t",
        state=state,
        spec=tuple(sorted(SPEC.spec().items())),
    )


def state(deposed):
    return State().with_jobs(
        {
            "t": JobRecord(
                job_id="new",
                job_name="n",
                endpoint="e",
                spec=SPEC.spec(),
                phase="ready",
                observed_state="JOB_STATE_RUNNING",
                deposed_job_ids=(deposed,) if isinstance(deposed, str) else deposed,
            )
        }
    )


def test_a_running_deposed_job_is_planned_for_deletion():
    plan = make_plan({"t": SPEC}, state("old"), world(live("new"), live("old")))
    deletes = [c for c in plan.changes if c.action is Action.DELETE]
    assert [(c.name, c.job_id) for c in deletes] == [("t", "old")]
    assert "deposed" in deletes[0].reason
    assert plan.count(Action.NOOP) == 1  # the new job itself is fine


def test_a_deposed_job_is_not_an_untracked_job_and_gone_ones_need_nothing():
    # Not "already exists but is not in state": the deposed ID is tracked.
    assert make_plan({"t": SPEC}, state("old"), world(live("new"), live("old"))).has_changes
    gone = make_plan({"t": SPEC}, state("old"), world(live("new"), live("old", "JOB_STATE_DELETED")))
    assert not gone.has_changes


def test_every_deposed_job_is_planned_for_deletion_on_destroy_and_when_the_block_is_gone():
    both = state(("old-1", "old-2"))
    world_all = world(live("new"), live("old-1"), live("old-2"))
    for plan in (make_plan({"t": SPEC}, both, world_all, destroy=True), make_plan({}, both, world_all)):
        deletes = sorted(c.job_id for c in plan.changes if c.action is Action.DELETE)
        assert deletes == ["new", "old-1", "old-2"]


def test_without_refresh_a_deposed_job_is_never_assumed_gone():
    offline = LiveWorld(account_id="a", jobs={}, refreshed=False)
    plan = make_plan({"t": SPEC}, state("old"), offline)
    assert [c.job_id for c in plan.changes if c.action is Action.DELETE] == ["old"]
