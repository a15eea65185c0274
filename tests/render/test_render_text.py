"""Golden-file tests for the human plan text.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 python -m pytest
tests/render`` and review the diff of ``tests/render/golden/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rlorinfra.plan.document import plan_document
from rlorinfra.render.text import NO_CHANGES, accelerator_text, render_drift_text, render_plan_text
from tests.render.renderplans import CONTROL_PLANE, MIXED, SAMPLES, planned

GOLDEN = Path(__file__).parent / "golden"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``golden/NAME.txt`` (or rewrite it with UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs; UPDATE_GOLDEN=1 regenerates it"


def _doc(plan):
    return plan_document(plan, control_plane=CONTROL_PLANE)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_golden(name):
    check_golden(name, render_plan_text(_doc(SAMPLES[name])))


def test_golden_from_the_real_planner():
    check_golden("planned", render_plan_text(_doc(planned())))


def test_golden_in_colour():
    check_golden("mixed_with_drift.color", render_plan_text(_doc(MIXED), color=True))


def test_colour_only_when_asked_and_same_text_underneath():
    doc = _doc(MIXED)
    plain, coloured = render_plan_text(doc), render_plan_text(doc, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32m+\x1b[0m" in coloured and "\x1b[31m-\x1b[0m" in coloured and "\x1b[33m~\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == plain


def test_empty_plan_says_no_changes():
    assert render_plan_text(_doc(SAMPLES["empty"])) == NO_CHANGES + "\n"


def test_summary_line_and_accelerators():
    text = render_plan_text(_doc(MIXED))
    assert "Plan: 1 to create, 1 to resume, 1 to replace, 1 to stop, 1 to delete (1 to wait for).\n" in text
    assert "Accelerators: +8 × NVIDIA_H100_80GB, -8 × NVIDIA_A100_80GB\n" in text


def test_drift_is_printed_before_the_actions():
    text = render_plan_text(_doc(MIXED))
    assert text.index("Objects have changed outside of rlorinfra") < text.index("will perform the following actions")
    assert "  ~ job.rollout-trainer (id rollout-trainer-1a2b3c) was preempted" in text


def test_forces_replacement_marks_each_changed_field():
    text = render_plan_text(_doc(SAMPLES["replaces"]))
    assert "      ~ lora_rank = 8 -> 16 # forces replacement" in text
    assert '      - region    = "US_IOWA_1" -> null # forces replacement' in text


def test_replace_from_a_default_value_shows_the_default():
    text = render_plan_text(_doc(MIXED))
    assert "      ~ lora_rank = 0 -> 16 # forces replacement" in text


def test_refresh_only_text():
    doc = _doc(SAMPLES["refresh_only"])
    assert render_plan_text(doc) == render_drift_text(doc)
    assert "will not take any actions" in render_drift_text(doc)


@pytest.mark.parametrize(
    ("counts", "text"),
    [
        ({}, ""),
        ({"NVIDIA_H100_80GB": 16}, "+16 × NVIDIA_H100_80GB"),
        ({"NVIDIA_A100_80GB": -8, "NVIDIA_H100_80GB": 16}, "+16 × NVIDIA_H100_80GB, -8 × NVIDIA_A100_80GB"),
        ({"B": 1, "A": 2, "C": 0}, "+2 × A, +1 × B"),
    ],
)
def test_accelerator_text(counts, text):
    assert accelerator_text(counts) == text
