"""Targeted kills during create_before_destroy replacements and deposed-job deletes.

The crash loop (test_crash_loop.py) kills plain creates, deletes and state
writes; this one aims at the moments where a replaced ("deposed") job is
tracked only by its record's ``deposed_job_ids``. Three jobs with
``create_before_destroy = true`` are replaced each round (a changed
``learning_rate``) by an apply that is SIGKILLed at one moment:

* ``state-deposed``   - the state file first shows a ``deposed_job_ids`` entry
                        (the new job recorded "creating", its POST maybe not sent);
* ``create-answered`` - the emulator answered the first POST of a new job;
* ``pre-delete``      - the first DELETE, before it is sent (killer.py);
* ``delete-sent``     - a DELETE of a deposed job reached the emulator, not yet acted on;
* ``delete-answered`` - the emulator deleted a deposed job; its answer never arrives.

After each kill a complete apply must leave every invariant of
helpers.check_invariants true, no deposed job left and every replaced job gone.
"""

from __future__ import annotations

import json
import signal

from tests.e2e.conftest import jobs_toml
from tests.reliability.helpers import (
    StateWatcher,
    check_invariants,
    finish,
    job_id_of,
    record_figures,
    serve_logged,
    spawn,
)

NAMES = ["cbd-0", "cbd-1", "cbd-2"]
TARGETS = ["state-deposed", "create-answered", "pre-delete", "delete-sent", "delete-answered"]
ROUNDS = 2


def _config(world, round_no: int) -> None:
    lr = f"learning_rate = {1e-5 * (round_no + 2):.1e}\ncreate_before_destroy = true"
    world.write_config(jobs_toml(*NAMES, extra={n: lr for n in NAMES}))


def _arm(target: str, world, log, watcher, box: dict, old_ids: set[str]) -> None:
    """Make the running apply (``box["proc"]``) die at ``target``."""

    def kill() -> None:
        if not box.get("killed") and box["proc"].poll() is None:
            box["killed"] = True
            box["proc"].send_signal(signal.SIGKILL)

    if target == "state-deposed":
        box["fired"] = watcher.kill_when(
            box["proc"],
            lambda doc: any(r.get("deposed_job_ids") for r in doc.get("resources", {}).get("job", {}).values()),
        )
        return
    if target == "pre-delete":
        return  # killer.py dies inside the process
    method, when = {
        "create-answered": ("POST", "after"),
        "delete-sent": ("DELETE", "before"),
        "delete-answered": ("DELETE", "after"),
    }[target]

    def hook(m, path, query, moment):
        if m != method or moment != when:
            return None
        if method == "POST" and path.endswith("/rlorTrainerJobs") or path.rsplit("/", 1)[-1] in old_ids:
            kill()
        return None

    log.hooks.append(hook)


def _killed_round(world, log, target: str, round_no: int) -> tuple[int, set[str], set[str]]:
    """One killed apply and its recovery; returns (exit of the killed run, IDs seen, replaced IDs)."""
    old_ids = {r["job_id"] for r in world.state()["resources"]["job"].values()}
    _config(world, round_no)
    watcher = StateWatcher(world.state_path)
    box: dict = {}
    try:
        args = ["apply", "-f", str(world.config), "--auto-approve"]
        box["proc"] = spawn(args, mode="pre-delete", n=1) if target == "pre-delete" else spawn(args)
        _arm(target, world, log, watcher, box, old_ids)
        code, _out, err = finish(box["proc"], timeout=60)
        assert "Traceback" not in err, err
        log.hooks.clear()
        recovery = world.cli("apply", "--auto-approve")
        assert recovery.exit_code == 0, f"{target} round {round_no}: recovery failed\n{recovery.output}"
    finally:
        seen = watcher.stop()
    return code, seen, old_ids


def test_kills_during_create_before_destroy_replaces_lose_and_duplicate_nothing(tmp_path):
    world, log = serve_logged(tmp_path, provision_seconds=0.3)
    kills = duplicates = orphans = 0
    try:
        _config(world, -1)
        assert world.cli("apply", "--auto-approve").exit_code == 0
        round_no = 0
        for _ in range(ROUNDS):
            for target in TARGETS:
                where = f"{target} (round {round_no})"
                code, seen, old_ids = _killed_round(world, log, target, round_no)
                assert code == -signal.SIGKILL, f"{where}: the run was not killed (exit {code})"
                kills += 1
                figures = check_invariants(world, seen | log.created_ids())
                duplicates += figures["duplicates"]
                orphans += figures["orphans"]
                state = world.state()["resources"]["job"]
                assert sorted(state) == NAMES, where
                assert all(not r.get("deposed_job_ids") for r in state.values()), f"{where}: {state}"
                live = {job_id_of(j): j["state"] for j in world.live_jobs()}
                assert all(live.get(i, "JOB_STATE_DELETING") == "JOB_STATE_DELETING" for i in old_ids), where
                round_no += 1
    finally:
        world.server.stop()
    summary = {"kills": kills, "duplicates": duplicates, "orphans": orphans}
    print(f"crash_targets: {json.dumps(summary)}")
    record_figures(
        "crash_targets", {**summary, "targets": len(TARGETS), "rounds": ROUNDS, "jobs_per_apply": len(NAMES)}
    )
    assert kills == len(TARGETS) * ROUNDS and duplicates == 0 and orphans == 0
