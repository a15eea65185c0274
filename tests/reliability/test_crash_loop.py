"""Crash loop: an apply of 20 jobs is SIGKILLed at 20 different moments, each
followed by a complete apply. Nothing may be lost and nothing duplicated.

Four lanes (one emulator and one workspace each) live through 5 rounds. Even rounds declare
20 fresh names (so the apply deletes the previous 20 and creates 20), odd rounds
change a field of every job (so the apply replaces all 20: delete, then create).
Each round, the killed run dies at its moment (see killer.py), then a complete
``apply`` must succeed and leave exactly one live job per declared name, no live
job that state does not know, a valid state (and backup), no stray temp file and
a clean ``plan --detailed-exitcode``.

Targeted kills during create_before_destroy replaces and deposed-job deletes
(killer.py's ``pre-delete`` moment, kills on the emulator's side of a DELETE)
live in test_crash_targets.py.
"""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml, serve_world
from tests.reliability.helpers import assert_converged, finish, record_figures, spawn

JOBS = 20

# (mode, n): see killer.py. Four lanes (own emulator and workspace each) run in
# parallel; a lane's rounds alternate fresh names (even) and replacements (odd).
# Together: before any create, during state writes, around creates and deletes,
# while waiting, and after some jobs were ready. State writes are group-committed,
# so a round makes as few as ~8 (fresh) or ~20 (replace) renames: the Nth-rename
# moments stay well below that, so every run really dies at its moment.
LANES = [
    [
        ("replace", 1),  # writing the lock info: before anything
        ("delete", 3),  # third delete answered, state not yet updated
        ("post", 10),  # tenth POST answered, state not yet updated
        ("fsync", 20),  # temp file of a state write fsynced, not yet renamed
        ("state:jobs>=10", 0),
    ],  # external kill once ten new jobs are recorded
    [
        ("replace", 2),  # the first state write of the run
        ("pre-post", 10),  # tenth create recorded as "creating", POST never sent
        ("fsync", 3),
        ("delete", 20),  # every delete answered, the last one unrecorded
        ("poll", 1),
    ],  # the first wait round: every job provisioning
    [
        ("pre-post", 1),
        ("replace", 12),
        ("post", 20),  # every create answered, the last one unrecorded
        ("state:jobs>=1", 0),  # external kill as soon as state records a new job
        ("fsync", 12),
    ],
    [
        ("post", 1),
        ("replace", 7),
        ("healthy", 8),  # eighth health check answered: some jobs ready
        ("replace", 16),
        ("delay", 0),
    ],  # external kill right after the process started
]
MOMENTS = [m for lane in LANES for m in lane]


def round_config(world, round_no: int) -> list[str]:
    """The config of one round: fresh names on even rounds, a changed field on odd ones."""
    prefix = f"r{round_no - round_no % 2:02d}"
    names = [f"{prefix}-trainer-{k:02d}" for k in range(JOBS)]
    lr = f"learning_rate = {1e-5 * (round_no + 1):.1e}"
    world.write_config(jobs_toml(*names, extra={n: lr for n in names}))
    return names


def _state_predicate(spec: str):
    field, threshold = spec.split(">=")
    threshold = int(threshold)

    def check(state: dict, fresh: set[str]) -> bool:
        jobs = {n: r for n, r in state.get("resources", {}).get("job", {}).items()}
        if field == "jobs":
            return len(set(jobs) & fresh) >= threshold
        return sum(1 for r in jobs.values() if r.get("phase") == field) >= threshold

    return check


def kill_from_outside(world, proc, spec: str, fresh: set[str]) -> None:
    """SIGKILL ``proc`` once the state file satisfies ``spec`` (or after a short delay)."""
    if spec == "delay":
        time.sleep(0.3)
    else:
        check = _state_predicate(spec.split(":", 1)[1])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if check(json.loads(world.state_path.read_text()), fresh):
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


def killed_apply(world, mode: str, n: int, fresh: set[str]) -> int:
    """One apply that dies at its moment; returns its exit status (-9 when killed)."""
    args = ["apply", "-f", str(world.config), "--auto-approve"]
    if mode.startswith("state:") or mode == "delay":
        proc = spawn(args)
        kill_from_outside(world, proc, mode, fresh)
    else:
        proc = spawn(args, mode=mode, n=n)
    code, out, err = finish(proc)
    assert "Traceback" not in err
    return code


def cli_code(world, *args: str) -> int:
    """Run rlorinfra in-process and return its exit code (thread-safe: no stream swapping)."""
    from rlorinfra.cli.common import run_cli
    from rlorinfra.cli.main import cli

    return run_cli(cli, ["--no-color", args[0], "-f", str(world.config), *args[1:]])


def run_lane(tmp_path, lane_no: int, moments) -> dict:
    """Every round of one lane; returns its figures."""
    world = serve_world(tmp_path / f"lane{lane_no}", provision_seconds=0.3)
    kills = leftovers = 0
    try:
        for round_no, (mode, n) in enumerate(moments):
            where = f"lane {lane_no} round {round_no} ({mode} {n})"
            names = round_config(world, round_no)
            code = killed_apply(world, mode, n, set(names))
            kills += code == -signal.SIGKILL
            assert code == -signal.SIGKILL, f"{where}: the run was not killed (exit {code})"
            assert cli_code(world, "apply", "--auto-approve") == 0, f"{where}: recovery apply failed"
            assert_converged(world, names)
            assert cli_code(world, "plan", "--detailed-exitcode") == 0, f"{where}: plan not clean"
            leftovers += len(list(world.folder.glob(".*.tmp")))
    finally:
        world.server.stop()
    return {"kills": kills, "leftover_temp_files": leftovers, "rounds": len(moments)}


def test_twenty_kills_lose_nothing_and_duplicate_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv("NO_COLOR", "1")
    with ThreadPoolExecutor(max_workers=len(LANES)) as pool:
        futures = [pool.submit(run_lane, tmp_path, i, lane) for i, lane in enumerate(LANES)]
        lanes = [f.result(timeout=600) for f in futures]
    kills = sum(lane["kills"] for lane in lanes)
    assert kills == len(MOMENTS) == 20
    assert sum(lane["leftover_temp_files"] for lane in lanes) == 0
    record_figures(
        "crash_loop",
        {
            "kill_moments": len(MOMENTS),
            "kills_survived": kills,
            "jobs_per_apply": JOBS,
            "recovery_applies": len(MOMENTS),
            "duplicates_found": 0,
            "orphans_found": 0,
            "lost_jobs": 0,
            "stale_temp_files": 0,
        },
    )
