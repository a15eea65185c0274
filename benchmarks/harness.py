"""Shared plumbing for the benchmarks: a served emulator in its own process,
measured subprocesses, and workspaces whose state tracks N live jobs.

Everything binds to 127.0.0.1 only, and every process started here is stopped
here (the emulator also stops by itself when our process exits: it serves until
its stdin closes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
API_KEY = "bench-key"
KEY_ENV = "RLOR_BENCH_KEY"
ACCOUNT = "local"
SHAPE = "ts-qwen3-8b-policy"
SHAPE_REF = f"accounts/fireworks/trainingShapes/{SHAPE}"
BASE_MODEL = "accounts/fireworks/models/qwen3-8b"
DEFAULT_VENV = Path(os.environ.get("RLOR_BENCH_VENV", "/tmp/benchvenv"))
PYCACHE_PREFIX = Path(os.environ.get("TMPDIR", "/tmp")) / "rlor-bench-pycache"

if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(REPO))


# -- the rlorinfra executable ------------------------------------------------------


_INSTALLED: set[Path] = set()


def ensure_venv(venv: Path = DEFAULT_VENV) -> Path:
    """A venv with this checkout installed as users install it; its console script is what users run.

    A regular (not editable) install, refreshed once per benchmark run so it is
    the code in this checkout: an editable install adds an import hook (~20 ms
    per start) that users of `pip install .` never pay. The system python here
    goes through pyenv shims and extra ``.pth`` files that add ~100 ms to every
    start, which would hide rlorinfra's own start-up.
    """
    script = venv / "bin" / "rlorinfra"
    if not (venv / "bin" / "pip").exists():
        print(f"creating {venv} (python -m venv + pip install {REPO}) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True)
        _INSTALLED.add(venv)
    if venv not in _INSTALLED:  # this checkout's code, whatever an earlier run installed
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--force-reinstall", "--no-deps", str(REPO)], check=True
        )
        _INSTALLED.add(venv)
    return script


def rlorinfra_command(use_venv: bool) -> list[str]:
    """How to start the CLI: the venv's console script, or this python's ``-m rlorinfra``."""
    return [str(ensure_venv())] if use_venv else [sys.executable, "-m", "rlorinfra"]


# -- measured subprocesses -------------------------------------------------------------


@dataclass
class Measured:
    """One finished subprocess: exit code, wall seconds, max RSS, output."""

    exit_code: int
    wall_s: float
    max_rss_mb: float
    stdout: str
    stderr: str


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str | None] | None = None, cwd: Path | None = None, timeout: float = 600.0
) -> Measured:
    """Run ``cmd``; wall time from spawn to exit, and the command's own peak RSS.

    The peak RSS comes from ``/usr/bin/time`` when there is one: a child forked
    straight from this (large) benchmark process may be charged for the parent's
    pages before it execs, which ``wait4``'s ``ru_maxrss`` would then report.
    """
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    out_path, err_path, rss_path = (tmp / f"rlor-bench-{os.getpid()}.{s}" for s in ("out", "err", "rss"))
    timer = ["/usr/bin/time", "-f", "%M", "-o", str(rss_path)] if Path("/usr/bin/time").exists() else []
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*timer, *cmd], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env(env), cwd=cwd
        )
        status, rusage = _wait4(proc, timeout)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    max_rss_kb = rusage.ru_maxrss
    if timer and rss_path.exists():
        lines = rss_path.read_text().split()
        max_rss_kb = int(lines[-1]) if lines and lines[-1].isdigit() else max_rss_kb
    for path in (out_path, err_path, rss_path):
        path.unlink(missing_ok=True)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, wall, max_rss_kb / 1024.0, stdout, stderr)


def _wait4(proc: subprocess.Popen, timeout: float) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, rusage
        if time.monotonic() > deadline:
            proc.kill()
            _, status, rusage = os.wait4(proc.pid, 0)
            return status, rusage
        time.sleep(0.002)


def median_wall(
    cmd: Sequence[str], runs: int, *, env: dict[str, str | None] | None = None, cwd: Path | None = None
) -> tuple[float, Measured]:
    """Median wall seconds of ``runs`` runs (after one warm-up), and the last run."""
    last = run_measured(cmd, env=env, cwd=cwd)  # warm-up: file cache, .pyc files
    walls = []
    for _ in range(runs):
        last = run_measured(cmd, env=env, cwd=cwd)
        walls.append(last.wall_s)
    return statistics.median(walls), last


# -- the served emulator ---------------------------------------------------------------------


class Emulator:
    """``benchmarks/emulator.py`` in its own process, with server-side counters."""

    def __init__(
        self, db: Path, *, latency_ms: float = 20.0, provision_seconds: float = 3.0, capacity: int = 1_000_000
    ) -> None:
        cmd = [
            sys.executable,
            str(BENCH_DIR / "emulator.py"),
            "--db",
            str(db),
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--latency-ms",
            str(latency_ms),
            "--provision-seconds",
            str(provision_seconds),
            "--capacity",
            str(capacity),
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("URL "):
            self.stop()
            raise RuntimeError(f"the benchmark emulator did not start (got {line!r})")
        self.url = line.split(" ", 1)[1]
        self._admin = httpx.Client(base_url=self.url, timeout=30)

    def counts(self) -> dict[str, Any]:
        """``{"requests", "connections", "by_kind"}`` since the last reset."""
        return self._admin.get("/_bench/counts").json()

    def reset(self) -> None:
        """Zero the counters (the admin client's own connection is not counted)."""
        self._admin.post("/_bench/reset")

    def stop(self) -> None:
        """Close its stdin (it shuts down), then wait; kill if it hangs."""
        if getattr(self, "_admin", None) is not None:
            self._admin.close()
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- workspaces ------------------------------------------------------------------------------------


def job_names(n: int, prefix: str = "job") -> list[str]:
    """``job-00000`` ... (sortable, valid display names and TOML keys)."""
    return [f"{prefix}-{i:05d}" for i in range(n)]


def write_config(folder: Path, url: str, names: Sequence[str]) -> Path:
    """``rlorinfra.toml`` with one shape-path job per name, pointing at ``url``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f'[control_plane]\nurl = "{url}"\napi_key_env = "{KEY_ENV}"\naccount_id = "{ACCOUNT}"\n',
        f'[defaults]\nbase_model = "{BASE_MODEL}"\ntraining_shape = "{SHAPE}"\n',
    ]
    lines += [f"[jobs.{name}]\n" for name in names]
    path = folder / "rlorinfra.toml"
    path.write_text("\n".join(lines))
    return path


def cli_env() -> dict[str, str | None]:
    """Environment for rlorinfra subprocesses: the key, no colour, no overrides."""
    env: dict[str, str | None] = {KEY_ENV: API_KEY, "NO_COLOR": "1"}
    for name in ("FIREWORKS_BASE_URL", "FIREWORKS_ACCOUNT_ID", "FIREWORKS_TRAINER_GATEWAY_URL"):
        env[name] = None
    return env


def child_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """This environment plus ``extra`` (``None`` removes a variable), with bytecode caching on.

    This machine sets PYTHONDONTWRITEBYTECODE=1, so every start would compile
    rlorinfra from source (~50 ms) as no installed package ever does. Children
    cache bytecode under a temp prefix instead, leaving the source tree clean.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_PREFIX)
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def seed_tracked_world(folder: Path, db: Path, n: int, url: str, *, others: int = 0) -> list[str]:
    """N live RUNNING jobs in ``db`` and a state file that tracks each of them.

    Jobs go straight into the emulator's store (no HTTP), created from exactly
    the spec the config declares, so the plan is "No changes". ``others`` more
    RUNNING jobs (``other-NNNNN``) share the account but are neither declared
    nor tracked. The state records no listing (``listed_jobs`` absent), so the
    first refresh lists. Returns the tracked IDs.
    """
    from rlorinfra.api.wire import create_request
    from rlorinfra.config.load import load_config
    from rlorinfra.controlplane.store import Store
    from rlorinfra.model.address import Kind
    from rlorinfra.model.jobs import job_name, trainer_endpoint
    from rlorinfra.state.model import PHASE_READY, JobRecord, State
    from rlorinfra.state.store import StateStore

    names = job_names(n)
    config = load_config(write_config(folder, url, names), {KEY_ENV: API_KEY})
    store = Store(db, provision_seconds=0.0, capacity=1_000_000, account_id=ACCOUNT)
    records, ids = {}, []
    for name, spec in config.jobs.items():
        job_id = f"{name}-aaaaaa"
        params, body = create_request(name, spec.spec())
        store.create_job(body, dict(params) | {"rlorTrainerJobId": job_id})
        records[name] = JobRecord(
            job_id=job_id,
            job_name=job_name(ACCOUNT, job_id),
            endpoint=trainer_endpoint(url, ACCOUNT, job_id),
            spec=spec.spec(),
            phase=PHASE_READY,
            observed_state="JOB_STATE_RUNNING",
        )
        ids.append(job_id)
    if others:
        body_spec = next(iter(config.jobs.values())).spec()
        for name in job_names(others, prefix="other"):
            params, body = create_request(name, body_spec)
            store.create_job(body, dict(params) | {"rlorTrainerJobId": f"{name}-bbbbbb"})
    store.list_jobs(page_size=1)  # advance the world: every job is RUNNING from now on
    store.close()
    state = State(control_plane={"url": url, "account_id": ACCOUNT}, resources={Kind.JOB: records})
    StateStore(config.state_path).write(state)
    return ids


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dump_json(path: Path | None, data: Any) -> None:
    """Write results as JSON when asked (``--json PATH``)."""
    if path:
        path.write_text(json.dumps(data, indent=2))
