"""Plan (refresh) of N tracked jobs against the served emulator, versus per-job GETs.

For each N: N live RUNNING jobs, a config declaring them and a state tracking
them, so ``rlorinfra plan`` must answer "No changes". Measured side by side on
the same emulator (20 ms injected latency per control-plane request; the
emulator injects none on the trainer gateway's health route):

* ``rlorinfra plan --detailed-exitcode`` as a real subprocess, with its health
  checks of every tracked RUNNING trainer (the default) and with
  ``--no-health-check``: wall time, control-plane requests and health checks
  counted by the server, peak RSS of the plan process;
* the Terraform-style baseline: one ``GET`` per tracked job, 10 at a time
  (Terraform's default ``-parallelism``), over keep-alive connections;
* rlorinfra's refresh alone, in-process, without and with health checks;
* the same CLI with its refresh swapped for per-job GETs (per_job_refresh.py),
  with health checks, as ``rlorinfra plan`` does them.

``--shared`` instead measures a small config in a large shared account
(default: 3 tracked jobs among 5,000 others): the first plan, which lists the
account, against the plans after ``apply`` has recorded that listing
(``listed_jobs``), which GET the tracked jobs instead.

Usage: python benchmarks/bench_plan.py [--sizes 10,100,1000,5000] [--runs 3]
       python benchmarks/bench_plan.py --shared [--tracked 3] [--others 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
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
SHARED_TRACKED, SHARED_OTHERS = 3, 5000


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


def refresh_in_process(url: str, folder: Path, *, health_check: bool = False) -> float:
    """Wall seconds of rlorinfra's refresh alone, in this process (like the baseline)."""
    from rlorinfra.api.client import ControlPlaneClient
    from rlorinfra.config.load import load_config
    from rlorinfra.plan.refresh import refresh
    from rlorinfra.state.store import StateStore

    config = load_config(folder / "rlorinfra.toml", {H.KEY_ENV: H.API_KEY})
    state = StateStore(config.state_path).read()
    with ControlPlaneClient(url, H.API_KEY, account_id=H.ACCOUNT) as client:
        started = time.perf_counter()
        refresh(client, config.jobs, state, health_check=health_check)
        return time.perf_counter() - started


def plan_once(cmd: list[str], config: str, emulator: H.Emulator, *extra: str) -> tuple[H.Measured, dict[str, Any]]:
    """One ``rlorinfra plan --detailed-exitcode`` that must answer "No changes"; and the server's counts."""
    emulator.reset()
    result = H.run_measured([*cmd, "plan", "-f", config, "--detailed-exitcode", *extra], env=H.cli_env())
    if result.exit_code != 0:
        raise RuntimeError(
            f"plan {' '.join(extra)} exited {result.exit_code} (expected 0, no changes):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result, emulator.counts()


def bench_size(n: int, runs: int, cmd: list[str], work: Path) -> dict[str, Any]:
    """Median of ``runs`` plans and baselines at ``n`` jobs, on one emulator."""
    folder, db = work / f"plan-{n}", work / f"plan-{n}.sqlite3"
    with H.Emulator(db, latency_ms=LATENCY_MS) as emulator:
        ids = H.seed_tracked_world(folder, db, n, emulator.url)
        config = str(folder / "rlorinfra.toml")
        # The same interpreter as the plan under test (the venv's, or this one with --no-venv).
        python = str(Path(cmd[0]).with_name("python")) if len(cmd) == 1 else cmd[0]
        m: dict[str, list[float]] = {
            k: []
            for k in (
                "plan",
                "plan_nohc",
                "requests",
                "health_checks",
                "nohc_requests",
                "nohc_health_checks",
                "connections",
                "rss",
                "nohc_rss",
                "baseline",
                "base_requests",
                "refresh",
                "refresh_hc",
                "tool",
                "tool_requests",
                "tool_health_checks",
            )
        }
        for _ in range(runs):
            # The two plans back to back, so both see the same moment of the machine.
            result, counts = plan_once(cmd, config, emulator)
            m["plan"].append(result.wall_s)
            m["requests"].append(counts["requests"])
            m["health_checks"].append(counts["health_checks"])
            m["connections"].append(counts["connections"])
            m["rss"].append(result.max_rss_mb)
            by_kind = counts["by_kind"]
            result, counts = plan_once(cmd, config, emulator, "--no-health-check")
            m["plan_nohc"].append(result.wall_s)
            m["nohc_requests"].append(counts["requests"])
            m["nohc_health_checks"].append(counts["health_checks"])
            m["nohc_rss"].append(result.max_rss_mb)
            emulator.reset()
            m["baseline"].append(per_job_get_baseline(emulator.url, ids))
            m["base_requests"].append(emulator.counts()["requests"])
            m["refresh"].append(refresh_in_process(emulator.url, folder))
            m["refresh_hc"].append(refresh_in_process(emulator.url, folder, health_check=True))
            emulator.reset()
            tool = H.run_measured([python, str(PER_JOB_TOOL), "plan", "-f", config], env=H.cli_env())
            if tool.exit_code != 0:
                raise RuntimeError(f"per-job GET plan of {n} jobs exited {tool.exit_code}:\n{tool.stderr[-2000:]}")
            counts = emulator.counts()
            m["tool"].append(tool.wall_s)
            m["tool_requests"].append(counts["requests"])
            m["tool_health_checks"].append(counts["health_checks"])
    if max(m["tool_requests"]) < n:  # the swap did not take: it would be our own refresh, not the baseline
        raise RuntimeError(f"per-job GET plan of {n} jobs made {max(m['tool_requests'])} requests, fewer than {n}")
    med = {k: statistics.median(v) for k, v in m.items()}
    return {
        "jobs": n,
        "plan_s": med["plan"],
        "plan_no_health_check_s": med["plan_nohc"],
        "requests": max(m["requests"]),
        "health_checks": max(m["health_checks"]),
        "no_health_check_requests": max(m["nohc_requests"]),
        "no_health_check_health_checks": max(m["nohc_health_checks"]),
        "connections": max(m["connections"]),
        "peak_rss_mb": max(m["rss"]),
        "no_health_check_peak_rss_mb": max(m["nohc_rss"]),
        "baseline_s": med["baseline"],
        "baseline_requests": max(m["base_requests"]),
        "speedup": med["baseline"] / med["plan"],
        "no_health_check_speedup": med["baseline"] / med["plan_nohc"],
        "health_check_cost_s": med["plan"] - med["plan_nohc"],
        "refresh_s": med["refresh"],
        "refresh_speedup": med["baseline"] / med["refresh"],
        "refresh_health_check_s": med["refresh_hc"],
        "tool_baseline_s": med["tool"],
        "tool_requests": max(m["tool_requests"]),
        "tool_health_checks": max(m["tool_health_checks"]),
        "tool_speedup": med["tool"] / med["plan"],
        "by_kind_last": by_kind,
    }


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table of ``run``'s results."""
    rows = [
        (
            f"{r['jobs']:,}",
            f"{r['plan_s']:.2f} s",
            f"{r['plan_no_health_check_s']:.2f} s",
            r["requests"],
            f"{r['health_checks']:,}",
            r["connections"],
            f"{r['peak_rss_mb']:.0f} MB",
            f"{r['baseline_s']:.2f} s",
            f"{r['baseline_requests']:,}",
            f"**{r['speedup']:.1f}×**",
            f"**{r['no_health_check_speedup']:.1f}×**",
            f"{r['refresh_s']:.2f} s",
            f"{r['refresh_speedup']:.1f}×",
            f"{r['refresh_health_check_s']:.2f} s",
            f"{r['tool_baseline_s']:.2f} s",
            f"**{r['tool_speedup']:.1f}×**",
        )
        for r in results
    ]
    return H.markdown_table(
        (
            "jobs",
            "rlorinfra plan",
            "plan --no-health-check",
            "control-plane requests",
            "health checks",
            "connections",
            "peak RSS",
            f"per-job GET ×{BASELINE_PARALLELISM}",
            "requests",
            "speed-up (plan)",
            "speed-up (--no-health-check)",
            "refresh alone, no health checks (in-process)",
            "refresh speed-up",
            "refresh alone, with health checks",
            "same CLI, per-job GET refresh",
            "speed-up",
        ),
        rows,
    )


# -- a small config in a large shared account ------------------------------------------------------


def bench_shared(tracked: int, others: int, runs: int, cmd: list[str], work: Path) -> dict[str, Any]:
    """``tracked`` jobs among ``others``: the first plan (LIST pages) vs plans after the listing (GETs)."""
    db = work / f"shared-{tracked}-{others}.sqlite3"
    first, after = work / f"shared-first-{tracked}-{others}", work / f"shared-after-{tracked}-{others}"
    with H.Emulator(db, latency_ms=LATENCY_MS) as emulator:
        H.seed_tracked_world(first, db, tracked, emulator.url, others=others)
        after.mkdir(parents=True)
        for name in ("rlorinfra.toml", "rlorinfra.state.json"):
            (after / name).write_bytes((first / name).read_bytes())
        # An apply with nothing to change records the listing it made (state's listed_jobs).
        emulator.reset()
        applied = H.run_measured(
            [*cmd, "apply", "-f", str(after / "rlorinfra.toml"), "--auto-approve"], env=H.cli_env()
        )
        if applied.exit_code != 0:
            raise RuntimeError(f"apply exited {applied.exit_code}:\n{applied.stdout[-2000:]}\n{applied.stderr[-2000:]}")
        apply_counts = emulator.counts()
        listed = json.loads((after / "rlorinfra.state.json").read_text()).get("listed_jobs")
        if listed != tracked + others:
            raise RuntimeError(f"apply recorded listed_jobs={listed!r}, expected {tracked + others}")
        m: dict[str, list[float]] = {
            k: [] for k in ("list_s", "list_requests", "list_health", "get_s", "get_requests", "get_health")
        }
        for _ in range(runs):
            for label, folder in (("list", first), ("get", after)):
                result, counts = plan_once(cmd, str(folder / "rlorinfra.toml"), emulator)
                m[f"{label}_s"].append(result.wall_s)
                m[f"{label}_requests"].append(counts["requests"])
                m[f"{label}_health"].append(counts["health_checks"])
                if label == "get":
                    get_kinds = counts["by_kind"]
                else:
                    list_kinds = counts["by_kind"]
    med = {k: statistics.median(v) for k, v in m.items()}
    return {
        "tracked": tracked,
        "others": others,
        "listed_jobs": listed,
        "apply_s": applied.wall_s,
        "apply_requests": apply_counts["requests"],
        "list_plan_s": med["list_s"],
        "list_requests": max(m["list_requests"]),
        "list_health_checks": max(m["list_health"]),
        "list_by_kind": list_kinds,
        "get_plan_s": med["get_s"],
        "get_requests": max(m["get_requests"]),
        "get_health_checks": max(m["get_health"]),
        "get_by_kind": get_kinds,
        "speedup": med["list_s"] / med["get_s"],
    }


def _kinds(by_kind: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in by_kind.items() if not kind.endswith(" healthz"))


def shared_table(r: dict[str, Any]) -> str:
    """The markdown table of ``bench_shared``'s result."""
    rows = [
        (
            "first plan (no listing in state yet): LIST pages",
            f"{r['list_plan_s']:.2f} s",
            r["list_requests"],
            _kinds(r["list_by_kind"]),
            r["list_health_checks"],
        ),
        (
            f"every plan after the listing (`listed_jobs` = {r['listed_jobs']:,}): GETs",
            f"{r['get_plan_s']:.2f} s",
            f"**{r['get_requests']}**",
            _kinds(r["get_by_kind"]),
            r["get_health_checks"],
        ),
    ]
    return H.markdown_table(("plan", "wall", "control-plane requests", "of which", "health checks"), rows)


def run_shared(tracked: int, others: int, runs: int, use_venv: bool = True) -> dict[str, Any]:
    """The shared-account case on its own emulator."""
    cmd = H.rlorinfra_command(use_venv)
    with tempfile.TemporaryDirectory(prefix="rlor-bench-shared-") as tmp:
        return bench_shared(tracked, others, runs, cmd, Path(tmp))


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
    parser.add_argument("--shared", action="store_true", help="a few tracked jobs in a large shared account")
    parser.add_argument("--tracked", type=int, default=SHARED_TRACKED)
    parser.add_argument("--others", type=int, default=SHARED_OTHERS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.shared:
        shared = run_shared(args.tracked, args.others, args.runs, use_venv=not args.no_venv)
        print(shared_table(shared))
        H.dump_json(args.json, shared)
        return 0
    results = run([int(s) for s in args.sizes.split(",")], args.runs, use_venv=not args.no_venv)
    print(table(results))
    H.dump_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
