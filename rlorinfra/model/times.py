"""Times as state records them (RFC 3339, UTC, whole seconds) and the human deltas plans show.

``expires_at`` is ``created_at + ttl`` (DESIGN.md §7): computed here, once, so
the planner (which is pure and gets ``now`` as an argument), apply and the
state edits agree to the second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_rfc3339(moment: datetime) -> str:
    """``2026-12-07T08:00:00Z``: UTC, whole seconds (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse_rfc3339(text: str) -> datetime | None:
    """The aware UTC time ``text`` names, or None when it is not an RFC 3339 time."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # RFC 3339 always carries an offset
    return moment.astimezone(UTC)


def expiry(created_at: str | None, ttl_s: int | None, now: datetime) -> str | None:
    """``created_at + ttl`` as RFC 3339; ``now + ttl`` when the creation time is unknown; None without a ttl."""
    if ttl_s is None:
        return None
    start = parse_rfc3339(created_at) if created_at else None
    return format_rfc3339((start or now) + timedelta(seconds=ttl_s))


def human_delta(seconds: float) -> str:
    """``20 min``, ``3 s``, ``2 h 5 min``, ``3 d 4 h``: how long, rounded down to two units at most."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        rest = minutes % 60
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    rest = hours % 24
    return f"{days} d {rest} h" if rest else f"{days} d"
