"""The executor against a scripted in-memory control plane (fast, deterministic).

End-to-end behaviour against the real emulator lives in tests/e2e; here we pin
the executor's own rules: ID before POST, 409 adoption, bounded resumes,
failure isolation, one LIST per poll round, health checks only when RUNNING.
"""

from __future__ import annotations

import pytest

from rlorinfra.apply import ApplyOptions, Executor, StateWriter, new_job_id
from rlorinfra.errors import ApiError
from rlorinfra.model.address import Kind
from rlorinfra.plan.model import Action, Change, Plan
from rlorinfra.state.model import PHASE_CREATING, PHASE_READY, JobRecord, State
from tests.apply.fakes import SPEC, FakePlane


def run(plane, changes, state=None, **opts):
    writes = []

    def persist(s):
        writes.append(s)
        return s

    writer = StateWriter(state or State(), persist)
    plane.writer = writer
    events = []
    options = ApplyOptions(poll_min_s=0, poll_max_s=0, **opts)
    executor = Executor(plane, writer, options=options, on_event=events.append, sleep=lambda s: None)
    result = executor.run(Plan(changes=tuple(changes)))
    return result, writer.state, writes, events


def create(name):
    return Change(name=name, action=Action.CREATE, after=SPEC)


def record(job_id, phase=PHASE_READY, observed="JOB_STATE_RUNNING"):
    return JobRecord(
        job_id=job_id,
        job_name=f"accounts/acct/rlorTrainerJobs/{job_id}",
        endpoint="e",
        spec=SPEC,
        phase=phase,
        observed_state=observed,
    )


def test_create_writes_id_with_phase_creating_before_the_post():
    plane = FakePlane()
    result, state, _, _ = run(plane, [create("trainer-a")])
    assert [o.ok for o in result.outcomes] == [True]
    before_post = plane.state_at_post[0].jobs["trainer-a"]
    assert before_post.phase == PHASE_CREATING
    assert before_post.job_id == state.jobs["trainer-a"].job_id
    assert state.jobs["trainer-a"].phase == PHASE_READY
    assert state.jobs["trainer-a"].endpoint.endswith(state.jobs["trainer-a"].job_id)


def test_many_creates_wait_together_with_one_list_per_round():
    import time

    plane = FakePlane()
    writer = StateWriter(State(), lambda s: s)
    options = ApplyOptions(parallelism=5, poll_min_s=0.05, poll_max_s=0.05)
    executor = Executor(plane, writer, options=options, sleep=time.sleep)
    result = executor.run(Plan(changes=tuple(create(f"job-{i}") for i in range(20))))
    assert all(o.ok for o in result.outcomes)
    assert len(writer.state.jobs) == 20
    # 20 jobs wait together: a handful of LIST rounds, never one request per job.
    assert plane.calls.count("list") <= 5
    assert plane.calls.count("get") == 0


def test_409_for_our_id_adopts_the_existing_job():
    plane = FakePlane()
    plane.jobs["recorded-id"], plane.names["recorded-id"] = "JOB_STATE_RUNNING", "t"
    change = Change(name="t", action=Action.CREATE, after=SPEC, job_id="recorded-id")
    result, state, _, _ = run(
        plane, [change], State(resources={Kind.JOB: {"t": record("recorded-id", phase=PHASE_CREATING)}})
    )
    assert result.outcomes[0].ok
    assert state.jobs["t"].job_id == "recorded-id"
    assert list(plane.jobs) == ["recorded-id"]  # no duplicate


def test_409_for_an_id_held_by_another_job_is_never_adopted():
    plane = FakePlane()
    plane.jobs["recorded-id"], plane.names["recorded-id"] = "JOB_STATE_RUNNING", "someone-else"
    change = Change(name="t", action=Action.CREATE, after=SPEC, job_id="recorded-id")
    result, state, _, _ = run(
        plane, [change], State(resources={Kind.JOB: {"t": record("recorded-id", phase=PHASE_CREATING)}})
    )
    assert not result.outcomes[0].ok and "already belongs to another job" in result.outcomes[0].message
    assert "t" not in state.jobs  # nothing recorded under the wrong name
    assert list(plane.jobs) == ["recorded-id"]


def test_preempted_while_waiting_is_resumed_then_ready():
    plane = FakePlane()
    plane.jobs["j"] = "JOB_STATE_CREATING"
    plane.script["j"] = ["JOB_STATE_RUNNING", "JOB_STATE_FAILED"]
    plane.healthy = lambda job_id: plane.calls.append("health") or False if plane.script["j"] else True
    change = Change(name="t", action=Action.WAIT, job_id="j", live_state="JOB_STATE_CREATING")
    result, state, _, events = run(
        plane, [change], State(resources={Kind.JOB: {"t": record("j", observed="JOB_STATE_CREATING")}})
    )
    assert result.outcomes[0].ok, result.outcomes
    assert plane.calls.count("resume") == 1
    assert any(e.kind == "retry" for e in events)


def test_resumes_are_bounded_by_max_resumes():
    plane = FakePlane()
    plane.jobs["j"] = "JOB_STATE_FAILED"
    plane.script["j"] = ["JOB_STATE_FAILED"] * 50
    change = Change(name="t", action=Action.RESUME, job_id="j", live_state="JOB_STATE_FAILED", max_resumes=2)
    result, state, _, _ = run(
        plane, [change], State(resources={Kind.JOB: {"t": record("j", observed="JOB_STATE_FAILED")}})
    )
    outcome = result.outcomes[0]
    assert not outcome.ok and "max_resumes = 2" in outcome.message
    assert plane.calls.count("resume") == 2


def test_one_failure_does_not_stop_the_others():
    plane = FakePlane()
    plane.fail_create.add("bad")
    result, state, _, _ = run(plane, [create("bad"), create("good")])
    by_name = {o.name: o for o in result.outcomes}
    assert not by_name["bad"].ok and by_name["good"].ok
    assert "bad" not in state.jobs  # a definite 400: nothing created, nothing recorded
    assert state.jobs["good"].phase == PHASE_READY


def test_delete_forgets_the_job_and_waits_until_gone():
    plane = FakePlane()
    plane.jobs["j"] = "JOB_STATE_RUNNING"
    change = Change(name="t", action=Action.DELETE, job_id="j", before=SPEC)
    result, state, _, _ = run(plane, [change], State(resources={Kind.JOB: {"t": record("j")}}))
    assert result.outcomes[0].ok and "t" not in state.jobs
    assert plane.jobs["j"] == "JOB_STATE_DELETED"


def test_stop_cancels_and_records_phase_stopped():
    plane = FakePlane()
    plane.jobs["j"] = "JOB_STATE_RUNNING"
    change = Change(name="t", action=Action.STOP, job_id="j")
    result, state, _, _ = run(plane, [change], State(resources={Kind.JOB: {"t": record("j")}}))
    assert result.outcomes[0].ok
    assert state.jobs["t"].phase == "stopped" and state.jobs["t"].observed_state == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize("cbd", [False, True])
def test_replace_orders_delete_and_create(cbd):
    plane = FakePlane()
    plane.jobs["old"] = "JOB_STATE_RUNNING"
    change = Change(name="t", action=Action.REPLACE, job_id="old", before=SPEC, after=SPEC, create_before_destroy=cbd)
    result, state, _, _ = run(plane, [change], State(resources={Kind.JOB: {"t": record("old")}}))
    assert result.outcomes[0].ok, result.outcomes
    assert state.jobs["t"].job_id != "old"
    assert plane.jobs["old"] == "JOB_STATE_DELETED"
    order = [c for c in plane.calls if c in ("delete", "create:t")]
    assert order == (["create:t", "delete"] if cbd else ["delete", "create:t"])


def test_no_wait_records_accepted_jobs_without_polling():
    plane = FakePlane()
    result, state, _, _ = run(plane, [create("t")], wait=False)
    assert result.outcomes[0].pending and not result.failed
    assert state.jobs["t"].phase == "provisioning"
    assert "list" not in plane.calls


def test_readiness_timeout_fails_the_job():
    plane = FakePlane()
    plane.jobs["j"] = "JOB_STATE_CREATING"
    plane.script["j"] = ["JOB_STATE_CREATING"] * 1000
    ticks = iter(range(0, 100000, 10))
    writer = StateWriter(State(resources={Kind.JOB: {"t": record("j", observed="JOB_STATE_CREATING")}}), lambda s: s)
    executor = Executor(
        plane,
        writer,
        options=ApplyOptions(timeout_s=50, poll_min_s=0, poll_max_s=0),
        clock=lambda: next(ticks),
        sleep=lambda s: None,
    )
    result = executor.run(Plan(changes=(Change(name="t", action=Action.WAIT, job_id="j"),)))
    assert not result.outcomes[0].ok and "did not become ready within 50s" in result.outcomes[0].message


@pytest.mark.parametrize("name", ["grpo-policy-trainer", "Weird Name!! with spaces", "9lives", "x" * 80, "---"])
def test_new_job_id_is_a_valid_readable_slug(name):
    job_id = new_job_id(name)
    assert len(job_id) <= 63
    assert job_id[0].isalpha() and job_id.replace("-", "").isalnum() and job_id == job_id.lower()
    assert new_job_id(name) != job_id  # random suffix


def test_no_wait_does_not_wait_for_a_wait_action():
    plane = FakePlane()
    plane.jobs["j"] = "JOB_STATE_CREATING"
    change = Change(name="t", action=Action.WAIT, job_id="j", live_state="JOB_STATE_CREATING")
    result, _, _, _ = run(
        plane, [change], State(resources={Kind.JOB: {"t": record("j", observed="JOB_STATE_CREATING")}}), wait=False
    )
    assert result.outcomes[0].pending and not result.failed
    assert "list" not in plane.calls


@pytest.mark.parametrize("status,kept", [(400, False), (429, True), (408, True), (503, True)])
def test_a_failed_create_is_forgotten_only_when_definitely_refused(status, kept):
    plane = FakePlane()

    def refuse(job_id, display_name, spec):
        raise ApiError("refused", status_code=status)

    plane.create_job = refuse
    result, state, _, _ = run(plane, [create("t")])
    assert not result.outcomes[0].ok
    assert ("t" in state.jobs) is kept
    if kept:  # the outcome is unknown: the next run reconciles the recorded ID
        assert state.jobs["t"].phase == PHASE_CREATING
