"""Apply progress views: live lines on a TTY, log lines otherwise, JSON Lines."""

from __future__ import annotations

import json

from rlorinfra.apply import Event
from rlorinfra.cli.views import JsonView, LineView, TtyView, describe


def events():
    return [
        Event("alpha", "started", "create", "alpha-1a2b3c", None, "create", 0.0),
        Event("alpha", "state", "create", "alpha-1a2b3c", "JOB_STATE_CREATING", "", 0.1),
        Event("beta", "started", "delete", "beta-9f8e7d", None, "delete", 0.0),
        Event("alpha", "retry", "create", "alpha-1a2b3c", "JOB_STATE_FAILED", "pod preempted; resuming", 2.0),
        Event("alpha", "ready", "create", "alpha-1a2b3c", "JOB_STATE_RUNNING", "ready", 3.2),
        Event("beta", "failed", "delete", "beta-9f8e7d", None, "boom", 1.0),
    ]


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


def test_tty_view_redraws_one_live_line_per_job(capsys):
    view = TtyView([("alpha", "create"), ("beta", "delete")], color=False)
    for e in events():
        view.on_event(e)
    out = capsys.readouterr().out
    frames = out.split("\x1b[2F")  # cursor back up over the two job lines
    assert len(frames) == len(events())
    last = [line.replace("\x1b[2K", "") for line in frames[-1].splitlines()]
    assert last[0].split() == ["+", "alpha", "ready", "(RUNNING,", "healthy)", "3.2s"]
    assert last[1].split()[:4] == ["-", "beta", "FAILED:", "boom"]


def test_json_view_emits_json_lines(capsys):
    view = JsonView()
    for e in events():
        view.on_event(e)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in records] == ["started", "state", "started", "retry", "ready", "failed"]
    assert records[1]["state"] == "JOB_STATE_CREATING" and records[0]["job_id"] == "alpha-1a2b3c"


def test_describe_words():
    assert describe(Event("a", "done", "delete", message="deleted")) == "deleted"
