"""The pure planner core: (desired specs, state, live snapshot) -> Plan.

No I/O, no clock, no randomness: the same inputs always give the same plan, so
the planner is table-tested and property-tested (``tests/plan``). The core is
kind-agnostic: it decides the scope (``--target``, ``--replace``), refuses
options that make no sense and declared names whose live objects state does not
track, asks each resource's kind (``plan.kinds.KINDS``) for its change and
drift, and orders the changes by the dependency graph (``Change.depends_on``).
The per-kind decision tables live in ``plan/kinds/`` (the job's in ``job.py``,
documented in ``docs/planning.md``).

Every problem that makes a plan impossible is collected and raised together as
one ``PlanError``.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Mapping, Sequence, Set
from typing import Any

from rlorinfra.config.model import JobSpec
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.kinds import KINDS, ResourceKind
from rlorinfra.plan.kinds.job import accelerators_for as accelerators_for  # re-exported: older import path
from rlorinfra.plan.model import Action, Change, LiveWorld, Plan, PlanContext
from rlorinfra.plan.problems import PlanProblem, raise_problems
from rlorinfra.state.model import State

Kinds = Mapping[Kind, ResourceKind[Any, Any]]


def make_plan(
    desired: Mapping[str, JobSpec],
    state: State,
    live: LiveWorld,
    *,
    destroy: bool = False,
    targets: Sequence[str] = (),
    replace: Sequence[str] = (),
    refresh_only: bool = False,
    desired_by_kind: Mapping[Kind, Mapping[str, Any]] | None = None,
    kinds: Kinds = KINDS,
) -> Plan:
    """Plan the changes that make ``live`` match ``desired``; see the module doc.

    ``desired`` holds the declared jobs; ``desired_by_kind`` the declared
    resources of other kinds (by kind, then name). ``targets`` and ``replace``
    name resources as ``NAME`` or ``kind.NAME``. ``kinds`` is the registry the
    core dispatches on (tests pass synthetic kinds).

    Raises ``PlanError`` listing every problem at once: a declared resource whose
    live object is not in state (suggesting ``rlorinfra import``), prevent_destroy
    on a delete or replace, an unknown ``--target``/``--replace`` name, a
    dependency cycle.
    """
    declared = _declared(desired, desired_by_kind)
    known = set(declared) | set(state.addresses())
    options = _option_problems(declared, known, state, destroy, targets, replace, refresh_only)
    problems, target_set, replace_set = options
    scope = sorted(a for a in known if not targets or a in target_set)
    drift = tuple(d for a in scope if (rec := state.record(a)) for d in kinds[a.kind].drift(a.name, rec, live))
    changes: list[Change] = []
    if not refresh_only:
        if not destroy:
            problems += _untracked_problems(declared, state, live, scope, kinds)
        context = PlanContext(state=state, declared=declared)
        changes = _plan_changes(declared, state, live, scope, destroy, replace_set, problems, kinds, context)
        changes = _after_dependencies(changes, kinds, context)
        problems += _dangling_dependents(changes, declared, state, destroy, kinds)
    raise_problems(problems)
    return Plan(changes=order_changes(changes), drift=drift, destroy=destroy, refresh_only=refresh_only)


def _declared(desired: Mapping[str, JobSpec], others: Mapping[Kind, Mapping[str, Any]] | None) -> dict[Address, Any]:
    """Every declared resource by address: the jobs, then the other kinds' declarations."""
    declared: dict[Address, Any] = {Address.job(name): spec for name, spec in desired.items()}
    for kind, specs in (others or {}).items():
        declared.update({Address(kind, name): spec for name, spec in specs.items()})
    return declared


def _plan_changes(
    declared: Mapping[Address, Any],
    state: State,
    live: LiveWorld,
    scope: list[Address],
    destroy: bool,
    replace: Set[Address],
    problems: list[PlanProblem],
    kinds: Kinds,
    context: PlanContext,
) -> list[Change]:
    """Each resource's change (plus its leftovers); per-resource problems go to ``problems``."""
    changes = []
    for address in scope:
        kind, spec, record = kinds[address.kind], declared.get(address), state.record(address)
        try:
            if destroy:
                change = kind.plan_destroy(address.name, spec, record, live) if record is not None else None
            else:
                change = kind.plan(address.name, spec, record, live, force_replace=address in replace, context=context)
        except PlanProblem as problem:
            problems.append(problem)
            continue
        if change is not None:
            changes.append(change)
        changes.extend(kind.plan_leftovers(address.name, record, live))
    return changes


def _after_dependencies(changes: list[Change], kinds: Kinds, context: PlanContext) -> list[Change]:
    """Let each change see what the plan does to its dependencies (a deployment re-attaches to a new trainer)."""
    by_address: dict[Address, list[Change]] = {}
    for change in changes:
        by_address.setdefault(change.address, []).append(change)
    out = []
    for change in changes:
        dependencies = [d for address in change.depends_on for d in by_address.get(address, ())]
        out.append(kinds[change.kind].after_dependencies(change, dependencies, context) if dependencies else change)
    return out


def _dangling_dependents(
    changes: Sequence[Change], declared: Mapping[Address, Any], state: State, destroy: bool, kinds: Kinds
) -> list[PlanProblem]:
    """Deleting a resource that another one, kept by this plan, still depends on.

    Kept: declared (outside ``--destroy``) or managed, and not deleted by this
    plan. A deployment re-pointed at another trainer in the file no longer
    depends on the old one, so only its declaration counts when it is declared.
    """
    deleted = {c.address for c in changes if c.action is Action.DELETE and _deletes_the_resource(c, state)}
    if not deleted:
        return []
    problems = []
    for dependent, needs in sorted(_kept_dependencies(changes, declared, state, destroy, kinds).items()):
        for address in sorted(set(needs) & deleted):
            problems.append(
                PlanProblem(
                    f"Cannot delete {address}: {dependent} depends on it",
                    f"{dependent} hot-loads from {address} and is kept by this plan. Delete {dependent} in the "
                    f"same plan (remove its block, or add --target {dependent}), or point it at another "
                    "trainer first.",
                )
            )
    return problems


def _deletes_the_resource(change: Change, state: State) -> bool:
    """A delete of the resource itself (not of a deposed object under its address)."""
    record = state.record(change.address)
    return record is None or change.job_id in (None, record.resource_id)


def _kept_dependencies(
    changes: Sequence[Change], declared: Mapping[Address, Any], state: State, destroy: bool, kinds: Kinds
) -> dict[Address, tuple[Address, ...]]:
    """What each resource that survives this plan depends on afterwards."""
    deleted = {c.address for c in changes if c.action is Action.DELETE}
    kept: dict[Address, tuple[Address, ...]] = {}
    for address in set(declared) | set(state.addresses()):
        if address in deleted:
            continue
        if address in declared and not destroy:
            kept[address] = kinds[address.kind].dependencies(declared[address])
        elif (record := state.record(address)) is not None:
            kept[address] = record.depends_on
    return kept


# --- scope and command-line options ------------------------------------------------


def _option_problems(
    declared: Mapping[Address, Any],
    known: Set[Address],
    state: State,
    destroy: bool,
    targets: Sequence[str],
    replace: Sequence[str],
    refresh_only: bool,
) -> tuple[list[PlanProblem], set[Address], set[Address]]:
    """Unknown ``--target``/``--replace`` names and option combinations that make no sense.

    Also returns the addresses the known targets and replacements resolve to.
    """
    problems: list[PlanProblem] = []
    target_order = _resolve("--target", targets, known, problems)
    replace_order = _resolve("--replace", replace, known, problems)
    if replace and (destroy or refresh_only):
        mode = "--destroy" if destroy else "--refresh-only"
        problems.append(
            PlanProblem(
                f"--replace cannot be combined with {mode}",
                f"{mode} plans no replacements. Run the plan without {mode} to replace "
                + ", ".join(f'"{n}"' for n in _unique(replace))
                + ".",
            )
        )
    for address in replace_order:
        problem = _replace_problem(address, declared, state, set(target_order) if targets else None, destroy)
        if problem is not None:
            problems.append(problem)
    return problems, set(target_order), set(replace_order)


def _resolve(option: str, texts: Sequence[str], known: Set[Address], problems: list[PlanProblem]) -> list[Address]:
    """The known addresses ``NAME``/``kind.NAME`` texts name, in order; unknown ones become problems."""
    resolved: list[Address] = []
    for text in _unique(texts):
        try:
            address = Address.parse(text, known=known)
        except ValueError as exc:
            problems.append(PlanProblem(f'{option} "{text}" is ambiguous', f"{exc}."))
            continue
        if address in known and address not in resolved:
            resolved.append(address)
        else:
            problems.append(_unknown_name(option, text, known))
    return resolved


def _replace_problem(
    address: Address, declared: Mapping[Address, Any], state: State, targets: Set[Address] | None, destroy: bool
) -> PlanProblem | None:
    """A ``--replace NAME`` that cannot take effect (outside the targets, or not declared)."""
    name, noun = address.name, address.kind.value
    if targets is not None and address not in targets:
        return PlanProblem(
            f'--replace "{name}" is outside the --target list',
            f'Only targeted {address.kind.plural} are planned. Add --target "{name}" or drop --replace "{name}".',
        )
    if state.record(address) is not None and address not in declared and not destroy:
        return PlanProblem(
            f'Cannot replace {noun} "{name}": it is not in the configuration',
            f'{noun.capitalize()} "{name}" is managed but no longer declared, so this plan deletes it. '
            f'Declare [{address.kind.plural}.{name}] again to replace it, or drop --replace "{name}".',
        )
    return None


def _unknown_name(option: str, name: str, known: Set[Address]) -> PlanProblem:
    """A ``--target``/``--replace`` name that is neither declared nor managed."""
    spellings = sorted(a.name if a.kind is Kind.JOB else str(a) for a in known)
    close = difflib.get_close_matches(name, spellings, n=1)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    listing = ", ".join(f'"{n}"' for n in spellings) or "none"
    noun = "job" if all(a.kind is Kind.JOB for a in known) else "resource"
    return PlanProblem(
        f'{option} "{name}" names no declared or managed {noun}',
        f"Known {noun}s: {listing}.{hint}",
    )


def _unique(names: Sequence[str]) -> list[str]:
    """The names in order, without repeats."""
    return list(dict.fromkeys(names))


# --- live objects that are not in state ------------------------------------------------


def _untracked_problems(
    declared: Mapping[Address, Any], state: State, live: LiveWorld, scope: list[Address], kinds: Kinds
) -> list[PlanProblem]:
    """Declared addresses (not in state) that already have live objects state does not track."""
    if not live.refreshed:
        return []
    tracked: dict[Kind, set[str]] = {}
    for address in state.addresses():
        record = state.record(address)
        if record is not None:
            tracked.setdefault(address.kind, set()).update(kinds[address.kind].tracked_ids(record))
    problems = []
    for address in scope:
        if address not in declared or state.record(address) is not None:
            continue
        problem = kinds[address.kind].untracked_problem(address.name, live, tracked.get(address.kind, set()))
        if problem is not None:
            problems.append(problem)
    return problems


# --- ordering by the dependency graph ----------------------------------------------------


def order_changes(changes: Sequence[Change]) -> tuple[Change, ...]:
    """The changes in a topological order of their dependency graph.

    A change runs after the changes of every address it ``depends_on``; a
    delete runs before them instead (dependents are deleted first). Among
    changes the graph does not order, the given order stands, so a plan without
    edges keeps its sorted-by-address order. Raises ``PlanError`` on a cycle.
    """
    successors = _dependency_edges(changes)
    indegree = [0] * len(changes)
    for after in successors.values():
        for index in after:
            indegree[index] += 1
    ready = [i for i, degree in enumerate(indegree) if degree == 0]
    heapq.heapify(ready)
    ordered: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        ordered.append(index)
        for successor in sorted(successors.get(index, ())):
            indegree[successor] -= 1
            if indegree[successor] == 0:
                heapq.heappush(ready, successor)
    if len(ordered) < len(changes):
        raise _cycle_error([changes[i] for i, degree in enumerate(indegree) if degree > 0])
    return tuple(changes[i] for i in ordered)


def _dependency_edges(changes: Sequence[Change]) -> dict[int, set[int]]:
    """``{first: {then, ...}}`` between change indexes, from each change's ``depends_on``."""
    by_address: dict[Address, list[int]] = {}
    for index, change in enumerate(changes):
        by_address.setdefault(change.address, []).append(index)
    successors: dict[int, set[int]] = {}
    for index, change in enumerate(changes):
        for dependency in change.depends_on:
            for other in by_address.get(dependency, ()):
                if other == index:
                    continue
                # A dependent is deleted before what it depends on; anything else runs after it.
                first, then = (index, other) if change.action is Action.DELETE else (other, index)
                successors.setdefault(first, set()).add(then)
    return successors


def _cycle_error(stuck: Sequence[Change]) -> PlanError:
    """The error for changes whose dependencies form a cycle."""
    addresses = ", ".join(sorted({str(c.address) for c in stuck}))
    return PlanError(
        f"Cannot order the plan: the dependencies of {addresses} form a cycle",
        "Each of these resources waits, directly or through the others, for itself. "
        "Remove one of the dependencies from the configuration.",
    )
