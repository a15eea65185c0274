"""Fixtures for the state tests: sample states and a lock held by another process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture
def lock_holder():
    """Factory: ``lock_holder(state_path, operation)`` -> a ``Holder`` that holds the lock."""
    started: list[Holder] = []

    def start(state_path: Path, operation: str = "apply") -> Holder:
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(state_path), operation],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline()  # blocks until the lock is held
        assert line, f"lock holder exited early with {proc.wait()}"
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


# The S3 fixtures (moto in server mode); imported last, as they build on ``Holder``.
from tests.state.s3_server import moto_s3, s3_actor, s3_bucket  # noqa: E402, F401
