"""A typed in-memory control plane for apply's tests (checked by mypy against ``ControlPlane``).

Jobs advance one step per LIST (or per GET): CREATING → RUNNING, unless a
per-job script says otherwise. Every call is logged; mutating calls are
counted while in flight, so tests can check the ``--parallelism`` bound.

Deployments follow PROTOCOL.md §10: CREATING → READY after ``deployment_polls``
reads (LIST or GET), UPDATING on a PATCH that restarts the pod (link or
transition type) → READY, DELETING → gone (a DELETED row, hidden by lists);
failures are injected per deployment ID. ``timeline`` records, in order, when a
job was first seen RUNNING and when each deployment request began and ended, so
tests can check the dependency order.

Type-check: ``mypy --strict --follow-imports=silent tests/apply/fakes.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from rlorinfra.api.client import ControlPlaneClient
from rlorinfra.apply import ControlPlane, StateWriter
from rlorinfra.errors import AlreadyExistsError, ApiError, OutcomeUnknownError
from rlorinfra.model.deployments import (
    POD_RESTART_FIELDS,
    REPORTED_SPEC_FIELDS,
    DeploymentState,
    HotLoadTransition,
    LiveDeployment,
    deployment_name,
)
from rlorinfra.model.jobs import LiveJob
from rlorinfra.state.model import State

DEPLOYMENT_SPEC: dict[str, Any] = {
    "base_model": "accounts/fireworks/models/qwen3-8b",
    "deployment_shape": "accounts/fireworks/deploymentShapes/rft/versions/v1",
    "min_replica_count": 1,
}

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
        # -- deployments --
        self.deployments: dict[str, LiveDeployment] = {}  # by deployment ID (DELETED rows kept)
        self.deployment_polls = 2  # reads a CREATING/UPDATING/DELETING deployment takes to settle
        self._settle_in: dict[str, int] = {}  # deployment ID -> reads left before it settles
        self.timeline: list[str] = []  # "running:<job display name>", "dcreate:<id>", "ddeleted:<id>", ...
        self.fail_deployment_create: set[str] = set()  # 400 on POST
        self.crash_deployment_create: set[str] = set()  # POST raises (as a dying process would see it)
        self.fail_deployment: set[str] = set()  # turns FAILED instead of READY
        self.lose_patch_answer = 0  # PATCHes that land but whose answer is lost (OutcomeUnknownError)
        self.drop_patch = 0  # PATCHes lost on the way: never applied, OutcomeUnknownError
        self.deployment_state_at_post: list[State] = []

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
        before = self.jobs[job_id]
        script = self.script.get(job_id)
        if script:
            self.jobs[job_id] = script.pop(0)
        elif self.jobs[job_id] in ("JOB_STATE_CREATING", "JOB_STATE_PENDING"):
            self.jobs[job_id] = "JOB_STATE_RUNNING"
        if self.jobs[job_id] == "JOB_STATE_RUNNING" and before != "JOB_STATE_RUNNING":
            self.timeline.append(f"running:{self.names.get(job_id, job_id)}")

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
                self.timeline.append(f"delete:{self.names.get(job_id, job_id)}")
                if existed:
                    self.jobs[job_id] = "JOB_STATE_DELETED"
                return existed
        finally:
            self._leave()

    def healthy(self, job_id: str) -> bool:
        """RUNNING jobs are healthy."""
        self._log("health")
        return self.jobs.get(job_id) == "JOB_STATE_RUNNING"

    # -- deployments (PROTOCOL.md §10) -----------------------------------------

    def deployment_name(self, deployment_id: str) -> str:
        """``accounts/acct/deployments/{deployment_id}``."""
        return deployment_name(self.account_id, deployment_id)

    def add_deployment(self, deployment_id: str, spec: dict[str, Any], state: DeploymentState) -> LiveDeployment:
        """Put an existing deployment in the world."""
        live = replace(_deployment(self.deployment_name(deployment_id), spec), state=state)
        self.deployments[deployment_id] = live
        return live

    def _settle(self, deployment_id: str) -> None:
        """One read of a deployment: transitional states settle after ``deployment_polls`` reads."""
        live = self.deployments[deployment_id]
        left = self._settle_in.get(deployment_id, 0) - 1
        self._settle_in[deployment_id] = left
        if left > 0:
            return
        if live.state in (DeploymentState.CREATING, DeploymentState.UPDATING):
            bad = deployment_id in self.fail_deployment
            state = DeploymentState.FAILED if bad else DeploymentState.READY
            self.deployments[deployment_id] = replace(live, state=state, status_message="OOM" if bad else "")
        elif live.state is DeploymentState.DELETING:
            self.deployments[deployment_id] = replace(live, state=DeploymentState.DELETED)
            self.timeline.append(f"ddeleted:{deployment_id}")

    def _begin(self, deployment_id: str, state: DeploymentState) -> None:
        self.deployments[deployment_id] = replace(self.deployments[deployment_id], state=state)
        self._settle_in[deployment_id] = self.deployment_polls

    def create_deployment(self, deployment_id: str, spec: dict[str, Any]) -> LiveDeployment:
        """A new CREATING deployment; 409 when the ID is held (a DELETED row frees it)."""
        self._enter(f"dcreate:{deployment_id}")
        try:
            with self._lock:
                self.timeline.append(f"dcreate:{deployment_id}")
                if self.writer is not None:
                    self.deployment_state_at_post.append(self.writer.state)
                if deployment_id in self.crash_deployment_create:
                    raise RuntimeError("killed during the POST")
                if deployment_id in self.fail_deployment_create:
                    raise ApiError("Control plane refused to create the deployment", status_code=400)
                existing = self.deployments.get(deployment_id)
                if existing is not None and existing.state is not DeploymentState.DELETED:
                    raise AlreadyExistsError("exists", status_code=409)
                self.deployments[deployment_id] = _deployment(self.deployment_name(deployment_id), spec)
                self._settle_in[deployment_id] = self.deployment_polls
                return self.deployments[deployment_id]
        finally:
            self._leave()

    def get_deployment(self, deployment_id: str) -> LiveDeployment | None:
        """The deployment (DELETED rows too), or None when it never existed."""
        self._log("dget")
        with self._lock:
            if deployment_id not in self.deployments:
                return None
            self._settle(deployment_id)
            return self.deployments[deployment_id]

    def iter_deployment_pages(
        self, *, filter: str | None = None, show_deleted: bool = False, page_size: int = 200
    ) -> Iterator[list[LiveDeployment]]:
        """Pages of ``page_size``; each page read is one logged request and settles its rows."""
        with self._lock:
            ids = sorted(self.deployments)
        visible: list[LiveDeployment] = []
        for deployment_id in ids:
            with self._lock:
                self._settle(deployment_id)
                live = self.deployments[deployment_id]
            if show_deleted or live.state is not DeploymentState.DELETED:
                visible.append(live)
        for start in range(0, max(len(visible), 1), page_size):
            self._log("dlist")
            yield visible[start : start + page_size]

    def update_deployment(
        self, deployment_id: str, fields: dict[str, Any], update_mask: list[str] | tuple[str, ...] | None
    ) -> LiveDeployment:
        """PATCH: the masked fields change; a link or transition change restarts the pod (UPDATING)."""
        self._enter(f"dpatch:{deployment_id}:{','.join(update_mask or ())}")
        try:
            with self._lock:
                live = self.deployments.get(deployment_id)
                if live is None or live.state is DeploymentState.DELETED:
                    raise ApiError("not found", status_code=404)
                if self.drop_patch:
                    self.drop_patch -= 1
                    raise OutcomeUnknownError("request lost", status_code=0)
                changes = {k: v for k, v in fields.items() if k in (update_mask or fields)}
                if "hot_load_transition_type" in changes:
                    changes["hot_load_transition_type"] = HotLoadTransition.parse(changes["hot_load_transition_type"])
                self.deployments[deployment_id] = replace(live, **changes)
                if POD_RESTART_FIELDS & set(changes):
                    self._begin(deployment_id, DeploymentState.UPDATING)
                if self.lose_patch_answer:
                    self.lose_patch_answer -= 1
                    raise OutcomeUnknownError("answer lost", status_code=0)
                return self.deployments[deployment_id]
        finally:
            self._leave()

    def delete_deployment(self, deployment_id: str) -> bool:
        """DELETING; False when it never existed or is already DELETED."""
        self._enter(f"ddelete:{deployment_id}")
        try:
            with self._lock:
                self.timeline.append(f"ddelete:{deployment_id}")
                live = self.deployments.get(deployment_id)
                if live is None or live.state is DeploymentState.DELETED:
                    return False
                self._begin(deployment_id, DeploymentState.DELETING)
                return True
        finally:
            self._leave()


def _deployment(name: str, spec: dict[str, Any]) -> LiveDeployment:
    """A new CREATING deployment reporting what its spec set (the fields the real API returns)."""
    values = {k: v for k, v in spec.items() if k in REPORTED_SPEC_FIELDS and k != "hot_load_transition_type"}
    transition = HotLoadTransition.parse(spec.get("hot_load_transition_type"))
    return LiveDeployment(
        deployment_id=name.rsplit("/", 1)[-1],
        name=name,
        state=DeploymentState.CREATING,
        hot_load_transition_type=transition,
        hot_load_bucket_url=f"gs://bucket/{name.rsplit('/', 1)[-1]}",
        reported=frozenset(values) | ({"hot_load_transition_type"} if transition else frozenset()),
        **values,
    )


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
