"""Apply's values: options, the steps and goals of a task, events, outcomes and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from rlorinfra.model.address import Address
from rlorinfra.plan.model import Action, Change
from rlorinfra.state.model import State

NOT_STARTED = "not started"  # outcome message of a change an interrupt kept from starting
SKIPPED = "skipped: dependency failed"  # outcome message of a change whose dependency did not converge


class Step(StrEnum):
    """One remote step of a change, run on a worker thread."""

    CREATE = "create"
    RESUME = "resume"
    WAIT_READY = "wait_ready"
    CANCEL = "cancel"
    DELETE = "delete"
    DELETE_OLD = "delete_old"  # create_before_destroy: the replaced resource, once the new one is ready
    UPDATE = "update"  # in place (a deployment's PATCH); the ID stays


class Goal(StrEnum):
    """What a waiting task waits for."""

    READY = "ready"
    GONE = "gone"
    STOPPED = "stopped"


class EventKind(StrEnum):
    """What an ``Event`` reports; the CLI's views render each kind."""

    STARTED = "started"
    STATE = "state"
    READY = "ready"
    DONE = "done"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True)
class ApplyOptions:
    """Knobs of one apply run."""

    parallelism: int = 10
    wait: bool = True
    timeout_s: float = 900.0  # readiness budget after placement
    pending_timeout_s: float = 172800.0  # budget while PENDING for capacity (as the SDK)
    poll_min_s: float = 0.5
    poll_max_s: float = 5.0


@dataclass(frozen=True)
class Event:
    """Something that happened to one resource, for the view to show."""

    name: str
    kind: EventKind
    action: str
    job_id: str | None = None
    state: str | None = None
    message: str = ""
    elapsed: float = 0.0
    create_before_destroy: bool = False  # a replace that creates first (shown as +/-)
    address: str = ""  # kind.name ("" in events made before addresses)

    @property
    def label(self) -> str:
        """How views name the resource: a job by its name, any other kind by its address."""
        return self.address if self.address and not self.address.startswith("job.") else self.name


@dataclass(frozen=True)
class Outcome:
    """How one change ended."""

    name: str
    action: str
    ok: bool
    job_id: str | None = None
    message: str = ""
    pending: bool = False  # still provisioning (no-wait or interrupted)
    address: str = ""  # kind.name

    @property
    def label(self) -> str:
        """How views name the resource: a job by its name, any other kind by its address."""
        return self.address if self.address and not self.address.startswith("job.") else self.name


@dataclass
class ApplyResult:
    """Everything apply did, for the summary."""

    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    state: State | None = None

    @property
    def failed(self) -> list[Outcome]:
        """Outcomes that did not converge."""
        return [o for o in self.outcomes if not o.ok and not o.pending]

    def count(self, action: Action) -> int:
        """Successful outcomes of ``action``."""
        return sum(1 for o in self.outcomes if o.ok and o.action == action.value)


@dataclass(eq=False)
class Task:
    """One change being carried out: pending steps, then (maybe) a wait.

    The scheduler owns ``steps``, ``goal``, ``busy`` and ``outcome``; the
    resource kind's steps own the rest (IDs, deadlines, resume bookkeeping).
    """

    change: Change
    steps: list[Step]
    job_id: str | None = None
    goal: Goal | None = None
    started: float = 0.0
    placed_deadline: float | None = None
    pending_deadline: float = 0.0
    resumes: int = 0
    resumed_at: float | None = None
    waiting_since: float = 0.0  # when the current wait began
    reserved: bool = False  # its ID was recorded up front and its create step has not started
    last_state: str | None = None
    busy: bool = False
    outcome: Outcome | None = None
    old_job_id: str | None = None  # replace: the resource being replaced
    # A deployment's wait for READY also waits for this trainer link (a create or re-attach set it).
    trainer_link: str | None = None

    @property
    def name(self) -> str:
        """The changed resource's name (the display name of a job)."""
        return self.change.name

    @property
    def address(self) -> Address:
        """The changed resource's address."""
        return self.change.address


def now_rfc3339() -> str:
    """Current UTC time as RFC 3339 (state timestamps)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
