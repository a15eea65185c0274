"""Property: applying a plan, then planning again, yields no changes.

Twice: in a simulated world, and through the real scheduler against a fake
control plane (``apply_for_real``), where the generated scenarios also hold
replaces with create_before_destroy, deposed jobs and prevent_destroy.

The simulator is a small pure model of apply against the control plane:
create -> a new RUNNING job (with the recorded ID when the plan carries one,
else a fresh ID), resume/wait -> RUNNING, stop -> CANCELLED, delete ->
tombstone, replace -> tombstone + create; state is updated as apply does (the
job's ID, spec, phase and the observed state refresh saw).
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlorinfra.apply import ApplyOptions, ApplyResult, Executor, StateWriter
from rlorinfra.errors import PlanError
from rlorinfra.model.jobs import LiveJob
from rlorinfra.model.states import DELETING_STATES, RELEASED_STATES, TRANSITIONAL_STATES
from rlorinfra.operations.applying import forget_gone_deposed, record_lifecycle, sync_observed
from rlorinfra.plan.document import total_accelerators
from rlorinfra.plan.model import Action, LiveWorld, Plan
from rlorinfra.plan.planner import accelerators_for, make_plan
from rlorinfra.state.model import PHASES, State
from tests.apply.fakes import FakePlane
from tests.plan.planworld import (
    A100,
    ALL_STATES,
    SHAPE_BIG,
    SHAPES,
    declared,
    live_job,
    record,
    state,
    world,
)

NAMES = ("alpha", "beta", "gamma", "delta")
VARIANTS = (
    {},
    {"lora_rank": 16},
    {"training_shape": SHAPE_BIG},
    {"accelerator_type": A100, "accelerator_count": 4, "training_shape": None},
    {"learning_rate": 3e-5, "extra_args": ("--foo", "--bar")},
)

variant = st.sampled_from(range(len(VARIANTS)))


@st.composite
def worlds(draw, lifecycle: bool = False):
    """Random (desired, state, live) with no untracked jobs under declared names.

    ``lifecycle`` adds ``prevent_destroy`` to declared jobs and deposed jobs
    (replaced by create_before_destroy, not yet deleted) to records.
    """
    desired = {}
    for name in draw(st.sets(st.sampled_from(NAMES))):
        desired[name] = declared(
            name,
            **VARIANTS[draw(variant)],
            desired_state=draw(st.sampled_from(["running", "stopped"])),
            create_before_destroy=draw(st.booleans()),
            prevent_destroy=lifecycle and draw(st.booleans()),
        )
    records, jobs, missing = {}, [], []
    tracked = draw(st.sets(st.sampled_from(NAMES)))
    if lifecycle and desired:  # mostly declared and tracked: replaces, stops and resumes, not only creates
        tracked |= draw(st.sets(st.sampled_from(sorted(desired))))
    for i, name in enumerate(sorted(tracked)):
        job_id = f"{name}-{i}"
        spec = declared(name, **VARIANTS[draw(variant)])
        records[name] = record(
            spec, job_id, phase=draw(st.sampled_from(PHASES)), observed=draw(st.sampled_from([None, *ALL_STATES]))
        )
        if draw(st.integers(0, 3)) if lifecycle else draw(st.booleans()):
            live_spec = spec.spec() if draw(st.booleans()) else declared(name, **VARIANTS[draw(variant)]).spec()
            jobs.append(live_job(job_id, name, draw(st.sampled_from(ALL_STATES)), spec=live_spec))
        else:
            missing.append(job_id)
        deposed = tuple(f"{job_id}-deposed-{k}" for k in range(draw(st.integers(0, 2)) if lifecycle else 0))
        records[name] = dataclasses.replace(records[name], deposed_job_ids=deposed)
        for old_id in deposed:
            if draw(st.booleans()):
                jobs.append(live_job(old_id, name, draw(st.sampled_from(ALL_STATES)), spec=spec.spec()))
            else:
                missing.append(old_id)
    jobs.append(live_job("other-1", "not-ours", draw(st.sampled_from(ALL_STATES))))
    return desired, state(**records), world(*jobs, missing=tuple(missing))


class Simulator:
    """Apply a plan to (state, live) the way apply and the control plane would."""

    def __init__(self, desired, st_: State, live: LiveWorld) -> None:
        self.desired, self.state, self.live = desired, st_, live
        self.jobs: dict[str, LiveJob] = dict(live.jobs)
        self.records = dict(st_.jobs)
        self.ids = (f"new-{n}" for n in itertools.count())

    def apply(self, plan: Plan) -> tuple[State, LiveWorld]:
        for change in plan.changes:
            getattr(self, f"_{change.action.value}")(change)
        self._refresh_records()
        live = LiveWorld(
            self.live.account_id,
            jobs=self.jobs,
            shapes=self.live.shapes,
            missing=frozenset(r.job_id for r in self.records.values() if r.job_id not in self.jobs),
        )
        return self.state.with_jobs(self.records), live

    def _set_state(self, job_id: str, new_state: str) -> None:
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], state=new_state)

    def _create(self, change) -> None:
        if change.job_id is not None:
            # Retrying an interrupted create: the ID must never already exist.
            assert change.job_id not in self.jobs, f"second job created with ID {change.job_id}"
        job_id = change.job_id or next(self.ids)
        self.jobs[job_id] = live_job(job_id, change.name, spec=change.after)
        self.records[change.name] = record(change.after, job_id)

    def _resume(self, change) -> None:
        self._wait(change)

    def _wait(self, change) -> None:
        self._set_state(change.job_id, "JOB_STATE_RUNNING")
        self.records[change.name] = dataclasses.replace(self.records[change.name], phase="ready")

    def _stop(self, change) -> None:
        self._set_state(change.job_id, "JOB_STATE_CANCELLED")
        self.records[change.name] = dataclasses.replace(self.records[change.name], phase="stopped")

    def _delete(self, change) -> None:
        if change.job_id in self.jobs:
            self._set_state(change.job_id, "JOB_STATE_DELETED")
        del self.records[change.name]

    def _replace(self, change) -> None:
        self._delete(change)
        self._create(dataclasses.replace(change, job_id=None))

    def _noop(self, change) -> None:
        pass

    def _refresh_records(self) -> None:
        """Apply records what refresh saw for every job it still manages."""
        for name, rec in self.records.items():
            job = self.jobs.get(rec.job_id)
            if job is not None:
                self.records[name] = dataclasses.replace(rec, observed_state=job.state)


def held(st_: State, live: LiveWorld) -> dict[str, int]:
    """Accelerators the managed jobs hold (not stopped, dead or gone)."""
    total: dict[str, int] = {}
    for rec in st_.jobs.values():
        job = live.jobs.get(rec.job_id)
        if job is None or job.state in RELEASED_STATES:
            continue
        for kind, count in accelerators_for(rec.spec, SHAPES).items():
            total[kind] = total.get(kind, 0) + count
    return total


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    return {k: v for k, v in out.items() if v}


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(worlds(), st.sampled_from(["plan", "destroy", "targets"]), st.sets(st.sampled_from(NAMES), min_size=1))
def test_replanning_after_apply_has_no_changes(world_, mode, target_pool):
    desired, st_, live = world_
    kwargs = {"destroy": mode == "destroy"}
    if mode == "targets":
        known = set(desired) | set(st_.jobs)
        kwargs["targets"] = sorted(target_pool & known) or sorted(known)[:1]
    plan = make_plan(desired, st_, live, **kwargs)
    new_state, new_live = Simulator(desired, st_, live).apply(plan)

    if kwargs.get("targets"):  # a forgotten job is no longer a valid --target
        kwargs["targets"] = [t for t in kwargs["targets"] if t in desired or t in new_state.jobs]
        if not kwargs["targets"]:
            return  # every target was deleted and forgotten: nothing left to plan
    again = make_plan(desired, new_state, new_live, **kwargs)
    assert not again.has_changes, [c for c in again.actionable]
    # State and live now agree; only live spec fields that never matched the
    # record (drift that cannot be fixed without a replacement) may remain.
    assert {d.kind for d in again.drift} <= {"changed"}
    if mode == "destroy":
        assert new_state.jobs == {}


@PROPERTY
@given(worlds())
def test_summary_accelerators_match_the_simulated_change(world_):
    desired, st_, live = world_
    plan = make_plan(desired, st_, live)
    new_state, new_live = Simulator(desired, st_, live).apply(plan)
    assert total_accelerators(plan.changes) == delta(held(new_state, new_live), held(st_, live))


@PROPERTY
@given(worlds())
def test_planning_is_deterministic(world_):
    desired, st_, live = world_
    assert make_plan(desired, st_, live) == make_plan(desired, st_, live)
    assert [c.name for c in make_plan(desired, st_, live).changes] == sorted(set(desired) | set(st_.jobs))


# -- the same property against the real scheduler and a fake control plane ------------------


class SettlingPlane(FakePlane):
    """The fake control plane, where every transitional state settles at the next read."""

    def _advance(self, job_id: str) -> None:
        current = self.jobs[job_id]
        if current in DELETING_STATES:
            self.jobs[job_id] = "JOB_STATE_DELETED"
        elif current == "JOB_STATE_CANCELLING":
            self.jobs[job_id] = "JOB_STATE_CANCELLED"
        elif current in TRANSITIONAL_STATES:
            self.jobs[job_id] = "JOB_STATE_RUNNING"


def apply_for_real(st_: State, live: LiveWorld, plan: Plan) -> tuple[State, LiveWorld, ApplyResult]:
    """Run ``plan`` through the real scheduler against a fake control plane seeded with ``live``.

    Returns the state apply wrote, the world a refresh would see afterwards
    (tracked tombstones included, RUNNING trainers health-checked), and the result.
    """
    plane = SettlingPlane()
    for job in live.jobs.values():
        plane.add(job)
    # What `apply` does to state before the scheduler runs (rlorinfra.operations.execute).
    before = record_lifecycle(forget_gone_deposed(sync_observed(st_, plan), live), plan, datetime.now(UTC))
    writer = StateWriter(before, lambda s: s)
    ticks = itertools.count()
    executor = Executor(
        plane,
        writer,
        options=ApplyOptions(poll_min_s=0, poll_max_s=0, timeout_s=1000),
        clock=lambda: float(next(ticks)),  # a wait that never ends times out fast instead of hanging
        sleep=lambda s: None,
        shape_versions={shape: v.name for shape, v in live.shapes.items()},
    )
    result = executor.run(plan)
    seen = {
        job_id: dataclasses.replace(
            plane.live(job_id), healthy=True if plane.jobs[job_id] == "JOB_STATE_RUNNING" else None
        )
        for job_id in plane.jobs
    }
    tracked = {j for r in writer.state.jobs.values() for j in (r.job_id, *r.deposed_job_ids)}
    new_live = LiveWorld(live.account_id, jobs=seen, shapes=live.shapes, missing=frozenset(tracked - set(seen)))
    return writer.state, new_live, result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    worlds(lifecycle=True), st.sampled_from(["plan", "destroy", "targets"]), st.sets(st.sampled_from(NAMES), min_size=1)
)
def test_replanning_after_a_real_apply_has_no_changes(world_, mode, target_pool):
    desired, st_, live = world_
    kwargs = {"destroy": mode == "destroy"}
    if mode == "targets":
        known = set(desired) | set(st_.jobs)
        kwargs["targets"] = sorted(target_pool & known) or sorted(known)[:1]
    try:
        plan = make_plan(desired, st_, live, **kwargs)
    except PlanError as exc:  # protection refuses the plan before any change
        assert "prevent_destroy" in str(exc) and any(s.prevent_destroy for s in desired.values())
        return
    new_state, new_live, result = apply_for_real(st_, live, plan)
    assert not result.failed, result.failed
    created = [c for c in plan.changes if c.action is Action.CREATE and c.job_id]
    assert all(c.job_id not in live.jobs for c in created)  # a create under a recorded ID never duplicates

    if kwargs.get("targets"):  # a forgotten job is no longer a valid --target
        kwargs["targets"] = [t for t in kwargs["targets"] if t in desired or t in new_state.jobs]
        if not kwargs["targets"]:
            return
    again = make_plan(desired, new_state, new_live, **kwargs)
    assert not again.has_changes, [c for c in again.actionable]
    if mode == "destroy":
        assert new_state.jobs == {}
    for rec in new_state.jobs.values():  # every job state tracks is live (no deposed job left behind untracked)
        assert rec.job_id in new_live.jobs or rec.phase == "creating" or rec.job_id in new_live.missing
