"""The CLI's implementation of the flows' UI: warnings, plans, prompts and live views with click."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import click

from rlorinfra.cli.common import echo_warning
from rlorinfra.errors import RlorinfraError, StateError
from rlorinfra.operations.ui import Operation, Question

if TYPE_CHECKING:
    from rlorinfra.apply import Event
    from rlorinfra.cli.views import JsonView, LineView, TtyView
    from rlorinfra.operations.planning import PlanOutcome
    from rlorinfra.plan.model import Plan

TARGETING_PLAN = (
    "Resource targeting is in effect\n\n"
    "You are creating a plan with the --target option, which means that the result of this plan may not "
    "represent all of the changes requested by the current configuration.\n\n"
    "The --target option is not for routine use, and is provided only for exceptional situations such as "
    "recovering from errors or mistakes, or when rlorinfra specifically suggests to use it as part of an "
    "error message."
)


class PlanFormat(Enum):
    """How a command shows a plan."""

    TEXT = "text"  # the plan as Terraform shows it
    DRIFT_TEXT = "drift"  # plan --refresh-only: only what drifted
    JSON = "json"  # plan --json: the plan document
    JSON_LINES = "json-lines"  # apply/destroy --json: a {"type": "plan"} record of the stream


@dataclass
class ClickUI:
    """Shows what flows tell on stdout/stderr and asks on the terminal."""

    plan_format: PlanFormat = PlanFormat.TEXT
    color: bool = False
    _view: JsonView | TtyView | LineView | None = field(default=None, repr=False)

    @property
    def as_json(self) -> bool:
        """Whether stdout is machine-readable."""
        return self.plan_format in (PlanFormat.JSON, PlanFormat.JSON_LINES)

    def note(self, text: str) -> None:
        """A ``Warning:`` line on stderr."""
        echo_warning(text)

    def show_plan(self, outcome: PlanOutcome) -> None:
        """The targeting warning, the plan, then (text only) a note on what targeting left out."""
        if outcome.targets:
            echo_warning(TARGETING_PLAN)
        click.echo(self._plan_text(outcome))
        note = untargeted_note(outcome.plan, outcome.targets)
        if note and not self.as_json:
            click.echo(note)

    def _plan_text(self, outcome: PlanOutcome) -> str:
        from rlorinfra.cli.views import json_line
        from rlorinfra.render.text import render_drift_text, render_plan_text

        if self.plan_format is PlanFormat.JSON:
            return json.dumps(outcome.document, indent=None, sort_keys=False)
        if self.plan_format is PlanFormat.JSON_LINES:
            return json_line({"type": "plan", "plan": outcome.document})
        if self.plan_format is PlanFormat.DRIFT_TEXT:
            return render_drift_text(outcome.document, color=self.color)
        return render_plan_text(outcome.document, color=self.color)

    def confirm(self, question: Question) -> bool:
        """Ask on the terminal; refuse (an error) when there is none to ask on."""
        from rlorinfra.cli.runtime import ask_for_yes, stdin_is_tty

        if not stdin_is_tty():
            raise _no_terminal(question)
        return ask_for_yes(question.text, question.explanation)

    def begin_execution(self, plan: Plan) -> None:
        """Start the live view (TTY), line view or JSON stream for ``plan``'s changes."""
        from rlorinfra.cli.views import make_view

        self._view = make_view(plan, as_json=self.as_json, color=self.color)

    def on_event(self, event: Event) -> None:
        """Pass an executor event to the view."""
        if self._view is not None:
            self._view.on_event(event)

    def end_execution(self) -> None:
        """Stop a live view's ticker (before any error or summary is printed)."""
        if self._view is not None:
            self._view.finish()


def untargeted_note(plan: Plan, targets: tuple[str, ...]) -> str:
    """For a targeted plan with no changes: say the rest was not looked at (or "")."""
    if not targets or plan.has_changes:
        return ""
    shown = ", ".join(f'"{t}"' for t in dict.fromkeys(targets))
    return (
        f"Only the targeted jobs ({shown}) were considered: the other resources were not, and may "
        "still have changes. Run `rlorinfra plan` without --target to see them."
    )


def _no_terminal(question: Question) -> RlorinfraError:
    """Why nobody can be asked: scripts must say --auto-approve (or --force) instead."""
    operation = question.operation
    if operation is Operation.FORCE_UNLOCK:
        return StateError(
            "No confirmation for force-unlock: standard input is not a terminal",
            "rlorinfra force-unlock asks for confirmation before removing a lock. In scripts, "
            f"pass --force: `rlorinfra force-unlock --force {question.subject}`. Nothing was changed.",
        )
    action = operation.value
    return RlorinfraError(
        f"No approval for {action}: standard input is not a terminal",
        f"rlorinfra {action} asks for confirmation before changing jobs. In scripts and CI "
        f"pass --auto-approve, or save a plan with `rlorinfra plan --out PLANFILE` and run "
        f"`rlorinfra apply PLANFILE`.",
    )
