"""Human text for a plan, rendered from the plan document (``plan.document``).

Terraform's layout: drift first ("Objects have changed outside of rlorinfra"),
then a legend of the symbols used, one block per change, and the summary line
``Plan: 2 to create, 1 to resume, 1 to replace, 0 to stop, 1 to delete.`` with
the accelerator change below it. With a price table (``pricing_source`` in the
document) each change that moves accelerators shows them and their $/h, and the
summary shows the total delta, the total after apply and the source. Colour is ANSI and only when ``color=True``;
the CLI decides (TTY, ``NO_COLOR``, ``--no-color``). Pure: returns strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rlorinfra.model.deployments import DEPLOYMENT_SPEC_DEFAULTS
from rlorinfra.model.jobs import SPEC_DEFAULTS
from rlorinfra.model.pricing import usd_text

NO_CHANGES = "No changes. Your trainer jobs match the configuration."
NO_CHANGES_WITH_DEPLOYMENTS = "No changes. Your trainer jobs and deployments match the configuration."
NO_DRIFT = "No changes. Your trainer jobs still match what the state file recorded."

_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"

# What each action's header says: '# job.NAME will be ...'.
_HEADLINES = {
    "create": "will be created",
    "resume": "will be resumed",
    "wait": "will be waited for",
    "update": "will be updated in-place",
    "replace": "must be replaced",
    "stop": "will be stopped",
    "delete": "will be destroyed",
}
_LEGEND = {
    "+": "create",
    "~": "resume, stop, or wait for readiness",
    "-/+": "destroy and then create replacement",
    "+/-": "create replacement and then destroy",
    "-": "destroy",
}
_JOB = "job"  # the kind of entries in documents from before addresses
_SUMMARY_ORDER = ("create", "resume", "replace", "stop", "delete")
_OPTIONAL_COUNTS = ("update",)  # shown only when non-zero: plans of jobs alone read as before


class _Paint:
    """ANSI colouring that is a no-op when colour is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.enabled and text.strip() else text

    def symbol(self, symbol: str) -> str:
        """Terraform colours: ``+`` green, ``-`` red, ``~`` yellow (``-/+`` both)."""
        colours = {"+": _GREEN, "-": _RED, "~": _YELLOW}
        return "".join(self(ch, colours[ch]) if ch in colours else ch for ch in symbol)


def render_plan_text(doc: dict[str, Any], *, color: bool = False) -> str:
    """The human view of a plan document, ending with a newline."""
    if doc.get("refresh_only"):
        return render_drift_text(doc, color=color)
    paint = _Paint(color)
    sections = []
    actionable = [c for c in doc["changes"] if c["action"] != "noop"]
    if doc["drift"]:
        sections.append(_drift_section(doc["drift"], paint))
        if actionable:
            sections.append("Unless the configuration was changed to match, the plan below responds to these changes.")
    if actionable:
        sections.append(_legend(actionable, paint))
        sections.append("rlorinfra will perform the following actions:")
        sections.extend(_change_block(c, paint, priced=bool(doc.get("pricing_source"))) for c in actionable)
        sections.append(_summary_lines(doc["summary"], paint, source=doc.get("pricing_source")))
    elif not _state_only(doc["changes"]):
        kinds = {c.get("kind", _JOB) for c in doc["changes"]}
        sections.append(paint(NO_CHANGES if kinds <= {_JOB} else NO_CHANGES_WITH_DEPLOYMENTS, _BOLD))
    if _state_only(doc["changes"]):
        sections.append(_state_only_section(doc["changes"], paint))
    notes = _notes(doc["changes"])
    if notes:
        sections.append(notes)
    return "\n\n".join(sections) + "\n"


def render_drift_text(doc: dict[str, Any], *, color: bool = False) -> str:
    """The view of ``plan --refresh-only``: drift only, nothing to undo it."""
    paint = _Paint(color)
    if not doc["drift"]:
        return paint(NO_DRIFT, _BOLD) + "\n"
    closing = "This is a refresh-only plan, so rlorinfra will not take any actions to undo these."
    return _drift_section(doc["drift"], paint) + "\n\n" + closing + "\n"


# --- drift ---------------------------------------------------------------------------


def _drift_section(drift: list[dict[str, Any]], paint: _Paint) -> str:
    intro = [
        paint("Note: Objects have changed outside of rlorinfra", _BOLD),
        "",
        'rlorinfra detected the following changes made outside of rlorinfra since the last "rlorinfra apply":',
        "",
    ]
    return "\n".join(intro + [_drift_line(d, paint) for d in drift])


def _drift_line(drift: dict[str, Any], paint: _Paint) -> str:
    symbol = "-" if drift["kind"] in ("deleted", "tombstoned") else "~"
    return f"  {paint.symbol(symbol)} {address(drift)} (id {drift['job_id']}) {drift['detail']}"


# --- changes -------------------------------------------------------------------------


def _legend(changes: list[dict[str, Any]], paint: _Paint) -> str:
    used = {_symbol(c) for c in changes}
    noun = "Job" if all(c.get("kind", _JOB) == _JOB for c in changes) else "Resource"
    lines = [f"{noun} actions are indicated with the following symbols:"]
    for symbol, meaning in _LEGEND.items():
        if symbol == "~" and any(c["action"] == "update" for c in changes):
            meaning = "update in-place, " + meaning
        if symbol in used:
            lines.append(f"{_gutter(symbol, paint)} {meaning}")
    return "\n".join(lines)


def _symbol(change: dict[str, Any]) -> str:
    if change["action"] == "replace" and change["create_before_destroy"]:
        return "+/-"
    return {"create": "+", "delete": "-", "replace": "-/+"}.get(change["action"], "~")


def _gutter(symbol: str, paint: _Paint) -> str:
    """The symbol right-aligned in a three-column gutter (``  +``, ``-/+``)."""
    return " " * (3 - len(symbol)) + paint.symbol(symbol)


def _change_block(change: dict[str, Any], paint: _Paint, *, priced: bool = False) -> str:
    """Header comment (by address), its dependencies, the resource line, and the attributes that change."""
    header = [paint(f"  # {address(change)} {_headline(change)}", _BOLD)]
    header += [f"  # depends on {', '.join(change['depends_on'])}"] if change.get("depends_on") else []
    header += [f"  # {cost}"] if (cost := change_cost_text(change, priced=priced)) else []
    symbol = _symbol(change)
    ident = f" (id {change['job_id']})" if change["job_id"] else ""
    line = f'{_gutter(symbol, paint)} {change.get("kind", _JOB)} "{change["name"]}"{ident}'
    if change["action"] not in ("create", "replace", "delete", "update"):
        return "\n".join([*header, line])
    body = _update_rows(change, paint) if change["action"] == "update" else _attribute_lines(change, paint)
    return "\n".join([*header, line + " {", *body, "    }"])


def _update_rows(change: dict[str, Any], paint: _Paint) -> list[str]:
    """The fields an in-place update PATCHes; the trainer link shows as a re-attach."""
    before, after = change["before"] or {}, change["after"] or {}
    keys = list(change["changed_fields"])
    width = max((len(key) for key in keys), default=0)
    rows = []
    for key in keys:
        old, new = before.get(key, _default(key)), after.get(key, _default(key))
        text = (
            f"{_value(new)} (re-attach)"
            if key == "hot_load_trainer" and old == new
            else f"{_value(old)} -> {_value(new)}"
        )
        rows.append(f"      {paint.symbol('~')} {key.ljust(width)} = {text}")
    return rows


def _default(key: str) -> Any:
    """What a spec that leaves ``key`` out means (specs omit defaults)."""
    return SPEC_DEFAULTS.get(key, DEPLOYMENT_SPEC_DEFAULTS.get(key))


def address(entry: Mapping[str, Any]) -> str:
    """A change's or drift's address, ``job.NAME``.

    Documents saved before addresses were added name only jobs, so an entry
    without one is the job of that name.
    """
    return str(entry.get("address") or f"{_JOB}.{entry['name']}")


def _headline(change: dict[str, Any]) -> str:
    """``will be created``, ``must be replaced (reason)``, ...; the reason in parentheses."""
    action, reason = change["action"], change["reason"]
    if action == "replace" and reason == "requested with --replace":
        return "will be replaced, as requested"
    text = _HEADLINES[action]
    return f"{text} ({reason})" if reason else text


def _attribute_lines(change: dict[str, Any], paint: _Paint) -> list[str]:
    before, after = change["before"] or {}, change["after"] or {}
    if change["action"] == "create":
        rows = [("+", key, _value(after[key])) for key in sorted(after)]
    elif change["action"] == "delete":
        rows = [("-", key, f"{_value(before[key])} -> null") for key in sorted(before)]
    else:
        rows = _replace_rows(before, after, change["changed_fields"])
    width = max((len(key) for _, key, _ in rows), default=0)
    lines = [f"      {paint.symbol(sym)} {key.ljust(width)} = {text}" for sym, key, text in rows]
    hidden = len(set(before) & set(after)) - sum(1 for _, key, _ in rows if key in before and key in after)
    if change["action"] == "replace" and hidden:
        noun = "attribute" if hidden == 1 else "attributes"
        lines.append(f"        # ({hidden} unchanged {noun} hidden)")
    return lines


def _replace_rows(before: dict[str, Any], after: dict[str, Any], forcing: list[str]) -> list[tuple[str, str, str]]:
    """Changed attributes only; those in ``forcing`` (all, when it is empty) force the replacement."""
    rows = []
    for key in sorted(set(before) | set(after)):
        forces = " # forces replacement" if not forcing or key in forcing else ""
        # Specs omit default values (canonical_spec): show the default, not null.
        old, new = before.get(key, _default(key)), after.get(key, _default(key))
        if old == new:
            continue
        if old is None:
            rows.append(("+", key, _value(new) + forces))
        elif new is None:
            rows.append(("-", key, f"{_value(old)} -> null" + forces))
        else:
            rows.append(("~", key, f"{_value(old)} -> {_value(new)}" + forces))
    return rows


def _value(value: Any) -> str:
    """An attribute value, HCL/JSON style: strings quoted, lists bracketed."""
    return json.dumps(value, ensure_ascii=False)


# --- state-only updates (ttl, protection) -------------------------------------------------


def _state_only(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changes that update their state record without an API call (documents before these: none)."""
    return [c for c in changes if c.get("state_updates")]


def _state_only_section(changes: list[dict[str, Any]], paint: _Paint) -> str:
    """``  ~ job.NAME: ttl: expires 2026-12-07T08:00:00Z``, one line per update."""
    lines = ["rlorinfra will update state only (no API call):"]
    for change in _state_only(changes):
        lines += [f"  {paint.symbol('~')} {address(change)}: {update}" for update in change["state_updates"]]
    return "\n".join(lines)


# --- summary and notes --------------------------------------------------------------------


def _summary_lines(summary: dict[str, Any], paint: _Paint, *, source: str | None = None) -> str:
    shown = ["create", *(a for a in _OPTIONAL_COUNTS if summary.get(a)), *_SUMMARY_ORDER[1:]]
    counts = ", ".join(f"{summary[action]} to {action}" for action in shown)
    waits = f" ({summary['wait']} to wait for)" if summary["wait"] else ""
    lines = [paint("Plan:", _BOLD) + f" {counts}{waits}."]
    accelerators = accelerator_text(summary["accelerators"])
    if accelerators:
        lines.append(f"Accelerators: {accelerators}")
    if source:
        lines.append(f"Cost change: {_delta_text(summary)} (prices: {source})")
        lines.append(f"Cost after apply: {_after_text(summary)} (prices: {source})")
    return "\n".join(lines)


# --- cost ----------------------------------------------------------------------------------


def change_cost_text(change: Mapping[str, Any], *, priced: bool = True) -> str:
    """``+8 × NVIDIA_H200_141GB (+$64.00/h)`` for a change that moves accelerators (``""`` otherwise).

    Shown only when the document was priced (``priced``); a change whose accelerators
    are unknown reads ``accelerators unknown (unknown $/h)``.
    """
    if not priced or "hourly_cost_delta" not in change:
        return ""
    accelerators = accelerator_text(change.get("accelerators") or {})
    figure, ceiling = change.get("hourly_cost_delta"), change.get("hourly_cost_delta_max")
    if not accelerators and figure is not None and ceiling is not None and abs(ceiling - figure) >= 0.005:
        return f"no accelerators at min replicas ({_delta_text(change)})"  # a deployment scaled to zero
    if not accelerators and change.get("hourly_cost_unknown") in (None, "no pricing"):
        return ""
    if not accelerators and figure is not None and change.get("hourly_cost_delta_max") == figure:
        return ""
    return f"{accelerators or 'accelerators unknown'} ({_delta_text(change)})"


def _delta_text(entry: Mapping[str, Any]) -> str:
    """``+$8.00/h``, ``+$8.00/h, up to +$16.00/h at max replicas`` or ``unknown $/h: no price for X``."""
    floor, ceiling = entry.get("hourly_cost_delta"), entry.get("hourly_cost_delta_max")
    if floor is None or ceiling is None:
        return f"unknown $/h: {entry.get('hourly_cost_unknown') or 'no pricing'}"
    text = f"{usd_text(floor, signed=True)}/h"
    if abs(ceiling - floor) >= 0.005:
        text += f", up to {usd_text(ceiling, signed=True)}/h at max replicas"
    return text


def _after_text(summary: Mapping[str, Any]) -> str:
    after = summary.get("hourly_cost_after")
    return "unknown $/h" if after is None else f"{usd_text(after)}/h"


def accelerator_text(accelerators: dict[str, int]) -> str:
    """``+16 × NVIDIA_H100_80GB, -8 × NVIDIA_A100_80GB`` (increases first, then by type)."""
    ordered = sorted(accelerators.items(), key=lambda kv: (kv[1] < 0, kv[0]))
    return ", ".join(f"{count:+d} × {kind}" for kind, count in ordered if count)


def _notes(changes: list[dict[str, Any]]) -> str:
    """Notes for no-op changes that still carry news (deferred field changes)."""
    lines = [
        f'Note: {c.get("kind", _JOB)} "{c["name"]}" has changed fields '
        f"({', '.join(c['changed_fields'])}): {c['reason']}."
        for c in changes
        if c["action"] == "noop" and c["changed_fields"]
    ]
    return "\n".join(lines)
