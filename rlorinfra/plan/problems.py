"""Why a plan cannot be made: problems are collected, then raised together as one ``PlanError``.

The planner core and every resource kind raise or append ``PlanProblem`` while
planning one resource; ``raise_problems`` turns the whole list into the single
typed error the user sees, so one run reports every problem at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address


class PlanProblem(Exception):
    """One reason the plan cannot be made (a full-sentence ``summary`` and ``detail``)."""

    def __init__(self, summary: str, detail: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.address: Address | None = None  # the resource it is about, when the planner knows it


class ProtectedProblem(PlanProblem):
    """A delete or replace of a protected resource (``prevent_destroy``, or ``protected`` in state).

    Apart because ``watch`` plans with ``exclude_protected``: the resource is then
    left unchanged and reported, instead of failing the whole plan.
    """


def raise_problems(problems: Sequence[PlanProblem]) -> None:
    """Raise one PlanError that lists every problem (nothing if there are none)."""
    if not problems:
        return
    if len(problems) == 1:
        raise PlanError(problems[0].summary, problems[0].detail)
    detail = "\n".join(f"- {p.summary}. {p.detail}" for p in problems)
    raise PlanError(f"Cannot make the plan: {len(problems)} problems", detail)
