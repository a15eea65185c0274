"""Hold the state lock of a config's backend from a separate process, until killed.

Usage: ``python holder.py CONFIG`` with the backend's secrets in the environment
(never on the command line). It opens the backend exactly as the CLI does, takes
the lock for "apply", prints the lock info as one JSON line and sleeps: the test
SIGKILLs it, so no cleanup code ever runs (a crashed CI runner).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from rlorinfra.config.load import load_config
from rlorinfra.operations.workspace import open_backend


def main() -> None:
    config = load_config(Path(sys.argv[1]), env=os.environ)
    backend = open_backend(config.state_settings, os.environ, config_path=config.path)
    with backend.lock("apply", 0) as info:
        print(json.dumps(info.to_dict()), flush=True)
        time.sleep(3600)


if __name__ == "__main__":
    main()
