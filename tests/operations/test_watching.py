"""The watch loop's cycle against the embedded emulator: confirmations, budgets, quarantine, locks, reporting.

A fake clock drives budgets and backoff; the emulator's store injects the faults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rlorinfra.apply import ApplyOptions
from rlorinfra.config.load import load_config
from rlorinfra.controlplane.store import Store
from rlorinfra.errors import ApiError
from rlorinfra.model.address import Address
from rlorinfra.operations import PlanRequest, Workspace, run_apply
from rlorinfra.operations.state_edits import state_unquarantine
from rlorinfra.operations.ui import Operation
from rlorinfra.operations.watch_status import Health, WatchStatus
from rlorinfra.operations.watching import (
    ResumeBudget,
    WatchEvent,
    WatchEventType,
    WatchLoop,
    WatchSettings,
)
from tests.operations.test_flows import RecordingUI

FAST = ApplyOptions(poll_min_s=0.01, poll_max_s=0.05)
JOB = """
[jobs.{name}]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"
{extra}
"""
HEADER = '[control_plane]\nurl = "local"\n[control_plane.emulator]\nprovision_seconds = 0.05\n'
POLICY = Address.job("policy")
PRICED = '[pricing]\nsource = "test"\nNVIDIA_H100_80GB = 8.0\n[policy]\nmax_hourly_delta = 1.0\n'


class Clock:
    """Unix time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class World:
    """One config folder, its workspace (the embedded emulator) and the emulator's store."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "rlorinfra.toml"
        self.clock = Clock()
        self.events: list[WatchEvent] = []
        self.status = WatchStatus()
        self._workspaces: list[Workspace] = []

    def write(self, *names: str, extra: dict[str, str] | None = None, header: str = "") -> None:
        extra = extra or {}
        body = "".join(JOB.format(name=n, extra=extra.get(n, "")) for n in names)
        self.config.write_text(HEADER + header + body)

    def workspace(self) -> Workspace:
        ws = Workspace(config=load_config(self.config, env={}), api_key=None)
        self._workspaces.append(ws)
        return ws

    def store(self) -> Store:
        return Store(self.workspace().config.emulator_db_path, provision_seconds=0.05)

    def apply(self) -> None:
        run_apply(self.workspace(), PlanRequest(), RecordingUI(), FAST, auto_approve=True)

    def loop(self, **settings: object) -> WatchLoop:
        budget = settings.pop("budget", ResumeBudget(backoff_base_s=0))
        opts = WatchSettings(budget=budget, **settings)  # type: ignore[arg-type]
        return WatchLoop(self.workspace(), opts, self.status, self.events.append, clock=self.clock)

    def state(self):
        return self.workspace().store.read()

    def job_id(self, name: str = "policy") -> str:
        return self.state().jobs[name].job_id

    def live_state(self, name: str = "policy") -> str:
        return str(self.store().get_job(self.job_id(name))["state"])

    def wait_live(self, predicate: Callable[[str], bool], name: str = "policy", timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = self.live_state(name)
            if predicate(live):
                return live
            time.sleep(0.02)
        raise AssertionError(f"{name} never reached the expected state (last {live})")

    def types(self) -> list[WatchEventType]:
        return [e.type for e in self.events]

    def close(self) -> None:
        for ws in self._workspaces:
            ws.close()


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    w.write("policy")
    w.apply()
    yield w
    w.close()


def _running(state: str) -> bool:
    return state == "JOB_STATE_RUNNING"


def _resumes(world: World) -> int:
    return world.status.snapshot().actions.get("resume", 0)


def test_a_preempted_trainer_is_resumed_on_the_second_observation_with_its_id(world):
    job_id = world.job_id()
    world.store().preempt(job_id)
    loop = world.loop()
    first = loop.run_cycle()
    assert world.live_state() == "JOB_STATE_FAILED" and first.pending and not first.actions
    assert WatchEventType.OBSERVED in world.types()
    assert world.state().jobs["policy"].watch.resumable_seen == 1  # kept in state: a restart keeps it
    second = loop.run_cycle()
    assert second.actions == {"resume": 1}
    assert world.job_id() == job_id
    world.wait_live(_running)
    watch = world.state().jobs["policy"].watch
    assert watch.resumes == (world.clock.now,) and watch.resumable_seen == 0 and not watch.quarantined


def test_one_resumable_read_followed_by_a_healthy_one_does_nothing(world):
    store = world.store()
    store.preempt(world.job_id())
    loop = world.loop()
    loop.run_cycle()
    store.resume_job(world.job_id())  # it came back by itself (or the read was wrong)
    world.wait_live(_running)
    loop.run_cycle()
    loop.run_cycle()
    assert _resumes(world) == 0
    assert world.state().jobs["policy"].watch.resumable_seen == 0


def test_a_restarted_watch_keeps_the_first_observation(world):
    world.store().preempt(world.job_id())
    world.loop().run_cycle()
    assert world.loop().run_cycle().actions == {"resume": 1}  # a new process: the count came from state


def test_failed_refreshes_cause_no_action(world, monkeypatch):
    world.store().preempt(world.job_id())
    loop = world.loop()
    loop.run_cycle()  # one observation

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ApiError("Control plane unreachable", "injected")

    monkeypatch.setattr("rlorinfra.operations.watching.build_plan", unreachable)
    results = [loop.run_cycle() for _ in range(25)]
    assert all(r.error and not r.actions for r in results)
    assert world.live_state() == "JOB_STATE_FAILED" and _resumes(world) == 0
    assert world.status.snapshot().health() is Health.DEGRADED
    assert world.types().count(WatchEventType.REFRESH_FAILED) == 25


def test_a_busy_lock_skips_the_cycle_and_reads_nothing(world):
    world.store().preempt(world.job_id())
    holder = world.workspace()
    loop = world.loop(lock_timeout_s=0.05)
    with holder.lock(Operation.APPLY, 0):
        result = loop.run_cycle()
    assert result.skipped and not result.actions
    assert world.status.snapshot().skipped_cycles == 1
    assert world.state().jobs["policy"].watch.resumable_seen == 0  # not even observed


def test_the_lock_is_free_between_cycles(world):
    loop = world.loop()
    loop.run_cycle()
    with world.workspace().lock(Operation.APPLY, 0):  # would raise if watch still held it
        pass


def _flap_until_quarantined(world: World, loop: WatchLoop, cycles: int) -> None:
    for _ in range(cycles):
        if world.live_state() != "JOB_STATE_FAILED":
            world.wait_live(_running)
            world.store().preempt(world.job_id())
        loop.run_cycle()
        world.clock.now += 1


def test_a_flapping_trainer_spends_its_budget_and_is_quarantined(world):
    loop = world.loop(budget=ResumeBudget(max_resumes=2, backoff_base_s=0))
    _flap_until_quarantined(world, loop, 8)
    watch = world.state().jobs["policy"].watch
    assert watch.quarantined and len(watch.resumes) == 2
    assert _resumes(world) == 2
    assert world.status.snapshot().quarantined == ("job.policy",)
    assert world.status.snapshot().health() is Health.DEGRADED
    quarantined = [e for e in world.events if e.type is WatchEventType.QUARANTINED]
    assert len(quarantined) == 1  # reported once, not every cycle
    loop.run_cycle()
    assert _resumes(world) == 2  # left alone


def test_state_unquarantine_lets_watch_resume_again(world):
    loop = world.loop(budget=ResumeBudget(max_resumes=1, backoff_base_s=0))
    _flap_until_quarantined(world, loop, 5)
    assert world.state().jobs["policy"].watch.quarantined
    address, was = state_unquarantine(world.workspace(), "policy")
    assert (address, was) == (POLICY, True)
    assert world.state().jobs["policy"].watch.is_empty
    assert state_unquarantine(world.workspace(), "job.policy") == (POLICY, False)
    loop.run_cycle()
    loop.run_cycle()
    assert _resumes(world) == 2


def test_a_human_apply_clears_the_quarantine(world):
    loop = world.loop(budget=ResumeBudget(max_resumes=1, backoff_base_s=0))
    _flap_until_quarantined(world, loop, 5)
    world.apply()  # resumes it too: the human chose to go on
    assert not world.state().jobs["policy"].watch.quarantined


def test_backoff_between_resumes_grows_and_is_recorded(world):
    loop = world.loop(budget=ResumeBudget(max_resumes=5, backoff_base_s=100))
    world.store().preempt(world.job_id())
    loop.run_cycle()
    loop.run_cycle()
    assert world.state().jobs["policy"].watch.backoff_until == world.clock.now + 100
    world.wait_live(_running)
    world.store().preempt(world.job_id())
    for _ in range(3):
        loop.run_cycle()
        world.clock.now += 10
    assert _resumes(world) == 1 and WatchEventType.BACKOFF in world.types()
    world.clock.now += 100
    loop.run_cycle()
    assert _resumes(world) == 2
    assert world.state().jobs["policy"].watch.backoff_until == world.clock.now + 200  # doubled


def test_completed_trainers_are_resumed_only_when_resume_on_says_so(world):
    world.store().complete(world.job_id())
    loop = world.loop()
    for _ in range(3):
        loop.run_cycle()
    assert _resumes(world) == 0 and world.types().count(WatchEventType.NOT_RESUMED) == 1
    world.write("policy", extra={"policy": 'resume_on = ["completed"]'})
    loop = world.loop()
    loop.run_cycle()
    loop.run_cycle()
    assert _resumes(world) == 1


def test_an_inactivity_stop_is_not_resumed_by_default(tmp_path):
    world = World(tmp_path)
    world.write("policy", extra={"policy": "inactivity_timeout = 1"})
    world.apply()
    try:
        world.wait_live(lambda s: s == "JOB_STATE_CANCELLED")
        loop = world.loop()
        for _ in range(3):
            loop.run_cycle()
        assert _resumes(world) == 0
        assert any("inactivity" in e.what for e in world.events if e.type is WatchEventType.NOT_RESUMED)
        world.write("policy", extra={"policy": 'inactivity_timeout = 1\nresume_on = ["inactivity"]'})
        loop = world.loop()
        loop.run_cycle()
        loop.run_cycle()
        assert _resumes(world) == 1
    finally:
        world.close()


def test_suspend_stops_every_automated_action(world):
    world.write("policy", extra={"policy": "suspend = true"})
    world.store().preempt(world.job_id())
    loop = world.loop()
    for _ in range(3):
        loop.run_cycle()
    assert _resumes(world) == 0 and world.types().count(WatchEventType.SUSPENDED) == 1


def test_heal_only_reports_a_config_change_once_and_makes_none(world):
    world.write("policy", "extra")
    loop = world.loop()
    results = [loop.run_cycle() for _ in range(3)]
    assert all(r.pending and not r.actions for r in results)
    changes = [e for e in world.events if e.type is WatchEventType.CHANGE]
    assert [e.address for e in changes] == ["job.extra"]
    assert "extra" not in world.state().jobs


def test_drift_is_reported_once_until_it_changes(world):
    store = world.store()
    store.pause(world.job_id())
    loop = world.loop(budget=ResumeBudget(backoff_base_s=1000))
    loop.run_cycle()
    loop.run_cycle()  # resumed
    drifts = [e for e in world.events if e.type is WatchEventType.DRIFT]
    assert len(drifts) == 1 and drifts[0].address == "job.policy"
    world.wait_live(_running)
    loop.run_cycle()  # healthy again: the drift is gone
    store.preempt(world.job_id())
    loop.run_cycle()
    loop.run_cycle()
    drifts = [e for e in world.events if e.type is WatchEventType.DRIFT]
    assert len(drifts) == 2  # a new drift is reported again


def test_converge_creates_a_newly_declared_job(world):
    world.write("policy", "extra")
    result = world.loop(converge=True).run_cycle()
    assert result.actions == {"create": 1}
    assert "extra" in world.state().jobs


def test_converge_refuses_changes_over_the_budget_gate_but_still_heals(world):
    world.write("policy", "extra", header=PRICED)
    world.store().preempt(world.job_id())
    loop = world.loop(converge=True)
    loop.run_cycle()
    result = loop.run_cycle()
    assert "extra" not in world.state().jobs
    assert WatchEventType.REFUSED in world.types()
    assert result.pending and result.actions == {"resume": 1}


def test_once_reports_nothing_pending_on_a_converged_world(world):
    result = world.loop().run_cycle()
    assert not result.pending and not result.error and not result.skipped
    assert world.status.snapshot().last_refresh_ok == world.clock.now


@pytest.mark.parametrize("converge", [False, True])
def test_a_protected_resource_the_plan_would_replace_is_held_out_and_the_heals_still_run(world, converge):
    world.write("policy", "extra", extra={"policy": "prevent_destroy = true"})
    world.apply()
    policy_id = world.job_id()
    # A field the API cannot update: the plan would replace the protected job, which apply refuses.
    world.write("policy", "extra", extra={"policy": "prevent_destroy = true\nforward_only = true"})
    world.store().preempt(world.job_id("extra"))
    loop = world.loop(converge=converge)
    results = [loop.run_cycle() for _ in range(3)]
    assert [r.actions for r in results[:2]] == [{}, {"resume": 1}]  # the preempted trainer elsewhere is healed
    assert all(r.pending and not r.error for r in results)
    refused = [e for e in world.events if e.type is WatchEventType.REFUSED]
    assert len(refused) == 1 and refused[0].address == "job.policy" and "prevent_destroy" in refused[0].what
    assert WatchEventType.ERROR not in world.types() and world.status.snapshot().last_error == ""
    assert world.job_id() == policy_id and world.live_state() == "JOB_STATE_RUNNING"  # nothing destructive
    world.wait_live(_running, name="extra")


def test_apply_and_plan_still_refuse_a_protected_replace(world):
    from rlorinfra.errors import PlanError
    from rlorinfra.operations.planning import build_plan

    world.write("policy", extra={"policy": "prevent_destroy = true"})
    world.apply()
    world.write("policy", extra={"policy": "prevent_destroy = true\nforward_only = true"})
    ws = world.workspace()
    with pytest.raises(PlanError, match="prevent_destroy"):
        build_plan(ws, ws.store.read(), PlanRequest())
    with pytest.raises(PlanError, match="prevent_destroy"):
        world.apply()


def test_watch_once_prints_human_lines_and_exits_as_plan(world):
    from tests.conftest import run_cli

    world.write("policy", "extra")
    result = run_cli(["watch", "-f", str(world.config), "--once"])
    assert result.exit_code == 2, result.output
    assert "[change] job.extra: create" in result.stdout
    world.write("policy")
    assert run_cli(["watch", "-f", str(world.config), "--once"]).exit_code == 0


def test_resume_on_and_suspend_are_validated_and_never_part_of_the_spec(tmp_path):
    from rlorinfra.errors import ConfigError

    world = World(tmp_path)
    world.write("policy", extra={"policy": 'resume_on = ["completed", "inactivity"]\nsuspend = true'})
    spec = load_config(world.config, env={}).jobs["policy"]
    assert spec.resume_on == ("completed", "inactivity") and spec.suspend
    assert "resume_on" not in spec.spec() and "suspend" not in spec.spec()  # steering watch replaces nothing
    world.write("policy", extra={"policy": 'resume_on = ["inactivty"]'})
    with pytest.raises(ConfigError) as info:
        load_config(world.config, env={})
    assert 'Did you mean "inactivity"?' in str(info.value.detail)


def test_a_kill_after_the_journal_but_before_the_resume_sends_it_once_after_restart(world, monkeypatch):
    from rlorinfra.apply import Executor

    world.store().preempt(world.job_id())
    loop = world.loop()
    loop.run_cycle()

    def killed(self: object, plan: object) -> None:
        raise KeyboardInterrupt  # the process dies after the journal was written, before any request

    with monkeypatch.context() as patch:
        patch.setattr(Executor, "run", killed)
        with pytest.raises(KeyboardInterrupt):
            loop.run_cycle()
    assert len(world.state().jobs["policy"].watch.resumes) == 1  # journaled before the request
    assert world.live_state() == "JOB_STATE_FAILED"
    restarted = world.loop()
    results = [restarted.run_cycle() for _ in range(2)]  # two fresh observations, then the one real resume
    assert [r.actions for r in results] == [{}, {"resume": 1}]
    world.wait_live(_running)


def test_an_edited_config_is_read_again_and_a_stopped_job_is_not_resumed(world):
    loop = world.loop()  # started with the old config: desired_state "running"
    world.write("policy", extra={"policy": 'desired_state = "stopped"'})
    world.apply()  # a human stops the trainer on purpose
    assert world.state().jobs["policy"].phase == "stopped"
    results = [loop.run_cycle() for _ in range(3)]
    assert WatchEventType.CONFIG_RELOADED in world.types()
    assert _resumes(world) == 0 and not any(r.actions for r in results)
    assert world.live_state() != "JOB_STATE_RUNNING"


def test_a_job_stopped_on_purpose_is_never_resumed_even_by_a_config_that_says_running(world):
    world.write("policy", extra={"policy": 'desired_state = "stopped"'})
    world.apply()
    world.write("policy")  # running again in the file, but nobody applied it
    loop = world.loop()
    results = [loop.run_cycle() for _ in range(3)]
    assert _resumes(world) == 0 and not any(r.actions for r in results)
    assert WatchEventType.NOT_RESUMED in world.types()


def test_a_config_that_no_longer_validates_stops_all_action_until_it_does(world):
    loop = world.loop()
    store, job_id = world.store(), world.job_id()
    store.preempt(job_id)
    world.config.write_text(world.config.read_text() + "\n[jobs.policy.oops\n")
    results = [loop.run_cycle() for _ in range(3)]
    assert all(r.error and not r.actions for r in results)
    assert world.status.snapshot().health() is Health.DEGRADED
    assert [e.type for e in world.events].count(WatchEventType.ERROR) == 1  # reported once, not every cycle
    assert store.get_job(job_id)["state"] == "JOB_STATE_FAILED"
    world.write("policy")
    results = [loop.run_cycle() for _ in range(2)]
    assert results[-1].actions == {"resume": 1}
    assert world.status.snapshot().last_error == ""


def test_a_state_backend_error_fails_one_cycle_and_watching_goes_on(world):
    from rlorinfra.errors import StateError
    from rlorinfra.state.backends.local import LocalBackend

    class Blip(LocalBackend):
        failures = 1

        def read(self):  # type: ignore[no-untyped-def]
            if Blip.failures:
                Blip.failures -= 1
                raise StateError("PostgreSQL did not answer", "connection reset")
            return super().read()

    ws = world.workspace()
    ws.backend = Blip(ws.config.state_settings.path, config_path=ws.config.path)
    world.store().preempt(world.job_id())
    loop = WatchLoop(ws, WatchSettings(budget=ResumeBudget(backoff_base_s=0)), world.status, world.events.append,
                     clock=world.clock)  # fmt: skip
    failed = loop.run_cycle()
    assert failed.error and not failed.actions and not failed.skipped
    assert WatchEventType.REFRESH_FAILED in world.types()
    assert world.status.snapshot().health() is Health.DEGRADED
    results = [loop.run_cycle() for _ in range(2)]
    assert results[-1].actions == {"resume": 1}
    assert world.status.snapshot().health() is not Health.DEGRADED
