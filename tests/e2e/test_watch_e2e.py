"""``rlorinfra watch`` as a real subprocess against a served emulator (issue 18's done-when).

Every wait is on a condition with a deadline; nothing asserts on a sleep.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import run_cli
from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml


class Watch:
    """A running ``rlorinfra watch --json``: its events are read into a queue as they come."""

    def __init__(self, world, *args: str, env_extra: dict[str, str] | None = None) -> None:
        env = {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1", **(env_extra or {})}
        cmd = [sys.executable, "-m", "rlorinfra", "watch", "-f", str(world.config), "--json", *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self._queue: queue.Queue[dict] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self._queue.put(json.loads(line))

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The first event (seen or to come) for which ``predicate`` holds."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            self.events.append(event)
            if predicate(event):
                return event
        raise AssertionError(f"no such event; seen: {self.events[-10:]}; stderr: {self._stderr()}")

    def count(self, type_: str) -> int:
        self._drain()
        return sum(1 for e in self.events if e["type"] == type_)

    def _drain(self) -> None:
        if self.proc.poll() is not None:
            self._reader.join(timeout=10)  # an exited process's last lines may still be on their way
        while True:
            try:
                self.events.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._drain()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _is(type_: str, address: str = "") -> Callable[[dict], bool]:
    return lambda e: e["type"] == type_ and (not address or e["address"] == address)


@pytest.fixture
def watches():
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.kill()


def _start(watches: list[Watch], world, *args: str, env_extra: dict[str, str] | None = None) -> Watch:
    watch = Watch(world, *args, env_extra=env_extra)
    watches.append(watch)
    watch.wait_for(_is("started"))
    return watch


def _applied(world, *names: str, extra: str = "") -> None:
    world.write_config(jobs_toml(*names), extra=extra)
    result = world.cli("apply", "--auto-approve")
    assert result.exit_code == 0, result.output


def _job_id(world, name: str = "policy") -> str:
    return world.state()["resources"]["job"][name]["job_id"]


def _live(world, job_id: str) -> dict:
    return world.store.get_job(job_id)


def _wait(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


class Counted:
    """The emulator served again through a middleware that counts requests (and can make them all 503)."""

    def __init__(self, world) -> None:
        from collections import Counter

        from rlorinfra.controlplane.app import make_app
        from rlorinfra.controlplane.server import serve_in_thread

        self.app = make_app(world.store, api_key=API_KEY)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = serve_in_thread(self._count)
        world.url = self.server.url

    def _count(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        key = "resume" if method == "POST" and path.endswith(":resume") else "list" if method == "GET" else "other"
        with self._lock:
            self.counts[key] += 1
        return self.app(environ, start_response)

    def count(self, key: str) -> int:
        with self._lock:
            return self.counts[key]


@pytest.fixture
def counted(world):
    served = Counted(world)
    yield served
    served.server.stop()


def test_a_preempted_trainer_is_resumed_within_two_intervals_with_its_id(world, watches):
    _applied(world, "policy")
    job_id = _job_id(world)
    watch = _start(watches, world, "--interval", "1s")
    world.store.preempt(job_id)
    preempted = time.monotonic()
    event = watch.wait_for(_is("action", "job.policy"), timeout=30)
    took = time.monotonic() - preempted
    assert event["what"].startswith("resume")
    assert took < 2 * 1.0 + 8.0  # two intervals, plus each cycle's own work on a loaded machine
    _wait(lambda: _live(world, job_id)["state"] == "JOB_STATE_RUNNING")
    assert _job_id(world) == job_id
    assert watch.terminate() == 0


def test_a_human_apply_gets_the_lock_during_a_watch(world, watches):
    _applied(world, "policy")
    started = time.monotonic()
    assert world.cli("apply", "--auto-approve").exit_code == 0
    alone = time.monotonic() - started
    _start(watches, world, "--interval", "0.2s")
    for _ in range(3):
        started = time.monotonic()
        result = world.cli("apply", "--auto-approve", "--lock-timeout", "30s")
        assert result.exit_code == 0, result.output
        assert time.monotonic() - started - alone < 5.0


def test_sigterm_exits_promptly_with_the_lock_released(world, watches):
    _applied(world, "policy")
    watch = _start(watches, world, "--interval", "0.2s")
    started = time.monotonic()
    assert watch.terminate(timeout=30) == 0
    assert time.monotonic() - started < 30
    assert watch.count("stopped") == 1
    assert world.cli("apply", "--auto-approve", "--lock-timeout", "0").exit_code == 0  # the lock is free


def test_sigint_stops_it_the_same_way_and_exits_130(world, watches):
    _applied(world, "policy")
    watch = _start(watches, world, "--interval", "0.2s")
    watch.proc.send_signal(signal.SIGINT)
    assert watch.proc.wait(timeout=30) == 130
    assert watch.count("stopped") == 1
    assert world.cli("apply", "--auto-approve", "--lock-timeout", "0").exit_code == 0


def test_25_failed_refreshes_cause_no_action(world, counted, watches):
    _applied(world, "policy")
    job_id = _job_id(world)
    world.store.preempt(job_id)
    counted.app.error_rate = 1.0  # every request now answers 503
    watch = _start(watches, world, "--interval", "0.1s", "--retry-budget", "0.2s")
    _wait(lambda: watch.count("refresh_failed") >= 25, timeout=60)
    assert watch.terminate() == 0
    assert watch.count("action") == 0 and watch.count("observed") == 0
    assert counted.count("resume") == 0
    assert _live(world, job_id)["state"] == "JOB_STATE_FAILED"


def test_a_flapping_trainer_is_quarantined_after_its_budget(world, watches):
    _applied(world, "policy")
    job_id = _job_id(world)
    world.store.flap(job_id, period=0.3)
    watch = _start(watches, world, "--interval", "0.2s", "--resume-budget", "2", "--resume-backoff", "0")
    watch.wait_for(_is("quarantined", "job.policy"), timeout=60)
    assert watch.terminate() == 0
    assert watch.count("action") == 2
    record = world.state()["resources"]["job"]["policy"]
    assert record["watch"]["quarantined"] is True and len(record["watch"]["resumes"]) == 2
    result = run_cli(["state", "unquarantine", "-f", str(world.config), "job.policy"], env={KEY_ENV: API_KEY})
    assert result.exit_code == 0 and "no longer quarantined" in result.output
    assert "watch" not in world.state()["resources"]["job"]["policy"]


def test_sigkill_and_restart_cause_no_duplicate_resume(world, counted, watches):
    _applied(world, "policy")
    job_id = _job_id(world)
    world.store.preempt(job_id)
    # No backoff: a kill between the journal and the POST leaves the resume to the restarted watch.
    args = ("--interval", "0.2s", "--resume-backoff", "0")
    first = _start(watches, world, *args)

    def journaled() -> bool:
        return bool(world.state()["resources"]["job"]["policy"].get("watch", {}).get("resumes"))

    _wait(journaled)
    first.kill()  # SIGKILL right after the resume was recorded, sent or not
    second = _start(watches, world, *args)
    _wait(lambda: _live(world, job_id)["state"] == "JOB_STATE_RUNNING")
    seen = counted.count("list")
    _wait(lambda: counted.count("list") >= seen + 5)  # several more cycles of the restarted watch
    assert second.terminate() == 0
    assert counted.count("resume") == 1  # whichever process sent it, one resume reached the job
    assert _job_id(world) == job_id


def test_converge_creates_a_newly_declared_job_and_once_exits_as_plan(world, watches):
    _applied(world, "policy")
    world.write_config(jobs_toml("policy", "extra"))
    heal_only = subprocess.run(_once_cmd(world), env=_env(), capture_output=True, text=True, timeout=120)
    assert heal_only.returncode == 2, heal_only.stderr  # a change remains: heal-only makes none
    assert "extra" not in world.state()["resources"]["job"]
    converged = subprocess.run(_once_cmd(world, "--converge"), env=_env(), capture_output=True, text=True, timeout=120)
    assert converged.returncode == 0, converged.stdout + converged.stderr
    assert "extra" in world.state()["resources"]["job"]
    assert sorted(j["displayName"] for j in world.live_jobs()) == ["extra", "policy"]


def test_converge_refuses_a_job_over_the_budget_gate(world):
    _applied(world, "policy")
    priced = '[pricing]\nsource = "test"\nNVIDIA_H100_80GB = 8.0\n[policy]\nmax_hourly_delta = 1.0\n'
    world.write_config(jobs_toml("policy", "costly"), extra=priced)
    result = subprocess.run(_once_cmd(world, "--converge"), env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert any(e["type"] == "refused" and "max_hourly_delta" in e["what"] for e in events)
    assert "costly" not in world.state()["resources"]["job"]
    assert [j["displayName"] for j in world.live_jobs()] == ["policy"]


def _env() -> dict[str, str]:
    return {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1"}


def _once_cmd(world, *args: str) -> list[str]:
    return [sys.executable, "-m", "rlorinfra", "watch", "-f", str(world.config), "--once", "--json", *args]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    import httpx

    response = httpx.get(url, timeout=5)
    return response.status_code, response.text


def test_metrics_healthz_and_systemd_follow_a_quarantine(world, watches, tmp_path):
    import socket

    from prometheus_client.parser import text_string_to_metric_families

    _applied(world, "policy")
    job_id = _job_id(world)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = (
        "--interval",
        "0.2s",
        "--resume-budget",
        "2",
        "--resume-backoff",
        "0",
        "--metrics-addr",
        f"127.0.0.1:{port}",
    )
    watch = _start(watches, world, *args, env_extra={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    assert notify.recv(4096).decode().startswith("READY=1")  # after the first cycle (then never read again:
    # the queue fills up, and the watch must go on without blocking on its pings)
    assert "WATCHDOG=1" in notify.recv(4096).decode()  # after the next one
    assert _get(f"{base}/healthz")[0] == 200

    world.store.flap(job_id, period=0.3)
    watch.wait_for(_is("quarantined", "job.policy"), timeout=60)
    deadline = time.monotonic() + 10
    while _get(f"{base}/healthz")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    code, body = _get(f"{base}/healthz")
    assert code == 503 and "job.policy" in body
    families = {f.name: f for f in text_string_to_metric_families(_get(f"{base}/metrics")[1])}
    assert families["rlorinfra_watch_quarantined"].samples[0].value == 1
    assert families["rlorinfra_watch_cycles"].samples[0].value >= 2
    assert watch.terminate() == 0
    notify.close()
