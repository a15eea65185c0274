"""Fixtures for the state tests: sample states and a lock held by another process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.state.pg_server import pg_server  # noqa: F401 - the session's PostgreSQL cluster fixture

HELPER = Path(__file__).with_name("lock_holder.py")


@dataclass
class Holder:
    """A subprocess holding the state lock."""

    proc: subprocess.Popen
    info: dict

    def release(self) -> None:
        """Ask it to release the lock and wait until it has exited."""
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        self.proc.wait()

    def kill(self) -> None:
        """SIGKILL it: no cleanup code runs, the stale lock info stays behind."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def holder_factory(
    argv: Callable[..., list[str]], env: dict[str, str] | None = None
) -> Iterator[Callable[..., Holder]]:
    """Yield ``start(*args)``: spawn ``argv(*args)``, return a ``Holder`` once it printed its lock info.

    Every holder still running when the fixture ends is killed and reaped.
    """
    started: list[Holder] = []

    def start(*args: Any, **kwargs: Any) -> Holder:
        proc = subprocess.Popen(
            argv(*args, **kwargs), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        line = proc.stdout.readline()  # blocks until the lock is held
        assert line, f"{argv.__name__} exited early with {proc.wait()}"
        holder = Holder(proc, json.loads(line))
        started.append(holder)
        return holder

    yield start
    for holder in started:
        if holder.proc.poll() is None:
            holder.proc.kill()
        holder.proc.wait()
        for stream in (holder.proc.stdin, holder.proc.stdout):
            stream.close()


def _lock_holder_argv(state_path: Path, operation: str = "apply") -> list[str]:
    return [sys.executable, str(HELPER), str(state_path), operation]


@pytest.fixture
def lock_holder():
    """Factory: ``lock_holder(state_path, operation)`` -> a ``Holder`` that holds the lock."""
    yield from holder_factory(_lock_holder_argv)


# The S3 fixtures (moto in server mode); imported last, as they build on ``Holder``.
from tests.state.s3_server import moto_s3, s3_actor, s3_bucket  # noqa: E402, F401
