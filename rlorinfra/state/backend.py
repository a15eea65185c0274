"""The state backend seam (DESIGN.md §4): where a state lives and how it is locked.

Everything above ``state/`` reads, writes and locks state through a
``StateBackend``; only a backend knows whether that is a local file, a
PostgreSQL row or an S3 object. Every backend passes one conformance suite
(``tests/state/test_backend_conformance.py``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from rlorinfra.state.lock import LockInfo
from rlorinfra.state.model import State

# A backend's opaque token for "the stored state as I read it" (the serial for
# the local file; a row serial or an ETag elsewhere). ``None``: nothing stored yet.
Version = str | None


class StateBackend(Protocol):
    """Reads, fences writes to, and locks one state."""

    def describe(self) -> str:
        """Where the state lives, for messages (``local file prod.state.json``); never a secret."""
        ...

    def read(self) -> tuple[State, Version]:
        """The stored state (an empty ``State()`` when there is none) and its version."""
        ...

    def write(self, state: State, expected_version: Version) -> tuple[State, Version]:
        """Store ``state`` unless the stored version moved since ``expected_version`` was read.

        Returns the state as stored (serial bumped and lineage set on a content
        change; unchanged content writes nothing) and its new version. Raises
        ``StateChangedError`` when another writer got in first: nothing is written.
        """
        ...

    def lock(self, operation: str, timeout: float) -> AbstractContextManager[LockInfo]:
        """Hold the state lock for ``operation``, waiting up to ``timeout`` seconds.

        Raises ``StateLockedError`` naming the holder when it cannot be had.
        """
        ...

    def lock_info(self) -> LockInfo | None:
        """Who holds the lock now, or None when nobody does."""
        ...

    def force_unlock(self, lock_id: str) -> None:
        """Break the lock whose ID is ``lock_id`` (``StateError`` when the ID does not match)."""
        ...
