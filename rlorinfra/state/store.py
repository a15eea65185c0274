"""The one place that reads and writes the state file.

A write never leaves a half-written state behind: the new bytes go to a temp
file in the same folder (mode 0600 from the moment it exists), are flushed and
fsynced, then ``os.replace`` swaps it in atomically and the folder is fsynced so
the rename itself survives a power cut. Before that, the previous bytes are
copied (the same atomic way) to ``<state>.backup``. A crash at any point leaves
either the old or the new state on disk, never a mix; a temp file left by
a process killed mid-write is removed by the next write.

A state path that is a symlink is resolved once, when the store is made: the
link's target is what is read, replaced atomically (its temp file and
``<state>.backup`` sit beside the target), so the link itself stays a link.
Folders rlorinfra creates for its state are 0700; every file it writes is 0600.
A state path that is not a regular file (a folder, a FIFO, ``/dev/zero``) or a
file bigger than ``MAX_STATE_BYTES`` is refused before anything is parsed.

``serial`` is bumped only when the content changes; ``lineage`` is set once, on
the first write, and never changes afterwards. Callers write only while holding
the state lock (``rlorinfra.state.lock``).
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from glob import escape as glob_escape
from pathlib import Path

from rlorinfra.errors import StateError
from rlorinfra.state.codec import (
    MAX_STATE_BYTES,
    SUPPORTED_FORMAT_VERSION,
    backup_path_for,
    decode_state,
    encode_state,
    same_content,
    too_big_error,
)
from rlorinfra.state.files import FILE_MODE, FOLDER_MODE, TEMP_SUFFIX, atomic_write, fsync_folder, make_private_folder
from rlorinfra.state.model import State

# Re-exported: callers outside state/ (operations, cli, lock) import them from here.
__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "StateStore",
    "atomic_write",
    "check_control_plane",
    "fsync_folder",
    "make_private_folder",
]


def resolve_state_path(path: Path) -> Path:
    """The absolute path of the file behind ``path``, every symlink followed.

    A dangling link resolves to its (missing) target, so the first write
    creates the target and the link starts to work. A symlink loop is left
    for the first read, which reports it as an unreadable state file.
    """
    return Path(os.path.realpath(path))


class StateStore:
    """Reads and atomically writes the state file at ``path`` (symlinks resolved once, here)."""

    def __init__(self, path: Path) -> None:
        self.path = resolve_state_path(path)
        self.backup_path = backup_path_for(self.path)
        self._swept = False

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    def exists(self) -> bool:
        """True when the state file exists (a missing file is an empty state)."""
        return self.path.exists()

    def read(self) -> State:
        """The state on disk; an empty ``State()`` (serial 0, no lineage) when there is none."""
        stored = self.load()
        return State() if stored is None else stored

    def load(self) -> State | None:
        """The state on disk, or None when there is no file (unlike ``read``, which says ``State()``)."""
        data = self._read_bytes()
        return None if data is None else decode_state(data, self.path)

    def write(self, state: State, *, fence: Callable[[State | None], None] | None = None) -> State:
        """Write ``state`` if its content differs from disk; return the state as on disk.

        On a change: serial = on-disk serial + 1, lineage kept (or a new uuid4
        for the first write), previous bytes saved to ``<state>.backup``.
        ``fence`` sees what is on disk (None: no file) before anything is written
        and raises to refuse the write (``LocalBackend``: the serial moved).
        """
        old_bytes = self._read_bytes()
        stored = None if old_bytes is None else decode_state(old_bytes, self.path)
        if fence is not None:
            fence(stored)
        current = State() if stored is None else stored
        if same_content(state, current):
            # Unchanged (or, with no file yet, empty: nothing worth creating a file for).
            return current
        new = replace(
            state,
            format_version=SUPPORTED_FORMAT_VERSION,
            serial=current.serial + 1,
            lineage=current.lineage or str(uuid.uuid4()),
        )
        self._sweep_stale_temps()
        if old_bytes is not None:
            self._replace_file(self.backup_path, old_bytes)
        self._replace_file(self.path, encode_state(new))
        return new

    def write_verbatim(self, state: State, *, fence: Callable[[State | None], None] | None = None) -> State:
        """Store ``state`` as given, serial and lineage included (``state push``, ``state migrate``).

        Unlike ``write`` nothing is bumped: the caller decided the serial. The
        previous bytes go to ``<state>.backup`` as with every write; ``fence``
        sees what is on disk first and raises to refuse.
        """
        old_bytes = self._read_bytes()
        if fence is not None:
            fence(None if old_bytes is None else decode_state(old_bytes, self.path))
        new = replace(state, format_version=SUPPORTED_FORMAT_VERSION)
        data = encode_state(new)  # encoded before anything is replaced: a failure leaves the old state
        self._sweep_stale_temps()
        if old_bytes is not None:
            self._replace_file(self.backup_path, old_bytes)
        self._replace_file(self.path, data)
        return new

    def _sweep_stale_temps(self) -> None:
        # A run killed (SIGKILL, power cut) between creating a temp file and renaming it
        # leaves the temp behind; nothing in-process can clean that up. Writers hold the
        # state lock, so any temp of this state, its backup or its lock info is stale now.
        if self._swept:
            return
        self._swept = True
        for stale in self.path.parent.glob(f".{glob_escape(self.path.name)}.*{TEMP_SUFFIX}"):
            with suppress(OSError):
                stale.unlink()

    def _read_bytes(self) -> bytes | None:
        try:
            return _read_bounded(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"Cannot read state file {self.path}",
                f"{exc.strerror or exc}. Check that the path in `[state] path` is a file you can read.",
            ) from None

    def _replace_file(self, target: Path, data: bytes) -> None:
        try:
            atomic_write(target, data)
        except OSError as exc:
            raise StateError(
                f"Cannot write state file {target}",
                f"{exc.strerror or exc}. Nothing was replaced: the previous content of {self.path} "
                f"is intact. Free disk space or fix the folder permissions, then run the command "
                "again; jobs changed by this run are found again by their recorded IDs.",
            ) from None


def _read_bounded(path: Path) -> bytes:
    """The bytes of the regular file at ``path``, refusing anything else before reading it."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        # Checked on the raw descriptor: os.fdopen refuses a folder with an error of its own.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file_error(path)
        if info.st_size > MAX_STATE_BYTES:
            raise too_big_error(path, info.st_size)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_STATE_BYTES + 1)  # the file may grow while we read it
    if len(data) > MAX_STATE_BYTES:
        raise too_big_error(path, len(data))
    return data


def _not_a_file_error(path: Path) -> StateError:
    return StateError(
        f"State path {path} is not a regular file",
        "It is a folder, a pipe or a device; rlorinfra keeps its state in an ordinary file. "
        "Point `[state] path` in the config at a file (it is created on the first apply). "
        "Nothing was changed.",
    )


def other_state_hint(*, local: bool) -> str:
    """ "use another state ..." in the words of the backend: a file path, or another postgres name / s3 key."""
    if local:
        return "use another state path (`[state] path` in the config)"
    return "use another state (`[state] name` for postgres, `[state] key` for s3, in the config)"


def check_control_plane(
    state: State, url: str, account_id: str, *, path: Path | None = None, where: str | None = None
) -> str | None:
    """Refuse a state recorded for another account; note one reached through another URL.

    Returns a note (for the caller to print as a warning) when the account
    matches but the URL differs, else None. A state with no recorded control
    plane belongs to nobody yet and fits anyone. ``path`` names a local state
    file; ``where`` (a backend's ``describe()``) names any other backend's state,
    so the message never calls a database row a file.
    """
    recorded_url = state.control_plane.get("url")
    recorded_account = state.control_plane.get("account_id")
    local = where is None  # no backend named: a local file, or a caller that does not know
    where = f"The state file {path}" if path else f"The state in {where}" if where else "This state"
    hint = other_state_hint(local=local)
    if recorded_account and recorded_account != account_id:
        raise StateError(
            "State belongs to another account",
            f"{where} belongs to account `{recorded_account}` at {recorded_url or 'an unrecorded URL'}; "
            f"you are talking to account `{account_id}` at {url}. Its job IDs mean nothing there, "
            f"so rlorinfra will not plan or apply with it. {hint[0].upper()}{hint[1:]} "
            f"for this control plane, or the right API key / `FIREWORKS_BASE_URL` for account `{recorded_account}`.",
        )
    if recorded_url and recorded_url != url:
        return (
            f"{where} was recorded through {recorded_url}; this run reaches the same account "
            f"`{account_id}` through {url} (a proxy or FIREWORKS_BASE_URL?). Continuing."
        )
    return None
