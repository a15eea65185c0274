"""Durations in the desired-state file: ``"30m"``, ``"1h"``, ``"1800s"``, ``"1h30m"`` or seconds.

The control plane takes a proto-JSON duration (``"1800s"``); people think in
minutes and hours. Durations are stored as whole seconds and rendered back in
the shortest ``XhYmZs`` form, which parses to the same number of seconds.

Only finite, sane values parse: floats (``nan``, ``inf``, ``1.5``), negative
numbers, non-ASCII digits and anything over ``MAX_DURATION_SECONDS`` are refused.
"""

from __future__ import annotations

import re
from typing import Any

from rlorinfra.model.durations import format_duration

# format_duration lives in model/ (the client's messages use it too); re-exported for the writer.
__all__ = ["FORMAT_HINT", "MAX_DURATION_SECONDS", "MAX_INACTIVITY_SECONDS", "format_duration", "parse_duration"]

# The trainer inactivity timeout is capped at 3 hours by the SDK (PROTOCOL.md §6.1).
MAX_INACTIVITY_SECONDS = 3 * 3600

# No duration rlorinfra handles is anywhere near a year; beyond that a value is a typo
# (or an attack on later arithmetic), not a setting.
MAX_DURATION_SECONDS = 366 * 24 * 3600

# At most 9 digits per component keeps values far from anything surprising. ASCII only:
# `\d` alone would also take digits of other scripts ("١٢٣").
_DURATION_RE = re.compile(r"(?:(?P<h>\d{1,9})h)?(?:(?P<m>\d{1,9})m)?(?:(?P<s>\d{1,9})s)?", re.ASCII)
_SECONDS_RE = re.compile(r"\d{1,9}", re.ASCII)
_FRACTION_RE = re.compile(r"\d+\.\d+[hms]?", re.ASCII)

FORMAT_HINT = 'a duration like "30m", "1h", "1800s" or "1h30m", or a whole number of seconds'


def parse_duration(value: Any) -> int:
    """Whole seconds of a duration value; ``ValueError`` with a readable reason otherwise.

    Accepts a TOML integer (seconds) or a string of ``h``/``m``/``s`` components
    in that order. Fractions are refused: the job records whole seconds. So
    are negative values and anything over ``MAX_DURATION_SECONDS``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        # A float is refused whole: it may be nan or inf, and a fraction means nothing here.
        raise ValueError(f"must be {FORMAT_HINT}")
    return _bounded(value if isinstance(value, int) else _parse_text(value))


def _parse_text(value: str) -> int:
    text = value.strip()
    if _SECONDS_RE.fullmatch(text):
        return int(text)
    if _FRACTION_RE.fullmatch(text):
        raise ValueError(f"must be whole seconds (no fractions); use {FORMAT_HINT}")
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"must be {FORMAT_HINT}")
    hours, minutes, seconds = (int(match.group(g) or 0) for g in ("h", "m", "s"))
    return hours * 3600 + minutes * 60 + seconds


def _bounded(seconds: int) -> int:
    if seconds < 0:
        raise ValueError(f"must not be negative; use {FORMAT_HINT}")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"must be at most {MAX_DURATION_SECONDS} seconds (366 days)")
    return seconds
