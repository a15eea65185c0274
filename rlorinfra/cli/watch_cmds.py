"""``rlorinfra watch``: the reconcile loop (DESIGN.md §8), its signals, events and exit codes."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from rlorinfra.cli.common import Seconds, file_option, json_option
from rlorinfra.cli.exit_codes import ExitCode
from rlorinfra.cli.runtime import insecure_option, open_workspace

if TYPE_CHECKING:
    from rlorinfra.config.model import Config
    from rlorinfra.operations.watching import CycleResult, WatchEvent, WatchLoop
    from rlorinfra.operations.workspace import Workspace

# A refresh that cannot answer within this is a failed refresh (no action), not a
# cycle that outlives SIGTERM's 30 s: watch caps the config's retry budget to it.
WATCH_RETRY_BUDGET_S = 15.0


@click.command("watch")
@file_option
@click.option(
    "--interval",
    type=Seconds(min=0.1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Sleep between cycles (seconds, or 30s, 5m...).",
)
@click.option("--converge", is_flag=True, help="Also apply config changes (through apply's protection and budget).")
@click.option("--once", is_flag=True, help="Run one cycle; exit 0 nothing to do, 2 changes or drift remain, 1 error.")
@click.option("--metrics-addr", metavar="HOST:PORT", default=None, help="Serve /metrics and /healthz here.")
@click.option(
    "--metrics-allow-remote",
    is_flag=True,
    help="Let --metrics-addr bind a non-loopback address (e.g. 0.0.0.0 for a Kubernetes probe).",
)
@json_option
@insecure_option
@click.option("--lock-timeout", type=Seconds(min=0), default=2.0, hidden=True, help="Per-cycle state lock wait.")
@click.option("--resume-budget", type=click.IntRange(min=0), default=5, hidden=True, help="Resumes per window.")
@click.option("--resume-window", type=Seconds(min=1), default=6 * 3600.0, hidden=True, help="The budget's window.")
@click.option("--resume-backoff", type=Seconds(min=0), default=60.0, hidden=True, help="First backoff after a resume.")
@click.option(
    "--retry-budget", type=Seconds(min=0.05), default=WATCH_RETRY_BUDGET_S, hidden=True, help="Per-request retries."
)
def watch_cmd(
    config_path: Path,
    interval: float,
    converge: bool,
    once: bool,
    metrics_addr: str | None,
    metrics_allow_remote: bool,
    as_json: bool,
    insecure: bool,
    lock_timeout: float,
    resume_budget: int,
    resume_window: float,
    resume_backoff: float,
    retry_budget: float,
) -> ExitCode:
    """Keep the live world converged: resume preempted or failed trainers, report the rest.

    Each cycle takes the state lock (for at most a couple of seconds; a busy
    lock skips the cycle), refreshes, plans, acts and releases the lock before
    sleeping --interval. By default only resumes and waits run (heal-only);
    --converge also creates, updates and deletes, through the same protection
    and budget gates as `apply`. A resume needs two consecutive observations,
    and each job has a resume budget (5 per 6 h, with backoff): a job that
    spends it is quarantined until `rlorinfra apply` or `rlorinfra state
    unquarantine ADDRESS`. A job with `suspend = true` is left alone; jobs
    stopped by inactivity or COMPLETED resume only when `resume_on` says so.

    SIGTERM or SIGINT finishes the current step, writes state, releases the
    lock and exits (0 after SIGTERM, 130 after SIGINT). --json prints one JSON
    line per event.

    \b
    Examples:
      rlorinfra watch
      rlorinfra watch --interval 30s --json
      rlorinfra watch --once        # for cron: exit 2 when something is left to do
    """
    from rlorinfra.cli.systemd import SystemdNotifier
    from rlorinfra.cli.watch_server import start_status_server
    from rlorinfra.operations.watch_status import WatchStatus
    from rlorinfra.operations.watching import ResumeBudget, WatchLoop, WatchSettings

    settings = WatchSettings(
        interval_s=interval,
        converge=converge,
        lock_timeout_s=lock_timeout,
        budget=ResumeBudget(max_resumes=resume_budget, window_s=resume_window, backoff_base_s=resume_backoff),
    )
    ws = _watch_workspace(config_path, insecure, retry_budget)
    status = WatchStatus()
    stop_server: Callable[[], None] | None = None
    try:
        if metrics_addr:
            stop_server = start_status_server(metrics_addr, status, allow_remote=metrics_allow_remote)
        # systemd (NOTIFY_SOCKET): READY=1 after the first cycle, WATCHDOG=1 after each one.
        notifier = SystemdNotifier.from_environment(os.environ)
        loop = WatchLoop(
            ws,
            settings,
            status,
            emit=_emitter(as_json),
            on_cycle=notifier.cycle_finished,
            load_config=lambda: _watch_config(config_path, retry_budget),  # an edited config is read again
        )
        if once:
            return _once_code(loop.run_cycle())
        stopped_by = _run_until_signalled(loop)
        notifier.stopping()
        # SIGTERM is how a service manager stops it: a clean stop. Ctrl-C is an interrupt, as everywhere else.
        return ExitCode.INTERRUPTED if stopped_by == signal.SIGINT else ExitCode.OK
    finally:
        if stop_server is not None:
            stop_server()
        ws.close()


def _watch_workspace(config_path: Path, insecure: bool, retry_budget: float) -> Workspace:
    """The workspace, its control-plane retry budget capped so a refresh fails within a cycle."""
    ws = open_workspace(config_path, insecure)
    ws.config = _capped(ws.config, retry_budget)
    return ws


def _watch_config(config_path: Path, retry_budget: float) -> Config:
    """The config loaded as ``open_workspace`` does (with this run's cost overrides), retry budget capped."""
    from rlorinfra.cli.common import load_config
    from rlorinfra.cli.cost_cmds import with_cost_overrides

    return _capped(with_cost_overrides(load_config(config_path)), retry_budget)


def _capped(config: Config, retry_budget: float) -> Config:
    cp = config.control_plane
    if cp.retry_budget_s > retry_budget:
        return replace(config, control_plane=replace(cp, retry_budget_s=retry_budget))
    return config


def _run_until_signalled(loop: WatchLoop) -> int | None:
    """Run the loop until SIGTERM or SIGINT (returned); a signal lets the current cycle finish."""
    stop = threading.Event()
    received: list[int] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        loop.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else None


def _once_code(result: CycleResult) -> ExitCode:
    if result.error or result.skipped:
        return ExitCode.ERROR
    return ExitCode.CHANGES if result.pending else ExitCode.OK


def _emitter(as_json: bool) -> Callable[[WatchEvent], None]:
    from rlorinfra.cli.views import emit_json

    def emit(event: WatchEvent) -> None:
        if as_json:
            emit_json({"type": event.type.value, "address": event.address, "what": event.what})
            return
        where = f"{event.address}: " if event.address else ""
        click.echo(f"[{event.type.value}] {where}{event.what}", err=event.type.value in {"error", "refresh_failed"})

    return emit
