"""What a flow asks of the person (or program) running it.

The CLI implements :class:`UI` with click; tests implement it with a recorder;
``watch`` will implement it with its own loop. Nothing here prints or prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rlorinfra.apply import Event
    from rlorinfra.operations.planning import PlanOutcome
    from rlorinfra.plan.model import Plan


class Operation(StrEnum):
    """A flow that runs under the state lock; the value is what the lock records."""

    PLAN = "plan"
    APPLY = "apply"
    DESTROY = "destroy"
    IMPORT = "import"
    STATE_RM = "state rm"
    STATE_MV = "state mv"
    STATE_UNPROTECT = "state unprotect"
    STATE_PUSH = "state push"
    STATE_MIGRATE = "state migrate"
    FORCE_UNLOCK = "force-unlock"
    WATCH = "watch"
    STATE_UNQUARANTINE = "state unquarantine"


@dataclass(frozen=True)
class Question:
    """A yes/no question a flow needs answered before it changes anything."""

    operation: Operation
    text: str
    explanation: str = ""
    subject: str = ""  # what it is about, for a refusal to name (the lock ID of force-unlock)


APPLY_QUESTION = "Do you want to perform these actions? Only 'yes' will be accepted"
FORCE_UNLOCK_QUESTION = "Do you really want to force-unlock?"
FORCE_UNLOCK_EXPLANATION = (
    "  rlorinfra will remove the lock on the state.\n"
    "  This will allow local rlorinfra commands to modify this state, even though it\n"
    "  may still be in use. Only 'yes' will be accepted to confirm."
)


class UI(Protocol):
    """The parts of a flow a user sees or answers."""

    def note(self, text: str) -> None:
        """Tell the user something worth a warning (the flow goes on)."""

    def show_plan(self, outcome: PlanOutcome) -> None:
        """Show a plan (made now or loaded from a file), once per flow."""

    def confirm(self, question: Question) -> bool:
        """True only when the user agreed; may raise when nobody can answer."""

    def begin_execution(self, plan: Plan) -> None:
        """Changes of ``plan`` are about to run (a live view starts here)."""

    def on_event(self, event: Event) -> None:
        """Something happened to one change while executing."""

    def end_execution(self) -> None:
        """Execution stopped (finished, failed or interrupted): tidy up any live view."""
