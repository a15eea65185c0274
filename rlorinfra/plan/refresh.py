"""Refresh: read the live world for the planner with as few requests as possible.

One paginated LIST (``pageSize=200``) returns every visible job; only tracked
jobs the list did not return (tombstones, which lists hide, or jobs deleted
for good) are fetched by ID. Each declared training shape is resolved to its
latest validated version once. Requests are O(jobs / 200), not O(jobs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Mapping, Protocol

from rlorinfra.api.wire import LiveJob, ShapeVersion
from rlorinfra.config.model import JobSpec
from rlorinfra.errors import NotFoundError, PlanError
from rlorinfra.plan.model import LiveWorld
from rlorinfra.state.model import State


class RefreshClient(Protocol):
    """What refresh needs from the control-plane client."""

    account_id: str

    def iter_job_pages(self) -> Iterable[list[LiveJob]]: ...
    def get_job(self, job_id: str) -> LiveJob | None: ...
    def resolve_shape(self, shape: str) -> ShapeVersion: ...


def refresh(client: RefreshClient, desired: Mapping[str, JobSpec], state: State) -> LiveWorld:
    """Snapshot the live jobs and shapes that the planner needs.

    Shapes are resolved on a second thread while the pages are read: they cost
    requests, but no extra round trip of wall time.
    """
    account_id = client.account_id  # resolved once, before two threads need it
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refresh-shapes") as pool:
        shapes = pool.submit(resolve_shapes, client, desired, state)
        jobs, missing = _read_jobs(client, state)
        return LiveWorld(account_id=account_id, jobs=jobs, missing=frozenset(missing), shapes=shapes.result())


def _read_jobs(client: RefreshClient, state: State) -> tuple[dict[str, LiveJob], set[str]]:
    """Every listed job, plus a GET for each tracked job the list did not show."""
    jobs: dict[str, LiveJob] = {}
    for page in client.iter_job_pages():
        for job in page:
            jobs[job.job_id] = job
    missing = set()
    for record in state.jobs.values():
        if record.job_id in jobs:
            continue
        job = client.get_job(record.job_id)
        if job is None:
            missing.add(record.job_id)
        else:
            jobs[job.job_id] = job
    return jobs, missing


def resolve_shapes(client: RefreshClient, desired: Mapping[str, JobSpec], state: State) -> dict[str, ShapeVersion]:
    """Resolve declared shapes (an unknown one is an error) and recorded ones (best effort)."""
    shapes: dict[str, ShapeVersion] = {}
    problems = []
    for name, spec in desired.items():
        shape = spec.training_shape
        if not shape or shape in shapes:
            continue
        try:
            shapes[shape] = client.resolve_shape(shape)
        except NotFoundError as exc:
            problems.append(f'job "{name}": training_shape "{shape}": {exc.message or exc.summary}')
    if problems:
        raise PlanError(
            "Unknown training shape" + ("s" if len(problems) > 1 else ""),
            "\n".join(problems) + "\nUse a shape id from the control plane's catalogue "
            "(e.g. ts-qwen3-8b-policy) or a full name accounts/<owner>/trainingShapes/<id>.",
        )
    for record in state.jobs.values():
        shape = record.spec.get("training_shape")
        if shape and shape not in shapes:
            try:
                shapes[shape] = client.resolve_shape(shape)
            except NotFoundError:
                pass  # only used for the accelerator count of a job being deleted
    return shapes


def offline_world(state: State, account_id: str) -> LiveWorld:
    """``--no-refresh``: the live world as state last recorded it (no requests)."""
    jobs = {
        rec.job_id: LiveJob(
            job_id=rec.job_id,
            name=rec.job_name,
            display_name=name,
            state=rec.observed_state or "JOB_STATE_UNSPECIFIED",
            spec=tuple(sorted(rec.spec.items())),
        )
        for name, rec in state.jobs.items()
    }
    return LiveWorld(account_id=account_id, jobs=jobs, refreshed=False)
