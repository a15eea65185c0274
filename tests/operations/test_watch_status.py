"""The status a running watch shares with its metrics server: health and snapshots."""

from __future__ import annotations

from rlorinfra.operations.watch_status import Health, WatchStatus


def test_a_fresh_status_is_healthy() -> None:
    assert WatchStatus().health() is Health.OK


def test_a_quarantined_resource_degrades_health() -> None:
    assert WatchStatus(quarantined=("job.flappy",)).health() is Health.DEGRADED


def test_a_failed_refresh_degrades_health_until_one_succeeds() -> None:
    status = WatchStatus(last_refresh_ok=100.0, last_error="503 from the control plane")
    assert status.health() is Health.DEGRADED
    status.last_error = ""
    assert status.health() is Health.OK


def test_a_snapshot_is_a_copy_that_later_updates_do_not_touch() -> None:
    status = WatchStatus(cycles=3, actions={"resume": 1}, quarantined=("job.a",), last_refresh_ok=5.0)
    shot = status.snapshot()
    with status.lock:
        status.cycles += 1
        status.actions["resume"] += 1
    assert (shot.cycles, shot.actions, shot.quarantined, shot.last_refresh_ok) == (3, {"resume": 1}, ("job.a",), 5.0)
    assert shot.lock is not status.lock
    assert not status.lock.locked()
