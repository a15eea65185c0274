"""Another rlorinfra run on an S3 backend, in its own process, for the S3 tests.

Usage: ``python s3_actor.py COMMAND ENDPOINT BUCKET KEY [ARG]``:

- ``hold [OPERATION]``: take the lock, print its info as one JSON line, hold it
  until a line arrives on stdin, release, print ``released``.
- ``late-write``: take the lock, read the state (fenced), print the lock info,
  wait for a line on stdin, then write one more job; print ``written`` or
  ``refused: SUMMARY`` (the fence said no).
- ``race``: try the lock once (timeout 0); print ``{"won": ID}`` and hold it
  until a line arrives on stdin, or ``{"lost": HOLDER_ID}``.
- ``crash EXPECTED``: write the state read from stdin over version EXPECTED
  (``-``: none) and SIGKILL itself as the state object's PutObject is sent.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from rlorinfra.errors import StateChangedError, StateLockedError
from rlorinfra.state.backend import FencedState
from rlorinfra.state.backends.s3 import S3Backend
from rlorinfra.state.codec import decode_state
from tests.state.state_samples import make_record


def hold(backend: S3Backend, operation: str) -> None:
    with backend.lock(operation, 0) as info:
        print(json.dumps(info.to_dict()), flush=True)
        sys.stdin.readline()
    print("released", flush=True)


def race(backend: S3Backend) -> None:
    try:
        with backend.lock("apply", 0) as info:
            print(json.dumps({"won": info.id}), flush=True)
            sys.stdin.readline()
    except StateLockedError as err:
        print(json.dumps({"lost": err.holder.get("id")}), flush=True)


def late_write(backend: S3Backend) -> None:
    with backend.lock("apply", 0) as info:
        fenced = FencedState(backend)
        state = fenced.read()
        print(json.dumps(info.to_dict()), flush=True)
        sys.stdin.readline()
        try:
            fenced.write(state.with_job("late", make_record("job-late")))
        except StateChangedError as err:
            print(f"refused: {err.summary}", flush=True)
        else:
            print("written", flush=True)


def crash(backend: S3Backend, expected: str) -> None:
    state = decode_state(sys.stdin.buffer.read(), Path("<stdin>"))
    backend.read()  # makes the client (and proves the store) before the hook goes in

    def die(request, **_kwargs) -> None:
        if request.url.split("?")[0].endswith("/" + backend.key):
            os.kill(os.getpid(), signal.SIGKILL)

    backend._ready().meta.events.register("before-send.s3.PutObject", die)
    backend.write(state, None if expected == "-" else expected)
    print("the write finished: the crash did not happen", flush=True)


def main() -> None:
    command, endpoint, bucket, key, *rest = sys.argv[1:]
    backend = S3Backend(bucket=bucket, key=key, endpoint_url=endpoint)
    if command == "hold":
        hold(backend, rest[0] if rest else "apply")
    elif command == "race":
        race(backend)
    elif command == "late-write":
        late_write(backend)
    elif command == "crash":
        crash(backend, rest[0])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
