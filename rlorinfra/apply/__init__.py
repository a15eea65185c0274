"""Apply: run a plan against the control plane (DESIGN.md §6).

- ``scheduler``: the ``Executor``, which runs changes as a dependency graph.
- ``kinds``: per resource kind, the steps of a change and its readiness rule.
- ``writer``: ``StateWriter``, the one path by which apply changes state.
- ``control_plane``: the ``ControlPlane`` protocol the executor calls.
"""

from rlorinfra.apply.control_plane import ControlPlane
from rlorinfra.apply.kinds import ApplyKind, TaskHost
from rlorinfra.apply.kinds.common import NotOursError
from rlorinfra.apply.kinds.deployment import DeploymentSteps
from rlorinfra.apply.kinds.job import JobSteps, new_job_id
from rlorinfra.apply.model import (
    NOT_STARTED,
    SKIPPED,
    ApplyOptions,
    ApplyResult,
    Event,
    EventKind,
    Goal,
    Outcome,
    Step,
    Task,
    now_rfc3339,
)
from rlorinfra.apply.scheduler import Executor
from rlorinfra.apply.writer import StateWriter

__all__ = [
    "NOT_STARTED",
    "SKIPPED",
    "ApplyKind",
    "ApplyOptions",
    "ApplyResult",
    "ControlPlane",
    "DeploymentSteps",
    "Event",
    "EventKind",
    "Executor",
    "Goal",
    "JobSteps",
    "NotOursError",
    "Outcome",
    "StateWriter",
    "Step",
    "Task",
    "TaskHost",
    "new_job_id",
    "now_rfc3339",
]
