"""The scheduler's graph rules against the typed fake control plane.

Dependencies (a change starts once what it depends on is ready; a failed
dependency skips its dependents without a request), the ``--parallelism``
bound on mutating requests, and one poll round for every waiting job.
"""

from __future__ import annotations

import time

from rlorinfra.apply import SKIPPED, ApplyOptions, ApplyResult, Event, EventKind, Executor, StateWriter
from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.model import Action, Change, Plan
from rlorinfra.state.model import JobRecord, State
from tests.apply.fakes import SPEC, FakePlane


def create(name: str, *after: str) -> Change:
    return Change(name=name, action=Action.CREATE, after=SPEC, depends_on=tuple(Address.job(n) for n in after))


def run(
    plane: FakePlane, changes: list[Change], state: State | None = None, **opts: float
) -> tuple[ApplyResult, list[Event]]:
    writer = StateWriter(state or State(), lambda s: s)
    plane.writer = writer
    events: list[Event] = []
    options = ApplyOptions(**{"poll_min_s": 0.0, "poll_max_s": 0.0, **opts})  # type: ignore[arg-type]
    executor = Executor(
        plane, writer, options=options, on_event=events.append, sleep=lambda s: time.sleep(min(s, 0.005))
    )
    return executor.run(Plan(changes=tuple(changes))), events


def first(events: list[Event], name: str, kind: EventKind) -> int:
    return next(i for i, e in enumerate(events) if e.name == name and e.kind == kind)


def test_a_dependent_starts_only_after_its_dependency_is_ready():
    plane = FakePlane()
    result, events = run(plane, [create("b", "a"), create("a")])
    assert all(o.ok for o in result.outcomes), result.outcomes
    assert first(events, "a", EventKind.READY) < first(events, "b", EventKind.STARTED)
    # a's job was listed RUNNING and health-checked before b's POST went out
    assert plane.calls.index("create:a") < plane.calls.index("health") < plane.calls.index("create:b")


def test_a_chain_runs_in_order_even_with_many_workers():
    plane = FakePlane()
    result, _ = run(plane, [create("c", "b"), create("b", "a"), create("a")], parallelism=10)
    assert all(o.ok for o in result.outcomes)
    assert [c for c in plane.calls if c.startswith("create:")] == ["create:a", "create:b", "create:c"]


def test_a_failed_dependency_skips_its_dependents_without_a_request():
    plane = FakePlane()
    plane.fail_create.add("a")
    result, events = run(plane, [create("a"), create("b", "a"), create("c", "b"), create("free")])
    by_name = {o.name: o for o in result.outcomes}
    assert not by_name["a"].ok and by_name["free"].ok
    assert by_name["b"].message == SKIPPED and by_name["c"].message == SKIPPED
    assert not by_name["b"].ok and not by_name["b"].pending
    assert not any(c.endswith(":b") or c.endswith(":c") for c in plane.calls)
    assert {"b", "c"}.isdisjoint(result.state.jobs)  # their up-front ID reservations are released
    assert any(e.name == "b" and e.kind == EventKind.FAILED and e.message == SKIPPED for e in events)


def test_a_dependency_outside_the_plan_does_not_block():
    plane = FakePlane()
    result, _ = run(plane, [create("b", "not-in-plan")])
    assert result.outcomes[0].ok


def test_deletes_run_dependents_first():
    """``a`` depends on ``b``: ``a`` is deleted (and gone) before ``b``'s delete starts, whatever the plan order."""
    plane = FakePlane()
    plane.jobs.update({"ja": "JOB_STATE_RUNNING", "jb": "JOB_STATE_RUNNING"})
    rec = {n: JobRecord(job_id=f"j{n}", job_name=f"x/{n}", endpoint="e", spec=SPEC) for n in ("a", "b")}
    changes = [
        Change(name="b", action=Action.DELETE, job_id="jb"),
        Change(name="a", action=Action.DELETE, job_id="ja", depends_on=(Address.job("b"),)),
    ]
    result, events = run(plane, changes, State(resources={Kind.JOB: rec}))
    assert all(o.ok for o in result.outcomes)
    assert first(events, "a", EventKind.DONE) < first(events, "b", EventKind.STARTED)


def test_parallelism_bounds_the_mutating_requests_in_flight():
    plane = FakePlane(call_delay_s=0.02)
    result, _ = run(plane, [create(f"job-{i}") for i in range(12)], parallelism=3)
    assert all(o.ok for o in result.outcomes)
    assert plane.max_in_flight <= 3
    assert plane.max_in_flight >= 2  # they do run concurrently


def test_parallelism_one_means_one_request_at_a_time():
    plane = FakePlane(call_delay_s=0.01)
    result, _ = run(plane, [create(f"job-{i}") for i in range(5)], parallelism=1)
    assert all(o.ok for o in result.outcomes) and plane.max_in_flight == 1


def test_one_poll_round_observes_every_waiting_job():
    plane = FakePlane()
    n = 30
    records = {}
    for i in range(n):
        plane.jobs[f"j{i}"], plane.names[f"j{i}"] = "JOB_STATE_CREATING", f"t{i}"
        records[f"t{i}"] = JobRecord(job_id=f"j{i}", job_name=f"x/j{i}", endpoint="e", spec=SPEC)
    changes = [
        Change(name=f"t{i}", action=Action.WAIT, job_id=f"j{i}", live_state="JOB_STATE_CREATING") for i in range(n)
    ]
    writer = StateWriter(State(resources={Kind.JOB: records}), lambda s: s)
    options = ApplyOptions(poll_min_s=0.05, poll_max_s=0.05)
    result = Executor(plane, writer, options=options, sleep=time.sleep).run(Plan(changes=tuple(changes)))
    assert all(o.ok for o in result.outcomes)
    # every job turns RUNNING at the first LIST: all 30 are ready after a round or two, never 30 rounds
    assert 1 <= plane.calls.count("list") <= 2
    assert plane.calls.count("get") == 0


def test_per_job_gets_when_fewer_than_the_list_pages():
    plane = FakePlane(advance_on_get=True)
    for i in range(3):
        plane.jobs[f"j{i}"], plane.names[f"j{i}"] = "JOB_STATE_CREATING", f"t{i}"
    records = {f"t{i}": JobRecord(job_id=f"j{i}", job_name="x", endpoint="e", spec=SPEC) for i in range(3)}
    changes = [Change(name=f"t{i}", action=Action.WAIT, job_id=f"j{i}") for i in range(3)]
    writer = StateWriter(State(resources={Kind.JOB: records}), lambda s: s)
    executor = Executor(plane, writer, options=ApplyOptions(poll_min_s=0, poll_max_s=0), list_pages=26)
    result = executor.run(Plan(changes=tuple(changes)))
    assert all(o.ok for o in result.outcomes)
    assert "list" not in plane.calls and plane.calls.count("get") % 3 == 0


def test_events_carry_enum_kinds_that_compare_as_strings():
    plane = FakePlane()
    _, events = run(plane, [create("a")])
    assert {e.kind for e in events} >= {EventKind.STARTED, EventKind.READY}
    assert all(isinstance(e.kind, EventKind) for e in events)
    assert events[-1].kind == "ready"
