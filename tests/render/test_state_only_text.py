"""The text view of state-only updates (ttl, protection): listed after the changes, no API call."""

from __future__ import annotations

from rlorinfra.plan.document import plan_document, plan_from_document
from rlorinfra.plan.model import Action, Change, Lifecycle, Plan
from rlorinfra.render.text import NO_CHANGES, render_plan_text

UPDATE = Change(
    name="trainer",
    action=Action.NOOP,
    reason="job is JOB_STATE_RUNNING",
    job_id="t-1",
    lifecycle=Lifecycle(protected=True, ttl_s=3600),
    state_updates=("protected: true", "ttl: expires 2026-12-07T08:00:00Z"),
)


def _text(plan: Plan) -> str:
    return render_plan_text(plan_document(plan, control_plane={}))


def test_a_plan_of_state_only_updates_lists_them_instead_of_no_changes():
    text = _text(Plan(changes=(UPDATE,)))
    assert text == (
        "rlorinfra will update state only (no API call):\n"
        "  ~ job.trainer: protected: true\n"
        "  ~ job.trainer: ttl: expires 2026-12-07T08:00:00Z\n"
    )
    assert NO_CHANGES not in text


def test_state_only_updates_follow_the_actions_and_survive_a_saved_plan():
    create = Change(name="other", action=Action.CREATE, after={"base_model": "m"}, lifecycle=Lifecycle())
    plan = Plan(changes=(create, UPDATE))
    text = _text(plan)
    assert text.index("Plan: 1 to create") < text.index("rlorinfra will update state only (no API call):")
    again = plan_from_document(plan_document(plan, control_plane={}))
    assert again.changes == plan.changes and again.has_changes
