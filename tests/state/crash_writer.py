"""Die in the middle of a state write, for the crash-during-write conformance test.

Usage: ``python crash_writer.py STATE_PATH EXPECTED_VERSION < state-bytes``.
Writes the state read from stdin through ``LocalBackend`` and SIGKILLs itself
at the last moment a crash can hurt: the new bytes are in a fsynced temp file
and ``<state>.backup`` is already replaced, but the rename onto the state file
has not happened. Nothing of this process's cleanup runs.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.codec import decode_state


def main() -> None:
    backend = LocalBackend(Path(sys.argv[1]))
    expected = sys.argv[2] if sys.argv[2] != "-" else None
    state = decode_state(sys.stdin.buffer.read(), Path("<stdin>"))
    real_replace = os.replace

    def replace_or_die(source: str, target: str) -> None:
        if Path(target) == backend.path:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(source, target)

    os.replace = replace_or_die  # type: ignore[assignment]
    backend.write(state, expected)
    print("the write finished: the crash did not happen", flush=True)


if __name__ == "__main__":
    main()
