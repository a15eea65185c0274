"""Apply progress views: live lines on a TTY, log lines otherwise, JSON Lines."""

from __future__ import annotations

import io
import json
import signal
import threading
import time

import pytest

from rlorinfra.apply import Event
from rlorinfra.cli.views import (
    JsonView,
    LineView,
    TtyView,
    describe,
    display_width,
    symbol_for,
    truncate,
)
from tests.cli.test_tty_view import Screen, text_width


def events():
    return [
        Event("alpha", "started", "create", "alpha-1a2b3c", None, "create", 0.0),
        Event("alpha", "state", "create", "alpha-1a2b3c", "JOB_STATE_CREATING", "", 0.1),
        Event("beta", "started", "delete", "beta-9f8e7d", None, "delete", 0.0),
        Event("alpha", "retry", "create", "alpha-1a2b3c", "JOB_STATE_FAILED", "pod preempted; resuming", 2.0),
        Event("alpha", "ready", "create", "alpha-1a2b3c", "JOB_STATE_RUNNING", "ready", 3.2),
        Event("beta", "failed", "delete", "beta-9f8e7d", None, "boom", 1.0),
    ]


def cbd_events():
    """A create_before_destroy replace: create the new job, then delete the replaced one."""
    return [
        Event("alpha", "started", "replace", "alpha-new", None, "create", 0.0, True),
        Event("alpha", "ready", "replace", "alpha-new", "JOB_STATE_RUNNING", "", 4.0, True),
        Event("alpha", "started", "replace", "alpha-OLD-ID", None, "delete_old", 4.1, True),
        Event("alpha", "done", "replace", "alpha-new", "JOB_STATE_RUNNING", "done", 5.0, True),
    ]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _finish_views():
    """Every view a test made is finished: none stays live for the next test."""
    from rlorinfra.cli import views

    yield
    for view in list(views._LIVE):
        view.finish()


def tty(rows, *, width=80, height=24, clock=None):
    """A TtyView drawing into a buffer, without its ticker (the test ticks by hand)."""
    out = io.StringIO()
    size = {"value": (width, height)}
    view = TtyView(rows, color=False, out=out, clock=clock or FakeClock(), size=lambda: size["value"], ticker=False)
    return view, out, size


def last_frame(out: io.StringIO, lines: int) -> list[str]:
    frames = out.getvalue().split(f"\x1b[{lines}F")
    return [line.replace("\x1b[2K", "").replace("\x1b[J", "") for line in frames[-1].splitlines()]


def onlcr(text: str) -> str:
    """What a tty's line discipline makes of a program's newlines."""
    return text.replace("\n", "\r\n")


# -- LineView and JsonView ------------------------------------------------------


def test_line_view_prints_one_line_per_event(capsys):
    view = LineView()
    for e in events():
        view.on_event(e)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    assert lines[0] == "+ alpha: creating (id alpha-1a2b3c)... [0.0s]"
    assert lines[3] == "+ alpha: FAILED: pod preempted; resuming [2.0s]"
    assert lines[4] == "+ alpha: ready (RUNNING, healthy) [3.2s]"
    assert lines[5] == "- beta: FAILED: boom [1.0s]"


def test_line_view_shows_create_first_replaces_as_plus_minus_and_names_the_replaced_job(capsys):
    view = LineView()
    for e in cbd_events():
        view.on_event(e)
    view.on_event(Event("beta", "started", "replace", "beta-1", None, "delete", 0.0, False))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "+/- alpha: creating (id alpha-new)... [0.0s]"
    assert lines[2] == "+/- alpha: deleting the replaced job (id alpha-OLD-ID)... [4.1s]"
    assert lines[4].startswith("-/+ beta: deleting")  # delete first: the plan's -/+


def test_line_view_keeps_a_server_message_on_one_line(capsys):
    LineView().on_event(Event("a", "state", "create", "a-1", "JOB_STATE_PENDING", "two\nlines\x1b[2J", 1.0))
    assert capsys.readouterr().out.splitlines() == ["+ a: PENDING: two lines [2J [1.0s]"]


def test_json_view_emits_json_lines(capsys):
    view = JsonView()
    for e in events():
        view.on_event(e)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in records] == ["started", "state", "started", "retry", "ready", "failed"]
    assert records[1]["state"] == "JOB_STATE_CREATING" and records[0]["job_id"] == "alpha-1a2b3c"
    assert records[0]["create_before_destroy"] is False


def test_json_view_says_which_replace_creates_first(capsys):
    view = JsonView()
    for e in cbd_events():
        view.on_event(e)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(r["create_before_destroy"] is True for r in records)
    assert records[2]["message"] == "delete_old" and records[2]["job_id"] == "alpha-OLD-ID"


def test_describe_words():
    assert describe(Event("a", "done", "delete", message="deleted")) == "deleted"
    assert (
        describe(Event("a", "started", "replace", "OLD", message="delete_old"))
        == "deleting the replaced job (id OLD)..."
    )


def test_symbols_follow_the_plan():
    assert symbol_for("replace") == "-/+"
    assert symbol_for("replace", True) == "+/-"
    assert symbol_for("create", True) == "+"
    assert symbol_for("delete") == "-"


# -- width and truncation ------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["训练任务的名字很长很长很长", "🚀🚀 launch 🚀 rocket trainer", "ab训练cd", "e\u0301e\u0301e\u0301 accents"]
)
def test_truncation_measures_wide_characters_by_display_width(text):
    for limit in range(1, 30):
        cut = truncate(text, limit)
        assert display_width(cut) <= limit
        assert text_width(cut) <= limit  # an independent measure agrees
        if display_width(text) > limit:
            assert cut.endswith("…")
        else:
            assert cut == text


def test_display_width_counts_wide_as_two_and_combining_as_zero():
    assert display_width("训练") == 4
    assert display_width("🚀") == 2
    assert display_width("e\u0301") == 1
    assert display_width("abc") == 3
    assert truncate("训练任务", 5) == "训练…"  # not 训练任 (6 columns)


# -- TtyView -------------------------------------------------------------------


def test_tty_view_redraws_one_live_line_per_job():
    view, out, _ = tty([("alpha", "create"), ("beta", "delete")])
    for e in events():
        view.on_event(e)
    frames = out.getvalue().split("\x1b[2F")  # cursor back up over the two job lines
    assert len(frames) == len(events())
    last = last_frame(out, 2)
    assert last[0].split() == ["+", "alpha", "3.2s", "ready", "(RUNNING,", "healthy)"]
    assert last[1].split()[:4] == ["-", "beta", "1.0s", "FAILED:"]


def test_tty_view_elapsed_ticks_for_jobs_in_flight_and_freezes_when_done():
    clock = FakeClock()
    view, out, _ = tty([("alpha", "create"), ("beta", "create"), ("gamma", "create")], clock=clock)
    view.on_event(Event("alpha", "started", "create", "alpha-1", None, "create", 0.0))
    view.on_event(Event("beta", "started", "create", "beta-1", None, "create", 0.0))
    clock.now += 2.0
    view.on_event(Event("beta", "ready", "create", "beta-1", "JOB_STATE_RUNNING", "ready", 2.0))
    first = [text for text, _ in view.render(80, 24)]
    clock.now += 1.0
    second = [text for text, _ in view.render(80, 24)]
    assert "2.0s" in first[0] and "3.0s" in second[0]  # alpha ticks from the view's own clock
    assert first[1] == second[1] and "2.0s" in second[1]  # beta froze when it was ready
    assert second[1].split()[1] == "beta"  # ... with no spinner in front of its name
    assert second[0].split()[1] != "alpha"  # alpha still spins
    assert second[2].split()[1:3] == ["gamma", "queued"]  # no event yet: no clock, no spinner


def test_tty_view_ticker_redraws_between_events_and_stops_in_finish():
    out = io.StringIO()
    view = TtyView([("alpha", "create")], color=False, out=out, size=lambda: (60, 24))
    view.on_event(Event("alpha", "started", "create", "alpha-1", None, "create", 0.0))
    deadline = time.monotonic() + 5
    while out.getvalue().count("\x1b[1F") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.getvalue().count("\x1b[1F") >= 3  # redrawn without any new event
    ticker = view._thread
    assert ticker is not None and ticker.daemon
    view.finish()
    assert not ticker.is_alive()
    frozen = out.getvalue()
    time.sleep(TICK_WAIT)
    assert out.getvalue() == frozen  # nothing drawn after finish
    view.on_event(Event("alpha", "done", "create", "alpha-1", None, "done", 1.0))
    assert out.getvalue() == frozen


TICK_WAIT = 0.6


def test_tty_view_lines_never_exceed_the_width_with_wide_names():
    names = ["训练任务-第一个很长的名字", "🚀-rocket-policy-trainer", "short"]
    for width in (40, 41, 57, 80):
        view, out, _ = tty([(n, "create") for n in names], width=width)
        for n in names:
            view.on_event(
                Event(
                    n,
                    "state",
                    "create",
                    f"{n}-1",
                    "JOB_STATE_PENDING",
                    "queued behind 3 jobs for NVIDIA_H100_80GB 训练 🚀",
                    12.5,
                )
            )
        for text, _ in view.render(width, 24):
            assert text_width(text) <= width - 1, text
        screen = Screen(width)
        screen.feed(onlcr(out.getvalue()))
        assert screen.wraps == 0
        assert all(text_width(line) <= width - 1 for line in screen.display())


def test_tty_view_shows_plus_minus_for_a_create_first_replace():
    view, out, _ = tty([("alpha", "replace", True), ("beta", "replace", False)])
    first = [text for text, _ in view.render(80, 24)]
    assert first[0].split()[0] == "+/-" and first[1].split()[0] == "-/+"
    for e in cbd_events()[:3]:
        view.on_event(e)
    row = last_frame(out, 2)[0]
    assert row.split()[0] == "+/-"
    assert "deleting the replaced job (id alpha-OLD-ID)..." in row


def test_tty_view_resize_clears_the_old_block_and_refits():
    view, out, size = tty([("alpha-policy-trainer", "create")], width=80)
    view.on_event(
        Event("alpha-policy-trainer", "started", "create", "alpha-policy-trainer-1a2b3c", None, "create", 0.0)
    )
    size["value"] = (40, 24)
    view.on_event(
        Event(
            "alpha-policy-trainer",
            "state",
            "create",
            "alpha-policy-trainer-1a2b3c",
            "JOB_STATE_CREATING",
            "provisioning the trainer pods now",
            0.5,
        )
    )
    tail = out.getvalue().rsplit("\x1b[1F", 1)[1]
    assert tail.startswith("\x1b[J")  # the whole old block is cleared, then redrawn
    assert all(text_width(line.replace("\x1b[2K", "").replace("\x1b[J", "")) <= 39 for line in tail.splitlines())
    screen = Screen(80)
    before, after = out.getvalue().rsplit("\x1b[1F", 1)
    screen.feed(onlcr(before))
    screen.resize(40)
    screen.feed(onlcr("\x1b[1F" + after))
    assert screen.wraps == 0
    assert [line for line in screen.display() if line][0].endswith("…")


def test_tty_view_caps_the_live_block_at_the_screen_height_and_prints_all_rows_at_the_end():
    names = [f"job-{i:02d}" for i in range(30)]
    view, out, _ = tty([(n, "create") for n in names], height=10)
    view.on_event(Event("job-17", "started", "create", "job-17-1", None, "create", 0.0))
    view.on_event(Event("job-03", "failed", "create", "job-03-1", None, "boom", 0.5))
    lines = [text for text, _ in view.render(80, 10)]
    assert len(lines) == 9  # one line left for the cursor
    assert any("job-17" in line for line in lines) and any("job-03" in line for line in lines)
    assert "and 22 more (22 queued)" in lines[-1]
    view.finish()
    final = out.getvalue().rsplit("\x1b[9F", 1)[1]
    assert len([line for line in final.splitlines() if "job-" in line]) == 30


@pytest.mark.skipif(not hasattr(signal, "SIGWINCH"), reason="no SIGWINCH")
def test_tty_view_installs_a_resize_handler_on_the_main_thread_and_restores_it():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("not on the main thread")
    before = signal.getsignal(signal.SIGWINCH)
    view, out, _ = tty([("alpha", "create")])
    assert signal.getsignal(signal.SIGWINCH) != before
    signal.raise_signal(signal.SIGWINCH)
    assert view._resized  # marked for a full clear; the ticker redraws it
    view.finish()
    assert signal.getsignal(signal.SIGWINCH) == before


def test_tty_view_on_a_worker_thread_leaves_signals_alone():
    before = signal.getsignal(signal.SIGWINCH) if hasattr(signal, "SIGWINCH") else None
    made = []
    worker = threading.Thread(target=lambda: made.append(tty([("alpha", "create")])[0]))
    worker.start()
    worker.join(timeout=5)
    assert made
    if hasattr(signal, "SIGWINCH"):
        assert signal.getsignal(signal.SIGWINCH) == before
    made[0].finish()


def test_a_line_printed_during_a_live_view_goes_above_the_block(capsys):
    from rlorinfra.cli.views import echo_above_view

    view, out, _ = tty([("alpha", "create"), ("beta", "create")])
    view.on_event(Event("alpha", "started", "create", "alpha-1", None, "create", 0.0))
    echo_above_view("control plane unreachable, retrying for up to 5m...", err=True)
    assert capsys.readouterr().err == "control plane unreachable, retrying for up to 5m...\n"
    assert out.getvalue().count("\x1b[2F\x1b[J") == 1  # the block was lifted, then drawn again
    assert out.getvalue().endswith("queued\n")
    view.finish()
    echo_above_view("after the view", err=False)  # no live view: a plain line
    assert capsys.readouterr().out == "after the view\n"
