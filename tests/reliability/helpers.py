"""Shared helpers for the reliability suite: subprocess runs, folder snapshots,
invariant checks and the figures recorded for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.e2e.conftest import API_KEY, KEY_ENV

HERE = Path(__file__).resolve().parent
KILLER = HERE / "killer.py"
REPO = HERE.parent.parent
FIGURES_DIR = Path(os.environ.get("RLOR_RELIABILITY_FIGURES", Path(tempfile.gettempdir()) / "rlorinfra-reliability"))


def record_figures(name: str, figures: dict) -> None:
    """Save one test's figures as JSON (the terminal summary prints them all)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child rlorinfra: the test key, no colour, the repo importable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1", "PYTHONPATH": path, **extra}


def spawn(
    args: list[str], *, mode: str = "none", n: int = 0, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``rlorinfra ARGS`` in a child process, armed to SIGKILL itself per ``mode``/``n``."""
    cmd = [sys.executable, str(KILLER), mode, str(n), *args]
    return subprocess.Popen(
        cmd, env=env or subprocess_env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    """Wait for a child (generously: CI machines are slow) and return (code, stdout, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mode)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(folder))] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return files


def live_jobs(world) -> list[dict]:
    """Every live (non-tombstoned) job, read from the emulator's store (no HTTP, no injected faults)."""
    jobs, after = [], None
    while True:
        page, after = world.store.list_jobs(page_size=200, after=after)
        jobs += page
        if after is None:
            return jobs


def live_by_name(world, prefix: str = "") -> Counter:
    """How many live jobs carry each display name starting with ``prefix``."""
    return Counter(j["displayName"] for j in live_jobs(world) if j["displayName"].startswith(prefix))


def live_ids(world) -> set[str]:
    """IDs of every live job on the emulator."""
    return {j["name"].rsplit("/", 1)[-1] for j in live_jobs(world)}


def read_state_strictly(path: Path):
    """Decode a state file with the product's own strict decoder (raises on anything invalid)."""
    from rlorinfra.state.codec import decode_state

    return decode_state(path.read_bytes(), path)


def assert_converged(world, names: list[str]) -> dict:
    """The invariants after a complete apply; returns figures about the live world."""
    counts = live_by_name(world)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    assert duplicates == 0, f"duplicate live jobs: {[n for n, c in counts.items() if c > 1]}"
    assert sorted(counts) == sorted(names), f"live names differ: {sorted(set(counts) ^ set(names))}"
    state = read_state_strictly(world.state_path)
    assert sorted(state.jobs) == sorted(names)
    assert {r.job_id for r in state.jobs.values()} == live_ids(world), "a live job state does not know"
    assert all(r.phase == "ready" for r in state.jobs.values())
    if world.state_path.with_name(world.state_path.name + ".backup").exists():
        read_state_strictly(world.state_path.with_name(world.state_path.name + ".backup"))
    return {"live": sum(counts.values()), "duplicates": duplicates}


# --- no job lost: request log, state watcher, invariants (test_no_job_lost, test_crash_targets) ----


def run_rlorinfra(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m rlorinfra ARGS`` as a real subprocess; returns (code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "rlorinfra", "--no-color", *args],
        env=env or subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def popen_rlorinfra(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m rlorinfra ARGS`` started in the background (to be killed from outside)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rlorinfra", "--no-color", *args],
        env=env or subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class RequestLog:
    """WSGI middleware: records every request and runs hooks before the app acts and after it answered.

    A hook is ``hook(method, path, query, when)`` with ``when`` "before" or "after"; it
    may SIGKILL a client (the request was sent, the answer never arrives), and a
    "before" hook returning ``(status line, headers)`` answers in the app's place. The IDs of
    every create POSTed through it are the jobs some client made over HTTP.
    """

    def __init__(self, app) -> None:
        import threading

        self.app = app
        self.requests: list[tuple[str, str, str]] = []
        self.hooks: list = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        method, path, query = environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
        with self._lock:
            self.requests.append((method, path, query))
        for hook in list(self.hooks):
            refused = hook(method, path, query, "before")
            if refused:  # the hook answers instead of the app, which never acts
                status, headers = refused
                start_response(status, [("Content-Type", "application/json"), ("Content-Length", "2"), *headers])
                return [b"{}"]
        body = list(self.app(environ, start_response))
        for hook in list(self.hooks):
            hook(method, path, query, "after")
        return body

    def created_ids(self) -> set[str]:
        """Every ``rlorTrainerJobId`` a client POSTed a create for."""
        from urllib.parse import parse_qs

        with self._lock:
            return {
                i
                for m, p, q in self.requests
                if m == "POST" and p.endswith("/rlorTrainerJobs")
                for i in parse_qs(q).get("rlorTrainerJobId", [])
            }

    def count(self, method: str, suffix: str = "") -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.endswith(suffix))


def serve_logged(tmp_path: Path, *, provision_seconds: float = 0.2, port: int = 0, store=None, **app_kw):
    """The emulator served on loopback behind a RequestLog; returns (world, log)."""
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import serve_in_thread
    from rlorinfra.controlplane.store import Store
    from tests.e2e.conftest import World

    store = store or Store(tmp_path / "cp.sqlite3", provision_seconds=provision_seconds)
    log = RequestLog(make_app(store, api_key=API_KEY, **app_kw))
    server = serve_in_thread(log, port=port)
    folder = tmp_path / "ws"
    folder.mkdir(exist_ok=True)
    return World(url=server.url, store=store, folder=folder, server=server), log


def state_ids(doc: dict) -> set[str]:
    """Every job ID a state document tracks: records' ``job_id`` and their ``deposed_job_ids``."""
    jobs = doc.get("resources", {}).get("job", {}) if isinstance(doc, dict) else {}
    return {r["job_id"] for r in jobs.values()} | {d for r in jobs.values() for d in r.get("deposed_job_ids", [])}


def read_state_doc(path: Path) -> dict | None:
    """The state file as JSON, or None while it is missing or (never, with atomic writes) torn."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _holds(predicate, doc: dict) -> bool:
    """``predicate(doc)``, False when the document lacks what it looks at (a record not written yet)."""
    try:
        return bool(predicate(doc))
    except (KeyError, TypeError, AttributeError):
        return False


class StateWatcher:
    """Polls a state file in a thread and remembers every job ID it ever tracked.

    ``kill_when(proc, predicate)`` SIGKILLs ``proc`` the first time ``predicate(doc)`` holds.
    """

    def __init__(self, path: Path, interval: float = 0.002) -> None:
        import threading

        self.path, self.interval = path, interval
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._rules: list = []
        self._lock = threading.Lock()
        self.observe()
        self._thread.start()

    def observe(self) -> dict | None:
        doc = read_state_doc(self.path)
        if doc is not None:
            with self._lock:
                self.seen |= state_ids(doc)
                rules = list(self._rules)
            for rule in rules:
                proc, predicate, fired = rule
                if not fired.is_set() and _holds(predicate, doc):
                    fired.set()
                    if proc.poll() is None:
                        proc.kill()
        return doc

    def kill_when(self, proc, predicate):
        """Arm a kill of ``proc``; returns an Event set when the predicate held."""
        import threading

        fired = threading.Event()
        with self._lock:
            self._rules.append((proc, predicate, fired))
        return fired

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.observe()
            self._stop.wait(self.interval)

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.observe()
        return self.seen


def job_id_of(job: dict) -> str:
    return job["name"].rsplit("/", 1)[-1]


def check_invariants(world, known_ids: set[str], *, foreign: set[str] = frozenset(), settled: bool = True) -> dict:
    """(a) one live job per display name, (b) every live job rlorinfra made is tracked (or being deleted),
    (c) ``plan --detailed-exitcode`` is 0. Returns figures (duplicates, orphans).

    ``settled=False`` (between a failed apply and its recovery, when deposed jobs
    legitimately share their record's name) checks (b) only.
    """
    active = [j for j in world.live_jobs() if j["state"] != "JOB_STATE_DELETING"]
    counts = Counter(j["displayName"] for j in active)
    duplicates = {n: c for n, c in counts.items() if c > 1}
    doc = read_state_doc(world.state_path) or {}
    tracked = state_ids(doc)
    ours = {job_id_of(j) for j in active} - set(foreign)
    orphans = sorted(ours - tracked)
    assert not (settled and duplicates), f"(a) several live jobs under one name: {duplicates}"
    assert not orphans, f"(b) live jobs rlorinfra made that state does not track: {orphans} (known {sorted(known_ids)})"
    assert ours <= set(known_ids) | tracked, f"live jobs nobody recorded: {sorted(ours - set(known_ids))}"
    if world.state_path.exists():
        read_state_strictly(world.state_path)
    if settled:
        result = world.cli("plan", "--detailed-exitcode")
        assert result.exit_code == 0, (
            f"(c) plan after recovery is not clean (exit {result.exit_code}):\n{result.output}"
        )
    return {"duplicates": sum(c - 1 for c in duplicates.values()), "orphans": len(orphans)}
