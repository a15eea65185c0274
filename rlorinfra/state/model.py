"""The state model: what rlorinfra knows it manages.

State is a plain value. The planner reads it; ``apply`` produces new values with
``dataclasses.replace``/``with_job``/``without_job``; only
``rlorinfra.state.store`` turns it into bytes on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from rlorinfra.model.address import Address, Kind

# 2: resources by kind, then name (DESIGN.md §4). 1: a top-level "jobs" (still read).
FORMAT_VERSION = 2

# Job phases recorded in state.
PHASE_CREATING = "creating"  # ID chosen and written; the POST may or may not have landed
PHASE_READY = "ready"  # RUNNING and healthy when last seen by apply
PHASE_PROVISIONING = "provisioning"  # accepted, not yet ready (--no-wait, timeout, Ctrl-C)
PHASE_STOPPED = "stopped"  # cancelled on purpose (desired_state = "stopped")
PHASE_FAILED = "failed"  # apply gave up on it
PHASES = (PHASE_CREATING, PHASE_READY, PHASE_PROVISIONING, PHASE_STOPPED, PHASE_FAILED)


@dataclass(frozen=True)
class WatchRecord:
    """What ``rlorinfra watch`` remembers about one resource, so a restarted watch goes on where it was.

    ``resumes``: unix times of the resumes watch sent (its budget window counts them);
    ``resumable_seen``: consecutive cycles that saw the resource resumable (a resume
    needs two); ``backoff_until``: no resume before this unix time; ``quarantined``:
    the budget is spent, watch leaves the resource alone until a human acts.
    """

    resumes: tuple[float, ...] = ()
    resumable_seen: int = 0
    backoff_until: float | None = None
    quarantined: bool = False

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to remember (the record then carries no ``watch`` key)."""
        return self == WatchRecord()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping, only the keys that are set."""
        data: dict[str, Any] = {}
        if self.resumes:
            data["resumes"] = list(self.resumes)
        if self.resumable_seen:
            data["resumable_seen"] = self.resumable_seen
        if self.backoff_until is not None:
            data["backoff_until"] = self.backoff_until
        if self.quarantined:
            data["quarantined"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WatchRecord:
        """Inverse of ``to_dict`` (``None``: nothing remembered)."""
        if not data:
            return cls()
        backoff = data.get("backoff_until")
        return cls(
            resumes=tuple(float(t) for t in data.get("resumes") or ()),
            resumable_seen=int(data.get("resumable_seen") or 0),
            backoff_until=None if backoff is None else float(backoff),
            quarantined=bool(data.get("quarantined", False)),
        )


@dataclass(frozen=True)
class JobRecord:
    """One managed job, keyed in ``State.jobs`` by its display name."""

    job_id: str
    job_name: str  # accounts/{account}/rlorTrainerJobs/{job_id}
    endpoint: str  # {gateway}/training/v1/rlorTrainerJobs/{account}/{job_id}
    spec: dict[str, Any]  # JobSpec.spec() it was created from
    phase: str = PHASE_CREATING
    observed_state: str | None = None  # JOB_STATE_* last seen
    training_shape_version: str | None = None  # resolved version name, if on the shape path
    created_at: str | None = None  # RFC 3339, when rlorinfra created/imported it
    updated_at: str | None = None  # RFC 3339, last time rlorinfra wrote this record
    # create_before_destroy: the job this one replaces, still to be deleted. Kept
    # in state until it is gone, so a crash or a failed replacement never leaves
    # it running untracked (Terraform calls such an object "deposed"). Several: a
    # second replacement before the first one's delete finished deposes one more.
    deposed_job_ids: tuple[str, ...] = ()
    # Spec fields `import` could not read from the API (PROTOCOL.md §3.5): unknown,
    # so the planner never treats them as changed; apply adopts the declared values.
    unread_fields: tuple[str, ...] = ()
    # What this resource depends on, recorded so that destroy can order deletes
    # (dependents first) after the config blocks are gone. Empty for jobs today.
    depends_on: tuple[Address, ...] = ()
    # prevent_destroy as recorded (DESIGN.md §4): survives removing the block, so a
    # cleanup commit cannot delete it; cleared by prevent_destroy = false or `state unprotect`.
    protected: bool = False
    expires_at: str | None = None  # RFC 3339: created_at + ttl (DESIGN.md §7); None without a ttl
    # watch's bookkeeping (resume history, backoff, quarantine); written only when set.
    watch: WatchRecord = field(default_factory=WatchRecord)

    @property
    def resource_id(self) -> str:
        """The control-plane ID (the job ID)."""
        return self.job_id

    @property
    def tracked_ids(self) -> tuple[str, ...]:
        """Every live ID this record accounts for: its job and the deposed ones."""
        return (self.job_id, *self.deposed_job_ids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the codec's job); the lists only when non-empty."""
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "job_name": self.job_name,
            "endpoint": self.endpoint,
            "spec": dict(self.spec),
            "phase": self.phase,
            "observed_state": self.observed_state,
            "training_shape_version": self.training_shape_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.deposed_job_ids:
            data["deposed_job_ids"] = list(self.deposed_job_ids)
        if self.unread_fields:
            data["unread_fields"] = list(self.unread_fields)
        if self.depends_on:
            data["depends_on"] = [str(address) for address in self.depends_on]
        data |= lifecycle_dict(self.protected, self.expires_at)
        if not self.watch.is_empty:
            data["watch"] = self.watch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Inverse of ``to_dict``; raises KeyError/TypeError on malformed input."""
        return cls(
            job_id=data["job_id"],
            job_name=data["job_name"],
            endpoint=data["endpoint"],
            spec=dict(data["spec"]),
            phase=data.get("phase", PHASE_READY),
            observed_state=data.get("observed_state"),
            training_shape_version=data.get("training_shape_version"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            deposed_job_ids=_deposed_ids(data),
            unread_fields=tuple(data.get("unread_fields") or ()),
            depends_on=tuple(parse_recorded_address(text) for text in data.get("depends_on") or ()),
            protected=bool(data.get("protected", False)),
            expires_at=data.get("expires_at"),
            watch=WatchRecord.from_dict(data.get("watch")),
        )


@dataclass(frozen=True)
class DeploymentRecord:
    """One managed serving deployment, keyed in ``State.deployments`` by its deployment ID.

    The ID is the config key, so it is known before the create: the record is
    written with phase ``creating`` before the POST, like a job's. ``spec`` is
    ``DeploymentSpec.spec()`` with the shape resolved; ``hot_load_trainer_job``
    is the trainer link (``accounts/{a}/rlorTrainerJobs/{id}``) rlorinfra last
    set, so a link moved elsewhere shows as drift.
    """

    deployment_id: str
    deployment_name: str  # accounts/{account}/deployments/{deployment_id}
    spec: dict[str, Any]
    phase: str = PHASE_CREATING
    observed_state: str | None = None  # Deployment.state last seen
    hot_load_trainer_job: str | None = None
    hot_load_bucket_url: str | None = None
    deployment_shape_version: str | None = None  # the versioned shape the server stored
    created_at: str | None = None
    updated_at: str | None = None
    unread_fields: tuple[str, ...] = ()
    depends_on: tuple[Address, ...] = ()
    protected: bool = False  # as JobRecord.protected
    expires_at: str | None = None  # as JobRecord.expires_at
    watch: WatchRecord = field(default_factory=WatchRecord)  # as JobRecord.watch

    @property
    def resource_id(self) -> str:
        """The control-plane ID (the deployment ID)."""
        return self.deployment_id

    @property
    def tracked_ids(self) -> tuple[str, ...]:
        """Every live ID this record accounts for (one: a deployment ID never changes)."""
        return (self.deployment_id,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping; the lists only when non-empty."""
        data: dict[str, Any] = {
            "deployment_id": self.deployment_id,
            "deployment_name": self.deployment_name,
            "spec": dict(self.spec),
            "phase": self.phase,
            "observed_state": self.observed_state,
            "hot_load_trainer_job": self.hot_load_trainer_job,
            "hot_load_bucket_url": self.hot_load_bucket_url,
            "deployment_shape_version": self.deployment_shape_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.unread_fields:
            data["unread_fields"] = list(self.unread_fields)
        if self.depends_on:
            data["depends_on"] = [str(address) for address in self.depends_on]
        data |= lifecycle_dict(self.protected, self.expires_at)
        if not self.watch.is_empty:
            data["watch"] = self.watch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentRecord:
        """Inverse of ``to_dict``; raises KeyError/TypeError on malformed input."""
        return cls(
            deployment_id=data["deployment_id"],
            deployment_name=data["deployment_name"],
            spec=dict(data["spec"]),
            phase=data.get("phase", PHASE_READY),
            observed_state=data.get("observed_state"),
            hot_load_trainer_job=data.get("hot_load_trainer_job"),
            hot_load_bucket_url=data.get("hot_load_bucket_url"),
            deployment_shape_version=data.get("deployment_shape_version"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            unread_fields=tuple(data.get("unread_fields") or ()),
            depends_on=tuple(parse_recorded_address(text) for text in data.get("depends_on") or ()),
            protected=bool(data.get("protected", False)),
            expires_at=data.get("expires_at"),
            watch=WatchRecord.from_dict(data.get("watch")),
        )


# Any managed resource's record.
Record = JobRecord | DeploymentRecord


def lifecycle_dict(protected: bool, expires_at: str | None) -> dict[str, Any]:
    """The lifecycle keys of a record, only those that are set (older readers never see them)."""
    data: dict[str, Any] = {}
    if protected:
        data["protected"] = True
    if expires_at is not None:
        data["expires_at"] = expires_at
    return data


def parse_recorded_address(text: str) -> Address:
    """An address as state records it (always ``kind.name``); ValueError for anything else.

    Stricter than ``Address.parse``: state never holds a bare name to resolve.
    """
    kind, dot, name = text.partition(".")
    if not dot or not name or kind not in {k.value for k in Kind}:
        raise ValueError(f"{text!r} is not an address such as job.NAME")
    return Address(Kind(kind), name)


def _deposed_ids(data: dict[str, Any]) -> tuple[str, ...]:
    """``deposed_job_ids``, or the single ``deposed_job_id`` older files wrote."""
    ids = list(data.get("deposed_job_ids") or ())
    legacy = data.get("deposed_job_id")
    if legacy and legacy not in ids:
        ids.insert(0, legacy)
    return tuple(ids)


@dataclass(frozen=True)
class State:
    """The whole state as a value: managed resources by kind, then by name (DESIGN.md §4)."""

    format_version: int = FORMAT_VERSION
    serial: int = 0
    lineage: str | None = None
    control_plane: dict[str, Any] = field(default_factory=dict)  # {"url", "account_id", "instance"}
    resources: Mapping[Kind, Mapping[str, Record]] = field(default_factory=dict)
    # Jobs the last full LIST of the account returned: lets refresh and apply's
    # poll rounds pick per-job GETs when those are fewer requests than the pages.
    listed_jobs: int | None = None
    # Deployments the last full LIST returned (the same choice, for the deployment section).
    listed_deployments: int | None = None

    def __post_init__(self) -> None:
        # An empty section is no section: a state that lost its last job equals one read
        # back from a file (which always has a job section) and one that never had jobs.
        if any(not records for records in self.resources.values()):
            object.__setattr__(self, "resources", {kind: recs for kind, recs in self.resources.items() if recs})

    @property
    def jobs(self) -> Mapping[str, JobRecord]:
        """The trainer-job records, by display name."""
        return cast(Mapping[str, JobRecord], self.resources.get(Kind.JOB, {}))

    @property
    def deployments(self) -> Mapping[str, DeploymentRecord]:
        """The serving-deployment records, by deployment ID."""
        return cast(Mapping[str, DeploymentRecord], self.resources.get(Kind.DEPLOYMENT, {}))

    def addresses(self) -> list[Address]:
        """Every managed resource's address, sorted (by kind, then name)."""
        return sorted(Address(kind, name) for kind, records in self.resources.items() for name in records)

    def record(self, address: Address) -> Record | None:
        """The record at ``address``, or None when state does not manage it."""
        return self.resources.get(address.kind, {}).get(address.name)

    def job(self, name: str) -> JobRecord | None:
        """The record of job ``name``, or None."""
        return self.jobs.get(name)

    def deployment(self, name: str) -> DeploymentRecord | None:
        """The record of deployment ``name``, or None."""
        return self.deployments.get(name)

    def with_record(self, address: Address, record: Record) -> State:
        """A copy with ``address`` set to ``record``."""
        section = {**self.resources.get(address.kind, {}), address.name: record}
        return replace(self, resources={**self.resources, address.kind: section})

    def without_record(self, address: Address) -> State:
        """A copy without ``address`` (no error if absent)."""
        section = {k: v for k, v in self.resources.get(address.kind, {}).items() if k != address.name}
        return replace(self, resources={**self.resources, address.kind: section})

    def with_job(self, name: str, record: JobRecord) -> State:
        """A copy with job ``name`` set to ``record``."""
        return self.with_record(Address.job(name), record)

    def without_job(self, name: str) -> State:
        """A copy without job ``name`` (no error if absent)."""
        return self.without_record(Address.job(name))

    def with_jobs(self, records: Mapping[str, JobRecord]) -> State:
        """A copy whose job records are exactly ``records``."""
        return replace(self, resources={**self.resources, Kind.JOB: dict(records)})

    def content(self) -> dict[str, Any]:
        """Everything that counts as content (serial and lineage excluded)."""
        return {
            "format_version": self.format_version,
            "control_plane": dict(self.control_plane),
            "resources": {
                kind.value: {name: rec.to_dict() for name, rec in sorted(records.items())}
                for kind, records in sorted(self.resources.items())
                if records
            },
            "listed_jobs": self.listed_jobs,
            "listed_deployments": self.listed_deployments,
        }
