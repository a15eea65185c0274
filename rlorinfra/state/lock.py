"""The state lock: one rlorinfra run at a time may write a state file.

The lock is an OS-level ``filelock`` on ``<state>.lock`` (``flock`` on Unix).
The kernel drops it when the holding process dies, however it dies, so a run
killed with SIGKILL never blocks the next one. Who holds it is recorded in
``<state>.lock.info`` (JSON, 0600), written after acquiring and removed before
releasing; the "state is locked" error shows it, Terraform style.

``force_unlock`` cannot steal a live holder's OS lock (nothing can). It removes
the info file and the lock file instead, so the next run locks a *new* file and
proceeds, while the old holder, if it still runs, keeps a lock on a file that no
longer has a name. Use it only when the holder is gone or hung for good.

A symlinked state path is resolved first (``resolve_state_path``): the lock
files sit beside the link's target, where every run finds them whichever link
it came through. The lock file is created 0600 by rlorinfra itself before
``filelock`` opens it, so a folder where it cannot be created is reported as
that, never as "locked by another run".
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rlorinfra.errors import StateError, StateLockedError
from rlorinfra.state.files import FILE_MODE, atomic_write, make_private_folder
from rlorinfra.state.store import resolve_state_path

INITIAL_BACKOFF = 0.1  # seconds before the second attempt
MAX_BACKOFF = 2.0  # the backoff doubles up to this


def lock_file_path(state_path: Path) -> Path:
    """``<state>.lock``: the file the OS lock is taken on."""
    return state_path.with_name(state_path.name + ".lock")


def lock_info_path(state_path: Path) -> Path:
    """``<state>.lock.info``: who holds the lock (JSON)."""
    return state_path.with_name(state_path.name + ".lock.info")


@dataclass(frozen=True)
class LockInfo:
    """Who holds a state lock, as written to ``<state>.lock.info``."""

    id: str  # uuid4; what `force-unlock` asks for
    operation: str  # e.g. "apply", "state rm"
    who: str  # user name
    host: str
    pid: int
    created: str  # RFC 3339, UTC
    path: str  # the state file it locks

    @classmethod
    def new(cls, state_path: Path | str, operation: str) -> LockInfo:
        """Holder info for this process, with a fresh lock ID (``state_path``: what it locks)."""
        return cls(
            id=str(uuid.uuid4()),
            operation=operation,
            who=_user_name(),
            host=socket.gethostname(),
            pid=os.getpid(),
            created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            path=str(state_path),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LockInfo:
        """Inverse of ``to_dict``; raises KeyError/TypeError/ValueError on malformed input."""
        return cls(
            id=str(data["id"]),
            operation=str(data["operation"]),
            who=str(data["who"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            created=str(data["created"]),
            path=str(data["path"]),
        )

    def describe(self) -> str:
        """The Terraform-style ``Lock Info:`` block."""
        rows = [
            ("ID", self.id),
            ("Path", self.path),
            ("Operation", self.operation),
            ("Who", self.who),
            ("Host", self.host),
            ("PID", str(self.pid)),
            ("Created", self.created),
        ]
        return "Lock Info:\n" + "\n".join(f"  {label + ':':<11}{value}" for label, value in rows)


def _user_name() -> str:
    # The password database, not $USER: nothing below cli/ reads the environment.
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def read_lock_info(state_path: Path) -> LockInfo | None:
    """The recorded holder of the lock on ``state_path``; None if missing or unreadable."""
    state_path = resolve_state_path(state_path)
    try:
        data = json.loads(lock_info_path(state_path).read_text(encoding="utf-8"))
        return LockInfo.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class StateLock:
    """Context manager holding the lock on a state file: ``with StateLock(p, "apply") as info:``.

    ``timeout`` 0 fails at once when another run holds the lock; a positive
    timeout retries with backoff (0.1 s doubling to 2 s) until the deadline.
    ``config_path`` only makes the force-unlock hint in the error exact.
    """

    def __init__(
        self,
        state_path: Path,
        operation: str,
        timeout: float = 0.0,
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.state_path = resolve_state_path(state_path)
        self.operation = operation
        self.timeout = max(0.0, float(timeout))
        self.config_path = config_path
        self.info: LockInfo | None = None
        self._sleep = sleep or time.sleep
        self._clock = clock or time.monotonic
        self._lock: Any = None  # filelock.FileLock while held

    def __enter__(self) -> LockInfo:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> LockInfo:
        """Take the lock (waiting up to ``timeout``) and record the holder info."""
        if self._lock is not None:
            raise RuntimeError(f"{self!r} is already held")
        lock = self._wait_for_lock()
        try:
            info = LockInfo.new(self.state_path, self.operation)
            _write_info(self.state_path, info)
        except BaseException:
            lock.release()
            raise
        self._lock, self.info = lock, info
        return info

    def release(self) -> None:
        """Remove the holder info (if still ours) and drop the OS lock. Idempotent."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            # After a force-unlock the info may belong to the next run: leave it alone.
            current = read_lock_info(self.state_path)
            if current is not None and self.info is not None and current.id == self.info.id:
                with suppress(FileNotFoundError):
                    lock_info_path(self.state_path).unlink()
        finally:
            lock.release()

    def __repr__(self) -> str:
        return f"StateLock({str(self.state_path)!r}, {self.operation!r})"

    def _wait_for_lock(self) -> Any:
        import filelock  # imported here: `rlorinfra --version` should not pay for it

        path = lock_file_path(self.state_path)
        try:
            make_private_folder(path.parent)
        except OSError as exc:
            raise StateError(
                f"Cannot create the folder of the state file {self.state_path}",
                f"{exc.strerror or exc}. Point `[state] path` in the config at a file in a folder "
                "you can write, then run the command again.",
            ) from None
        _create_lock_file(path, self.state_path)
        lock = filelock.FileLock(str(path), mode=FILE_MODE)
        deadline = self._clock() + self.timeout
        delay = INITIAL_BACKOFF
        while not _try_acquire(lock, path, filelock.Timeout):
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._locked_error()
            self._sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_BACKOFF)
        return lock

    def _locked_error(self) -> StateLockedError:
        holder = read_lock_info(self.state_path)
        where = f"The state file {self.state_path}"
        if holder is None:
            unavailable = (
                f"{lock_info_path(self.state_path)} is missing or unreadable; "
                "the holder may be starting up or be an older rlorinfra"
            )
            return lock_held_error(where, None, self.timeout, config_path=self.config_path, unavailable=unavailable)
        return lock_held_error(where, holder, self.timeout, config_path=self.config_path)


def lock_held_error(
    where: str,
    holder: LockInfo | None,
    waited: float,
    *,
    config_path: Path | None = None,
    unavailable: str = "the holder did not record it",
) -> StateLockedError:
    """The Terraform-style "Error acquiring the state lock" naming ``holder`` (any backend).

    ``where`` starts the sentence (``The state file prod.state.json``); ``waited``
    is the lock timeout that ran out (0: none was asked for).
    """
    lock_id = holder.id if holder else "<ID>"
    config = str(config_path) if config_path else "<config>"
    described = holder.describe() if holder else f"Lock Info: unavailable ({unavailable})."
    waited_text = f" (waited {waited:g} s)" if waited else ""
    detail = (
        f"{where} is locked by another rlorinfra run{waited_text}.\n\n"
        f"{described}\n\n"
        "rlorinfra acquires a state lock to protect the state from being written by multiple "
        "users at the same time. Wait for the other run to finish, retry with --lock-timeout, "
        "or if you are sure no other run is active: "
        f"`rlorinfra force-unlock {lock_id} -f {config}`"
    )
    return StateLockedError("Error acquiring the state lock", detail, holder=holder.to_dict() if holder else {})


def _create_lock_file(path: Path, state_path: Path) -> None:
    """Make sure ``<state>.lock`` exists, 0600; a StateError naming the file if it cannot be made."""
    # filelock reports a lock file it may not create as "held by someone" (it retries
    # until the timeout), which would send the user hunting for a run that does not exist.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StateError(
            f"Cannot create the lock file {path}",
            f"{exc.strerror or exc}. rlorinfra locks this file beside the state file "
            f"{state_path}; point `[state] path` in the config at a "
            "file in a folder you can write, then run the command again. Nothing was changed.",
        ) from None
    try:
        if hasattr(os, "fchmod"):
            with suppress(PermissionError):  # another user's lock file is not ours to change
                os.fchmod(fd, FILE_MODE)  # 0600 whatever the umask (or an older rlorinfra) did
    finally:
        os.close(fd)


def _try_acquire(lock: Any, path: Path, timeout_error: type[Exception]) -> bool:
    """One non-blocking attempt; False when another process holds the lock."""
    try:
        lock.acquire(timeout=0)
    except timeout_error:
        return False
    except OSError as exc:
        raise StateError(
            f"Cannot lock the state: {path}",
            f"{exc.strerror or exc}. rlorinfra needs to create and lock this file beside the "
            "state file; check the folder exists and is writable by you.",
        ) from None
    return True


def _write_info(state_path: Path, info: LockInfo) -> None:
    data = (json.dumps(info.to_dict(), indent=2) + "\n").encode("utf-8")
    try:
        # Not fsynced: the OS lock it describes dies with its process (and with
        # the machine), so the info never needs to survive a crash.
        atomic_write(lock_info_path(state_path), data, durable=False)
    except OSError as exc:
        raise StateError(
            f"Cannot write the lock info {lock_info_path(state_path)}",
            f"{exc.strerror or exc}. Check that the folder of the state file is writable by you.",
        ) from None


def force_unlock(state_path: Path, lock_id: str) -> None:
    """Remove the lock on ``state_path`` recorded with ``lock_id``.

    Refuses (``StateError``) when there is no lock info or its ID differs.
    With the right ID it removes ``<state>.lock.info`` and ``<state>.lock``:
    a live holder keeps its OS lock on the unlinked file, but the next run
    locks a new file and proceeds.
    """
    state_path = resolve_state_path(state_path)
    info_path = lock_info_path(state_path)
    if not info_path.exists():
        raise StateError(
            "No lock to remove",
            f"{info_path} does not exist: the state {state_path} is not locked by any rlorinfra "
            "run, so there is nothing to unlock. Nothing was changed.",
        )
    holder = read_lock_info(state_path)
    if holder is None:
        raise StateError(
            f"Cannot read the lock info {info_path}",
            f"It is not a valid lock info file, so the lock ID cannot be checked. If you are sure "
            f"no rlorinfra run is active, delete {info_path} and {lock_file_path(state_path)} by hand.",
        )
    if holder.id != lock_id:
        raise StateError(
            "Lock ID does not match",
            f"The state {state_path} is locked with ID {holder.id}, not {lock_id}. Nothing was "
            f"changed.\n\n{holder.describe()}\n\nIf you are sure that run is no longer active, "
            f"run `rlorinfra force-unlock {holder.id}` with the same -f as that run.",
        )
    for path in (info_path, lock_file_path(state_path)):
        with suppress(FileNotFoundError):
            path.unlink()
