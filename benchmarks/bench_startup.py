"""Start-up time of ``rlorinfra --version`` and ``rlorinfra validate``, and what they import.

Both commands are offline, so they must not pay for httpx, deepdiff or sqlite3
(the CLI imports subcommands lazily). Measured with the venv's console script,
as a user runs it: the median wall time of several runs after one warm-up, and
the heavy modules found in ``sys.modules`` of a child running the same command.

Usage: python benchmarks/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402

HEAVY = ("httpx", "httpcore", "deepdiff", "sqlite3", "filelock", "tomli_w", "ssl", "fireworks")

# Runs the CLI in-process like the console script (through the same exit funnel,
# but without main()'s os._exit), then reports sys.modules.
_PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
from rlorinfra.cli.common import run_cli
from rlorinfra.cli.main import cli
run_cli(cli, json.loads(sys.argv[1]))
sys.stderr.write("\\nHEAVY " + json.dumps(sorted(m for m in heavy if m in sys.modules)) + "\\n")
"""


def heavy_imports(python: str, args: list[str]) -> list[str]:
    """The HEAVY modules a child running ``rlorinfra ARGS`` ends up importing."""
    proc = subprocess.run(
        [python, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=H.child_env(H.cli_env()),
        timeout=60,
    )
    for line in proc.stderr.splitlines():
        if line.startswith("HEAVY "):
            return json.loads(line[6:])
    raise RuntimeError(f"probe of rlorinfra {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def run(runs: int, use_venv: bool = True) -> list[dict[str, Any]]:
    """One row per command: median wall, a baseline (bare interpreter), heavy imports."""
    cmd = H.rlorinfra_command(use_venv)
    python = str(Path(cmd[0]).with_name("python")) if use_venv else sys.executable
    with tempfile.TemporaryDirectory(prefix="rlor-bench-startup-") as tmp:
        config = H.write_config(Path(tmp), "http://127.0.0.1:9", H.job_names(10))
        bare, _ = H.median_wall([python, "-c", "pass"], runs)
        rows = []
        for args in (["--version"], ["validate", "-f", str(config)]):
            wall, last = H.median_wall([*cmd, *args], runs, env=H.cli_env())
            if last.exit_code != 0:
                raise RuntimeError(f"rlorinfra {' '.join(args)} exited {last.exit_code}: {last.stderr[-1000:]}")
            rows.append(
                {
                    "command": "rlorinfra " + args[0],
                    "median_s": wall,
                    "interpreter_s": bare,
                    "peak_rss_mb": last.max_rss_mb,
                    "heavy_imports": heavy_imports(python, args),
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of ``run``'s results."""
    return H.markdown_table(
        ("command", "median wall", "bare `python -c pass`", "peak RSS", "heavy modules imported"),
        [
            (
                f"`{r['command']}`",
                f"{r['median_s'] * 1000:.0f} ms",
                f"{r['interpreter_s'] * 1000:.0f} ms",
                f"{r['peak_rss_mb']:.0f} MB",
                ", ".join(r["heavy_imports"]) or "none",
            )
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-venv", action="store_true", help="run `python -m rlorinfra` instead of the venv script")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = run(args.runs, use_venv=not args.no_venv)
    print(table(rows))
    H.dump_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
