"""ttl and protection on the served emulator, through a real ``python -m rlorinfra`` subprocess.

A job with ``ttl = "3s"`` is planned for delete once 3 s have passed and
``apply`` deletes it; removing a protected job's block fails the plan until
``state unprotect``; ``destroy --exclude-protected`` destroys the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from rlorinfra.model.times import parse_rfc3339
from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml
from tests.e2e.test_subprocess import finish, rlorinfra


def run(world, *args: str) -> tuple[int, str, str]:
    return finish(rlorinfra(world, *args))


def run_state(world, *args: str) -> tuple[int, str, str]:
    """``rlorinfra state ARGS -f CONFIG`` (the group takes no -f before its command)."""
    env = {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "rlorinfra", "state", *args, "-f", str(world.config)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def live_names(world) -> set[str]:
    return {
        j["displayName"] for j in world.live_jobs() if j["state"] not in ("JOB_STATE_DELETED", "JOB_STATE_DELETING")
    }


def test_a_job_with_a_3s_ttl_is_planned_for_delete_after_3s_and_apply_deletes_it(world):
    world.write_config(jobs_toml("short", extra={"short": 'ttl = "3s"'}))
    code, out, err = run(world, "apply", "--auto-approve")
    assert code == 0, out + err
    record = world.state()["resources"]["job"]["short"]
    expires = parse_rfc3339(record["expires_at"])
    assert expires is not None and (expires - parse_rfc3339(record["created_at"])).total_seconds() == 3

    time.sleep(max((expires - datetime.now(UTC)).total_seconds(), 0) + 1.1)
    code, out, err = run(world, "plan", "--detailed-exitcode")
    assert code == 2, out + err
    assert "job.short will be destroyed (ttl expired" in out and "ago)" in out
    assert "Plan: 0 to create" in out and "1 to delete" in out
    assert "the next plan creates a new one" in err  # the note: remove the block to keep it deleted

    code, out, err = run(world, "apply", "--auto-approve")
    assert code == 0, out + err
    assert "short" not in world.state().get("resources", {}).get("job", {})
    assert "short" not in live_names(world)


def test_a_protected_job_survives_removing_its_block_until_state_unprotect(world):
    world.write_config(jobs_toml("keep", "scratch", extra={"keep": "prevent_destroy = true"}))
    code, out, err = run(world, "apply", "--auto-approve")
    assert code == 0, out + err
    assert world.state()["resources"]["job"]["keep"]["protected"] is True

    code, out, err = run(world, "destroy", "--exclude-protected", "--auto-approve")
    assert code == 0, out + err
    assert "Left out of this destroy because they are protected: job.keep" in err
    assert live_names(world) == {"keep"}

    world.write_config(jobs_toml())  # the cleanup commit: every block removed
    code, out, err = run(world, "plan")
    assert code == 1, out + err
    assert "job.keep is protected, but this plan would delete it" in err
    assert "`prevent_destroy = false`" in err and "rlorinfra state unprotect job.keep" in err
    assert live_names(world) == {"keep"}

    serial = world.state()["serial"]
    code, out, err = run_state(world, "unprotect", "job.keep")
    assert code == 0 and "Unprotected job.keep" in out, out + err
    assert world.state()["serial"] == serial + 1
    code, out, err = run(world, "apply", "--auto-approve")
    assert code == 0, out + err
    assert live_names(world) == set()
