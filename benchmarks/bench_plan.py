"""Plan (refresh) of N tracked jobs against the served emulator, versus per-job GETs.

For each N: N live RUNNING jobs, a config declaring them and a state tracking
them, so ``rlorinfra plan`` must answer "No changes". Measured side by side on
the same emulator (20 ms injected latency per request):

* ``rlorinfra plan --detailed-exitcode`` as a real subprocess: wall time,
  requests counted by the server, peak RSS of the plan process;
* the Terraform-style baseline: one ``GET`` per tracked job, 10 at a time
  (Terraform's default ``-parallelism``), over keep-alive connections.

Usage: python benchmarks/bench_plan.py [--sizes 10,100,1000,5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

LATENCY_MS = 20.0
PER_JOB_TOOL = Path(__file__).resolve().parent / "per_job_refresh.py"
BASELINE_PARALLELISM = 10


def per_job_get_baseline(url: str, ids: list[str], parallelism: int = BASELINE_PARALLELISM) -> float:
    """Wall seconds to GET every job, ``parallelism`` at a time, reusing connections."""
    limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
    with httpx.Client(base_url=url, headers={"X-Api-Key": H.API_KEY}, limits=limits, timeout=60) as http:
        http.get(f"/v1/accounts/{H.ACCOUNT}")  # a real tool resolves the account once too

        def get(job_id: str) -> None:
            http.get(f"/v1/accounts/{H.ACCOUNT}/rlorTrainerJobs/{job_id}").raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallelism) as pool:
            list(pool.map(get, ids))
        return time.perf_counter() - started


def refresh_in_process(url: str, folder: Path) -> float:
    """Wall seconds of rlorinfra's refresh alone, in this process (like the baseline)."""
    from rlorinfra.api.client import ControlPlaneClient
    from rlorinfra.config.load import load_config
    from rlorinfra.plan.refresh import refresh
    from rlorinfra.state.store import StateStore

    config = load_config(folder / "rlorinfra.toml", {H.KEY_ENV: H.API_KEY})
    state = StateStore(config.state_path).read()
    with ControlPlaneClient(url, H.API_KEY, account_id=H.ACCOUNT) as client:
        started = time.perf_counter()
        refresh(client, config.jobs, state)
        return time.perf_counter() - started


def bench_size(n: int, runs: int, cmd: list[str], work: Path) -> dict[str, Any]:
    """Median of ``runs`` plans and baselines at ``n`` jobs, on one emulator."""
    folder, db = work / f"plan-{n}", work / f"plan-{n}.sqlite3"
    with H.Emulator(db, latency_ms=LATENCY_MS) as emulator:
        ids = H.seed_tracked_world(folder, db, n, emulator.url)
        config = str(folder / "rlorinfra.toml")
        # The same interpreter as the plan under test (the venv's, or this one with --no-venv).
        python = str(Path(cmd[0]).with_name("python")) if len(cmd) == 1 else cmd[0]
        plans, requests, connections, rss, baselines, base_requests, refreshes = [], [], [], [], [], [], []
        tool_baselines = []
        for _ in range(runs):
            emulator.reset()
            result = H.run_measured([*cmd, "plan", "-f", config, "--detailed-exitcode"], env=H.cli_env())
            if result.exit_code != 0:
                raise RuntimeError(f"plan of {n} jobs exited {result.exit_code} (expected 0, no changes):\n"
                                   f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
            counts = emulator.counts()
            plans.append(result.wall_s)
            requests.append(counts["requests"])
            connections.append(counts["connections"])
            rss.append(result.max_rss_mb)
            emulator.reset()
            baselines.append(per_job_get_baseline(emulator.url, ids))
            base_requests.append(emulator.counts()["requests"])
            refreshes.append(refresh_in_process(emulator.url, folder))
            tool = H.run_measured([python, str(PER_JOB_TOOL), "plan", "-f", config], env=H.cli_env())
            if tool.exit_code != 0:
                raise RuntimeError(f"per-job GET plan of {n} jobs exited {tool.exit_code}:\n{tool.stderr[-2000:]}")
            tool_baselines.append(tool.wall_s)
    plan_s, base_s, refresh_s = statistics.median(plans), statistics.median(baselines), statistics.median(refreshes)
    return {"jobs": n, "plan_s": plan_s, "requests": max(requests), "connections": max(connections),
            "peak_rss_mb": max(rss), "baseline_s": base_s, "baseline_requests": max(base_requests),
            "speedup": base_s / plan_s, "refresh_s": refresh_s, "refresh_speedup": base_s / refresh_s,
            "tool_baseline_s": statistics.median(tool_baselines),
            "tool_speedup": statistics.median(tool_baselines) / plan_s,
            "by_kind_last": counts["by_kind"]}


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table of ``run``'s results."""
    rows = [(f"{r['jobs']:,}", f"{r['plan_s']:.2f} s", r["requests"], r["connections"], f"{r['peak_rss_mb']:.0f} MB",
             f"{r['baseline_s']:.2f} s", f"{r['baseline_requests']:,}", f"**{r['speedup']:.1f}×**",
             f"{r['refresh_s']:.2f} s", f"{r['refresh_speedup']:.1f}×",
             f"{r['tool_baseline_s']:.2f} s", f"**{r['tool_speedup']:.1f}×**")
            for r in results]
    return H.markdown_table(("jobs", "rlorinfra plan", "requests", "connections", "peak RSS",
                             f"per-job GET ×{BASELINE_PARALLELISM}", "requests", "speed-up",
                             "refresh alone (in-process)", "refresh speed-up",
                             "same CLI, per-job GET refresh", "speed-up"), rows)


def run(sizes: list[int], runs: int, use_venv: bool = True) -> list[dict[str, Any]]:
    """Benchmark every size; returns one result dict per size."""
    cmd = H.rlorinfra_command(use_venv)
    with tempfile.TemporaryDirectory(prefix="rlor-bench-plan-") as tmp:
        return [bench_size(n, runs, cmd, Path(tmp)) for n in sizes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-venv", action="store_true", help="run `python -m rlorinfra` instead of the venv script")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run([int(s) for s in args.sizes.split(",")], args.runs, use_venv=not args.no_venv)
    print(table(results))
    H.dump_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
