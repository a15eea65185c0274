"""Builders for planner inputs: declared jobs, state records and live worlds.

Imported by the planner tests in this folder (a plain module, not a conftest,
so helpers are ordinary functions).
"""

from __future__ import annotations

from typing import Any

from rlorinfra.config.model import DeploymentSpec, JobSpec, ShapeSource
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import (
    DEPLOYMENT_SPEC_DEFAULTS,
    REPORTED_SPEC_FIELDS,
    DeploymentState,
    HotLoadTransition,
    LiveDeployment,
    deployment_name,
    trainer_link,
)
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.model.states import (
    DEAD_STATES,
    RESUMABLE_STATES,
    SERVING_STATES,
    TOMBSTONE_STATES,
    TRANSITIONAL_STATES,
)
from rlorinfra.plan.model import LiveWorld
from rlorinfra.state.model import DeploymentRecord, JobRecord, State

ACCOUNT = "acme"
MODEL = "accounts/fireworks/models/qwen3-8b"
SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"
SHAPE_BIG = "accounts/fireworks/trainingShapes/ts-qwen3-32b-policy"
H100, A100 = "NVIDIA_H100_80GB", "NVIDIA_A100_80GB"
# The deployment shapes the training shapes name (their snapshots' deploymentShapeVersion).
DSHAPE = "accounts/fireworks/deploymentShapes/ds-qwen3-8b"
DSHAPE_BIG = "accounts/fireworks/deploymentShapes/ds-qwen3-32b"
DSHAPE_OTHER = "accounts/fireworks/deploymentShapes/ds-llama-70b"
SHAPES = {
    SHAPE: ShapeVersion(
        f"{SHAPE}/versions/3",
        accelerator_type=H100,
        accelerator_count=8,
        node_count=1,
        deployment_shape_version=f"{DSHAPE}/versions/5",
    ),
    SHAPE_BIG: ShapeVersion(
        f"{SHAPE_BIG}/versions/1",
        accelerator_type=H100,
        accelerator_count=8,
        node_count=2,
        deployment_shape_version=f"{DSHAPE_BIG}/versions/2",
    ),
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


def state(*deployments: DeploymentRecord, **records: JobRecord) -> State:
    """A state holding job ``records`` by display name and ``deployments`` by ID."""
    return State(
        serial=1,
        lineage="lineage-1",
        control_plane={"url": "local", "account_id": ACCOUNT},
        resources={Kind.JOB: dict(records), Kind.DEPLOYMENT: {d.deployment_id: d for d in deployments}},
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


def world(
    *jobs: LiveJob,
    missing: tuple[str, ...] = (),
    refreshed: bool = True,
    shapes=None,
    deployments: tuple[LiveDeployment, ...] = (),
    missing_deployments: tuple[str, ...] = (),
) -> LiveWorld:
    """A live snapshot with ``jobs`` (by id), 404ed ids, ``deployments`` (by ID) and the test shapes."""
    return LiveWorld(
        account_id=ACCOUNT,
        jobs={j.job_id: j for j in jobs},
        missing=frozenset(missing),
        shapes=SHAPES if shapes is None else shapes,
        refreshed=refreshed,
        deployments={d.deployment_id: d for d in deployments},
        missing_deployments=frozenset(missing_deployments),
    )


# --- deployments -----------------------------------------------------------------------


def link(job_id: str) -> str:
    """The ``hot_load_trainer_job`` naming job ``job_id`` of the test account."""
    return trainer_link(ACCOUNT, job_id)


def deployment(deployment_id: str, **fields: Any) -> DeploymentSpec:
    """A declared deployment: on the manual path (1 × H100 per replica) unless ``fields`` say otherwise.

    ``hot_load_trainer`` naming a job with no ``deployment_shape`` and no
    ``accelerator_type`` makes the shape come from the trainer (as config does
    for a trainer with a training shape).
    """
    fields.setdefault("base_model", MODEL)
    shaped = fields.get("deployment_shape") or fields.get("accelerator_type")
    if fields.get("hot_load_trainer") and not shaped and "shape_source" not in fields:
        fields["shape_source"] = ShapeSource.TRAINER
    elif not shaped and "shape_source" not in fields:
        fields.update(accelerator_type=H100, accept_shapeless_risk=True)
    if "shape_source" not in fields:
        fields["shape_source"] = ShapeSource.DECLARED if fields.get("deployment_shape") else ShapeSource.MANUAL
    return DeploymentSpec(deployment_id=deployment_id, **fields)


def deployments(*specs: DeploymentSpec) -> dict[Kind, dict[str, DeploymentSpec]]:
    """``desired_by_kind`` for ``make_plan``: ``{Kind.DEPLOYMENT: {ID: spec}}``."""
    return {Kind.DEPLOYMENT: {s.deployment_id: s for s in specs}}


def dep_record(
    spec: DeploymentSpec | dict[str, Any],
    *,
    trainer_job: str | None = None,
    phase: str = "ready",
    observed: str | None = "READY",
    depends_on: tuple[Address, ...] | None = None,
) -> DeploymentRecord:
    """A state record for a deployment; ``spec`` a DeploymentSpec (resolved as the planner would) or a spec dict.

    ``trainer_job`` is the job ID the recorded link names; ``depends_on``
    defaults to the spec's trainer.
    """
    if isinstance(spec, DeploymentSpec):
        deployment_id, spec_dict = spec.deployment_id, resolved(spec)
    else:
        deployment_id, spec_dict = str(spec["deployment_id"]), {k: v for k, v in spec.items() if k != "deployment_id"}
    trainer = spec_dict.get("hot_load_trainer")
    if depends_on is None:
        depends_on = (Address.job(str(trainer)),) if trainer else ()
    return DeploymentRecord(
        deployment_id=deployment_id,
        deployment_name=deployment_name(ACCOUNT, deployment_id),
        spec=spec_dict,
        phase=phase,
        observed_state=observed,
        hot_load_trainer_job=link(trainer_job) if trainer_job else None,
        depends_on=depends_on,
    )


def resolved(spec: DeploymentSpec) -> dict[str, Any]:
    """``spec.spec()`` with a trainer-derived shape filled in from the test shapes (as the planner does)."""
    out = spec.spec()
    if out.pop("deployment_shape_from", None) is not None:
        out["deployment_shape"] = f"{DSHAPE}/versions/5"
    return dict(sorted(out.items()))


def live_deployment(
    deployment_id: str,
    dep_state: DeploymentState | str = DeploymentState.READY,
    *,
    spec: dict[str, Any] | None = None,
    trainer_job: str | None = None,
    message: str = "",
) -> LiveDeployment:
    """A live deployment as refresh reports it: every field of ``REPORTED_SPEC_FIELDS`` reported.

    ``spec`` (a canonical spec dict, defaults omitted) gives the values;
    ``trainer_job`` the job ID its link names (none when None).
    """
    values = {**DEPLOYMENT_SPEC_DEFAULTS, **(spec or {})}
    transition = values.get("hot_load_transition_type")
    return LiveDeployment(
        deployment_id=deployment_id,
        name=deployment_name(ACCOUNT, deployment_id),
        state=DeploymentState(dep_state),
        base_model=str(values.get("base_model") or MODEL),
        description=str(values["description"]),
        deployment_shape=str(values.get("deployment_shape") or ""),
        accelerator_type=str(values.get("accelerator_type") or ""),
        region=str(values.get("region") or ""),
        min_replica_count=int(values["min_replica_count"]),
        max_replica_count=int(values["max_replica_count"]),
        enable_hot_load=bool(values["enable_hot_load"]),
        hot_load_bucket_type=str(values["hot_load_bucket_type"]),
        hot_load_trainer_job=link(trainer_job) if trainer_job else "",
        hot_load_transition_type=HotLoadTransition(transition) if transition else None,
        status_message=message,
        reported=frozenset(REPORTED_SPEC_FIELDS),
    )
