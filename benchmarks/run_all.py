"""Run every benchmark and print one markdown report (the tables of docs/performance.md).

    python benchmarks/run_all.py            # full run, about 6-8 minutes
    python benchmarks/run_all.py --quick    # smaller sizes, one run each, no 100-job SDK pool
    python benchmarks/run_all.py --state-backends   # also plan on local vs postgres vs s3 (+2-4 minutes)

The first run creates /tmp/benchvenv (``python -m venv`` + ``pip install``; each run reinstalls this checkout)
so that the CLI is started through a venv console script, as users run it;
``--no-venv`` uses ``python -m rlorinfra`` with this interpreter instead.
Everything runs against emulators on 127.0.0.1 that this script starts and stops.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_apply  # noqa: E402
import bench_plan  # noqa: E402
import bench_startup  # noqa: E402
import harness as H  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    parser.add_argument("--no-venv", action="store_true", help="run `python -m rlorinfra` instead of the venv script")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure as JSON")
    parser.add_argument(
        "--state-backends",
        action="store_true",
        help="also run bench_state_backends.py (plan of 1,000 jobs on local, postgres and s3; needs the test extra)",
    )
    args = parser.parse_args(argv)
    use_venv = not args.no_venv
    started = time.perf_counter()
    H.rlorinfra_command(use_venv)  # create the venv (if needed) before anything is timed

    plan_sizes, plan_runs = ([10, 100, 1000], 1) if args.quick else ([10, 100, 1000, 5000], 3)
    apply_sizes, sdk = ([10, 100], {"loop"}) if args.quick else ([10, 100], {"loop", "pool"})
    startup_runs = 5 if args.quick else 15

    print(f"# rlorinfra benchmarks ({'quick' if args.quick else 'full'} run)\n")
    print(
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"emulator on 127.0.0.1 with {bench_plan.LATENCY_MS:g} ms injected latency per request.\n",
        flush=True,
    )

    plan = bench_plan.run(plan_sizes, plan_runs, use_venv)
    print(f'## Plan (refresh) of N tracked jobs, "No changes" (median of {plan_runs})\n')
    print(bench_plan.table(plan) + "\n", flush=True)

    shared = bench_plan.run_shared(bench_plan.SHARED_TRACKED, bench_plan.SHARED_OTHERS, plan_runs, use_venv)
    print(
        f"## Plan of {bench_plan.SHARED_TRACKED} tracked jobs in an account with "
        f"{bench_plan.SHARED_OTHERS:,} others (median of {plan_runs})\n"
    )
    print(bench_plan.shared_table(shared) + "\n", flush=True)

    applied = bench_apply.run(apply_sizes, sdk, use_venv)
    print(f"## Apply of N creates ({bench_apply.PROVISION_S:g} s provisioning)\n")
    print(bench_apply.table(applied) + "\n", flush=True)

    startup = bench_startup.run(startup_runs, use_venv)
    print(f"## Start-up (median of {startup_runs})\n")
    print(bench_startup.table(startup) + "\n")
    if args.state_backends:
        # Its own process: it starts PostgreSQL and moto, and prints its own tables.
        runs = ["--runs", "3"] if args.quick else []
        script = Path(__file__).resolve().parent / "bench_state_backends.py"
        sys.stdout.flush()
        subprocess.run([sys.executable, str(script), *runs], check=True)
    print(f"_Total benchmark time: {time.perf_counter() - started:.0f} s._")
    H.dump_json(args.json, {"plan": plan, "shared": shared, "apply": applied, "startup": startup})
    return 0


if __name__ == "__main__":
    sys.exit(main())
