"""Moving state in and out of the configured backend: ``state pull``, ``state push``, ``state migrate``.

A state's identity is its ``lineage`` (set once) and its place in that history
is its ``serial``. Moving a state keeps both, so saved plans and other
copies still recognise it: the backend stores the state *verbatim*
(``write_verbatim``) instead of bumping the serial as an ordinary write does.
That write is fenced like every other: its expected version is the one read
under the lock, so nothing that got in meanwhile is overwritten.

The one exception is ``push --force`` of a serial that is not higher than the
stored one: the serial never goes backwards (a saved plan made at the stored
serial must not match different content later), so the pushed state gets the
stored serial + 1 and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from rlorinfra.errors import StateError
from rlorinfra.operations.ui import UI, Operation
from rlorinfra.operations.workspace import Workspace
from rlorinfra.state.backend import Version
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.codec import decode_state, encode_state
from rlorinfra.state.files import atomic_write
from rlorinfra.state.model import State


class MigrateOutcome(StrEnum):
    """What ``state migrate`` did."""

    MIGRATED = "migrated"
    ALREADY_THERE = "already there"


@dataclass(frozen=True)
class PushResult:
    """What ``state push`` stored: the lineage and serial now in the backend, and any override made."""

    where: str
    lineage: str | None
    serial: int
    forced: tuple[str, ...] = ()  # the checks --force overrode, in words


@dataclass(frozen=True)
class MigrateResult:
    """What ``state migrate`` did, where the state is now, and the note left beside the local file."""

    outcome: MigrateOutcome
    where: str
    lineage: str | None
    serial: int
    note_path: Path


def state_pull(ws: Workspace) -> bytes:
    """The state as the backend stores it (``encode_state`` bytes); ``b""`` when none is stored."""
    state, version = ws.state_backend().read()
    return b"" if version is None else encode_state(state)


def read_state_file(path: Path) -> State:
    """The state in the file at ``path``, parsed strictly; an error when there is none."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise StateError(f"No state file at {path}", "Pass the path of an existing state file.") from None
    except OSError as exc:
        raise StateError(f"Cannot read {path}", f"{exc.strerror or exc}. Check the path and its permissions.") from None
    return decode_state(data, Path(path))


def state_push(ws: Workspace, path: Path, ui: UI, *, force: bool = False, lock_timeout: float = 0) -> PushResult:
    """Replace the backend's state with the file at ``path`` (lineage must match, serial must be higher).

    ``force`` overrides both checks (each override is told through ``ui.note``);
    the serial still never goes backwards.
    """
    pushed = read_state_file(path)
    backend = ws.state_backend()
    with ws.lock(Operation.STATE_PUSH, lock_timeout):
        stored, version = ws.state_backend().read()
        problems = _push_problems(pushed, stored, version, path)
        if problems and not force:
            raise StateError(f"Cannot push {path}: {problems[0]}", _push_detail(problems, ws.state_where()))
        if problems:
            ui.note(f"--force: pushing {path} over the state in {ws.state_where()} although {'; '.join(problems)}.")
        if version is not None and pushed.serial <= stored.serial:
            pushed = replace(pushed, serial=stored.serial + 1)  # never backwards: see the module docstring
        backend.write_verbatim(pushed, version)
    return PushResult(ws.state_where(), pushed.lineage, pushed.serial, tuple(problems))


def _push_problems(pushed: State, stored: State, version: Version, path: Path) -> list[str]:
    """Why pushing ``pushed`` over ``stored`` would lose or mix histories (empty: it is safe)."""
    if version is None:
        return []  # nothing stored: any state may start here
    problems = []
    if pushed.lineage != stored.lineage:
        problems.append(
            f"its lineage {pushed.lineage} differs from the stored lineage {stored.lineage} (another state's history)"
        )
    if pushed.serial <= stored.serial:
        problems.append(
            f"its serial {pushed.serial} is not higher than the stored serial {stored.serial} "
            "(it would undo newer changes)"
        )
    return problems


def _push_detail(problems: list[str], where: str) -> str:
    listed = "; ".join(problems)
    return (
        f"Refused: {listed}. Nothing was changed in {where}. Run `rlorinfra state pull > current.json` to see "
        "what is stored. If you are sure the file is the state to keep, push it with --force (or -force)."
    )


def state_migrate(
    ws: Workspace, source: Path, *, lock_timeout: float = 0, now: datetime | None = None
) -> MigrateResult:
    """Copy the local state file ``source`` into the configured backend, keeping lineage and serial.

    Both the local file's lock and the backend's are held. A rerun (the same
    lineage and serial already stored) changes nothing; a different lineage
    is refused. ``source`` is never deleted: ``<source>.migrated`` says where
    the state went and when.
    """
    local = LocalBackend(Path(source))
    configured = ws.state_backend()
    backend = configured
    if isinstance(configured, LocalBackend) and configured.path == local.path:
        raise StateError(
            f"{source} is already the configured state",
            f"[state] keeps the state in {ws.state_where()}, the file given to --from. Set [state] backend "
            'to the shared backend first (for example backend = "postgres"), then run the migration.',
        )
    with local.lock(Operation.STATE_MIGRATE.value, lock_timeout), ws.lock(Operation.STATE_MIGRATE, lock_timeout):
        state, local_version = local.read()
        if local_version is None:
            raise StateError(f"No state file at {source}", "Pass the path of the local state file to migrate.")
        stored, version = ws.state_backend().read()
        outcome = _migrate_outcome(state, stored, version, source, ws.state_where())
        if outcome is MigrateOutcome.MIGRATED:
            backend.write_verbatim(state, version)
    note = migrated_note_path(local.path)
    if outcome is MigrateOutcome.MIGRATED or not note.exists():
        _write_note(note, state, ws.state_where(), now or datetime.now(UTC))
    return MigrateResult(outcome, ws.state_where(), state.lineage, state.serial, note)


def _migrate_outcome(state: State, stored: State, version: Version, source: Path, where: str) -> MigrateOutcome:
    """MIGRATED when the backend is empty, ALREADY_THERE on a rerun; an error for anything else."""
    if version is None:
        return MigrateOutcome.MIGRATED
    if stored.lineage != state.lineage:
        raise StateError(
            f"The state in {where} is another state (lineage {stored.lineage})",
            f"{source} has lineage {state.lineage}: migrating it would replace a different history. Nothing "
            "was changed. Point [state] at an empty place (another name, key or schema), or, if the stored "
            f"state is to be replaced, run `rlorinfra state push --force {source}`.",
        )
    if stored.serial != state.serial:
        newer = "newer" if stored.serial > state.serial else "older"
        raise StateError(
            f"The state in {where} is at serial {stored.serial}, {source} at serial {state.serial}",
            f"Both have lineage {state.lineage}, but the stored state is {newer}: it was already migrated "
            f"and then changed. Nothing was changed. Keep using {where}; to send the local file anyway, "
            f"run `rlorinfra state push {source}` (refused unless its serial is higher).",
        )
    return MigrateOutcome.ALREADY_THERE


def migrated_note_path(path: Path) -> Path:
    """``<state>.migrated``: the note ``state migrate`` leaves beside the local state file."""
    return path.with_name(path.name + ".migrated")


def _write_note(note: Path, state: State, where: str, when: datetime) -> None:
    # ``where`` is backend.describe(), which never holds a secret (the connection string stays in the env).
    text = (
        f"This state (lineage {state.lineage}, serial {state.serial}) was migrated on "
        f"{when.astimezone(UTC).isoformat(timespec='seconds')} to {where} by `rlorinfra state migrate`.\n"
        f"{note.with_suffix('').name} is no longer updated: a config whose [state] points at {where} "
        "reads and writes the state there.\n"
        "The file is kept as a record, never deleted by rlorinfra; remove it and this note once you no longer "
        "need them.\n"
    )
    try:
        atomic_write(note, text.encode("utf-8"))
    except OSError as exc:
        raise StateError(
            f"The state was migrated, but the note {note} could not be written",
            f"{exc.strerror or exc}. The state is in {where}; the local file was left unchanged.",
        ) from None
