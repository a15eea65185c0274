"""Runs through a real ``python -m rlorinfra`` subprocess: a normal apply, a
SIGKILL while creates are in flight, and a job the control plane keeps failing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml


def rlorinfra(world, *args, **kw) -> subprocess.Popen:
    env = {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "rlorinfra", args[0], "-f", str(world.config), *args[1:]]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_subprocess_apply_then_plan_is_clean(world):
    world.write_config(jobs_toml("alpha", "beta", "gamma"))
    code, out, err = finish(rlorinfra(world, "apply", "--auto-approve"))
    assert code == 0, err
    assert "3 created" in out
    code, out, err = finish(rlorinfra(world, "plan", "--detailed-exitcode"))
    assert code == 0, out + err


def _wait_for_state(world, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate(world.state()):
                return True
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.01)
    return False


def test_sigkill_during_creates_never_duplicates(world):
    names = [f"job-{i:02d}" for i in range(8)]
    world.write_config(jobs_toml(*names))
    proc = rlorinfra(world, "apply", "--auto-approve", "--parallelism", "2")
    assert _wait_for_state(world, lambda s: len(s["resources"]["job"]) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    code, out, err = finish(rlorinfra(world, "apply", "--auto-approve"))
    assert code == 0, out + err
    counts = Counter(j["displayName"] for j in world.live_jobs())
    assert counts == Counter({n: 1 for n in names})
    state = world.state()
    assert sorted(state["resources"]["job"]) == names
    live_ids = {j["name"].rsplit("/", 1)[-1] for j in world.live_jobs()}
    assert {r["job_id"] for r in state["resources"]["job"].values()} == live_ids
    code, out, err = finish(rlorinfra(world, "plan", "--detailed-exitcode"))
    assert code == 0, out + err


def _keep_failing(world, name: str, stop: threading.Event) -> None:
    """Fail every incarnation of ``name`` as soon as it is seen (a hostile control plane)."""
    while not stop.is_set():
        for job in world.live_jobs():
            if job["displayName"] == name and job["state"] not in ("JOB_STATE_FAILED",):
                try:
                    world.store.fail(job["name"].rsplit("/", 1)[-1], message="out of memory")
                except Exception:  # noqa: BLE001 - racing with the apply is expected
                    pass
        time.sleep(0.02)


def test_a_job_that_keeps_failing_ends_with_exit_1_and_others_ready(world):
    world.write_config(jobs_toml("doomed", "healthy"))
    stop = threading.Event()
    saboteur = threading.Thread(target=_keep_failing, args=(world, "doomed", stop), daemon=True)
    saboteur.start()
    try:
        code, out, err = finish(rlorinfra(world, "apply", "--auto-approve"))
    finally:
        stop.set()
        saboteur.join()
    assert code == 1
    assert "doomed" in err and "max_resumes" in err
    assert "healthy: created" in out
    assert "Traceback" not in err
    assert world.state()["resources"]["job"]["healthy"]["phase"] == "ready"


def test_ctrl_c_stops_waiting_writes_state_and_exits_130(tmp_path):
    from tests.e2e.conftest import serve_world

    world = serve_world(tmp_path, provision_seconds=60)  # jobs stay CREATING while we interrupt
    try:
        world.write_config(jobs_toml("alpha", "beta"))
        proc = rlorinfra(world, "apply", "--auto-approve")
        assert _wait_for_state(
            world,
            lambda s: (
                all(r["phase"] == "provisioning" for r in s["resources"]["job"].values())
                and len(s["resources"]["job"]) == 2
            ),
        )
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc, timeout=60)
        assert code == 130, out + err
        assert "Interrupted" in err and "alpha" in err and "beta" in err
        assert "Traceback" not in err
        state = world.state()
        assert sorted(state["resources"]["job"]) == ["alpha", "beta"]
        live_ids = {j["name"].rsplit("/", 1)[-1] for j in world.live_jobs()}
        assert {r["job_id"] for r in state["resources"]["job"].values()} == live_ids
    finally:
        world.server.stop()
