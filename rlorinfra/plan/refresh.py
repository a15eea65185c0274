"""Refresh: read the live world for the planner with as few requests as possible.

Two ways to read the jobs, and refresh takes whichever costs fewer requests
(DESIGN.md §5):

* **list**: paginated LISTs (``pageSize=200``) return every visible job, plus a
  GET for each tracked job the list did not return (tombstones, which lists
  hide, or jobs deleted for good): O(account jobs / 200);
* **get**: one GET per tracked job plus one filtered LIST per declared name
  that state does not track yet (to find a live job that should be imported):
  O(config jobs), far cheaper for a small config in a large shared account.

How many jobs the account holds is known only from the last full listing
(state's ``listed_jobs``); without it refresh lists. Each declared training
shape is resolved to its latest validated version once. Tracked RUNNING
trainers are health-checked concurrently (the trainer gateway, not the
control plane), unless ``health_check`` is off.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from rlorinfra.config.model import JobSpec
from rlorinfra.errors import NotFoundError, PlanError
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.plan.model import LiveWorld
from rlorinfra.state.model import State

LIST_PAGE_SIZE = 200
# Concurrent GETs: enough to hide round trips, few enough to be polite to the control plane.
MAX_CONCURRENT_READS = 8
# Concurrent health checks: each goes to its own trainer through the gateway.
MAX_CONCURRENT_HEALTH_CHECKS = 32


class RefreshClient(Protocol):
    """What refresh needs from the control-plane client."""

    @property
    def account_id(self) -> str: ...
    def iter_job_pages(self, *, filter: str | None = None) -> Iterable[list[LiveJob]]: ...
    def get_job(self, job_id: str) -> LiveJob | None: ...
    def resolve_shape(self, shape: str) -> ShapeVersion: ...
    def healthy(self, job_id: str) -> bool: ...


def list_pages(listed_jobs: int | None) -> float:
    """LIST requests a full listing of ``listed_jobs`` jobs costs (0 when unknown: then list)."""
    if listed_jobs is None:
        return 0
    return max(1, math.ceil(listed_jobs / LIST_PAGE_SIZE))


def refresh(
    client: RefreshClient,
    desired: Mapping[str, JobSpec],
    state: State,
    *,
    health_check: bool = True,
) -> LiveWorld:
    """Snapshot the live jobs and shapes that the planner needs.

    Shapes are resolved on a second thread while the jobs are read: they cost
    requests, but no extra round trip of wall time.
    """
    account_id = client.account_id  # resolved once, before two threads need it
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refresh-shapes") as pool:
        shapes = pool.submit(resolve_shapes, client, desired, state)
        untracked = sorted(name for name in desired if name not in state.jobs)
        tracked = tracked_job_ids(state)
        if len(tracked) + len(untracked) < list_pages(state.listed_jobs):
            jobs, missing = _read_by_id(client, tracked, untracked)
            listed = state.listed_jobs  # not learnt anew: a GET round sees no account size
        else:
            jobs, missing, listed = _read_by_list(client, tracked)
        if health_check:
            jobs = check_health(client, jobs, tracked)
        return LiveWorld(
            account_id=account_id, jobs=jobs, missing=frozenset(missing), shapes=shapes.result(), listed_jobs=listed
        )


def tracked_job_ids(state: State) -> list[str]:
    """Every job ID state tracks: current records and deposed jobs, sorted."""
    ids = {record.job_id for record in state.jobs.values()}
    ids |= {job_id for record in state.jobs.values() for job_id in record.deposed_job_ids}
    return sorted(ids)


def _read_by_list(client: RefreshClient, tracked: list[str]) -> tuple[dict[str, LiveJob], set[str], int]:
    """Every listed job, plus a GET for each tracked job the list did not show."""
    jobs: dict[str, LiveJob] = {}
    for page in client.iter_job_pages():
        for job in page:
            jobs[job.job_id] = job
    listed = len(jobs)
    hidden = [job_id for job_id in tracked if job_id not in jobs]
    found, missing = _get_each(client, hidden)
    jobs.update(found)
    return jobs, missing, listed


def _read_by_id(client: RefreshClient, tracked: list[str], untracked_names: list[str]
                ) -> tuple[dict[str, LiveJob], set[str]]:  # fmt: skip
    """A GET per tracked job and a display-name LIST per declared name state does not track."""
    jobs, missing = _get_each(client, tracked)
    for name in untracked_names:
        for page in client.iter_job_pages(filter=f'display_name="{_quoted(name)}"'):
            jobs.update((job.job_id, job) for job in page if job.display_name == name)
    return jobs, missing


def _quoted(text: str) -> str:
    """``text`` escaped for a double-quoted AIP-160 filter value."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _get_each(client: RefreshClient, job_ids: list[str]) -> tuple[dict[str, LiveJob], set[str]]:
    """GET each job concurrently: (found by ID, IDs answered 404)."""
    if not job_ids:
        return {}, set()
    with ThreadPoolExecutor(max_workers=min(len(job_ids), MAX_CONCURRENT_READS),
                            thread_name_prefix="refresh-get") as pool:  # fmt: skip
        answers = list(pool.map(client.get_job, job_ids))
    found = {job.job_id: job for job in answers if job is not None}
    return found, {job_id for job_id, job in zip(job_ids, answers, strict=True) if job is None}


def check_health(client: RefreshClient, jobs: dict[str, LiveJob], tracked: list[str]) -> dict[str, LiveJob]:
    """Health-check every tracked RUNNING trainer concurrently; record the answer on its LiveJob."""
    running = [job_id for job_id in tracked if job_id in jobs and jobs[job_id].state == "JOB_STATE_RUNNING"]
    if not running:
        return jobs
    with ThreadPoolExecutor(max_workers=min(len(running), MAX_CONCURRENT_HEALTH_CHECKS),
                            thread_name_prefix="refresh-health") as pool:  # fmt: skip
        answers = list(pool.map(client.healthy, running))
    checked = dict(jobs)
    for job_id, healthy in zip(running, answers, strict=True):
        checked[job_id] = dataclasses.replace(jobs[job_id], healthy=healthy)
    return checked


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
    return LiveWorld(account_id=account_id, jobs=jobs, refreshed=False, listed_jobs=state.listed_jobs)
