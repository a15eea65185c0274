"""Property: trainers and the deployments hot-loading them, planned, applied in plan order, planned again.

Random mixes of trainers and deployments (each declared deployment hot-loads one
of the declared trainers) over random state and live situations. The plan is
applied by a small simulation that does what apply does, reading state *at step
time* (a deployment is linked to its trainer's job ID as state holds it when the
deployment's step runs), so a deployment planned before its trainer's new job
shows up as a re-attach on the next plan. Checked: every change comes after the
changes of what it depends on (deletes: before), the summary's accelerator
change is what the resources hold afterwards minus before, and re-planning
after the simulated apply has nothing left to do.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlorinfra.config.model import DeploymentSpec
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import (
    DeploymentState,
    HotLoadTransition,
    LiveDeployment,
    deployment_name,
    trainer_link,
)
from rlorinfra.plan.document import total_accelerators
from rlorinfra.plan.kinds.deployment import per_replica
from rlorinfra.plan.model import Action, Change, LiveWorld, Plan
from rlorinfra.plan.planner import make_plan
from rlorinfra.state.model import PHASES, DeploymentRecord, State
from tests.plan.planworld import (
    A100,
    ALL_STATES,
    DSHAPE,
    SHAPE_BIG,
    declared,
    dep_record,
    deployment,
    deployments,
    live_deployment,
    live_job,
    record,
    state,
    world,
)
from tests.plan.test_planner_property import Simulator, delta, held

TRAINERS = ("alpha", "beta", "gamma")
DEPLOYMENT_IDS = ("d1", "d2", "d3")
TRAINER_VARIANTS = ({}, {"lora_rank": 16}, {"training_shape": SHAPE_BIG})  # all shaped: deployments may default
# Deployment fields beside hot_load_trainer: trainer-derived shape, manual path, a declared shape.
DEPLOYMENT_VARIANTS = (
    {},
    {"min_replica_count": 1, "max_replica_count": 3},
    {"accelerator_type": A100, "accept_shapeless_risk": True, "min_replica_count": 2, "max_replica_count": 2},
    {"deployment_shape": f"{DSHAPE}/versions/5", "region": "US_IOWA_1"},
    {"description": "rollouts", "hot_load_transition": HotLoadTransition.SYNC},
)
DEPLOYMENT_STATES = [*DeploymentState, None]  # None: 404
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _deployment(draw, deployment_id: str, trainers) -> DeploymentSpec:
    """A deployment hot-loading one of ``trainers``, in one of the variants."""
    fields = DEPLOYMENT_VARIANTS[draw(st.integers(0, len(DEPLOYMENT_VARIANTS) - 1))]
    return deployment(deployment_id, hot_load_trainer=draw(st.sampled_from(sorted(trainers))), **fields)


def _mostly(draw, usual, others):
    """``usual`` two times in three, else one of ``others``."""
    return usual if draw(st.integers(0, 2)) < 2 else draw(st.sampled_from(others))  # 0 is hypothesis's favourite


@st.composite
def environments(draw):
    """Random (desired jobs, desired deployments, state, live); no untracked live object under a declared name.

    Mostly managed and matching (so re-attaches, updates and waits are planned,
    not only creates), with trainers replaced or gone, deployments scaled,
    linked elsewhere, failed, deleted or still creating.
    """
    jobs = {
        name: declared(name, **TRAINER_VARIANTS[draw(st.integers(0, len(TRAINER_VARIANTS) - 1))])
        for name in draw(st.sets(st.sampled_from(TRAINERS)))
    }
    deps = {}
    if jobs:
        deps = {d: _deployment(draw, d, jobs) for d in draw(st.sets(st.sampled_from(DEPLOYMENT_IDS)))}
    job_records, live_jobs, missing = {}, [], []
    for i, name in enumerate(sorted(set(jobs) | draw(st.sets(st.sampled_from(TRAINERS))))):
        if name in jobs and draw(st.integers(0, 4)) == 4:
            continue  # declared, not yet created
        job_id = f"{name}-{i}"
        spec = jobs.get(name) or declared(name, **TRAINER_VARIANTS[i % 3])
        if draw(st.integers(0, 2)) == 2:  # the file changed since: the trainer is replaced
            spec = dataclasses.replace(spec, lora_rank=8)
        observed = _mostly(draw, "JOB_STATE_RUNNING", [None, *ALL_STATES])
        job_records[name] = record(spec, job_id, phase=_mostly(draw, "ready", PHASES), observed=observed)
        job_state = _mostly(draw, "JOB_STATE_RUNNING", [None, *ALL_STATES])
        if job_state is None:
            missing.append(job_id)
        else:
            live_jobs.append(live_job(job_id, name, job_state, spec=spec.spec(), healthy=True))
    dep_records, live_deps, missing_deps = [], [], []
    for deployment_id in sorted(set(deps) | draw(st.sets(st.sampled_from(DEPLOYMENT_IDS)))):
        if deployment_id in deps and draw(st.integers(0, 4)) == 4:
            continue  # declared, not yet created
        spec = deps.get(deployment_id)
        if spec is None or draw(st.integers(0, 3)) == 3:
            spec = _deployment(draw, deployment_id, job_records or TRAINERS)
        trainer = spec.hot_load_trainer
        current = job_records[trainer].job_id if trainer in job_records else None
        linked = _mostly(draw, current, ["elsewhere-1"]) or "elsewhere-1"
        observed = _mostly(draw, "READY", [None, *(s.value for s in DeploymentState)])
        rec = dep_record(spec, trainer_job=linked, phase=_mostly(draw, "ready", PHASES), observed=observed)
        dep_records.append(rec)
        live_state = _mostly(draw, DeploymentState.READY, DEPLOYMENT_STATES)
        if live_state is None:
            missing_deps.append(deployment_id)
            continue
        fields = dict(rec.spec)
        if draw(st.integers(0, 3)) == 3:  # scaled outside rlorinfra
            fields.update(min_replica_count=draw(st.integers(0, 3)), max_replica_count=3)
        link_to = _mostly(draw, linked, ["other-9"])
        live_deps.append(live_deployment(deployment_id, live_state, spec=fields, trainer_job=link_to))
    st_ = state(*dep_records, **job_records)
    live = world(
        *live_jobs, missing=tuple(missing), deployments=tuple(live_deps), missing_deployments=tuple(missing_deps)
    )
    return jobs, deps, st_, live


class WorldSimulator(Simulator):
    """The job simulator, plus deployments: each change applied to (state, live) as apply would."""

    def __init__(self, desired, st_: State, live: LiveWorld) -> None:
        super().__init__(desired, st_, live)
        self.deps: dict[str, LiveDeployment] = dict(live.deployments)
        self.dep_records: dict[str, DeploymentRecord] = dict(st_.deployments)

    def apply(self, plan: Plan) -> tuple[State, LiveWorld]:
        for change in plan.changes:
            if change.kind is Kind.DEPLOYMENT:
                getattr(self, f"_deployment_{change.action.value}")(change)
            else:
                getattr(self, f"_{change.action.value}")(change)
        self._refresh_records()
        for name, rec in self.dep_records.items():
            found = self.deps.get(rec.deployment_id)
            if found is not None:
                self.dep_records[name] = dataclasses.replace(rec, observed_state=found.state.value)
        jobs = {**self.records}
        resources = {Kind.JOB: jobs, Kind.DEPLOYMENT: dict(self.dep_records)}
        live = LiveWorld(
            self.live.account_id,
            jobs=self.jobs,
            shapes=self.live.shapes,
            missing=frozenset(r.job_id for r in jobs.values() if r.job_id not in self.jobs),
            deployments=self.deps,
            missing_deployments=frozenset(d for d in self.dep_records if d not in self.deps),
        )
        return dataclasses.replace(self.state, resources=resources), live

    def _link(self, change: Change) -> str:
        """The link apply sends: the trainer's job ID as state holds it now (its change ran first)."""
        trainer = (change.after or {}).get("hot_load_trainer")
        if trainer is None:
            return ""
        rec = self.records.get(trainer)
        assert rec is not None, f"{change.address} runs before its trainer job.{trainer} exists"
        return trainer_link(self.live.account_id, rec.job_id)

    def _serve(self, change: Change) -> None:
        """The deployment READY with ``change.after`` and the current link, recorded as apply records it."""
        after, link = dict(change.after or {}), self._link(change)
        job_id = link.rsplit("/", 1)[-1] if link else None
        found = live_deployment(change.name, DeploymentState.READY, spec=after, trainer_job=job_id)
        self.deps[change.name] = found
        self.dep_records[change.name] = DeploymentRecord(
            deployment_id=change.name,
            deployment_name=deployment_name(self.live.account_id, change.name),
            spec=after,
            phase="ready",
            observed_state="READY",
            hot_load_trainer_job=link or None,
            depends_on=change.depends_on,
        )

    def _deployment_create(self, change: Change) -> None:
        found = self.deps.get(change.name)
        assert found is None or found.is_gone, f"create over a live {change.address} ({found.state})"
        self._serve(change)

    def _deployment_update(self, change: Change) -> None:
        assert change.name in self.deps, f"update of a missing {change.address}"
        self._serve(change)

    def _deployment_wait(self, change: Change) -> None:
        self.deps[change.name] = dataclasses.replace(self.deps[change.name], state=DeploymentState.READY)
        self.dep_records[change.name] = dataclasses.replace(self.dep_records[change.name], phase="ready")

    def _deployment_replace(self, change: Change) -> None:
        self.deps.pop(change.name, None)  # deleted, waited gone (404)
        self._serve(change)

    def _deployment_delete(self, change: Change) -> None:
        if change.name in self.deps:
            self.deps[change.name] = dataclasses.replace(self.deps[change.name], state=DeploymentState.DELETED)
        del self.dep_records[change.name]

    def _deployment_noop(self, change: Change) -> None:
        pass


def held_all(st_: State, live: LiveWorld) -> dict[str, int]:
    """What the managed trainers hold, plus each live, not FAILED deployment's floor (live min replicas)."""
    total = held(st_, live)
    for rec in st_.deployments.values():
        found = live.deployments.get(rec.deployment_id)
        if found is None or found.is_gone or found.is_failed:
            continue
        for kind, count in per_replica(rec.spec, live.shapes).items():
            total[kind] = total.get(kind, 0) + count * (found.min_replica_count or 0)
    return total


def assert_dependency_order(plan: Plan) -> None:
    """Every change after the changes of what it depends on; a delete before them."""
    position: dict[Address, list[int]] = {}
    for index, change in enumerate(plan.changes):
        position.setdefault(change.address, []).append(index)
    for index, change in enumerate(plan.changes):
        for dependency in change.depends_on:
            for other in position.get(dependency, ()):
                if change.action is Action.DELETE:
                    assert index < other, f"{change.address} delete after {plan.changes[other].address}"
                else:
                    assert other < index, f"{change.address} {change.action} before {dependency}"


@PROPERTY
@given(environments(), st.sampled_from(["plan", "plan", "destroy"]))
def test_replanning_after_a_simulated_apply_has_no_changes(env, mode):
    jobs, deps, st_, live = env
    kwargs = {"destroy": mode == "destroy", "desired_by_kind": deployments(*deps.values())}
    plan = make_plan(jobs, st_, live, **kwargs)
    assert_dependency_order(plan)
    new_state, new_live = WorldSimulator(jobs, st_, live).apply(plan)
    # The summary's accelerator line is what the managed resources hold afterwards, minus before.
    assert total_accelerators(plan.changes) == delta(held_all(new_state, new_live), held_all(st_, live))

    again = make_plan(jobs, new_state, new_live, **kwargs)
    assert not again.has_changes, [(str(c.address), c.action, c.reason, c.changed_fields) for c in again.actionable]
    assert_dependency_order(again)
    if mode == "destroy":
        assert new_state.addresses() == []
    for rec in new_state.deployments.values():  # every kept deployment hot-loads its trainer's current job
        trainer = new_state.job(rec.spec["hot_load_trainer"])
        assert trainer is not None and rec.hot_load_trainer_job == trainer_link(live.account_id, trainer.job_id)
        assert new_live.deployments[rec.deployment_id].hot_load_trainer_job == rec.hot_load_trainer_job
        assert rec.depends_on == (Address.job(rec.spec["hot_load_trainer"]),)
