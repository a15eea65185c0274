"""The versioned plan document: the one JSON shape of a plan.

``plan --json`` prints it, saved plan files embed it, and the human text view
is rendered from it (``render.text``), so the three can never disagree. The
schema is pinned by ``tests/plan/test_document.py``; a change that old readers
cannot follow must bump ``FORMAT_VERSION``. Keys added compatibly stayed at
format 1: ``address``, ``kind`` and ``depends_on`` on changes, ``address`` and
``resource_kind`` on drift (a drift's ``kind`` was already what happened);
documents saved without them still load, as jobs without dependencies. Format 2
adds cost (``plan/cost.py``): ``pricing_source`` at the top, and
``hourly_cost_delta`` (floor), ``hourly_cost_delta_max`` (at max replicas) and
``hourly_cost_unknown`` (why a figure is null) on each change and in the summary,
plus ``hourly_cost_after`` in the summary; a null figure is unknown, never $0.
Format-1 documents (saved plans) still load: cost is re-checked from a fresh
plan when they are applied. ``lifecycle`` (``{"protected", "ttl_s"}`` or null) and
``state_updates`` on changes were added compatibly (absent: none). No-op
changes are listed too (as Terraform's JSON plan lists them), with
``action = "noop"``. Only whitelisted control-plane keys are ever written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlorinfra.errors import PlanFileError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.pricing import HourlyCost
from rlorinfra.plan.cost import PlanCost, unknown_reason
from rlorinfra.plan.model import Action, Change, Drift, Lifecycle, Plan
from rlorinfra.state.codec import CONTROL_PLANE_KEYS

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # saved plans of format 1 lack only the cost keys

DOCUMENT_KEYS = ("format_version", "control_plane", "destroy", "refresh_only", "changes", "drift", "summary")
# Keys every format-1 document has; documents from before addresses lack the rest.
CHANGE_KEYS = (
    "name",
    "action",
    "reason",
    "job_id",
    "live_state",
    "before",
    "after",
    "changed_fields",
    "accelerators",
    "create_before_destroy",
    "max_resumes",
)
CHANGE_ADDRESS_KEYS = ("address", "kind", "depends_on")
COST_KEYS = ("hourly_cost_delta", "hourly_cost_delta_max", "hourly_cost_unknown")  # format 2, on changes and summary
DRIFT_KEYS = ("name", "job_id", "kind", "recorded_state", "live_state", "detail", "changed_fields")
DRIFT_ADDRESS_KEYS = ("address", "resource_kind")
# Counts first, in the order the summary line prints them.
COUNTED_ACTIONS = ("create", "resume", "wait", "update", "replace", "stop", "delete", "noop")
SUMMARY_KEYS = (*COUNTED_ACTIONS, "accelerators", "has_changes", "has_drift", *COST_KEYS, "hourly_cost_after")

# The only control-plane keys a document or plan file carries: what state records,
# plus the *name* of the variable holding the API key. Anything else (a key, a
# token, a connection string) is dropped, whatever it is called.
PUBLIC_CONTROL_PLANE_KEYS = (*CONTROL_PLANE_KEYS, "api_key_env")


def plan_document(plan: Plan, *, control_plane: Mapping[str, Any], cost: PlanCost | None = None) -> dict[str, Any]:
    """The JSON-ready document for ``plan`` (see the module doc and docs/planning.md).

    ``cost`` is the plan priced with the user's table (``plan_cost``); without it
    every figure is null (unknown) and ``pricing_source`` is null.
    """
    return {
        "format_version": FORMAT_VERSION,
        "control_plane": public_control_plane(control_plane),
        "destroy": plan.destroy,
        "refresh_only": plan.refresh_only,
        "pricing_source": (cost.source or None) if cost else None,
        "changes": [_change_entry(c, cost) for c in plan.changes],
        "drift": [_drift_entry(d) for d in plan.drift],
        "summary": _summary(plan, cost),
    }


def _figures(floor: HourlyCost | None, ceiling: HourlyCost | None) -> dict[str, Any]:
    """The three cost keys: floor and ceiling $/h (null: unknown) and why one is unknown."""
    unknown = next((c for c in (floor, ceiling) if c is not None and c.usd is None), None)
    return {
        "hourly_cost_delta": _rounded(floor),
        "hourly_cost_delta_max": _rounded(ceiling),
        "hourly_cost_unknown": unknown_reason(unknown) if unknown else (None if floor else "no pricing"),
    }


def _rounded(cost: HourlyCost | None) -> float | None:
    """A figure to the micro-dollar, so float noise never shows in the document."""
    return None if cost is None or cost.usd is None else round(cost.usd, 6) + 0.0


def public_control_plane(control_plane: Mapping[str, Any]) -> dict[str, Any]:
    """The control-plane description reduced to ``PUBLIC_CONTROL_PLANE_KEYS``, sorted by key."""
    return {k: v for k, v in sorted(control_plane.items()) if k in PUBLIC_CONTROL_PLANE_KEYS}


def _change_entry(change: Change, cost: PlanCost | None) -> dict[str, Any]:
    priced = cost.changes.get(change.address) if cost else None
    return {
        "address": str(change.address),
        "kind": change.kind.value,
        "name": change.name,
        "action": change.action.value,
        "reason": change.reason,
        "job_id": change.job_id,
        "live_state": change.live_state,
        "before": _copy(change.before),
        "after": _copy(change.after),
        "changed_fields": list(change.changed_fields),
        "accelerators": dict(sorted(change.accelerators.items())),
        "create_before_destroy": change.create_before_destroy,
        "max_resumes": change.max_resumes,
        "depends_on": [str(a) for a in change.depends_on],
        "lifecycle": _lifecycle_entry(change.lifecycle),
        "state_updates": list(change.state_updates),
        **_figures(priced.floor if priced else None, priced.ceiling if priced else None),
    }


def _lifecycle_entry(lifecycle: Lifecycle | None) -> dict[str, Any] | None:
    if lifecycle is None:
        return None
    return {"protected": lifecycle.protected, "ttl_s": lifecycle.ttl_s}


def _lifecycle_from(value: Any, where: str) -> Lifecycle | None:
    """``lifecycle`` of a change entry (absent in documents from before it: None)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("protected"), bool):
        raise _garbled(f"{where} must be an object with a boolean 'protected'")
    ttl = value.get("ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        raise _garbled(f"{where}.ttl_s must be a positive whole number of seconds or null")
    return Lifecycle(protected=value["protected"], ttl_s=ttl)


def _drift_entry(drift: Drift) -> dict[str, Any]:
    return {
        "address": str(drift.address),
        "resource_kind": drift.resource_kind.value,
        "name": drift.name,
        "job_id": drift.job_id,
        "kind": drift.kind,
        "recorded_state": drift.recorded_state,
        "live_state": drift.live_state,
        "detail": drift.detail,
        "changed_fields": list(drift.changed_fields),
    }


def _copy(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A sorted, JSON-ready copy of a spec (tuples become lists)."""
    if spec is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(spec.items())}


def _summary(plan: Plan, cost: PlanCost | None) -> dict[str, Any]:
    counts: dict[str, Any] = {action: plan.count(Action(action)) for action in COUNTED_ACTIONS}
    counts["accelerators"] = total_accelerators(plan.changes)
    counts["has_changes"] = plan.has_changes
    counts["has_drift"] = bool(plan.drift)
    counts.update(_figures(cost.delta if cost else None, cost.ceiling_delta if cost else None))
    counts["hourly_cost_after"] = _rounded(cost.after) if cost else None
    return counts


def total_accelerators(changes: Sequence[Change]) -> dict[str, int]:
    """Sum of the signed accelerator changes, non-zero types only, sorted by type."""
    total: dict[str, int] = {}
    for change in changes:
        for kind, count in change.accelerators.items():
            total[kind] = total.get(kind, 0) + count
    return {k: v for k, v in sorted(total.items()) if v}


# --- document -> Plan ------------------------------------------------------------------


def plan_from_document(doc: Any) -> Plan:
    """Rebuild the ``Plan`` a document was made from (to apply a saved plan).

    Raises ``PlanFileError`` when ``doc`` is not a plan document of a readable
    format (1 or 2; the cost keys of format 2 are not needed to apply).
    """
    if not isinstance(doc, dict):
        raise _garbled("the plan document is not a JSON object")
    if doc.get("format_version") not in READABLE_VERSIONS or isinstance(doc.get("format_version"), bool):
        raise PlanFileError(
            f"Unsupported plan document format_version {doc.get('format_version')!r}",
            f"This rlorinfra reads format_version {', '.join(map(str, READABLE_VERSIONS))}. Make the plan again with "
            "`rlorinfra plan --out PLANFILE` using this version of rlorinfra.",
        )
    missing = [k for k in DOCUMENT_KEYS if k not in doc]
    if missing:
        raise _garbled(f"the plan document lacks {', '.join(missing)}")
    changes, drift = doc["changes"], doc["drift"]
    if not isinstance(changes, list) or not isinstance(drift, list):
        raise _garbled("'changes' and 'drift' must be lists")
    return Plan(
        changes=tuple(_change_from(entry, i) for i, entry in enumerate(changes)),
        drift=tuple(_drift_from(entry, i) for i, entry in enumerate(drift)),
        destroy=bool(doc["destroy"]),
        refresh_only=bool(doc["refresh_only"]),
    )


def _change_from(entry: Any, index: int) -> Change:
    _require_entry(entry, CHANGE_KEYS, f"changes[{index}]")
    try:
        action = Action(entry["action"])
    except ValueError:
        raise _garbled(f"changes[{index}] has unknown action {entry['action']!r}") from None
    kind = _kind(entry.get("kind", Kind.JOB.value), f"changes[{index}].kind")
    name = _text(entry["name"], f"changes[{index}].name")
    _check_address(entry, kind, name, f"changes[{index}]")
    try:
        return Change(
            kind=kind,
            depends_on=_addresses(entry.get("depends_on", []), f"changes[{index}].depends_on"),
            name=name,
            action=action,
            reason=str(entry["reason"] or ""),
            job_id=_optional_text(entry["job_id"], f"changes[{index}].job_id"),
            live_state=_optional_text(entry["live_state"], f"changes[{index}].live_state"),
            before=_optional_dict(entry["before"], f"changes[{index}].before"),
            after=_optional_dict(entry["after"], f"changes[{index}].after"),
            changed_fields=tuple(str(f) for f in entry["changed_fields"]),
            accelerators={str(k): int(v) for k, v in dict(entry["accelerators"]).items()},
            create_before_destroy=bool(entry["create_before_destroy"]),
            max_resumes=int(entry["max_resumes"]),
            lifecycle=_lifecycle_from(entry.get("lifecycle"), f"changes[{index}].lifecycle"),
            state_updates=tuple(str(u) for u in entry.get("state_updates", ())),
        )
    except (TypeError, ValueError) as exc:
        raise _garbled(f"changes[{index}] is malformed ({exc})") from None


def _drift_from(entry: Any, index: int) -> Drift:
    _require_entry(entry, DRIFT_KEYS, f"drift[{index}]")
    kind = _kind(entry.get("resource_kind", Kind.JOB.value), f"drift[{index}].resource_kind")
    name = _text(entry["name"], f"drift[{index}].name")
    _check_address(entry, kind, name, f"drift[{index}]")
    try:
        return Drift(
            resource_kind=kind,
            name=name,
            job_id=_text(entry["job_id"], f"drift[{index}].job_id"),
            kind=_text(entry["kind"], f"drift[{index}].kind"),
            recorded_state=_optional_text(entry["recorded_state"], f"drift[{index}].recorded_state"),
            live_state=_optional_text(entry["live_state"], f"drift[{index}].live_state"),
            detail=str(entry["detail"] or ""),
            changed_fields=tuple(str(f) for f in entry["changed_fields"]),
        )
    except TypeError as exc:
        raise _garbled(f"drift[{index}] is malformed ({exc})") from None


def _kind(value: Any, where: str) -> Kind:
    """A resource kind written as its value (``job``)."""
    try:
        return Kind(value)
    except (TypeError, ValueError):
        raise _garbled(f"{where} is not a resource kind ({value!r})") from None


def _check_address(entry: Mapping[str, Any], kind: Kind, name: str, where: str) -> None:
    """An entry's ``address`` (when present) must agree with its kind and name."""
    if "address" in entry and entry["address"] != str(Address(kind, name)):
        raise _garbled(f"{where}.address {entry['address']!r} does not match its kind and name")


def _addresses(value: Any, where: str) -> tuple[Address, ...]:
    """``depends_on``: a list of ``kind.NAME`` strings."""
    if not isinstance(value, list):
        raise _garbled(f"{where} must be a list of addresses")
    out = []
    for text in value:
        kind_text, dot, name = text.partition(".") if isinstance(text, str) else ("", "", "")
        if not dot or not name or kind_text not in {k.value for k in Kind}:
            raise _garbled(f"{where} holds {text!r}, which is not an address such as job.NAME")
        out.append(Address(Kind(kind_text), name))
    return tuple(out)


def _require_entry(entry: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise _garbled(f"{where} is not an object")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise _garbled(f"{where} lacks {', '.join(missing)}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _garbled(f"{where} must be a non-empty string")
    return value


def _optional_text(value: Any, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _optional_dict(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _garbled(f"{where} must be an object or null")
    return dict(value)


def _garbled(what: str) -> PlanFileError:
    return PlanFileError(
        "Saved plan is not a valid rlorinfra plan",
        f"{what[0].upper()}{what[1:]}. Make a new one with `rlorinfra plan --out PLANFILE`.",
    )
