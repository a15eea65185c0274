"""Changes are ordered by the dependency graph (``Change.depends_on``), whatever their kinds.

Dependencies come first for creates (and every other action), dependents first
for deletes; a cycle is a PlanError. The second half plans through a synthetic
second kind registered beside the job, which is all adding a kind takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import pytest

from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.kinds import KINDS
from rlorinfra.plan.kinds.deployment import DEPLOYMENT_KIND
from rlorinfra.plan.kinds.job import JOB_KIND
from rlorinfra.plan.model import Action, Change, Drift, LiveWorld, PlanContext
from rlorinfra.plan.planner import make_plan, order_changes
from rlorinfra.plan.problems import PlanProblem
from rlorinfra.state.model import JobRecord, State
from tests.plan.planworld import declared, desired, live_job, record, state, world

POLICY = Address.job("policy")


def _addresses(changes: Iterable[Change]) -> list[str]:
    return [str(c.address) for c in changes]


def test_creates_run_after_what_they_depend_on():
    # "a" sorts first, but it depends on "b": b is created first.
    changes = [Change("a", Action.CREATE, depends_on=(Address.job("b"),)), Change("b", Action.CREATE)]
    assert _addresses(order_changes(changes)) == ["job.b", "job.a"]


def test_deletes_run_dependents_first():
    # "b" depends on "a": b goes first, although it sorts last.
    changes = [Change("a", Action.DELETE), Change("b", Action.DELETE, depends_on=(Address.job("a"),))]
    assert _addresses(order_changes(changes)) == ["job.b", "job.a"]


@pytest.mark.parametrize("action", [Action.RESUME, Action.WAIT, Action.REPLACE, Action.NOOP])
def test_other_actions_run_after_their_dependencies(action):
    changes = [Change("a", action, depends_on=(Address.job("b"),)), Change("b", Action.RESUME)]
    assert _addresses(order_changes(changes)) == ["job.b", "job.a"]


def test_without_edges_the_given_order_stands():
    changes = [Change(name, Action.CREATE) for name in ("c", "a", "b")]
    assert _addresses(order_changes(changes)) == ["job.c", "job.a", "job.b"]


def test_a_dependency_outside_the_plan_is_no_edge():
    changes = [Change("a", Action.CREATE, depends_on=(Address.job("elsewhere"),)), Change("b", Action.CREATE)]
    assert _addresses(order_changes(changes)) == ["job.a", "job.b"]


def test_chains_are_ordered_transitively():
    changes = [
        Change("a", Action.CREATE, depends_on=(Address.job("b"),)),
        Change("b", Action.CREATE, depends_on=(Address.job("c"),)),
        Change("c", Action.CREATE),
    ]
    assert _addresses(order_changes(changes)) == ["job.c", "job.b", "job.a"]


def test_a_cycle_is_a_plan_error():
    changes = [
        Change("a", Action.CREATE, depends_on=(Address.job("b"),)),
        Change("b", Action.CREATE, depends_on=(Address.job("a"),)),
        Change("c", Action.CREATE),
    ]
    with pytest.raises(PlanError) as err:
        order_changes(changes)
    assert err.value.summary == "Cannot order the plan: the dependencies of job.a, job.b form a cycle"


# --- through make_plan, with a synthetic second kind ------------------------------------


class FakeServingKind:
    """A toy deployment kind: declared as ``{"trainer": NAME}``, it depends on ``job.NAME``."""

    kind = Kind.DEPLOYMENT
    config_fields = ("trainer",)

    def canonical_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(spec)

    def plan(
        self,
        name: str,
        spec: Mapping[str, Any] | None,
        record: JobRecord | None,
        live: LiveWorld,
        *,
        force_replace: bool,
        context: PlanContext,
    ) -> Change | None:
        if record is None:
            return None if spec is None else self._change(name, Action.CREATE, spec)
        return self._change(name, Action.DELETE if spec is None else Action.NOOP, record.spec)

    def plan_destroy(self, name: str, spec: Mapping[str, Any] | None, record: JobRecord, live: LiveWorld) -> Change:
        return self._change(name, Action.DELETE, record.spec)

    def plan_leftovers(self, name: str, record: JobRecord | None, live: LiveWorld) -> list[Change]:
        return []

    def drift(self, name: str, record: JobRecord, live: LiveWorld) -> list[Drift]:
        return []

    def accelerators(self, spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
        return {}

    def tracked_ids(self, record: JobRecord) -> Iterable[str]:
        return (record.job_id,)

    def untracked_problem(self, name: str, live: LiveWorld, tracked: Set[str]) -> PlanProblem | None:
        return None

    def dependencies(self, spec: Mapping[str, Any]) -> tuple[Address, ...]:
        return (Address.job(spec["trainer"]),)

    def after_dependencies(self, change: Change, dependencies: Sequence[Change], context: PlanContext) -> Change:
        return change

    def _change(self, name: str, action: Action, spec: Mapping[str, Any]) -> Change:
        return Change(name, action, kind=Kind.DEPLOYMENT, depends_on=(Address.job(spec["trainer"]),))


KINDS_WITH_SERVING = {**KINDS, Kind.DEPLOYMENT: FakeServingKind()}


def _with_serving(base: State) -> State:
    return base.with_record(Address(Kind.DEPLOYMENT, "serving"), record({"trainer": "policy"}, "serving-1"))


def test_make_plan_creates_the_trainer_before_the_deployment_on_it():
    plan = make_plan(
        desired(declared("policy")),
        state(),
        world(),
        desired_by_kind={Kind.DEPLOYMENT: {"serving": {"trainer": "policy"}}},
        kinds=KINDS_WITH_SERVING,
    )
    # Sorted by address, deployment.serving would come first.
    assert _addresses(plan.changes) == ["job.policy", "deployment.serving"]
    assert plan.changes[1].depends_on == (POLICY,)


def test_make_plan_deletes_the_deployment_before_its_trainer():
    base = _with_serving(state(policy=record(declared("policy"), "policy-1")))
    plan = make_plan({}, base, world(), kinds=KINDS_WITH_SERVING)
    assert [(str(c.address), c.action) for c in plan.changes] == [
        ("deployment.serving", Action.DELETE),
        ("job.policy", Action.DELETE),
    ]


def test_destroy_goes_through_every_kind_dependents_first():
    base = _with_serving(state(policy=record(declared("policy"), "policy-1")))
    plan = make_plan({}, base, world(), destroy=True, kinds=KINDS_WITH_SERVING)
    assert _addresses(plan.changes) == ["deployment.serving", "job.policy"]


def test_targets_and_replace_take_addresses():
    base = _with_serving(state(policy=record(declared("policy"), "policy-1")))
    spec = {Kind.DEPLOYMENT: {"serving": {"trainer": "policy"}}}
    plan = make_plan(
        desired(declared("policy")),
        base,
        world(live_job("policy-1", "policy")),
        targets=["job.policy"],
        replace=["policy"],
        desired_by_kind=spec,
        kinds=KINDS_WITH_SERVING,
    )
    assert [(str(c.address), c.action) for c in plan.changes] == [("job.policy", Action.REPLACE)]
    plan = make_plan(
        desired(declared("policy")),
        base,
        world(),
        targets=["deployment.serving"],
        desired_by_kind=spec,
        kinds=KINDS_WITH_SERVING,
    )
    assert _addresses(plan.changes) == ["deployment.serving"]


def test_the_default_registry_holds_both_kinds():
    assert KINDS == {Kind.JOB: JOB_KIND, Kind.DEPLOYMENT: DEPLOYMENT_KIND}
