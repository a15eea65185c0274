"""The seam between the scheduler and a resource kind (DESIGN.md §3, §6).

The scheduler knows tasks, dependencies, workers and poll rounds; a kind
knows which steps carry out a change, how to run each, how to observe its
waiting resources in one round and how to judge what it saw. Adding a kind
(a serving deployment) adds one module here implementing ``ApplyKind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from rlorinfra.apply.model import ApplyOptions, EventKind, Goal, Step, Task
from rlorinfra.model.address import Kind
from rlorinfra.plan.model import Change

Observation = TypeVar("Observation")


class TaskHost(Protocol):
    """What the scheduler offers a kind's steps: time, events and settling a task."""

    options: ApplyOptions

    def now(self) -> float:
        """The scheduler's clock (monotonic seconds)."""
        ...

    def pause(self, seconds: float) -> None:
        """Sleep on the scheduler's clock (tests make this instant)."""
        ...

    def event(
        self, task: Task, kind: EventKind, *, state: str | None = None, message: str = "", job_id: str | None = None
    ) -> None:
        """Report an event about ``task``."""
        ...

    def finish(
        self, task: Task, *, ok: bool, message: str, pending: bool = False, kind: EventKind = EventKind.DONE
    ) -> None:
        """Settle ``task`` with an outcome."""
        ...

    def start_wait(self, task: Task, goal: Goal, state: str | None) -> None:
        """Park ``task`` until a poll round sees ``goal`` reached."""
        ...


class ApplyKind(Protocol[Observation]):
    """Apply's view of one resource kind: steps, observation and readiness."""

    kind: Kind

    def steps(self, change: Change) -> list[Step]:
        """The remote steps that carry out ``change``, in order."""
        ...

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Before any step runs (e.g. choose and record the IDs of new resources in one write)."""
        ...

    def run_step(self, task: Task, step: Step) -> None:
        """Run one step on a worker thread; raises ``ApiError`` when it fails."""
        ...

    def observe_round(self, waiting: Sequence[Task]) -> list[Observation | None]:
        """One poll round for every waiting task of this kind; one observation per task, in order."""
        ...

    def judge(self, task: Task, observation: Observation | None) -> bool:
        """Advance ``task`` from what the round saw; True if anything changed."""
        ...

    def settle_failed(self, task: Task) -> None:
        """Record in state that ``task`` did not converge."""
        ...

    def release_unstarted(self, tasks: Sequence[Task]) -> None:
        """After an interrupt: undo what ``prepare`` recorded for tasks that never started."""
        ...
