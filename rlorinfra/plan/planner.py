"""The pure planner core: (desired specs, state, live snapshot) -> Plan.

No I/O, no clock of its own (``now`` is an argument), no randomness: the same inputs always give the same plan, so
the planner is table-tested and property-tested (``tests/plan``). The core is
kind-agnostic: it decides the scope (``--target``, ``--replace``), refuses
options that make no sense and declared names whose live objects state does not
track, asks each resource's kind (``plan.kinds.KINDS``) for its change and
drift, and orders the changes by the dependency graph (``Change.depends_on``).
The per-kind decision tables live in ``plan/kinds/`` (the job's in ``job.py``,
documented in ``docs/planning.md``).

Lifetime and protection (DESIGN.md §4, §7) are kind-agnostic and live here
too: a record whose ``expires_at`` has passed plans as a delete (its dependents
first), a declared resource's ``prevent_destroy`` and ``ttl`` become the
``Lifecycle`` its record must hold (a state-only update when only that
differs), and deleting or replacing a protected resource is a plan problem.

Every problem that makes a plan impossible is collected and raised together as
one ``PlanError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import heapq
from collections.abc import Mapping, Sequence, Set
from datetime import UTC, datetime, timedelta
from typing import Any

from rlorinfra.config.model import JobSpec
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState
from rlorinfra.model.states import GONE_STATES
from rlorinfra.model.times import expiry, human_delta, parse_rfc3339
from rlorinfra.plan.kinds import KINDS, ResourceKind
from rlorinfra.plan.kinds.job import accelerators_for as accelerators_for  # re-exported: older import path
from rlorinfra.plan.model import Action, Change, Lifecycle, LiveWorld, Plan, PlanContext
from rlorinfra.plan.problems import PlanProblem, ProtectedProblem, raise_problems
from rlorinfra.state.model import Record, State

Kinds = Mapping[Kind, ResourceKind[Any, Any]]

# The clock of a caller that passes none: before every expiry, so nothing expires.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A ttl ending within this long is noted beside the plan.
EXPIRY_WARNING = timedelta(hours=1)
# Live states of either kind in which a resource is gone: deleting its record only forgets it.
_GONE_LIVE = frozenset(GONE_STATES) | {DeploymentState.DELETING.value, DeploymentState.DELETED.value}
# Actions that keep the resource's record (its lifecycle fields can be updated in place).
_KEEPS_RECORD = frozenset({Action.NOOP, Action.WAIT, Action.RESUME, Action.STOP, Action.UPDATE})


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
    now: datetime | None = None,
    exclude_protected: bool = False,
) -> Plan:
    """Plan the changes that make ``live`` match ``desired``; see the module doc.

    ``desired`` holds the declared jobs; ``desired_by_kind`` the declared
    resources of other kinds (by kind, then name). ``targets`` and ``replace``
    name resources as ``NAME`` or ``kind.NAME``. ``kinds`` is the registry the
    core dispatches on (tests pass synthetic kinds). ``now`` is the clock ttl
    expiry is judged against (default: the epoch, so nothing expires).
    ``exclude_protected`` (with ``destroy``) leaves protected resources out,
    with a note; without ``destroy`` (``watch``) a protected resource this
    plan would delete or replace is left unchanged instead of failing the
    plan (with whatever would go with it: its expired dependents), named in
    ``Plan.held`` and a note, and the rest is planned as usual.

    Raises ``PlanError`` listing every problem at once: a declared resource whose
    live object is not in state (suggesting ``rlorinfra import``), a delete or
    replace of a protected resource (``prevent_destroy``, or ``protected`` in
    state when the block is gone), an unknown ``--target``/``--replace`` name, a
    dependency cycle.
    """
    clock = now or EPOCH
    declared = _declared(desired, desired_by_kind)
    known = set(declared) | set(state.addresses())
    options = _option_problems(declared, known, state, destroy, targets, replace, refresh_only)
    problems, target_set, replace_set = options
    scope = sorted(a for a in known if not targets or a in target_set)
    notes: list[str] = []
    if destroy and exclude_protected:
        scope, notes = _without_protected(scope, declared, state)
    drift = tuple(d for a in scope if (rec := state.record(a)) for d in kinds[a.kind].drift(a.name, rec, live))
    changes: list[Change] = []
    held: dict[Address, str] = {}
    if not refresh_only:
        if not destroy:
            problems += _untracked_problems(declared, state, live, scope, kinds)
        run = _Run(declared, state, live, kinds, PlanContext(state=state, declared=declared, now=clock), destroy)
        changes, found, held, planned, expired = _plan_holding(run, scope, replace_set, exclude_protected)
        problems += found
        notes += _expiry_notes(planned, declared, state, clock, expired)
        notes += [f"{why}: left unchanged (protected); `rlorinfra plan` shows the ways out." for why in held.values()]
    raise_problems(problems)
    return Plan(
        changes=order_changes(changes),
        drift=drift,
        destroy=destroy,
        refresh_only=refresh_only,
        notes=tuple(notes),
        held=tuple(held.items()),
    )


@dataclasses.dataclass(frozen=True)
class _Run:
    """The inputs every pass over the scope shares."""

    declared: Mapping[Address, Any]
    state: State
    live: LiveWorld
    kinds: Kinds
    context: PlanContext
    destroy: bool


def _plan_holding(
    run: _Run, scope: list[Address], replace: Set[Address], exclude_protected: bool
) -> tuple[list[Change], list[PlanProblem], dict[Address, str], list[Address], set[Address]]:
    """Plan ``scope``; for ``watch`` (``exclude_protected`` without destroy) hold protected resources out.

    Returns the changes, the problems, the held addresses (with why), the
    addresses finally planned and the expired ones among them.
    """
    hold = exclude_protected and not run.destroy
    held: dict[Address, str] = {}
    planned = scope
    while True:
        changes, found, expired = _plan_once(run, planned, replace)
        refused = {p.address: p.summary for p in found if isinstance(p, ProtectedProblem) and p.address}
        if not (hold and refused):
            return changes, found, held, planned, expired
        # Hold the protected resources (and what would go with them: expired dependents) out, plan the rest.
        held.update(refused)
        planned = [a for a in planned if a not in held]


def _plan_once(
    run: _Run, planned: list[Address], replace: Set[Address]
) -> tuple[list[Change], list[PlanProblem], set[Address]]:
    """One pass: each resource's change, the dependency pass, lifecycle, and the cross-resource problems."""
    clock = run.context.now
    expired = {} if run.destroy else _expired(planned, run.declared, run.state, clock, run.kinds)
    found: list[PlanProblem] = []
    changes = _plan_changes(
        run.declared, run.state, run.live, planned, run.destroy, replace, found, run.kinds, run.context, expired
    )
    changes = _after_dependencies(changes, run.kinds, run.context)
    if not run.destroy:
        changes = [_with_lifecycle(c, run.declared.get(c.address), run.state.record(c.address), clock) for c in changes]
    found += _dangling_dependents(changes, run.declared, run.state, run.destroy, run.kinds)
    found += _protection_problems(changes, run.declared, run.state, run.destroy)
    return changes, found, set(expired)


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
    expired: Mapping[Address, str],
) -> list[Change]:
    """Each resource's change (plus its leftovers); per-resource problems go to ``problems``.

    An address in ``expired`` is planned as if its block were gone (a delete,
    or nothing when it has no record), with the expiry as its reason.
    """
    changes = []
    for address in scope:
        kind, spec, record = kinds[address.kind], declared.get(address), state.record(address)
        try:
            if destroy:
                change = kind.plan_destroy(address.name, spec, record, live) if record is not None else None
            elif address in expired:
                change = _expired_change(kind, address, record, live, context, expired[address])
            else:
                change = kind.plan(address.name, spec, record, live, force_replace=address in replace, context=context)
        except PlanProblem as problem:
            problem.address = problem.address or address
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


# --- lifetime (ttl) and protection ------------------------------------------------------


def _expires_at(record: Record | None) -> datetime | None:
    """When the record's ttl ends (None: no ttl, or an unreadable time)."""
    return parse_rfc3339(record.expires_at) if record is not None and record.expires_at else None


def _expired(
    scope: Sequence[Address], declared: Mapping[Address, Any], state: State, now: datetime, kinds: Kinds
) -> dict[Address, str]:
    """Addresses deleted for a ttl, with the reason: expired records, then what depends on them.

    A dependent is whatever in scope names an expired address among its
    dependencies (its declaration's, else its record's): it cannot outlive
    its trainer, so it is deleted first.
    """
    expired: dict[Address, str] = {}
    for address in scope:
        ends = _expires_at(state.record(address))
        if ends is not None and ends <= now:
            expired[address] = f"ttl expired {human_delta((now - ends).total_seconds())} ago"
    grew = True
    while grew:  # dependents of dependents too (a chain of any length)
        grew = False
        for address in scope:
            if address in expired:
                continue
            needs = _needs(address, declared, state, kinds)
            gone = next((d for d in needs if d in expired), None)
            if gone is not None:
                expired[address] = f"depends on {gone}, whose ttl expired"
                grew = True
    return expired


def _needs(address: Address, declared: Mapping[Address, Any], state: State, kinds: Kinds) -> tuple[Address, ...]:
    """What a resource depends on: its declaration's dependencies, else its record's."""
    if address in declared:
        return kinds[address.kind].dependencies(declared[address])
    record = state.record(address)
    return record.depends_on if record is not None else ()


def _expired_change(
    kind: ResourceKind[Any, Any],
    address: Address,
    record: Record | None,
    live: LiveWorld,
    context: PlanContext,
    reason: str,
) -> Change | None:
    """The delete of an expired resource (or of a dependent); nothing to do without a record.

    Planned as if its block were removed, so the kind's own delete rules hold
    (one already gone is forgotten). The same plan never creates it again.
    """
    if record is None:
        return None
    change = kind.plan(address.name, None, record, live, force_replace=False, context=context)
    if change is None:
        return None
    gone = change.live_state is None or change.live_state in _GONE_LIVE
    return dataclasses.replace(change, reason=f"{reason}; {change.reason}" if gone and change.reason else reason)


def _with_lifecycle(change: Change, spec: Any, record: Record | None, now: datetime) -> Change:
    """A declared resource's change, carrying the lifecycle its record must hold (and any state-only update)."""
    if spec is None or change.action is Action.DELETE:
        return change
    lifecycle = Lifecycle(protected=_prevents_destroy(spec), ttl_s=getattr(spec, "ttl", None))
    updates: tuple[str, ...] = ()
    if record is not None and change.action in _KEEPS_RECORD:
        updates = _state_updates(record, lifecycle, now)
    return dataclasses.replace(change, lifecycle=lifecycle, state_updates=updates)


def _state_updates(record: Record, lifecycle: Lifecycle, now: datetime) -> tuple[str, ...]:
    """What differs between a kept record's lifecycle fields and the declared ones, as shown in the plan."""
    updates = []
    if lifecycle.protected != record.protected:
        updates.append("protected: true" if lifecycle.protected else "protected: false (prevent_destroy = false)")
    expires = recorded_expiry(record, lifecycle, now)
    if expires != record.expires_at:
        updates.append(f"ttl: expires {expires}" if expires else "ttl: removed, never expires")
    return tuple(updates)


def recorded_expiry(record: Record, lifecycle: Lifecycle, now: datetime) -> str | None:
    """The ``expires_at`` a kept record must hold: ``created_at + ttl``.

    A record without ``created_at`` keeps the expiry it has (``now + ttl``
    would move on every plan); without one yet it starts from ``now``.
    """
    if lifecycle.ttl_s is not None and record.created_at is None and record.expires_at is not None:
        return record.expires_at
    return expiry(record.created_at, lifecycle.ttl_s, now)


def _is_protected(address: Address, declared: Mapping[Address, Any], state: State, destroy: bool) -> bool:
    """Declared: its ``prevent_destroy`` (and, on destroy, also state's); undeclared: state's ``protected``."""
    record, spec = state.record(address), declared.get(address)
    recorded = record is not None and record.protected
    if spec is None:
        return recorded
    return _prevents_destroy(spec) or (destroy and recorded)


def _prevents_destroy(spec: Any) -> bool:
    """A declaration's ``prevent_destroy`` (False for kinds that have none)."""
    return bool(getattr(spec, "prevent_destroy", False))


def _protection_problems(
    changes: Sequence[Change], declared: Mapping[Address, Any], state: State, destroy: bool
) -> list[PlanProblem]:
    """A delete or replace of a protected resource that still exists: the plan fails, naming the ways out."""
    problems: list[PlanProblem] = []
    seen: set[Address] = set()
    for change in changes:
        if change.action not in (Action.DELETE, Action.REPLACE) or change.address in seen:
            continue
        if not _deletes_the_resource(change, state) or change.live_state in _GONE_LIVE:
            continue
        if change.live_state is None and change.action is Action.DELETE:
            continue  # not found: deleting only forgets the record
        if _is_protected(change.address, declared, state, destroy):
            seen.add(change.address)
            problem = _protected_problem(change, change.address in declared and not destroy)
            problem.address = change.address
            problems.append(problem)
    return problems


def _protected_problem(change: Change, declared: bool) -> ProtectedProblem:
    """The error for a protected resource this plan would delete or replace, with both ways out."""
    address, verb = change.address, "replace" if change.action is Action.REPLACE else "delete"
    why = f" ({change.reason})" if change.reason else ""
    block = f"[{address.kind.plural}.{address.name}]"
    if declared:  # the block's prevent_destroy = true wins over state: unprotect alone would not help
        return ProtectedProblem(
            f"{address} is protected, but this plan would {verb} it{why}",
            f"{block} sets `prevent_destroy = true`. To {verb} it, set `prevent_destroy = false` in {block} "
            "and plan again; or undo the change that forces it.",
        )
    return ProtectedProblem(
        f"{address} is protected, but this plan would {verb} it{why}",
        f"Protection is recorded in state, so it holds even after the block is removed. To {verb} it: "
        f"declare {block} again with `prevent_destroy = false` and run `rlorinfra apply`, or run "
        f"`rlorinfra state unprotect {address}`. Then plan again.",
    )


def _without_protected(
    scope: Sequence[Address], declared: Mapping[Address, Any], state: State
) -> tuple[list[Address], list[str]]:
    """``destroy --exclude-protected``: the scope without protected resources, and a note naming them."""
    left = [a for a in scope if state.record(a) is not None and _is_protected(a, declared, state, destroy=True)]
    if not left:
        return list(scope), []
    names = ", ".join(str(a) for a in left)
    note = f"Left out of this destroy because they are protected: {names} (`rlorinfra state unprotect` to include)."
    return [a for a in scope if a not in left], [note]


def _expiry_notes(
    scope: Sequence[Address], declared: Mapping[Address, Any], state: State, now: datetime, expired: Set[Address]
) -> list[str]:
    """Notes for ttls ending within the hour, and for expired resources whose blocks remain."""
    notes = []
    for address in scope:
        ends = _expires_at(state.record(address))
        if ends is None:
            continue
        if address in expired and address in declared:
            notes.append(
                f"{address}: its ttl expired, so this plan deletes it; its block is still declared, so the next "
                "plan creates a new one (with a new ttl). Remove the block to keep it deleted."
            )
        elif address not in expired and ends - now <= EXPIRY_WARNING:
            notes.append(
                f"{address} expires in {human_delta((ends - now).total_seconds())} "
                f"({ends.strftime('%Y-%m-%dT%H:%M:%SZ')}); a plan after that deletes it."
            )
    return notes


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
