"""The local backend: the state file, its ``<state>.backup``, and the ``filelock`` lock beside it.

It wraps ``StateStore`` (atomic, durable, 0600 writes; symlinks resolved once)
and ``StateLock`` (``<state>.lock`` + ``<state>.lock.info``). The version is the
stored serial as a string, so a write is fenced by "the serial I read is still
the one on disk". That check and the replace are not one atomic step: callers
write while holding the lock, which keeps other rlorinfra runs out, and the
fence catches what got in anyway (a run whose lock was force-unlocked, a
hand edit, a write made without the lock).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from rlorinfra.state.backend import StateBackend, Version, serial_version, state_changed_error
from rlorinfra.state.lock import LockInfo, StateLock, force_unlock, read_lock_info
from rlorinfra.state.model import State
from rlorinfra.state.store import StateStore


class LocalBackend:
    """A ``StateBackend`` over the state file at ``path`` (a symlink is followed once, here).

    ``config_path`` only makes the force-unlock hint of a "state is locked"
    error name the right ``-f``.
    """

    def __init__(self, path: Path, *, config_path: Path | None = None) -> None:
        self.store = StateStore(path)
        self.path = self.store.path
        self.config_path = config_path

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.path)!r})"

    def describe(self) -> str:
        """``local file /abs/path/prod.state.json``."""
        return f"local file {self.path}"

    def read(self) -> tuple[State, Version]:
        """The state in the file (``State()`` when there is none) and its serial as the version."""
        stored = self.store.load()
        return (State() if stored is None else stored), serial_version(stored)

    def write(self, state: State, expected_version: Version) -> tuple[State, Version]:
        """Write ``state`` unless the file's serial moved since ``expected_version``.

        Unchanged content writes nothing and returns the stored state. Raises
        ``StateChangedError`` (nothing written) when the serial moved.
        """

        def fence(stored: State | None) -> None:
            if serial_version(stored) != expected_version:
                raise state_changed_error(self.describe(), expected_version, serial_version(stored))

        written = self.store.write(state, fence=fence)
        # Past the fence the file's version is expected_version; a write makes it the new serial.
        # Serial 0 and no lineage: nothing was written over no file, so there is still no version.
        unwritten_empty = written.serial == 0 and written.lineage is None
        return written, (expected_version if unwritten_empty else str(written.serial))

    def write_verbatim(self, state: State, expected_version: Version) -> Version:
        """Store ``state`` with its own serial and lineage unless the serial moved (``StateChangedError``)."""

        def fence(stored: State | None) -> None:
            if serial_version(stored) != expected_version:
                raise state_changed_error(self.describe(), expected_version, serial_version(stored))

        return serial_version(self.store.write_verbatim(state, fence=fence))

    def lock(self, operation: str, timeout: float) -> AbstractContextManager[LockInfo]:
        """The ``filelock`` on ``<state>.lock``, holder info in ``<state>.lock.info``."""
        return StateLock(self.path, operation, timeout, config_path=self.config_path)

    def close(self) -> None:
        """Nothing to release: every call opens and closes what it uses."""

    def lock_info(self) -> LockInfo | None:
        """The holder recorded in ``<state>.lock.info``, or None."""
        return read_lock_info(self.path)

    def force_unlock(self, lock_id: str) -> None:
        """Remove the lock recorded with ``lock_id`` (``StateError`` when the ID differs)."""
        force_unlock(self.path, lock_id)


if TYPE_CHECKING:  # mypy proves the class satisfies the protocol
    _CONFORMS: StateBackend = LocalBackend(Path("."))
