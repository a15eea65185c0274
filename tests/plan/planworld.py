"""Builders for planner inputs: declared jobs, state records and live worlds.

Imported by the planner tests in this folder (a plain module, not a conftest,
so helpers are ordinary functions).
"""

from __future__ import annotations

from typing import Any

from rlorinfra.config.model import JobSpec
from rlorinfra.model.address import Kind
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.model.states import (
    DEAD_STATES,
    RESUMABLE_STATES,
    SERVING_STATES,
    TOMBSTONE_STATES,
    TRANSITIONAL_STATES,
)
from rlorinfra.plan.model import LiveWorld
from rlorinfra.state.model import JobRecord, State

ACCOUNT = "acme"
MODEL = "accounts/fireworks/models/qwen3-8b"
SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"
SHAPE_BIG = "accounts/fireworks/trainingShapes/ts-qwen3-32b-policy"
H100, A100 = "NVIDIA_H100_80GB", "NVIDIA_A100_80GB"
SHAPES = {
    SHAPE: ShapeVersion(f"{SHAPE}/versions/3", accelerator_type=H100, accelerator_count=8, node_count=1),
    SHAPE_BIG: ShapeVersion(f"{SHAPE_BIG}/versions/1", accelerator_type=H100, accelerator_count=8, node_count=2),
}
# Every job state the control plane can report (PROTOCOL.md §3.2): 18 + 2 tombstones.
ALL_STATES = sorted(TOMBSTONE_STATES | RESUMABLE_STATES | SERVING_STATES | TRANSITIONAL_STATES | DEAD_STATES)


def declared(name: str, **fields: Any) -> JobSpec:
    """A declared job on the shape path unless ``fields`` say otherwise."""
    fields.setdefault("base_model", MODEL)
    if not any(k in fields for k in ("accelerator_type", "accelerator_count", "node_count")):
        fields.setdefault("training_shape", SHAPE)
    return JobSpec(display_name=name, **fields)


def desired(*specs: JobSpec) -> dict[str, JobSpec]:
    """``{display_name: spec}``."""
    return {s.display_name: s for s in specs}


def record(
    spec: JobSpec | dict[str, Any],
    job_id: str,
    *,
    phase: str = "ready",
    observed: str | None = "JOB_STATE_RUNNING",
) -> JobRecord:
    """A state record for ``spec`` (a JobSpec or an already-made spec dict)."""
    spec_dict = spec.spec() if isinstance(spec, JobSpec) else dict(spec)
    return JobRecord(
        job_id=job_id,
        job_name=f"accounts/{ACCOUNT}/rlorTrainerJobs/{job_id}",
        endpoint=f"https://gw.example/training/v1/rlorTrainerJobs/{ACCOUNT}/{job_id}",
        spec=spec_dict,
        phase=phase,
        observed_state=observed,
    )


def state(**records: JobRecord) -> State:
    """A state holding ``records`` by display name."""
    return State(
        serial=1,
        lineage="lineage-1",
        control_plane={"url": "local", "account_id": ACCOUNT},
        resources={Kind.JOB: dict(records)},
    )


def live_job(
    job_id: str,
    display_name: str,
    job_state: str = "JOB_STATE_RUNNING",
    *,
    spec: dict[str, Any] | None = None,
    code: str = "",
    message: str = "",
    healthy: bool | None = None,
) -> LiveJob:
    """A live job as refresh would report it (every spec field given counts as reported)."""
    return LiveJob(
        job_id=job_id,
        name=f"accounts/{ACCOUNT}/rlorTrainerJobs/{job_id}",
        display_name=display_name,
        state=job_state,
        status_code=code,
        status_message=message,
        spec=tuple(sorted((spec or {}).items())),
        reported=frozenset(spec or {}),
        healthy=healthy,
    )


def world(*jobs: LiveJob, missing: tuple[str, ...] = (), refreshed: bool = True, shapes=None) -> LiveWorld:
    """A live snapshot with ``jobs`` (by id), 404ed ids and the test shapes."""
    return LiveWorld(
        account_id=ACCOUNT,
        jobs={j.job_id: j for j in jobs},
        missing=frozenset(missing),
        shapes=SHAPES if shapes is None else shapes,
        refreshed=refreshed,
    )
