"""The planner's per-kind seam: what a resource kind tells the kind-agnostic planner core.

The core (``plan/planner.py``) owns scope, option problems, untracked-name
problems, ordering by the dependency graph and destroy; everything that depends
on what a resource *is* sits behind ``ResourceKind``: the config fields it
reads, its canonical spec, its decision table (desired × record × live →
``Change``), its drift rules and its accelerators. Adding a kind is one module
beside ``job.py`` plus one entry in ``KINDS`` (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.kinds.deployment import DEPLOYMENT_KIND
from rlorinfra.plan.kinds.job import JOB_KIND
from rlorinfra.plan.model import Change, Drift, LiveWorld, PlanContext
from rlorinfra.plan.problems import PlanProblem

SpecT_contra = TypeVar("SpecT_contra", contravariant=True)
RecordT_contra = TypeVar("RecordT_contra", contravariant=True)


class ResourceKind(Protocol[SpecT_contra, RecordT_contra]):
    """How one kind of resource is planned; every method is pure (no I/O, no clock).

    ``SpecT_contra`` is the kind's declared-config type (``JobSpec`` for jobs),
    ``RecordT_contra`` its state record (``JobRecord``).
    Methods that cannot plan raise ``PlanProblem``; the core collects them.
    """

    @property
    def kind(self) -> Kind:
        """The kind this implementation plans (the address prefix)."""
        ...

    @property
    def config_fields(self) -> tuple[str, ...]:
        """The declared-config fields the planner reads for this kind."""
        ...

    def canonical_spec(self, spec: SpecT_contra) -> dict[str, Any]:
        """The normalized spec recorded in state and compared on every plan."""
        ...

    def dependencies(self, spec: SpecT_contra) -> tuple[Address, ...]:
        """The addresses a declared resource depends on (a deployment: its trainer)."""
        ...

    def plan(
        self,
        name: str,
        spec: SpecT_contra | None,
        record: RecordT_contra | None,
        live: LiveWorld,
        *,
        force_replace: bool,
        context: PlanContext,
    ) -> Change | None:
        """The decision table: one change for a resource in scope (``None``: nothing to say)."""
        ...

    def plan_destroy(self, name: str, spec: SpecT_contra | None, record: RecordT_contra, live: LiveWorld) -> Change:
        """The change ``--destroy`` plans for a managed resource (prevent_destroy applies)."""
        ...

    def plan_leftovers(self, name: str, record: RecordT_contra | None, live: LiveWorld) -> list[Change]:
        """Extra changes for objects a record still owns (deposed replacements), in every mode."""
        ...

    def drift(self, name: str, record: RecordT_contra, live: LiveWorld) -> list[Drift]:
        """What changed outside rlorinfra for one managed resource (nothing without refresh)."""
        ...

    def accelerators(self, spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
        """Accelerators a resource with this spec holds when running: ``{type: count}``."""
        ...

    def tracked_ids(self, record: RecordT_contra) -> Iterable[str]:
        """Every live ID a record accounts for (so none of them counts as untracked)."""
        ...

    def untracked_problem(self, name: str, live: LiveWorld, tracked: Set[str]) -> PlanProblem | None:
        """The problem when a declared name not in state already has live objects state does not track."""
        ...

    def after_dependencies(self, change: Change, dependencies: Sequence[Change], context: PlanContext) -> Change:
        """The change again, knowing what the plan does to its dependencies (a deployment re-attaches)."""
        ...


# The registry the planner core dispatches on: one entry per kind.
KINDS: Mapping[Kind, ResourceKind[Any, Any]] = MappingProxyType({Kind.JOB: JOB_KIND, Kind.DEPLOYMENT: DEPLOYMENT_KIND})
