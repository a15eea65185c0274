"""Typed errors for rlorinfra.

Every failure a user can cause or meet is an ``RlorinfraError`` with a one-line
``summary`` and a ``detail`` paragraph (what happened, what to do next). Only the
CLI turns these into ``Error: ...`` text and exit codes; nothing below ``cli/``
prints or exits.
"""

from __future__ import annotations

from collections.abc import Mapping


class RlorinfraError(Exception):
    """Base class: a user-facing error with a summary line and a detail paragraph."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.summary}\n{self.detail}" if self.detail else self.summary


class ConfigError(RlorinfraError):
    """The desired-state file is missing, unparsable or invalid.

    ``problems`` holds every problem found (each already names file, job and key),
    so a user fixes them all in one go.
    """

    def __init__(self, summary: str, detail: str = "", problems: tuple[str, ...] = ()) -> None:
        super().__init__(summary, detail)
        self.problems = tuple(problems)


class StateError(RlorinfraError):
    """The state file cannot be read, belongs elsewhere, or cannot be written."""


class StateLockedError(StateError):
    """Another rlorinfra process holds the state lock."""

    def __init__(self, summary: str, detail: str = "", holder: Mapping[str, object] | None = None) -> None:
        super().__init__(summary, detail)
        # The lock info of the holder (``LockInfo.to_dict()``), empty when unknown.
        self.holder: dict[str, object] = dict(holder or {})


class StateChangedError(StateError):
    """The stored state changed underneath this run: another writer got in first, nothing was written."""


class PlanError(RlorinfraError):
    """The plan cannot be made (ambiguous live jobs, prevent_destroy, bad target...)."""


class StalePlanError(PlanError):
    """A saved plan no longer matches the state, config or control plane."""


class PlanFileError(PlanError):
    """A saved plan file is unreadable or not a plan file."""


class ApiError(RlorinfraError):
    """The control plane answered with an error (after retries) or could not be reached.

    ``status_code`` is the HTTP status (0 when no answer came), ``code`` the gRPC
    status name from the error body (e.g. ``NOT_FOUND``), ``message`` the server's
    message.
    """

    def __init__(
        self,
        summary: str,
        detail: str = "",
        *,
        status_code: int = 0,
        code: str = "",
        message: str = "",
    ) -> None:
        super().__init__(summary, detail)
        self.status_code = status_code
        self.code = code
        self.message = message


class NotFoundError(ApiError):
    """HTTP 404: the job, shape or account does not exist (or is not visible)."""


class AlreadyExistsError(ApiError):
    """HTTP 409: a job with this ID already exists (possibly as a tombstone)."""


class OutcomeUnknownError(ApiError):
    """A non-idempotent call whose answer was lost: the server may or may not have acted.

    Raised instead of a blind retry (a second ``:resume`` after a first that
    landed gets a 400); the caller re-reads the resource and decides.
    """


class AuthError(ApiError):
    """HTTP 401/403: the API key is missing, wrong, or lacks permission."""


class ApplyError(RlorinfraError):
    """One or more actions of an apply did not converge."""


class InterruptedRun(RlorinfraError):
    """The user interrupted a run (Ctrl-C); state was written for what happened."""
