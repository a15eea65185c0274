"""Exit codes (DESIGN.md §1) and the one mapping from errors to them.

Usage errors exit 1 too: 2 means "changes present" to CI (``plan --detailed-exitcode``).
"""

from __future__ import annotations

from enum import IntEnum

from rlorinfra.errors import InterruptedRun


class ExitCode(IntEnum):
    """What the process tells its caller."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    INTERRUPTED = 130


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code of a command that failed with ``error``."""
    if isinstance(error, InterruptedRun | KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.ERROR
