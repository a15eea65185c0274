"""Plan values: the live snapshot the planner reads and the plan it produces.

All of these are plain frozen values with no behaviour beyond small derived
properties; the planner (``planner.py``) makes them, the renderers and ``apply``
read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import LiveDeployment
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.model.times import expiry
from rlorinfra.state.model import State


@dataclass(frozen=True)
class LiveWorld:
    """What refresh saw on the control plane.

    ``jobs`` holds every job the list returned plus every tracked job fetched
    by ID (tombstones included, which lists hide). ``missing`` holds tracked IDs
    the control plane answered 404 for. ``shapes`` maps each declared shape name
    (as written in the spec) to its resolved version. ``deployments`` holds the
    deployments refresh saw, by deployment ID (a full listing hides DELETED rows:
    a tracked deployment absent from it is gone); ``missing_deployments`` the
    tracked deployment IDs answered 404.
    """

    account_id: str
    jobs: dict[str, LiveJob] = field(default_factory=dict)  # by job_id
    missing: frozenset[str] = frozenset()
    shapes: dict[str, ShapeVersion] = field(default_factory=dict)
    refreshed: bool = True  # False for --no-refresh: live facts are state's memory
    # How many jobs a full listing of the account returned (None: not listed, or
    # listed long ago and not known); decides LIST pages vs per-job GETs.
    listed_jobs: int | None = None
    deployments: dict[str, LiveDeployment] = field(default_factory=dict)  # by deployment ID
    missing_deployments: frozenset[str] = frozenset()
    listed_deployments: int | None = None  # as listed_jobs, for the deployment LIST

    def by_display_name(self, name: str) -> list[LiveJob]:
        """Live, non-tombstoned jobs with this display name."""
        return [j for j in self.jobs.values() if j.display_name == name and not j.is_tombstone]


class Action(StrEnum):
    """What apply will do to one resource."""

    CREATE = "create"
    RESUME = "resume"
    WAIT = "wait"
    UPDATE = "update"  # in place (a deployment's PATCH); the ID stays
    REPLACE = "replace"
    STOP = "stop"
    DELETE = "delete"
    NOOP = "noop"

    @property
    def symbol(self) -> str:
        """Terraform-style symbol shown in front of the change."""
        return {
            "create": "+",
            "resume": "~",
            "wait": "~",
            "update": "~",
            "replace": "-/+",
            "stop": "~",
            "delete": "-",
            "noop": " ",
        }[self.value]


@dataclass(frozen=True)
class Lifecycle:
    """What a declared resource's record must hold about its protection and lifetime.

    ``protected`` is ``prevent_destroy``; ``ttl_s`` the declared ``ttl`` in
    seconds (None: none). The record's ``expires_at`` is always
    ``created_at + ttl_s`` (``model.times.expiry``), so a create computes it
    when the record is made and a state-only update from the record's own
    ``created_at``.
    """

    protected: bool = False
    ttl_s: int | None = None

    def expires_at(self, created_at: str | None, now: datetime) -> str | None:
        """``created_at + ttl`` (``now + ttl`` for a record without a creation time); None without a ttl."""
        return expiry(created_at, self.ttl_s, now)


@dataclass(frozen=True)
class Change:
    """One planned action on one resource (``kind``, and ``name``: a job's display name, a deployment's ID).

    ``before``/``after`` are specs (``None`` when the resource does not exist before
    or will not exist after). ``changed_fields`` lists the spec fields that
    differ (on a replace they force it; on an update they are PATCHed).
    ``accelerators`` is the signed change in accelerators, e.g.
    ``{"NVIDIA_H100_80GB": 16}`` (for a deployment: min replicas × per replica).
    ``job_id`` is the control-plane ID acted on: the job ID, or the deployment ID
    (the plan document keeps the key for compatibility; ``resource_id`` reads better).
    """

    name: str
    action: Action
    reason: str = ""
    job_id: str | None = None
    live_state: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    changed_fields: tuple[str, ...] = ()
    accelerators: dict[str, int] = field(default_factory=dict)
    create_before_destroy: bool = False
    max_resumes: int = 3
    kind: Kind = Kind.JOB
    # Resources this change runs after (their creates, resumes and waits finish first).
    depends_on: tuple[Address, ...] = ()
    # What the record must hold once applied (None: leave it; an undeclared resource).
    lifecycle: Lifecycle | None = None
    # State-only updates to the record, as shown: ("ttl: expires 2026-12-07T08:00:00Z",).
    # No API call; apply writes them (a noop change with these is still a change).
    state_updates: tuple[str, ...] = ()

    @property
    def address(self) -> Address:
        """``kind.name``: the resource this change acts on."""
        return Address(self.kind, self.name)

    @property
    def resource_id(self) -> str | None:
        """The control-plane ID acted on, whatever the kind (``job_id`` for a job)."""
        return self.job_id


@dataclass(frozen=True)
class Drift:
    """Something that changed outside rlorinfra since state was written.

    ``kind`` is what happened: one of ``deleted``, ``tombstoned``, ``failed``,
    ``preempted``, ``cancelled``, ``stopped``, ``idle``, ``state``, ``changed``
    (a spec field differs), ``unhealthy``, ``foreign`` or ``creating`` (a create
    whose outcome state did not know). ``resource_kind`` is the kind of the
    resource it happened to (``kind`` was taken first, by the drift's kind).
    """

    name: str
    job_id: str
    kind: str
    recorded_state: str | None = None
    live_state: str | None = None
    detail: str = ""
    changed_fields: tuple[str, ...] = ()
    resource_kind: Kind = Kind.JOB

    @property
    def address(self) -> Address:
        """``kind.name``: the resource that drifted."""
        return Address(self.resource_kind, self.name)


@dataclass(frozen=True)
class Plan:
    """The planner's output: ordered changes (noops included) and drift."""

    changes: tuple[Change, ...] = ()
    drift: tuple[Drift, ...] = ()
    destroy: bool = False
    refresh_only: bool = False
    # Warnings for the user beside the plan (a ttl expiring within the hour, protected
    # resources left out of a destroy); not part of the plan document.
    notes: tuple[str, ...] = ()
    # Protected resources an ``exclude_protected`` plan left unchanged instead of deleting or replacing
    # them (outside destroy: watch heals the rest), with why; not part of the plan document.
    held: tuple[tuple[Address, str], ...] = ()

    @property
    def actionable(self) -> tuple[Change, ...]:
        """Changes apply has to carry out (everything but noops)."""
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def has_changes(self) -> bool:
        """True when apply would do anything (``--detailed-exitcode`` 2), state-only updates included."""
        return bool(self.actionable) or bool(self.state_only)

    @property
    def state_only(self) -> tuple[Change, ...]:
        """Changes that update state records without any API call (ttl, protection)."""
        return tuple(c for c in self.changes if c.state_updates)

    def count(self, action: Action) -> int:
        """How many changes carry ``action``."""
        return sum(1 for c in self.changes if c.action is action)


@dataclass(frozen=True)
class PlanContext:
    """What a kind may read beyond its own resource: the whole state and every declaration.

    A deployment reads its trainer's record (the job ID its link must name) and
    its trainer's declaration (the training shape its shape defaults to).
    """

    state: State = field(default_factory=State)
    declared: Mapping[Address, Any] = field(default_factory=dict)
    # The planner's clock, passed in (the planner never reads one): ttl expiry is judged against it.
    now: datetime = field(default_factory=lambda: datetime(1970, 1, 1, tzinfo=UTC))
