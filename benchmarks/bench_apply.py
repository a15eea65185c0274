"""Apply of N creates (3 s provisioning, 20 ms latency, ample capacity) versus the SDK way.

Measured side by side against one served emulator:

* ``rlorinfra apply --auto-approve`` of N new jobs as a real subprocess: wall
  time until every job is RUNNING and healthy and recorded in state; compared
  with the provision time, the floor no client can beat;
* the SDK way, with the official ``fireworks-ai`` SDK and its default polling
  (one GET per job every 5 s, then a health check):
  ``TrainerJobManager.create_and_wait`` in a plain loop, and in a thread pool
  of 10 (``--sdk-pool``).

Usage: python benchmarks/bench_apply.py [--sizes 10,100] [--sdk loop,pool]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

LATENCY_MS = 20.0
PROVISION_S = 3.0
SDK_POOL = 10


def rlorinfra_apply(n: int, cmd: list[str], emulator: H.Emulator, work: Path) -> dict[str, Any]:
    """Create ``n`` jobs with ``rlorinfra apply --auto-approve``; wall time and requests."""
    folder = work / f"apply-{n}"
    config = H.write_config(folder, emulator.url, H.job_names(n, prefix=f"apply{n}"))
    emulator.reset()
    result = H.run_measured([*cmd, "apply", "-f", str(config), "--auto-approve"], env=H.cli_env())
    if result.exit_code != 0:
        raise RuntimeError(
            f"apply of {n} jobs exited {result.exit_code}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    state = (folder / "rlorinfra.state.json").read_text()
    if state.count('"phase": "ready"') != n:
        raise RuntimeError(f"apply of {n} jobs did not record {n} ready jobs in state")
    counts = emulator.counts()
    return {
        "wall_s": result.wall_s,
        "requests": counts["requests"],
        "health_checks": counts["health_checks"],
        "connections": counts["connections"],
        "by_kind": counts["by_kind"],
        "peak_rss_mb": result.max_rss_mb,
    }


def sdk_create_and_wait(n: int, emulator: H.Emulator, *, pool: int) -> dict[str, Any]:
    """``create_and_wait`` for ``n`` jobs, one after another (pool=1) or ``pool`` at a time."""
    import logging

    from fireworks.training.sdk import TrainerJobConfig, TrainerJobManager

    logging.getLogger("fireworks").setLevel(logging.WARNING)
    os.environ.pop("FIREWORKS_TRAINER_GATEWAY_URL", None)
    manager = TrainerJobManager(api_key=H.API_KEY, base_url=emulator.url)
    _ = manager.account_id  # resolve the account before the clock starts, as a long-lived script would
    tag = f"sdk{pool}x{n}"

    def create(i: int) -> None:
        config = TrainerJobConfig(
            base_model=H.BASE_MODEL, training_shape_ref=H.SHAPE_REF, display_name=f"{tag}-{i:05d}"
        )
        manager.create_and_wait(config)

    emulator.reset()
    started = time.perf_counter()
    if pool == 1:
        for i in range(n):
            create(i)
    else:
        with ThreadPoolExecutor(max_workers=pool) as executor:
            list(executor.map(create, range(n)))
    wall = time.perf_counter() - started
    counts = emulator.counts()
    return {
        "wall_s": wall,
        "requests": counts["requests"],
        "health_checks": counts["health_checks"],
        "connections": counts["connections"],
        "by_kind": counts["by_kind"],
    }


def run(sizes: list[int], sdk: set[str], use_venv: bool = True) -> list[dict[str, Any]]:
    """One row per size: rlorinfra, and the SDK baseline that size is compared with."""
    cmd = H.rlorinfra_command(use_venv)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="rlor-bench-apply-") as tmp,
        H.Emulator(Path(tmp) / "apply.sqlite3", latency_ms=LATENCY_MS, provision_seconds=PROVISION_S) as emulator,
    ):
        for n in sizes:
            row: dict[str, Any] = {
                "jobs": n,
                "provision_s": PROVISION_S,
                "rlorinfra": rlorinfra_apply(n, cmd, emulator, Path(tmp)),
            }
            pool = 1 if n <= SDK_POOL else SDK_POOL
            if ("loop" if pool == 1 else "pool") in sdk:
                row["sdk"] = sdk_create_and_wait(n, emulator, pool=pool)
                row["sdk_mode"] = "plain loop" if pool == 1 else f"thread pool of {pool}"
            results.append(row)
    return results


def table(results: list[dict[str, Any]]) -> str:
    """The markdown table of ``run``'s results."""
    rows = []
    for r in results:
        ours, sdk = r["rlorinfra"], r.get("sdk")
        rows.append(
            (
                f"{r['jobs']:,}",
                f"{r['provision_s']:g} s",
                f"{ours['wall_s']:.2f} s",
                f"{ours['wall_s'] / r['provision_s']:.2f}×",
                ours["requests"],
                ours["health_checks"],
                f"{sdk['wall_s']:.1f} s ({r['sdk_mode']})" if sdk else "—",
                sdk["requests"] if sdk else "—",
                sdk["health_checks"] if sdk else "—",
                f"**{sdk['wall_s'] / ours['wall_s']:.1f}×**" if sdk else "—",
            )
        )
    return H.markdown_table(
        (
            "creates",
            "provision (floor)",
            "rlorinfra apply",
            "÷ floor",
            "control-plane requests",
            "health checks",
            "SDK create_and_wait",
            "control-plane requests",
            "health checks",
            "speed-up",
        ),
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--sdk", default="loop,pool", help="baselines to run: loop, pool, or none")
    parser.add_argument("--no-venv", action="store_true", help="run `python -m rlorinfra` instead of the venv script")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run([int(s) for s in args.sizes.split(",")], set(args.sdk.split(",")), use_venv=not args.no_venv)
    print(table(results))
    H.dump_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
