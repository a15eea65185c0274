"""A typed in-memory control plane for apply's tests (checked by mypy against ``ControlPlane``).

Jobs advance one step per LIST (or per GET): CREATING → RUNNING, unless a
per-job script says otherwise. Every call is logged; mutating calls are
counted while in flight, so tests can check the ``--parallelism`` bound.

Type-check: ``mypy --strict --follow-imports=silent tests/apply/fakes.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from rlorinfra.api.client import ControlPlaneClient
from rlorinfra.apply import ControlPlane, StateWriter
from rlorinfra.errors import AlreadyExistsError, ApiError
from rlorinfra.model.jobs import LiveJob
from rlorinfra.state.model import State

SPEC: dict[str, Any] = {
    "base_model": "accounts/fireworks/models/qwen3-8b",
    "training_shape": "accounts/fireworks/trainingShapes/s",
}


class FakePlane:
    """Scripted jobs by ID; ``calls`` logs every request in order."""

    account_id = "acct"

    def __init__(self, *, call_delay_s: float = 0.0, advance_on_get: bool = False) -> None:
        self.jobs: dict[str, str] = {}  # job id -> state
        self.script: dict[str, list[str]] = {}  # job id -> states to report on successive lists
        self.names: dict[str, str] = {}  # job id -> display name
        self.templates: dict[str, LiveJob] = {}  # job id -> the job as first seen (spec and reported fields)
        self.calls: list[str] = []
        self.fail_create: set[str] = set()
        self.state_at_post: list[State] = []
        self.writer: StateWriter | None = None
        self.call_delay_s = call_delay_s  # how long a mutating call takes (lets calls overlap)
        self.advance_on_get = advance_on_get
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.RLock()

    # -- bookkeeping --------------------------------------------------------

    def _log(self, call: str) -> None:
        with self._lock:
            self.calls.append(call)

    def _enter(self, call: str) -> None:
        """A mutating call starts: log it and count it as in flight."""
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.call_delay_s:
            time.sleep(self.call_delay_s)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _advance(self, job_id: str) -> None:
        script = self.script.get(job_id)
        if script:
            self.jobs[job_id] = script.pop(0)
        elif self.jobs[job_id] in ("JOB_STATE_CREATING", "JOB_STATE_PENDING"):
            self.jobs[job_id] = "JOB_STATE_RUNNING"

    def live(self, job_id: str) -> LiveJob:
        """The job as the control plane reports it now."""
        state = self.jobs[job_id]
        template = self.templates.get(job_id)
        if template is not None:
            return replace(template, state=state, display_name=self.names.get(job_id, template.display_name))
        return LiveJob(
            job_id=job_id,
            name=self.job_name(job_id),
            display_name=self.names.get(job_id, ""),
            state=state,
            status_message="pod preempted" if state == "JOB_STATE_FAILED" else "",
        )

    def add(self, job: LiveJob) -> None:
        """Put an existing job in the world."""
        self.jobs[job.job_id] = job.state
        self.names[job.job_id] = job.display_name
        self.templates[job.job_id] = job

    # -- ControlPlane -------------------------------------------------------

    def job_name(self, job_id: str) -> str:
        """``accounts/acct/rlorTrainerJobs/{job_id}``."""
        return f"accounts/acct/rlorTrainerJobs/{job_id}"

    def endpoint(self, job_id: str) -> str:
        """A gateway URL for the job."""
        return f"http://gw/training/v1/rlorTrainerJobs/acct/{job_id}"

    def create_job(self, job_id: str, display_name: str, spec: dict[str, Any]) -> LiveJob:
        """A new CREATING job; 400 for names in ``fail_create``, 409 for a taken ID."""
        self._enter(f"create:{display_name}")
        try:
            with self._lock:
                if self.writer is not None:
                    self.state_at_post.append(self.writer.state)
                if display_name in self.fail_create:
                    raise ApiError("Control plane refused to create", status_code=400)
                if job_id in self.jobs:
                    raise AlreadyExistsError("exists", status_code=409)
                self.jobs[job_id], self.names[job_id] = "JOB_STATE_CREATING", display_name
                self.templates[job_id] = _created(job_id, self.job_name(job_id), display_name, spec)
                return self.live(job_id)
        finally:
            self._leave()

    def get_job(self, job_id: str) -> LiveJob | None:
        """The job, or None when it never existed."""
        self._log("get")
        with self._lock:
            if job_id not in self.jobs:
                return None
            if self.advance_on_get:
                self._advance(job_id)
            return self.live(job_id)

    def list_jobs(self) -> list[LiveJob]:
        """Every job but tombstones; advances each one step."""
        self._log("list")
        with self._lock:
            for job_id in list(self.jobs):
                self._advance(job_id)
            return [self.live(j) for j, s in self.jobs.items() if s not in ("JOB_STATE_DELETED", "JOB_STATE_ARCHIVED")]

    def resume_job(self, job_id: str) -> LiveJob:
        """Back to CREATING."""
        self._enter("resume")
        try:
            with self._lock:
                self.jobs[job_id] = "JOB_STATE_CREATING"
                return self.live(job_id)
        finally:
            self._leave()

    def cancel_job(self, job_id: str) -> None:
        """CANCELLED at once."""
        self._enter("cancel")
        try:
            with self._lock:
                self.jobs[job_id] = "JOB_STATE_CANCELLED"
        finally:
            self._leave()

    def delete_job(self, job_id: str) -> bool:
        """A tombstone; False when the job never existed."""
        self._enter("delete")
        try:
            with self._lock:
                existed = job_id in self.jobs
                if existed:
                    self.jobs[job_id] = "JOB_STATE_DELETED"
                return existed
        finally:
            self._leave()

    def healthy(self, job_id: str) -> bool:
        """RUNNING jobs are healthy."""
        self._log("health")
        return self.jobs.get(job_id) == "JOB_STATE_RUNNING"


def _created(job_id: str, name: str, display_name: str, spec: dict[str, Any]) -> LiveJob:
    """A new job carrying its spec, as every field were reported."""
    return LiveJob(
        job_id=job_id,
        name=name,
        display_name=display_name,
        state="JOB_STATE_CREATING",
        spec=tuple(sorted(spec.items())),
        reported=frozenset(spec),
    )


def _satisfies_protocol(fake: FakePlane, client: ControlPlaneClient) -> tuple[ControlPlane, ControlPlane]:
    """Never called: mypy checks here that the fake and the real client both are ``ControlPlane``s."""
    return fake, client
