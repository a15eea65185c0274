"""How apply/destroy progress is shown: a live line per job on a TTY, one log
line per event otherwise, JSON Lines with ``--json``. Views only print; they
receive ``rlorinfra.apply.Event`` values, from worker threads and the main
poll thread alike.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import click

SYMBOLS = {"create": "+", "resume": "~", "wait": "~", "update": "~", "replace": "-/+", "stop": "~", "delete": "-"}
CREATE_FIRST_SYMBOL = "+/-"  # the plan's symbol for a create_before_destroy replace
STEP_WORDS = {
    "create": "creating",
    "resume": "resuming",
    "update": "updating in place",
    "wait_ready": "waiting for readiness",
    "cancel": "stopping",
    "delete": "deleting",
    "delete_old": "deleting the replaced job",
}
FINAL_KINDS = frozenset({"ready", "done", "failed"})  # the row freezes (a later "started" thaws it)
TICK_S = 0.25  # redraw period of the live view: the spinner turns, elapsed times tick
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ASCII_SPINNER = "|/-\\"
ELLIPSIS = "…"
ZERO_WIDTH_CATEGORIES = frozenset({"Mn", "Me", "Cf"})  # combining marks, joiners, variation selectors


def short_state(state: str | None) -> str:
    """``JOB_STATE_RUNNING`` → ``RUNNING``."""
    return (state or "").removeprefix("JOB_STATE_") or "-"


def symbol_for(action: str, create_before_destroy: bool = False) -> str:
    """The plan's symbol for an action: ``+/-`` for a replace that creates first."""
    if action == "replace" and create_before_destroy:
        return CREATE_FIRST_SYMBOL
    return SYMBOLS.get(action, "")


def describe(event: Any) -> str:
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


# -- display width -------------------------------------------------------


def one_line(text: str) -> str:
    """Control characters (newlines, tabs, escapes from a server message) become spaces."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)


def char_width(ch: str) -> int:
    """Columns a character takes on a terminal: 2 for wide (W/F), 0 for combining marks."""
    if unicodedata.category(ch) in ZERO_WIDTH_CATEGORIES or unicodedata.category(ch) == "Cc":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal."""
    return sum(char_width(ch) for ch in text)


def truncate(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """``text`` cut to at most ``limit`` columns, ending in ``ellipsis`` when cut."""
    if display_width(text) <= limit:
        return text
    room = limit - display_width(ellipsis)
    if room < 0:
        return ellipsis[: max(0, limit)]
    kept, used = [], 0
    for ch in text:
        width = char_width(ch)
        if used + width > room:
            break
        kept.append(ch)
        used += width
    return "".join(kept) + ellipsis


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns."""
    return text + " " * max(0, width - display_width(text))


def format_elapsed(seconds: float) -> str:
    """``4.2s`` under a minute, then ``3m07s``, then ``2h05m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def can_encode(stream: TextIO, sample: str) -> bool:
    """Whether ``stream`` can print ``sample`` (a C-locale stdout cannot print ``…``)."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None:  # a text buffer (io.StringIO) holds any text
        return True
    try:
        sample.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# -- views ---------------------------------------------------------------


class LineView:
    """Not a TTY: one line per event, with elapsed seconds."""

    def __init__(self, color: bool = False) -> None:
        self.color = color

    def on_event(self, event: Any) -> None:
        """Print the event as one line."""
        symbol = symbol_for(event.action, event.create_before_destroy)
        text = one_line(f"{symbol} {event.label}: {describe(event)} [{event.elapsed:.1f}s]")
        if event.kind == "failed" and self.color:
            text = click.style(text, fg="red")
        click.echo(text)

    def finish(self) -> None:
        """Nothing to tidy up."""


@dataclass
class Row:
    """One job's live line."""

    symbol: str
    text: str = "queued"
    started: float | None = None  # view clock when the job's time began; None: no event yet
    reported: float = 0.0  # the executor's elapsed in the latest event
    frozen: float | None = None  # elapsed at the final event; None while in flight
    failed: bool = False

    @property
    def in_flight(self) -> bool:
        """Started and not yet finished: its clock ticks and its spinner turns."""
        return self.started is not None and self.frozen is None

    def elapsed(self, now: float) -> float | None:
        """Seconds shown for the job at ``now`` (None before its first event)."""
        if self.started is None:
            return None
        if self.frozen is not None:
            return self.frozen
        return max(now - self.started, self.reported)


class TtyView:
    """A TTY: one live line per job (symbol, spinner, name, elapsed, state), redrawn in place.

    A daemon ticker redraws every ``TICK_S`` so elapsed times tick and spinners
    turn between events. Every redraw measures the terminal, cuts each line to
    ``width - 1`` columns (display width: CJK and emoji count 2) and moves the
    cursor back over exactly the lines drawn; after a resize the old block is
    cleared whole. All drawing happens under one lock.
    """

    def __init__(
        self,
        names_actions: list[tuple[Any, ...]],
        color: bool = True,
        *,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[], tuple[int, int]] | None = None,
        ticker: bool = True,
    ) -> None:
        self.rows: dict[str, Row] = {}
        for name, action, *cbd in names_actions:
            self.rows[name] = Row(symbol_for(action, bool(cbd and cbd[0])) or " ")
        self.color = color
        self.drawn = 0  # lines of the block on screen, the cursor just below them
        self.out = out if out is not None else sys.stdout
        self._clock = clock
        self._size = size or _terminal_size
        self._last_size: tuple[int, int] | None = None
        self._unicode = can_encode(self.out, ELLIPSIS + SPINNER)
        self._lock = threading.Lock()
        self._closed = False  # no more drawing by events or the ticker
        self._finished = False
        self._resized = False
        self._wake = threading.Event()
        self._old_winch: Any = None
        self._winch_installed = False
        self._install_winch()
        _LIVE.append(self)
        self._thread: threading.Thread | None = None
        if ticker:
            self._thread = threading.Thread(target=self._tick, name="rlorinfra-view", daemon=True)
            self._thread.start()

    # -- events and ticks ------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Update the job's line and redraw the block."""
        with self._lock:
            now = self._clock()
            row = self.rows.get(event.label)
            if row is None:
                row = self.rows[event.label] = Row(" ")
            row.symbol = symbol_for(event.action, event.create_before_destroy) or row.symbol
            if row.started is None:  # the job's time began event.elapsed before its first event
                row.started = now - max(0.0, event.elapsed)
            row.reported = event.elapsed
            row.text = one_line(describe(event))
            row.failed = event.kind == "failed"
            row.frozen = max(event.elapsed, now - row.started) if event.kind in FINAL_KINDS else None
            if not self._closed:
                self._redraw()

    def _tick(self) -> None:
        while not self._closed:
            self._wake.wait(TICK_S)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                try:
                    self._redraw()
                except (OSError, ValueError):  # stdout closed or gone: stop drawing
                    self._closed = True
                    return

    def finish(self) -> None:
        """Stop the ticker and the resize handler; leave the last frame (every row, no spinner)."""
        if self._finished:
            return
        self._finished = True
        self._restore_winch()  # first: the handler touches the ticker's wake-up event
        if self in _LIVE:
            _LIVE.remove(self)
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        with self._lock:
            try:
                self._redraw(final=True)
            except (OSError, ValueError):
                pass

    def print_above(self, text: str, *, err: bool = False) -> None:
        """Print ``text`` where the block is, then redraw the block below it."""
        with self._lock:
            if not self._closed and self.drawn:
                self.out.write(f"\x1b[{self.drawn}F\x1b[J")
                self.out.flush()
                self.drawn = 0
            click.echo(text, err=err)
            if not self._closed:
                self._redraw()

    # -- drawing -----------------------------------------------------------

    def render(self, width: int, height: int | None = None, *, final: bool = False) -> list[tuple[str, bool]]:
        """The block's lines as (text, failed), each at most ``width - 1`` columns.

        ``height`` caps the live block (a block taller than the screen cannot be
        redrawn in place): in-flight and failed rows first, then a summary line.
        """
        now = self._clock()
        limit = max(1, width - 1)
        ellipsis = ELLIPSIS if self._unicode else "..."
        spinner = SPINNER if self._unicode else ASCII_SPINNER
        frame = spinner[int(now / TICK_S) % len(spinner)]
        names = self._visible(height)
        name_cap = max(6, (limit - 18) // 2)
        name_col = min(name_cap, max((display_width(n) for n in names), default=0))
        lines = []
        for name in names:
            row = self.rows[name]
            mark = frame if row.in_flight and not final else " "
            elapsed = row.elapsed(now)
            clock = format_elapsed(elapsed) if elapsed is not None else ""
            label = pad(truncate(one_line(name), name_col, ellipsis), name_col)
            line = f"{row.symbol:>3} {mark} {label}  {clock:>6}  {row.text}"
            lines.append((truncate(self._printable(line), limit, ellipsis), row.failed))
        hidden = len(self.rows) - len(names)
        if hidden:
            lines.append((truncate(self._summary(names), limit, ellipsis), False))
        return lines

    def _visible(self, height: int | None) -> list[str]:
        names = list(self.rows)
        if height is None or len(names) <= max(1, height - 1):
            return names
        keep = max(0, height - 2)  # one line left for the summary, one for the cursor
        ranked = sorted(
            names,
            key=lambda n: (
                0 if self.rows[n].in_flight else 1 if self.rows[n].failed else 2 if self.rows[n].started is None else 3
            ),
        )
        chosen = set(ranked[:keep])
        return [n for n in names if n in chosen]

    def _summary(self, shown: list[str]) -> str:
        visible = set(shown)
        rest = [row for name, row in self.rows.items() if name not in visible]
        counts = {
            "in flight": sum(r.in_flight for r in rest),
            "failed": sum(r.failed for r in rest),
            "queued": sum(r.started is None for r in rest),
        }
        counts["finished"] = len(rest) - sum(counts.values())
        parts = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        return f"    ... and {len(rest)} more ({parts})"

    def _printable(self, text: str) -> str:
        if self._unicode:
            return text
        encoding = getattr(self.out, "encoding", None) or "ascii"
        return text.encode(encoding, "replace").decode(encoding)  # one "?" per character: never wider

    def _redraw(self, *, final: bool = False) -> None:
        size = self._size()
        resized = self._resized or (self._last_size is not None and size != self._last_size)
        lines = self.render(size[0], None if final else size[1], final=final)
        parts = []
        if self.drawn:
            parts.append(f"\x1b[{self.drawn}F")
            if resized or len(lines) < self.drawn:
                parts.append("\x1b[J")  # the whole old block: nothing of a wider frame survives
        for text, failed in lines:
            if self.color and failed:
                text = click.style(text, fg="red")
            parts.append("\x1b[2K" + text + "\n")
        self.out.write("".join(parts))
        self.out.flush()
        self.drawn = len(lines)
        self._last_size = size
        self._resized = False

    # -- terminal resize ---------------------------------------------------

    def _install_winch(self) -> None:
        winch = getattr(signal, "SIGWINCH", None)
        if winch is None or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._old_winch = signal.signal(winch, self._on_winch)
        except (ValueError, OSError):
            return
        self._winch_installed = True

    def _on_winch(self, signum: int, frame: Any) -> None:
        # A signal handler must not take the view's lock (the main thread may hold it):
        # mark the resize and wake the ticker, which redraws under the lock.
        self._resized = True
        self._wake.set()
        if callable(self._old_winch):
            self._old_winch(signum, frame)

    def _restore_winch(self) -> None:
        if not self._winch_installed:
            return
        try:
            signal.signal(signal.SIGWINCH, self._old_winch if self._old_winch is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass
        self._winch_installed = False


_LIVE: list[TtyView] = []  # the live views on screen (at most one in practice)


def echo_above_view(text: str, *, err: bool = False) -> None:
    """Print a line during a live view without breaking it: the block moves below the line.

    Anything else printed to the terminal while a TtyView is live (a retry
    announcement on stderr, say) would leave the cursor-up redraw off by its lines.
    """
    view = _LIVE[-1] if _LIVE else None
    if view is None:
        click.echo(text, err=err)
    else:
        view.print_above(text, err=err)


def _terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size()
    return size.columns, size.lines


class JsonView:
    """``--json``: one JSON object per line."""

    def on_event(self, event: Any) -> None:
        """Print the event as a JSON Lines record."""
        emit_json(
            {
                "type": "event",
                "name": event.name,
                "address": event.address,
                "event": event.kind,
                "action": event.action,
                "job_id": event.job_id,
                "state": event.state,
                "message": event.message,
                "elapsed": event.elapsed,
                "create_before_destroy": event.create_before_destroy,
            }
        )

    def finish(self) -> None:
        """Nothing to tidy up."""


def json_line(record: dict[str, Any]) -> str:
    """One JSON Lines record (without its newline)."""
    return json.dumps(record, separators=(",", ":"))


def emit_json(record: dict[str, Any]) -> None:
    """Print one JSON Lines record."""
    click.echo(json_line(record))


def make_view(plan: Any, *, as_json: bool, color: bool) -> JsonView | TtyView | LineView:
    """Choose the view for this run."""
    if as_json:
        return JsonView()
    if sys.stdout.isatty():
        rows = [(_label(c), c.action.value, bool(getattr(c, "create_before_destroy", False))) for c in plan.actionable]
        return TtyView(rows, color=color)
    return LineView(color=color)


def _label(change: Any) -> str:
    """A change as views name it: a job by its name, any other kind by its address (as ``Event.label``)."""
    return change.name if str(change.kind) == "job" else str(change.address)
