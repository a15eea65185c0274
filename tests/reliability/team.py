"""Helpers for the team-state faults: "hosts" sharing one backend, and a loopback proxy that can blackhole.

A ``Host`` is a working directory with its own ``rlorinfra.toml`` (the same served
emulator, the same postgres or S3 state); every command is a real
``python -m rlorinfra`` subprocess run from that directory. ``Blackhole`` sits
between rlorinfra and the state server and, when told, stops forwarding (the
connections stay open, nothing answers): a server that went away mid-run.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import KEY_ENV
from tests.reliability.helpers import subprocess_env

RUN_TIMEOUT = 60  # a run that takes longer hangs: the test fails instead of the suite stalling


@dataclass
class Host:
    """One operator's machine: a folder with a config, and the environment its runs get."""

    folder: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.folder / "rlorinfra.toml"

    def write_config(self, url: str, state_toml: str, jobs_toml: str) -> None:
        """``rlorinfra.toml``: the served emulator, the shared ``[state]`` and the jobs."""
        header = f'[control_plane]\nurl = "{url}"\napi_key_env = "{KEY_ENV}"\n\n{state_toml}\n'
        self.config.write_text(header + jobs_toml)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``rlorinfra ARGS`` started in the background from this host's folder."""
        return subprocess.Popen(
            [sys.executable, "-m", "rlorinfra", "--no-color", *args],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
        """``rlorinfra ARGS`` to the end; (exit code, stdout, stderr)."""
        return finish(self.popen(*args), timeout)


def finish(proc: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    """Wait for ``proc`` (killed if it outlives ``timeout``: a hang fails the test) and return its outcome."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"rlorinfra still running after {timeout} s:\n{out}\n{err}") from None
    return proc.returncode, out, err


def make_host(folder: Path, **env: str) -> Host:
    folder.mkdir(parents=True, exist_ok=True)
    return Host(folder, subprocess_env(**env))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Blackhole:
    """A TCP proxy on 127.0.0.1 in front of ``upstream``; ``cut()`` stops all traffic, ``mend()`` restores it.

    While cut, open connections stay open but nothing is relayed either way and new
    connections are accepted and then ignored: to the client the server is there and
    never answers (a partition or a hung server, not a refused connection). ``mend()``
    drops the stalled connections (as a recovered network's peers would have) and
    relays again.
    """

    upstream: tuple[str, int]
    cut_event: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _socks: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self.cut_event.set()

    def mend(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()
        self.cut_event.clear()

    def close(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() at once
        self.listener.close()
        self.mend()
        self._thread.join(5)

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._socks.extend(socks)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._track(client)
            if self.cut_event.is_set():
                continue  # accepted, never answered: mend() closes it
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(server)
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while not self._stop.is_set():
                if self.cut_event.is_set():
                    time.sleep(0.05)  # hold the bytes: neither side hears from the other
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in ready:
                    if self.cut_event.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            client.close()
            server.close()
