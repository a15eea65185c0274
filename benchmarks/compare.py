"""Compare this checkout with another one (e.g. the commit before a refactor), side by side.

    git worktree add /tmp/before <commit>
    python benchmarks/compare.py --before /tmp/before            # about 5 minutes
    python benchmarks/compare.py --before /tmp/before --rounds 1  # quicker

Each checkout runs its *own* benchmark scripts (its own state format, its own seeding),
installed in its own venv (``/tmp/benchvenv-before`` and ``/tmp/benchvenv-after``), and the
two alternate round by round so that both see the same machine at the same time. Measured:
plan of 1,000 tracked jobs (with and without health checks), apply of 100 creates, and the
start-up of ``rlorinfra --version``. Prints one markdown table with the after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

AFTER = Path(__file__).resolve().parent.parent

# (label, script, arguments, how to pick the figure out of the script's JSON)
Figure = tuple[str, str, list[str], Callable[[Any], float]]
FIGURES: list[Figure] = [
    ("plan, 1,000 tracked jobs", "bench_plan.py", ["--sizes", "1000", "--runs", "1"], lambda d: d[0]["plan_s"]),
    (
        "plan --no-health-check, 1,000 tracked jobs",
        "bench_plan.py",
        ["--sizes", "1000", "--runs", "1"],
        lambda d: d[0]["plan_no_health_check_s"],
    ),
    (
        "apply of 100 creates",
        "bench_apply.py",
        ["--sizes", "100", "--sdk", "none"],
        lambda d: d[0]["rlorinfra"]["wall_s"],
    ),
    ("rlorinfra --version", "bench_startup.py", ["--runs", "15"], lambda d: d[0]["median_s"]),
]


def run_script(tree: Path, venv: str, script: str, args: list[str]) -> Any:
    """Run ``tree``'s own benchmark ``script`` with its venv; return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="rlor-compare-") as tmp:
        out = Path(tmp) / "figures.json"
        env = {**os.environ, "RLOR_BENCH_VENV": venv}
        command = [sys.executable, str(tree / "benchmarks" / script), *args, "--json", str(out)]
        subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def measure(before: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Every figure for both trees, ``rounds`` times, alternating before/after each time."""
    trees = {"before": (before, "/tmp/benchvenv-before"), "after": (AFTER, "/tmp/benchvenv-after")}
    figures: dict[str, dict[str, list[float]]] = {label: {"before": [], "after": []} for label, *_ in FIGURES}
    cache: dict[tuple[str, str, str], Any] = {}
    for round_number in range(rounds):
        for label, script, args, pick in FIGURES:
            for side, (tree, venv) in trees.items():
                key = (side, script, " ".join(args))
                if key not in cache:  # two figures come from one plan run
                    print(f"round {round_number + 1}: {side} {script} {' '.join(args)}", file=sys.stderr, flush=True)
                    cache[key] = run_script(tree, venv, script, args)
                figures[label][side].append(pick(cache[key]))
        cache.clear()
    return figures


def table(figures: dict[str, dict[str, list[float]]]) -> str:
    """Median per side and the after/before ratio, as a markdown table."""
    rows = ["| measure | before | after | after / before |", "|---|---|---|---|"]
    for label, sides in figures.items():
        before, after = statistics.median(sides["before"]), statistics.median(sides["after"])
        rows.append(f"| {label} | {before:.3f} s | {after:.3f} s | **{after / before:.2f}×** |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the table shows medians")
    args = parser.parse_args(argv)
    print(table(measure(args.before.resolve(), args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
