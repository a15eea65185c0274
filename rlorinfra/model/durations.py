"""Durations as people write them: the shortest ``XhYmZs`` spelling of whole seconds.

A domain value shared by the config writer (``inactivity_timeout = "1h30m"``) and
the client's messages (retry budgets), so neither layer imports the other.
"""

from __future__ import annotations


def format_duration(seconds: int) -> str:
    """The shortest ``XhYmZs`` spelling of ``seconds`` (``5400`` -> ``"1h30m"``)."""
    if seconds <= 0:
        return "0s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
