"""Hold a state lock from a separate process, for the lock-contention tests.

Usage: ``python lock_holder.py STATE_PATH [OPERATION]``. Once the lock is held
it prints the lock info as one JSON line, then holds the lock until a line
arrives on stdin (or stdin closes), releases it and prints ``released``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlorinfra.state.lock import StateLock


def main() -> None:
    state_path = Path(sys.argv[1])
    operation = sys.argv[2] if len(sys.argv) > 2 else "apply"
    with StateLock(state_path, operation) as info:
        print(json.dumps(info.to_dict()), flush=True)
        sys.stdin.readline()
    print("released", flush=True)


if __name__ == "__main__":
    main()
