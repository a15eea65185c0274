"""Hold a postgres state lock from a separate process, for the postgres tests.

Usage: ``RLORINFRA_TEST_PG=CONNINFO python pg_holder.py NAME OPERATION [write]``
(the connection string comes from the environment, never the command line).
Once the lock is held it reads the state and prints the lock info as one JSON
line, then waits for a line on stdin. With ``write`` it then writes the state it
read plus one job and prints ``wrote`` or the error's class name; then it
releases the lock and prints ``released``.
"""

from __future__ import annotations

import json
import os
import sys

from rlorinfra.errors import StateError
from rlorinfra.state.backends.postgres import PostgresBackend
from tests.state.state_samples import make_record


def main() -> None:
    name, operation = sys.argv[1], sys.argv[2]
    backend = PostgresBackend(os.environ["RLORINFRA_TEST_PG"], name=name)
    with backend.lock(operation, 0) as info:
        state, version = backend.read()
        print(json.dumps(info.to_dict()), flush=True)
        sys.stdin.readline()
        if sys.argv[3:] == ["write"]:
            try:
                backend.write(state.with_job("from-the-paused-holder", make_record("job-paused")), version)
                print("wrote", flush=True)
            except StateError as err:
                print(type(err).__name__, flush=True)
    print("released", flush=True)


if __name__ == "__main__":
    main()
