"""The live TTY view of a real ``rlorinfra apply`` in a pseudo-terminal: elapsed
times tick between events, and no line outgrows a 40-column terminal, also
after a resize from 80 to 40 columns mid-run.

The pty output goes through a minimal VT100 screen model (below) that wraps
like xterm, so a line too wide for the terminal shows up as a wrap.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import unicodedata

import pytest

from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml, serve_world

pytestmark = pytest.mark.skipif(not sys.platform.startswith(("linux", "darwin")), reason="needs a POSIX pty")

NAMES = ("alpha-policy-trainer", "beta-reference-trainer", "gamma")
ELAPSED = re.compile(r"(\d+(?:\.\d)?)s\b")


def cell_width(ch: str) -> int:
    """Columns of one character (independent of the view's own measure)."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(cell_width(ch) for ch in text)


class Screen:
    """A minimal VT100 screen: text, CR, LF, CSI F/A/E/K/J/m; wraps (and counts wraps) like xterm."""

    TOKEN = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b[()][0-9A-Za-z]|\x1b[^\[]|[\r\n\b]|[^\x1b\r\n\b]+")

    def __init__(self, cols: int = 80, rows: int = 60) -> None:
        self.cols, self.rows = cols, rows
        self.lines: list[list[str]] = [[] for _ in range(rows)]
        self.r = self.c = 0
        self.wraps = 0  # characters that did not fit their line: the terminal wrapped them

    def resize(self, cols: int) -> None:
        """xterm narrowing: every line loses what is right of the new width."""
        self.cols = cols
        self.lines = [line[:cols] for line in self.lines]
        self.c = min(self.c, cols - 1)

    def feed(self, text: str) -> None:
        for m in self.TOKEN.finditer(text):
            token = m.group(0)
            if m.group(2):
                self._csi(m.group(1), m.group(2))
            elif token == "\r":
                self.c = 0
            elif token == "\n":
                self._linefeed()
            elif token == "\b":
                self.c = max(0, self.c - 1)
            elif not token.startswith("\x1b"):
                for ch in token:
                    self._put(ch)

    def _csi(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else 0
        if final in "FA":
            self.r = max(0, self.r - max(1, n))
            if final == "F":
                self.c = 0
        elif final == "E":
            self.r, self.c = min(self.rows - 1, self.r + max(1, n)), 0
        elif final == "K":
            self.lines[self.r] = [] if n == 2 else self.lines[self.r][: self.c] if n == 0 else self.lines[self.r]
        elif final == "J" and n == 0:
            self.lines[self.r] = self.lines[self.r][: self.c]
            for i in range(self.r + 1, self.rows):
                self.lines[i] = []

    def _linefeed(self) -> None:
        self.r += 1
        if self.r >= self.rows:
            self.lines.pop(0)
            self.lines.append([])
            self.r = self.rows - 1

    def _put(self, ch: str) -> None:
        width = cell_width(ch)
        if width == 0:
            return
        if self.c + width > self.cols:
            self.wraps += 1
            self._linefeed()
            self.c = 0
        line = self.lines[self.r]
        line.extend(" " * (self.c + width - len(line)))
        line[self.c : self.c + width] = [ch] + [""] * (width - 1)
        self.c += width

    def display(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


class PtyRun:
    """``rlorinfra apply`` on the slave side of a pty; everything it prints is collected."""

    def __init__(self, world, cols: int, rows: int = 60) -> None:
        self.master, slave = os.openpty()
        self.set_size(cols, rows)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env.update(
            {KEY_ENV: API_KEY, "TERM": "xterm", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        )
        cmd = [sys.executable, "-m", "rlorinfra", "apply", "--auto-approve", "-f", str(world.config)]
        self.proc = subprocess.Popen(
            cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, close_fds=True
        )
        os.close(slave)
        self.raw = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def set_size(self, cols: int, rows: int = 60) -> None:
        import fcntl
        import termios

        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the slave
                return
            if not chunk:
                return
            with self._lock:
                self.raw += self._decoder.decode(chunk)

    def output(self) -> str:
        with self._lock:
            return self.raw

    def wait_for(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if predicate(out):
                return out
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                out = self.output()
                assert predicate(out), f"rlorinfra exited {self.proc.returncode} first:\n{out[-3000:]}"
                return out
            time.sleep(0.02)
        raise AssertionError(f"timed out; output so far:\n{self.output()[-3000:]}")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code, self.output()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def slow_world(tmp_path):
    """Jobs stay CREATING for 5 s: long enough to watch the live view tick."""
    world = serve_world(tmp_path, provision_seconds=5)
    world.write_config(jobs_toml(*NAMES))
    yield world
    world.server.stop()


@pytest.fixture
def run_in_pty(slow_world):
    runs: list[PtyRun] = []

    def start(cols: int) -> PtyRun:
        runs.append(PtyRun(slow_world, cols))
        return runs[-1]

    yield start
    for run in runs:
        run.close()


def view_part(out: str) -> str:
    """The live view's output: from its first line clear to the end of its last line."""
    first, last = out.find("\x1b[2K"), out.rfind("\x1b[2K")
    assert first >= 0, f"no live view drawn:\n{out[-3000:]}"
    end = out.find("\n", last)
    return out[first : end + 1 if end >= 0 else len(out)]


def segments(part: str) -> list[str]:
    """Text runs between cursor movements (CR, LF, CSI F/A), other escapes removed."""
    runs = re.split(r"\r|\n|\x1b\[\d*[FAE]", part)
    return [re.sub(r"\x1b\[[0-9;?]*[@-~]", "", run) for run in runs]


def screen_of(out: str, cols: int) -> Screen:
    screen = Screen(cols)
    screen.feed(out)
    return screen


def view_row(line: str, name: str) -> bool:
    """Whether a screen line is the live view's row of ``name`` (symbol, mark, name...)."""
    return re.match(rf"^.{{3}} . {re.escape(name[:5])}", line) is not None


def job_lines(screen: Screen) -> dict[str, str]:
    """The view's line for each job, by name (the name column may be cut: match its start)."""
    return {name: line for line in screen.display() for name in NAMES if view_row(line, name)}


def provisioning(out: str, cols: int) -> bool:
    lines = job_lines(screen_of(out, cols))
    return len(lines) == len(NAMES) and all(ELAPSED.search(line) for line in lines.values())


def test_elapsed_ticks_between_events_and_every_line_fits_40_columns(run_in_pty):
    run = run_in_pty(40)
    first = run.wait_for(lambda out: provisioning(out, 40))
    time.sleep(1.0)  # the jobs provision for 5 s: no state change in this second, only ticks
    second = run.output()
    before, after = job_lines(screen_of(first, 40)), job_lines(screen_of(second, 40))
    assert before != after, (before, after)
    ticked = [
        n for n in before if n in after and ELAPSED.search(before[n]).group(1) != ELAPSED.search(after[n]).group(1)
    ]
    assert ticked, (before, after)

    code, out = run.finish()
    assert code == 0, out[-3000:]
    part = view_part(out)
    assert max(text_width(s) for s in segments(part)) <= 40
    start = out.find("\x1b[2K")
    screen = screen_of(out[:start], 40)
    wraps = screen.wraps  # the plan text may wrap; the view must not
    screen.feed(part)
    assert screen.wraps == wraps
    assert all(text_width(line) <= 40 for line in screen.display())
    assert "…" in part  # long lines were cut, not wrapped


def test_a_resize_from_80_to_40_columns_redraws_without_garbage(run_in_pty):
    run = run_in_pty(80)
    run.wait_for(lambda out: provisioning(out, 80))
    at = len(run.output())
    run.set_size(40)
    os.kill(run.proc.pid, signal.SIGWINCH)
    # The view answers the resize with a full clear of its old block, then a 40-column frame.
    out = run.wait_for(lambda out: "\x1b[J" in out[at:] and "\n" in out[out.find("\x1b[J", at) :], timeout=10)
    clear = out.find("\x1b[J", at)
    screen = Screen(80)
    screen.feed(out[:clear])  # what the child drew before it saw the new width
    screen.resize(40)
    wraps = screen.wraps
    out = run.wait_for(lambda o: len(o) > clear + 200, timeout=10)  # a few more redraws at 40 columns
    screen.feed(out[clear:])
    assert screen.wraps == wraps, out[clear:][-2000:]
    assert all(text_width(line) <= 40 for line in screen.display())
    lines = [line for line in screen.display() if any(view_row(line, n) for n in NAMES)]
    assert len(lines) == len(NAMES), screen.display()  # each job once: no stale rows left above
    assert max(text_width(s) for s in segments(out[clear : out.rfind("\n")])) <= 40

    code, out = run.finish()
    assert code == 0, out[-3000:]
