"""Saved plan files (``plan --out PLANFILE``) and the staleness check apply makes.

A plan file is JSON::

    {"rlorinfra_plan": 1, "state_lineage": ..., "state_serial": ...,
     "config_digest": ..., "control_plane": {...}, "plan": <plan document>}

It is written atomically (temp file in the same folder, fsync, ``os.replace``)
with mode 0600 whatever the umask. It is read as strictly as the state file
(``load_strict_json``): a key given twice, non-finite numbers, huge integers,
nesting deeper than ``MAX_JSON_DEPTH`` or a file over ``MAX_STATE_BYTES`` make it
a damaged plan file, never a plan that means something else. There is no
field for the API key, and the control-plane entry
keeps only whitelisted keys (``plan.document.public_control_plane``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlorinfra.errors import PlanFileError, StalePlanError
from rlorinfra.plan.document import public_control_plane
from rlorinfra.state.codec import MAX_STATE_BYTES, StrictJsonError, load_strict_json
from rlorinfra.state.files import atomic_write

PLAN_FILE_MARKER = "rlorinfra_plan"
PLAN_FILE_VERSION = 1
_REPLAN = "Run `rlorinfra plan --out PLANFILE` again and apply the new plan."


@dataclass(frozen=True)
class SavedPlan:
    """A plan file's content: the plan document and what it was made against."""

    document: dict[str, Any]
    state_lineage: str | None
    state_serial: int
    config_digest: str
    control_plane: dict[str, Any]
    # What was asked of the planner (targets, replace, destroy, refresh_only,
    # health_check): apply plans again with it and compares (a tampered file fails).
    request: dict[str, Any] = field(default_factory=dict)


def write_plan_file(
    path: Path,
    document: dict[str, Any],
    *,
    state_lineage: str | None,
    state_serial: int,
    config_digest: str,
    control_plane: dict[str, Any],
    request: dict[str, Any] | None = None,
) -> None:
    """Write a plan file atomically with mode 0600; raises PlanFileError on OS errors."""
    payload = {
        PLAN_FILE_MARKER: PLAN_FILE_VERSION,
        "state_lineage": state_lineage,
        "state_serial": state_serial,
        "config_digest": config_digest,
        "control_plane": public_control_plane(control_plane),
        "request": dict(request or {}),
        "plan": document,
    }
    data = (json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    path = Path(path)
    try:
        atomic_write(path, data, make_folders=False)
    except OSError as exc:
        raise PlanFileError(
            f"Cannot write plan file {path}",
            f"{exc.strerror or exc}. Check that the folder exists and is writable, or choose another path with --out.",
        ) from exc


def read_plan_file(path: Path) -> SavedPlan:
    """Load a plan file; raises PlanFileError if it is missing, garbled or not a plan."""
    path = Path(path)
    payload = _load_json(path)
    if not isinstance(payload, dict) or PLAN_FILE_MARKER not in payload:
        raise PlanFileError(
            f"{path} is not an rlorinfra plan file",
            f"Pass a file written by `rlorinfra plan --out {path.name}`, or run `rlorinfra apply` "
            "without a plan file to plan and apply in one go.",
        )
    if payload[PLAN_FILE_MARKER] != PLAN_FILE_VERSION:
        raise PlanFileError(
            f"Plan file {path} has unsupported version {payload[PLAN_FILE_MARKER]!r}",
            f"This rlorinfra reads plan files of version {PLAN_FILE_VERSION}. {_REPLAN}",
        )
    return _saved_plan(path, payload)


def _load_json(path: Path) -> Any:
    try:
        text = _read_text(path)
    except FileNotFoundError:
        raise PlanFileError(
            f"Plan file {path} does not exist",
            f"Check the path, or create it with `rlorinfra plan --out {path}`.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"Cannot read plan file {path}", f"{exc}. {_REPLAN}") from None
    try:
        return load_strict_json(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            f"Plan file {path} is not valid JSON",
            f"Line {exc.lineno}, column {exc.colno}: {exc.msg}. The file is damaged or is not a plan file. {_REPLAN}",
        ) from None
    except StrictJsonError as exc:
        raise PlanFileError(
            f"Plan file {path} is damaged",
            f"{exc.problem} rlorinfra never writes such a plan file: it was edited or is not a plan file. {_REPLAN}",
        ) from None
    except ValueError as exc:  # anything else json refuses must not become an internal error
        raise PlanFileError(f"Plan file {path} is damaged", f"{str(exc)[:200]}. {_REPLAN}") from None


def _read_text(path: Path) -> str:
    """The file's text, refusing one over ``MAX_STATE_BYTES`` before reading it all."""
    with path.open("rb") as handle:
        data = handle.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise PlanFileError(
            f"Plan file {path} is too big",
            f"It is over {MAX_STATE_BYTES} bytes; a plan file is never that big. {_REPLAN}",
        )
    return data.decode("utf-8")


def _saved_plan(path: Path, payload: dict[str, Any]) -> SavedPlan:
    """Check field types and build the SavedPlan."""
    lineage, serial = payload.get("state_lineage"), payload.get("state_serial")
    digest, control_plane = payload.get("config_digest"), payload.get("control_plane")
    document = payload.get("plan")
    request = payload.get("request", {})
    if (
        isinstance(request, dict)
        and (lineage is None or isinstance(lineage, str))
        and isinstance(serial, int)
        and not isinstance(serial, bool)
        and isinstance(digest, str)
        and isinstance(control_plane, dict)
        and isinstance(document, dict)
    ):
        return SavedPlan(document, lineage, serial, digest, control_plane, request)
    raise PlanFileError(
        f"Plan file {path} is damaged",
        "It lacks the state lineage, state serial, config digest, control plane or plan "
        f"document, or one of them has the wrong type. {_REPLAN}",
    )


def check_plan_fresh(
    saved: SavedPlan,
    *,
    state_lineage: str | None,
    state_serial: int,
    config_digest: str,
    control_plane: dict[str, Any],
) -> None:
    """Raise StalePlanError if state, config or control plane changed since the plan."""
    changes = []
    if saved.state_lineage != state_lineage:
        changes.append(
            f"the state is a different one (lineage {saved.state_lineage} -> {state_lineage})"
        )  # any backend: not "file"
    elif saved.state_serial != state_serial:
        changes.append(f"the state changed (serial {saved.state_serial} -> {state_serial})")
    if saved.config_digest != config_digest:
        changes.append("the configuration file changed")
    if saved.control_plane != public_control_plane(control_plane):
        changes.append(f"the control plane changed ({_describe(saved.control_plane)} -> {_describe(control_plane)})")
    if changes:
        raise StalePlanError(
            "Saved plan is stale",
            "Since the plan was made, " + "; ".join(changes) + f". {_REPLAN}",
        )


def _describe(control_plane: dict[str, Any]) -> str:
    """``url=..., account_id=...`` for the staleness message (no secrets)."""
    shown = public_control_plane(control_plane)
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "none"
