"""Pieces every resource kind's steps share: the spec a create sends, IDs, refusals, fan-out, lifecycle fields."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from rlorinfra.apply.model import Task
from rlorinfra.errors import ApiError, OutcomeUnknownError
from rlorinfra.model.retry import RETRY_STATUSES
from rlorinfra.plan.model import Change, Lifecycle
from rlorinfra.state.model import Record


class NotOursError(ApiError):
    """A create's ID is held by a resource this record did not create (never adopted)."""


def require_id(task: Task) -> str:
    """The task's control-plane ID, where a step can only run with one."""
    if task.job_id is None:
        raise ApiError(f'No ID for "{task.name}"', "The plan carries no control-plane ID for this step.")
    return task.job_id


def spec_to_create(change: Change) -> dict[str, Any]:
    """The spec a create sends: the plan's ``after`` (the executor never reads the config)."""
    if change.after is None:
        raise ApiError(f'No spec to create "{change.name}"', "The plan carries no spec for this create; re-plan.")
    return dict(change.after)


def is_definite_refusal(exc: ApiError) -> bool:
    """True when the server certainly did not act (a 4xx that retries would not change, or not ours).

    408/429/5xx after retries are not: an earlier attempt may have landed.
    """
    return isinstance(exc, NotOursError) or (400 <= exc.status_code < 500 and exc.status_code not in RETRY_STATUSES)


def fan_out(requests: int, parallelism: int) -> int:
    """Threads for ``requests`` concurrent reads: never more than ``--parallelism``."""
    return min(requests, max(1, parallelism))


def lifecycle_fields(
    lifecycle: Lifecycle | None, kept: Record | None, created_at: str | None
) -> tuple[bool, str | None]:
    """``(protected, expires_at)`` for a record apply writes (DESIGN.md §4, §7).

    A declared resource's change carries its ``Lifecycle``: protection as
    declared, and ``expires_at`` counted from the record's ``created_at`` (a new
    resource's creation time is now). An undeclared one keeps what ``kept``, the
    same resource's previous record, held.
    """
    if lifecycle is not None:
        return lifecycle.protected, lifecycle.expires_at(created_at, datetime.now(UTC))
    return (kept.protected, kept.expires_at) if kept is not None else (False, None)


# A non-idempotent call whose answer was lost is read back, then sent again at most this often.
LOST_ANSWER_RETRIES = 5

Found = TypeVar("Found")


def lost_answer_backoff(attempt: int) -> float:
    """Seconds to wait before sending a call again that, read back, had not landed."""
    return min(2.0**attempt * 0.5, 8.0)


def read_back(read: Callable[[], Found], exc: ApiError, what: str) -> Found:
    """After a lost answer, read the resource (``what``: "job", "deployment") back to decide.

    If the read fails too, whether the call was carried out is unknown: raise
    ``OutcomeUnknownError`` and send nothing again (DESIGN.md §6: never a blind retry).
    """
    try:
        return read()
    except ApiError as look:
        raise OutcomeUnknownError(
            f"{exc.summary}; reading the {what} back failed too ({look.summary})",
            "Whether the call was carried out is unknown; nothing was sent again. Run `rlorinfra plan` "
            f"once the control plane answers: it reads the {what} and plans from there.",
        ) from None
