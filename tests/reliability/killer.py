"""Run ``rlorinfra ARGS`` and SIGKILL this very process at a chosen moment.

    python killer.py MODE N ARGS...

MODE picks the moment, N the occurrence (1-based) at which the process kills
itself, with no chance to clean up (exactly like ``kill -9`` or a power cut):

* ``replace``   - the Nth ``os.replace`` (lock info and state writes), before it runs
* ``fsync``     - the Nth ``os.fsync`` of a temp file: bytes written, not yet renamed
* ``pre-post``  - the Nth create, after state recorded phase ``creating``, before the POST
* ``post``      - the Nth create, after the control plane answered, before state records it
* ``delete``    - the Nth delete, after the control plane answered, before state forgets it
* ``pre-delete`` - the Nth delete, before its request is sent (state still tracks the job)
* ``poll``      - the Nth wait round (the executor's LIST of jobs being waited for), before it
* ``healthy``   - the Nth trainer health check, after it answered
* ``hold``      - never; instead the Nth create waits (holding the state lock) until
                  the file named by ``$RLOR_TEST_RELEASE`` exists
* ``none``      - never (a plain run)

No product hooks: everything is patched from outside, here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

_lock = threading.Lock()
_calls: dict[str, int] = {}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _nth(mode: str, n: int) -> bool:
    with _lock:
        _calls[mode] = _calls.get(mode, 0) + 1
        return _calls[mode] == n


def _patch_os(mode: str, n: int) -> None:
    original = getattr(os, mode)

    def patched(*args, **kwargs):
        if _nth(mode, n):
            _die()
        return original(*args, **kwargs)

    setattr(os, mode, patched)


def _hold_until_released() -> None:
    release = os.environ["RLOR_TEST_RELEASE"]
    deadline = time.monotonic() + 300
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)


def _patch_hold(n: int) -> None:
    from rlorinfra.api.client import ControlPlaneClient

    original = ControlPlaneClient.create_job

    def patched(self, *args, **kwargs):
        if _nth("hold", n):
            _hold_until_released()
        return original(self, *args, **kwargs)

    ControlPlaneClient.create_job = patched


def _patch_client(method: str, n: int, *, before: bool) -> None:
    from rlorinfra.api.client import ControlPlaneClient

    original = getattr(ControlPlaneClient, method)

    def patched(self, *args, **kwargs):
        if before and _nth(method, n):
            _die()
        result = original(self, *args, **kwargs)
        if not before and _nth(method, n):
            _die()
        return result

    setattr(ControlPlaneClient, method, patched)


def install(mode: str, n: int) -> None:
    """Arm the kill for ``mode`` at occurrence ``n``."""
    if mode in ("replace", "fsync"):
        _patch_os(mode, n)
    elif mode == "pre-post":
        _patch_client("create_job", n, before=True)
    elif mode == "post":
        _patch_client("create_job", n, before=False)
    elif mode == "delete":
        _patch_client("delete_job", n, before=False)
    elif mode == "pre-delete":
        _patch_client("delete_job", n, before=True)
    elif mode == "poll":
        _patch_client("list_jobs", n, before=True)
    elif mode == "healthy":
        _patch_client("healthy", n, before=False)
    elif mode == "hold":
        _patch_hold(n)
    elif mode != "none":
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    from rlorinfra.cli.main import main

    main(sys.argv[3:])
