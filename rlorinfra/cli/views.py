"""How apply/destroy progress is shown: a live line per job on a TTY, one log
line per event otherwise, JSON Lines with ``--json``. Views only print; they
receive ``rlorinfra.apply.Event`` values.
"""

from __future__ import annotations

import json
import sys
import threading

import click

SYMBOLS = {"create": "+", "resume": "~", "wait": "~", "replace": "-/+", "stop": "~", "delete": "-"}
STEP_WORDS = {
    "create": "creating",
    "resume": "resuming",
    "wait_ready": "waiting for readiness",
    "cancel": "stopping",
    "delete": "deleting",
    "delete_old": "deleting the replaced job",
}


def short_state(state: str | None) -> str:
    """``JOB_STATE_RUNNING`` → ``RUNNING``."""
    return (state or "").removeprefix("JOB_STATE_") or "-"


def describe(event) -> str:
    """One human phrase for an event."""
    if event.kind == "started":
        ident = f" (id {event.job_id})" if event.job_id else ""
        return f"{STEP_WORDS.get(event.message, event.message)}{ident}..."
    if event.kind == "state":
        extra = f": {event.message}" if event.message else ""
        return f"{short_state(event.state)}{extra}"
    if event.kind == "retry":
        return f"{short_state(event.state)}: {event.message}"
    if event.kind == "ready":
        return f"ready ({short_state(event.state)}, healthy)"
    if event.kind == "done":
        return f"{event.message}"
    return f"FAILED: {event.message}"


class LineView:
    """Not a TTY: one line per event, with elapsed seconds."""

    def __init__(self, color: bool = False) -> None:
        self.color = color

    def on_event(self, event) -> None:
        """Print the event as one line."""
        symbol = SYMBOLS.get(event.action, "")
        text = f"{symbol} {event.name}: {describe(event)} [{event.elapsed:.1f}s]"
        if event.kind == "failed" and self.color:
            text = click.style(text, fg="red")
        click.echo(text)

    def finish(self) -> None:
        """Nothing to tidy up."""


class TtyView:
    """A TTY: one live line per job (symbol, name, state, elapsed), redrawn in place."""

    def __init__(self, names_actions: list[tuple[str, str]], color: bool = True) -> None:
        self.rows = {name: [SYMBOLS.get(action, " "), "queued", 0.0] for name, action in names_actions}
        self.color = color
        self.drawn = 0
        self._lock = threading.Lock()

    def on_event(self, event) -> None:
        """Update the job's line and redraw the block."""
        with self._lock:
            row = self.rows.setdefault(event.name, [SYMBOLS.get(event.action, " "), "", 0.0])
            row[1], row[2] = describe(event), event.elapsed
            self._redraw()

    def _redraw(self) -> None:
        out = sys.stdout
        if self.drawn:
            out.write(f"\x1b[{self.drawn}F")
        width = max((len(n) for n in self.rows), default=0)
        for name, (symbol, text, elapsed) in self.rows.items():
            line = f"{symbol:>3} {name:<{width}}  {text}  {elapsed:5.1f}s"
            if self.color and text.startswith("FAILED"):
                line = click.style(line, fg="red")
            out.write("\x1b[2K" + line + "\n")
        out.flush()
        self.drawn = len(self.rows)

    def finish(self) -> None:
        """Leave the last frame on screen."""


class JsonView:
    """``--json``: one JSON object per line."""

    def on_event(self, event) -> None:
        """Print the event as a JSON Lines record."""
        emit_json({"type": "event", "name": event.name, "event": event.kind, "action": event.action,
                   "job_id": event.job_id, "state": event.state, "message": event.message,
                   "elapsed": event.elapsed})

    def finish(self) -> None:
        """Nothing to tidy up."""


def emit_json(record: dict) -> None:
    """Print one JSON Lines record."""
    click.echo(json.dumps(record, separators=(",", ":")))


def make_view(plan, *, as_json: bool, color: bool):
    """Choose the view for this run."""
    if as_json:
        return JsonView()
    if sys.stdout.isatty():
        return TtyView([(c.name, c.action.value) for c in plan.actionable], color=color)
    return LineView(color=color)
