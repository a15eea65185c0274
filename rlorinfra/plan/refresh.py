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

Deployments follow the same rule with their own memory (``listed_deployments``):
paginated LISTs, or one GET per tracked deployment plus one GET per declared
deployment state does not track (the config key *is* the deployment ID, so no
filtered LIST is needed). A full LIST hides DELETED rows, so a tracked
deployment absent from it is gone: it goes to ``missing_deployments`` without a
GET of its own. With no deployment declared or tracked, nothing is read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from rlorinfra.config.model import DeploymentSpec, JobSpec
from rlorinfra.errors import NotFoundError, PlanError
from rlorinfra.model.deployments import (
    DEFAULT_DESCRIPTION,
    DEPLOYMENT_SPEC_DEFAULTS,
    DeploymentState,
    HotLoadTransition,
    LiveDeployment,
)
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.plan.model import LiveWorld
from rlorinfra.state.model import DeploymentRecord, State

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
    def iter_deployment_pages(self) -> Iterable[list[LiveDeployment]]: ...
    def get_deployment(self, deployment_id: str) -> LiveDeployment | None: ...


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
    deployments: Mapping[str, DeploymentSpec] | None = None,
) -> LiveWorld:
    """Snapshot the live jobs, deployments and shapes that the planner needs.

    ``deployments`` are the declared deployments by ID. Shapes and deployments
    are read on their own threads while the jobs are read: they cost requests,
    but no extra round trip of wall time.
    """
    account_id = client.account_id  # resolved once, before three threads need it
    declared = deployments or {}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="refresh-side") as pool:
        shapes = pool.submit(resolve_shapes, client, desired, state, declared)
        served = pool.submit(read_deployments, client, declared, state)
        untracked = sorted(name for name in desired if name not in state.jobs)
        tracked = tracked_job_ids(state)
        if len(tracked) + len(untracked) < list_pages(state.listed_jobs):
            jobs, missing = _read_by_id(client, tracked, untracked)
            listed = state.listed_jobs  # not learnt anew: a GET round sees no account size
        else:
            jobs, missing, listed = _read_by_list(client, tracked)
        if health_check:
            jobs = check_health(client, jobs, tracked)
        live_deployments = served.result()
        return LiveWorld(
            account_id=account_id,
            jobs=jobs,
            missing=frozenset(missing),
            shapes=shapes.result(),
            listed_jobs=listed,
            deployments=live_deployments.found,
            missing_deployments=frozenset(live_deployments.missing),
            listed_deployments=live_deployments.listed,
        )


@dataclasses.dataclass(frozen=True)
class DeploymentReading:
    """What refresh learnt about deployments: found by ID, tracked IDs gone, rows a full LIST returned."""

    found: dict[str, LiveDeployment]
    missing: set[str]
    listed: int | None  # None: not listed this time (state's memory is kept)


def read_deployments(client: RefreshClient, declared: Mapping[str, DeploymentSpec], state: State) -> DeploymentReading:
    """The tracked and declared deployments, by LIST pages or by GETs, whichever costs fewer requests."""
    tracked = sorted(state.deployments)
    untracked = sorted(set(declared) - set(tracked))
    if not tracked and not untracked:
        return DeploymentReading({}, set(), state.listed_deployments)  # nothing to read, nothing learnt
    if len(tracked) + len(untracked) < list_pages(state.listed_deployments):
        found, missing = _get_each_deployment(client, [*tracked, *untracked])
        return DeploymentReading(found, missing & set(tracked), state.listed_deployments)
    found = {d.deployment_id: d for page in client.iter_deployment_pages() for d in page}
    # A full LIST hides DELETED rows: a tracked deployment it did not return is gone, no GET needed.
    return DeploymentReading(found, {d for d in tracked if d not in found}, len(found))


def _get_each_deployment(client: RefreshClient, ids: list[str]) -> tuple[dict[str, LiveDeployment], set[str]]:
    """GET each deployment concurrently: (found by ID, IDs answered 404)."""
    with ThreadPoolExecutor(max_workers=min(len(ids), MAX_CONCURRENT_READS),
                            thread_name_prefix="refresh-get-deployment") as pool:  # fmt: skip
        answers = list(pool.map(client.get_deployment, ids))
    found = {d.deployment_id: d for d in answers if d is not None}
    return found, {i for i, d in zip(ids, answers, strict=True) if d is None}


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


def resolve_shapes(
    client: RefreshClient,
    desired: Mapping[str, JobSpec],
    state: State,
    deployments: Mapping[str, DeploymentSpec] | None = None,
) -> dict[str, ShapeVersion]:
    """Resolve declared shapes (an unknown one is an error) and recorded ones (best effort).

    A deployment taking its shape from its trainer (``deployment_shape_from =
    "trainer"``) needs that trainer's training shape, keyed as the job kind keys
    it (the ``training_shape`` as written): a declared trainer's is resolved with
    the declared jobs; a trainer known only from state has it resolved strictly here.
    """
    shapes: dict[str, ShapeVersion] = {}
    problems = []
    wanted = [(f'job "{name}"', spec.training_shape) for name, spec in desired.items()]
    wanted += [
        (f'deployment "{d}" (its trainer "{t}")', shape) for d, t, shape in _trainer_shapes(desired, state, deployments)
    ]
    for who, shape in wanted:
        if not shape or shape in shapes:
            continue
        try:
            shapes[shape] = client.resolve_shape(shape)
        except NotFoundError as exc:
            problems.append(f'{who}: training_shape "{shape}": {exc.message or exc.summary}')
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


def _trainer_shapes(desired: Mapping[str, JobSpec], state: State,
                    deployments: Mapping[str, DeploymentSpec] | None) -> list[tuple[str, str, str]]:  # fmt: skip
    """(deployment ID, trainer, training shape) for each deployment whose shape comes from a trainer."""
    out = []
    for deployment_id, spec in sorted((deployments or {}).items()):
        trainer = spec.hot_load_trainer
        if not spec.needs_trainer_shape or not trainer:
            continue
        job = desired.get(trainer)
        record = state.job(trainer)
        shape = job.training_shape if job is not None else record.spec.get("training_shape") if record else None
        if shape:
            out.append((deployment_id, trainer, str(shape)))
    return out


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
    deployments = {rec.deployment_id: recorded_deployment(rec) for rec in state.deployments.values()}
    return LiveWorld(
        account_id=account_id,
        jobs=jobs,
        refreshed=False,
        listed_jobs=state.listed_jobs,
        deployments=deployments,
        listed_deployments=state.listed_deployments,
    )


def recorded_deployment(record: DeploymentRecord) -> LiveDeployment:
    """A deployment as state last recorded it: its spec, observed state, link and bucket.

    Every recorded spec field counts as reported, so ``--no-refresh`` shows no drift
    for what state itself says.
    """
    spec = record.spec
    shape = record.deployment_shape_version or spec.get("deployment_shape") or ""
    transition = HotLoadTransition.parse(spec.get("hot_load_transition_type"))
    values: dict[str, Any] = {
        "base_model": spec.get("base_model", ""),
        "description": spec.get("description", DEFAULT_DESCRIPTION),
        "deployment_shape": shape,
        "accelerator_type": spec.get("accelerator_type", ""),
        "region": spec.get("region", ""),
        "min_replica_count": spec.get("min_replica_count", DEPLOYMENT_SPEC_DEFAULTS["min_replica_count"]),
        "max_replica_count": spec.get("max_replica_count", DEPLOYMENT_SPEC_DEFAULTS["max_replica_count"]),
        "enable_hot_load": spec.get("enable_hot_load", True),
        "hot_load_trainer_job": record.hot_load_trainer_job or "",
        "hot_load_transition_type": transition,
    }
    return LiveDeployment(
        deployment_id=record.deployment_id,
        name=record.deployment_name,
        state=DeploymentState.parse(record.observed_state),
        hot_load_bucket_url=record.hot_load_bucket_url or "",
        reported=frozenset(k for k, v in values.items() if v not in ("", None)),
        **values,
    )
