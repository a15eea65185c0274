"""benchmarks/bench_watch.py runs end to end on a small world and reports what it measured.

The 1 % figure itself needs 1,000 jobs and a quiet machine (run the benchmark); this
checks that the script measures the right cycle: one refresh of a few requests, no
health checks in watch's own mode, one per job in the comparison row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_watch.py"


def test_the_watch_benchmark_measures_idle_cycles(tmp_path: Path) -> None:
    out = tmp_path / "watch.json"
    args = ["--jobs", "12", "--cycles", "2", "--idle-sample", "0.2", "--json", str(out)]
    result = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "% of a core at a 60 s interval (within the 1 % budget)" in result.stdout
    watch, checked = json.loads(out.read_text())
    assert (watch["health_check"], watch["health_checks_per_cycle"], watch["jobs"]) == (False, 0, 12)
    assert (checked["health_check"], checked["health_checks_per_cycle"]) == (True, 12)
    assert 1 <= watch["requests_per_cycle"] <= 3  # one LIST page (plus at most the account and shapes)
    assert 0 < watch["cpu_per_cycle_s"] <= watch["wall_per_cycle_s"] * 2  # two threads at most could overlap
    assert watch["percent_of_a_core"] > 0
