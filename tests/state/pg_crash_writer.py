"""Die in the middle of a postgres state write, for the crash-during-write conformance test.

Usage: ``RLORINFRA_TEST_PG=CONNINFO python pg_crash_writer.py NAME EXPECTED_VERSION < state-bytes``.
Writes the state read from stdin through ``PostgresBackend`` and SIGKILLs itself
at the last moment a crash can hurt: the UPDATE has run in the open
transaction, the COMMIT is about to be sent. Nothing of this process's cleanup runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psycopg

from rlorinfra.state.backends.postgres import PostgresBackend
from rlorinfra.state.codec import decode_state


def main() -> None:
    backend = PostgresBackend(os.environ["RLORINFRA_TEST_PG"], name=sys.argv[1])
    expected = sys.argv[2] if sys.argv[2] != "-" else None
    state = decode_state(sys.stdin.buffer.read(), Path("<stdin>"))
    real_execute = psycopg.Connection.execute

    def execute_or_die(self, query, params=None, **kwargs):  # type: ignore[no-untyped-def]
        if query == "COMMIT":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_execute(self, query, params, **kwargs)

    psycopg.Connection.execute = execute_or_die  # type: ignore[method-assign]
    backend.write(state, expected)
    print("the write finished: the crash did not happen", flush=True)


if __name__ == "__main__":
    main()
