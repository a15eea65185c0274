"""What ``rlorinfra watch`` costs when nothing happens: % of a core at a 60 s interval.

N tracked RUNNING jobs (default 1,000) on the served emulator (its own process, so
its CPU is not counted: in production it is Fireworks' control plane), a config
declaring them and a state tracking them. This process then plays the watcher: the
metrics server runs in its thread, and each idle cycle does what a watch cycle does
when there is nothing to heal (DESIGN.md §8, issue 18 item 7): take the state lock
(short timeout), read the state, refresh once (the LIST pages of DESIGN.md §5), plan,
record the cycle in the ``WatchStatus``, ping the systemd watchdog, release the lock.
Prometheus scrapes ``/metrics`` every 15 s (its default), so four real HTTP scrapes
are counted per cycle too.

Two rows: the watch cycle refreshes without health checks, because no heal-only
action depends on them (an unhealthy RUNNING trainer plans as "wait", which watch does
anyway) and 1,000 of them cost about 2 s of CPU in the client; the second row is the
same cycle with ``plan``'s default health checks, to show that price.

Measured: the CPU time of this process (``time.process_time``: every thread, user +
system) per cycle, the wall time per cycle, and the CPU the process burns while it
sleeps between cycles (the metrics server's idle wake-ups). The figure printed is

    % of a core = (CPU per cycle + idle CPU per second × (interval − wall per cycle)) / interval × 100

and the script exits 1 when the watch row is above the budget (1 %).

Usage: python benchmarks/bench_watch.py [--jobs 1000] [--cycles 10] [--interval 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

BUDGET_PERCENT = 1.0
SCRAPES_PER_MINUTE = 4  # Prometheus' default scrape_interval is 15 s
LOCK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WatchCost:
    """The figures of one mode of one run."""

    jobs: int
    cycles: int
    interval_s: float
    health_check: bool
    cpu_per_cycle_s: float
    wall_per_cycle_s: float
    idle_cpu_per_s: float
    requests_per_cycle: float
    health_checks_per_cycle: float
    percent_of_a_core: float


def idle_cycle(ws, status, notifier, scrape_at: tuple[str, int], scrapes: int, health_check: bool) -> None:  # noqa: ANN001
    """One watch cycle with nothing to do: lock, read, refresh, plan, record, ping, unlock; then the scrapes."""
    from rlorinfra.operations.planning import PlanRequest, build_plan
    from rlorinfra.operations.ui import Operation

    with ws.lock(Operation.PLAN, LOCK_TIMEOUT_S):
        outcome = build_plan(ws, ws.store.read(), PlanRequest(health_check=health_check))
    if outcome.plan.has_changes:
        raise RuntimeError("the benchmark world is not idle: the plan has changes")
    with status.lock:
        status.cycles += 1
        status.drift_count = len(outcome.plan.drift)
        status.last_refresh_ok = time.time()
        status.last_error = ""
    notifier.cycle_finished()
    for _ in range(scrapes):
        conn = http.client.HTTPConnection(*scrape_at, timeout=10)
        conn.request("GET", "/metrics")
        conn.getresponse().read()
        conn.close()


def measure(jobs: int, cycles: int, interval: float, work: Path, idle_sample_s: float = 5.0) -> list[WatchCost]:
    """Seed ``jobs`` tracked RUNNING jobs; time ``cycles`` idle cycles without, then with, health checks."""
    from rlorinfra.cli.systemd import SystemdNotifier
    from rlorinfra.cli.watch_server import WatchServer
    from rlorinfra.config.load import load_config
    from rlorinfra.operations.watch_status import WatchStatus
    from rlorinfra.operations.workspace import Workspace

    folder, db = work / "watch", work / "watch.sqlite3"
    with H.Emulator(db, latency_ms=0) as emulator:
        H.seed_tracked_world(folder, db, jobs, emulator.url)
        config = load_config(folder / "rlorinfra.toml", {H.KEY_ENV: H.API_KEY})
        ws = Workspace(config=config, api_key=H.API_KEY)
        status = WatchStatus()
        server = WatchServer(status, "127.0.0.1", 0)
        address = server.start()
        try:
            watcher = Watcher(ws, status, SystemdNotifier(None), address, round(SCRAPES_PER_MINUTE * interval / 60))
            watcher.cycle(health_check=True)  # warm-up: imports, connections, the first LIST
            cpu_0 = time.process_time()
            time.sleep(idle_sample_s)  # between cycles: only the metrics server's thread is awake
            idle_per_s = (time.process_time() - cpu_0) / idle_sample_s
            return [
                watcher.timed(emulator, jobs, cycles, interval, idle_per_s, health_check=mode) for mode in (False, True)
            ]
        finally:
            server.stop()
            ws.close()


@dataclass
class Watcher:
    """This process playing ``watch``: its workspace, status, notifier and metrics address."""

    ws: object
    status: object
    notifier: object
    address: tuple[str, int]
    scrapes: int

    def cycle(self, *, health_check: bool) -> None:
        """One idle cycle."""
        idle_cycle(self.ws, self.status, self.notifier, self.address, self.scrapes, health_check)

    def timed(
        self, emulator: H.Emulator, jobs: int, cycles: int, interval: float, idle_per_s: float, *, health_check: bool
    ) -> WatchCost:
        """``cycles`` idle cycles in one mode: CPU and wall per cycle, and the server's request counts."""
        emulator.reset()
        cpu, wall = [], []
        for _ in range(cycles):
            cpu_0, wall_0 = time.process_time(), time.perf_counter()
            self.cycle(health_check=health_check)
            cpu.append(time.process_time() - cpu_0)
            wall.append(time.perf_counter() - wall_0)
        counts = emulator.counts()
        cpu_s, wall_s = statistics.mean(cpu), statistics.mean(wall)
        busy = cpu_s + idle_per_s * max(interval - wall_s, 0.0)
        return WatchCost(
            jobs=jobs,
            cycles=cycles,
            interval_s=interval,
            health_check=health_check,
            cpu_per_cycle_s=cpu_s,
            wall_per_cycle_s=wall_s,
            idle_cpu_per_s=idle_per_s,
            requests_per_cycle=counts["requests"] / cycles,
            health_checks_per_cycle=counts["health_checks"] / cycles,
            percent_of_a_core=100 * busy / interval,
        )


def report(costs: list[WatchCost]) -> str:
    """A short markdown report of ``costs``."""
    rows = [
        (
            "watch (refresh without health checks)" if not cost.health_check else "with health checks (plan's default)",
            f"{cost.jobs:,}",
            f"{cost.cpu_per_cycle_s * 1000:.0f} ms",
            f"{cost.wall_per_cycle_s * 1000:.0f} ms",
            f"{cost.requests_per_cycle:.0f}",
            f"{cost.health_checks_per_cycle:,.0f}",
            f"{cost.idle_cpu_per_s * 1000:.2f} ms/s",
            f"**{cost.percent_of_a_core:.2f} %**",
        )
        for cost in costs
    ]
    header = ("idle cycle", "tracked jobs", "CPU / cycle", "wall / cycle", "requests / cycle",
              "health checks / cycle", "CPU while sleeping", f"% of a core at {costs[0].interval_s:g} s")  # fmt: skip
    return H.markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--interval", type=float, default=60.0, help="the --interval being simulated, in seconds")
    parser.add_argument("--idle-sample", type=float, default=5.0, help="seconds of sleep to measure idle CPU over")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rlor-bench-watch-") as tmp:
        costs = measure(args.jobs, args.cycles, args.interval, Path(tmp), args.idle_sample)
    cost = costs[0]  # watch's own mode: its heal-only actions do not depend on health checks
    print(f"## watch: {cost.cycles} idle cycles, {cost.jobs:,} tracked jobs (mean per cycle)\n")
    print(report(costs) + "\n")
    verdict = "within" if cost.percent_of_a_core <= BUDGET_PERCENT else "OVER"
    print(
        f"watch averages {cost.percent_of_a_core:.3f} % of a core at a {cost.interval_s:g} s interval "
        f"({verdict} the {BUDGET_PERCENT:g} % budget)"
    )
    H.dump_json(args.json, [asdict(c) for c in costs])
    return 0 if cost.percent_of_a_core <= BUDGET_PERCENT else 1


if __name__ == "__main__":
    sys.exit(main())
