"""Frozen dataclasses for a loaded, validated desired-state file.

The loader (``rlorinfra.config.load``) is the only producer of these objects;
everything downstream (planner, apply, renderers) treats them as read-only facts.

A job's *spec* is the normalized set of control-plane fields it is created from
(``JobSpec.spec()``): the thing recorded in state and compared on every plan.
Since the control plane has no update call, any change to a spec field forces a
replacement. Lifecycle fields (``desired_state``, ``prevent_destroy``,
``create_before_destroy``, ``max_resumes``) steer rlorinfra itself and never
force anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

# Where the control plane is lives in model/ so the client can take it without importing
# config (DESIGN.md §10: api -> model only); re-exported here, where the loader builds it.
from rlorinfra.model.control_plane import DEFAULT_API_KEY_ENV, LOCAL_URL, ControlPlaneSettings, EmulatorSettings
from rlorinfra.model.deployments import HotLoadTransition, canonical_deployment_spec
from rlorinfra.model.jobs import canonical_spec, create_path
from rlorinfra.model.pricing import CostPolicy, PriceTable

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DESIRED_STATES",
    "INFRA_FIELDS",
    "LIFECYCLE_FIELDS",
    "LOCAL_URL",
    "UNSENT_FIELDS",
    "DEFAULT_CONN_STR_ENV",
    "DEFAULT_PG_SCHEMA",
    "Config",
    "ControlPlaneSettings",
    "DeploymentSpec",
    "EmulatorSettings",
    "HotLoadTransition",
    "ShapeSource",
    "JobSpec",
    "StateBackendKind",
    "StateSettings",
]

DESIRED_STATES = ("running", "stopped")

# Fields that steer rlorinfra and are never sent to the control plane.
LIFECYCLE_FIELDS = (
    "desired_state",
    "prevent_destroy",
    "create_before_destroy",
    "max_resumes",
    "ttl",
    "resume_on",
    "suspend",
)
# Fields that are accepted but never part of the spec (deprecated, never sent).
UNSENT_FIELDS = ("gradient_accumulation_steps",)
# Infra fields: only on the manual path (PROTOCOL.md §4.3).
INFRA_FIELDS = ("accelerator_type", "accelerator_count", "node_count")


class ResumeOn(StrEnum):
    """A stop ``watch`` resumes only when the job's ``resume_on`` names it."""

    INACTIVITY = "inactivity"  # the control plane's idle stop (CANCELLED, "... of inactivity")
    COMPLETED = "completed"  # training finished (JOB_STATE_COMPLETED)


@dataclass(frozen=True)
class JobSpec:
    """One declared trainer job, with ``[defaults]`` already merged in.

    ``training_shape`` is normalized to a full resource name
    (``accounts/<owner>/trainingShapes/<id>[/versions/<v>]``);
    ``inactivity_timeout`` to whole seconds; ``extra_args`` to a tuple.
    """

    display_name: str
    base_model: str
    lora_rank: int = 0
    max_context_length: int | None = None
    learning_rate: float = 1e-5
    gradient_accumulation_steps: int | None = None
    node_count: int | None = None
    hot_load_deployment_id: str | None = None
    region: str | None = None
    custom_image_tag: str | None = None
    extra_args: tuple[str, ...] | None = None
    accelerator_type: str | None = None
    accelerator_count: int | None = None
    skip_validations: bool = False
    forward_only: bool = False
    training_shape: str | None = None
    inactivity_timeout: int | None = None
    use_reservation: bool = True
    reservation_target: str | None = None
    trainer_replica_count: int | None = None
    desired_state: str = "running"
    prevent_destroy: bool = False
    create_before_destroy: bool = False
    max_resumes: int = 3
    ttl: int | None = None  # whole seconds; expires_at = created_at + ttl (DESIGN.md §7)
    # watch: stopped causes it may resume beyond failures and preemptions (ResumeOn values).
    resume_on: tuple[str, ...] = ()
    suspend: bool = False  # watch takes no automated action on this job

    @property
    def path(self) -> str:
        """Which create path the job takes: ``shape``, ``manual`` or ``auto`` (``wire.create_path``)."""
        return create_path(
            {
                "training_shape": self.training_shape,
                "accelerator_type": self.accelerator_type,
                "accelerator_count": self.accelerator_count,
            }
        )

    def spec(self) -> dict[str, Any]:
        """The normalized control-plane fields, as recorded in state and diffed.

        Unset and default-valued fields are omitted (``canonical_spec``) so
        that spelling out a default does not look like a change. On the manual path
        ``node_count`` defaults to 1 because the SDK always sends it there.
        """
        skip = {"display_name", *LIFECYCLE_FIELDS, *UNSENT_FIELDS}
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        if self.path == "manual" and not out.get("node_count"):
            out["node_count"] = 1
        if self.path == "shape":
            # The shape supplies the context length; it is never sent on this path.
            out.pop("max_context_length", None)
        return canonical_spec(out)


class ShapeSource(StrEnum):
    """Where a deployment's shape comes from (PROTOCOL.md §10.2, shape path vs manual path)."""

    DECLARED = "declared"  # deployment_shape is written in the file
    TRAINER = "trainer"  # the hot-load trainer's training shape names it; the planner resolves it
    MANUAL = "manual"  # no shape: accelerator_type + accept_shapeless_risk


# Steer rlorinfra only; never sent, never in the spec.
DEPLOYMENT_LIFECYCLE_FIELDS = ("prevent_destroy", "ttl")


@dataclass(frozen=True)
class DeploymentSpec:
    """One declared serving deployment (``[deployments.NAME]``, NAME = the deployment ID).

    ``deployment_shape`` is a full ``accounts/<a>/deploymentShapes/<s>[/versions/<v>]`` name, or
    None. With ``shape_source`` TRAINER it is None until the planner resolves the trainer's
    training shape and fills it with ``with_deployment_shape`` (as
    ``DeploymentConfig.from_training_profile`` takes ``profile.deployment_shape``).
    ``hot_load_trainer`` is the display name of a job of the same file; ``ttl`` is whole seconds.
    """

    deployment_id: str
    base_model: str
    shape_source: ShapeSource
    deployment_shape: str | None = None
    accelerator_type: str | None = None
    accept_shapeless_risk: bool = False
    min_replica_count: int = 0
    max_replica_count: int = 1
    region: str | None = None
    hot_load_transition: HotLoadTransition | None = None
    enable_hot_load: bool = True
    disable_speculative_decoding: bool = False
    annotations: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    hot_load_trainer: str | None = None
    extra_args: tuple[str, ...] | None = None
    extra_values: tuple[tuple[str, str], ...] = ()
    preemptible: bool = False
    prevent_destroy: bool = False
    ttl: int | None = None

    @property
    def address(self) -> str:
        """The resource address, ``deployment.<ID>`` (DESIGN.md §3)."""
        return f"deployment.{self.deployment_id}"

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Addresses this deployment depends on: its hot-load trainer's ``job.<name>``, if any."""
        return (f"job.{self.hot_load_trainer}",) if self.hot_load_trainer else ()

    @property
    def needs_trainer_shape(self) -> bool:
        """True while the shape is still to be taken from the trainer's training shape."""
        return self.shape_source is ShapeSource.TRAINER and self.deployment_shape is None

    def with_deployment_shape(self, shape_version: str) -> DeploymentSpec:
        """This spec with the shape the planner resolved (the training shape's deployment shape)."""
        return replace(self, deployment_shape=shape_version)

    def spec(self) -> dict[str, Any]:
        """The normalized fields, as recorded in state and diffed (like ``JobSpec.spec``).

        Keys are the control plane's snake_case spec keys (``model.deployments``),
        plus ``hot_load_trainer`` (the trainer's display name: its job ID, and so the
        ``hot_load_trainer_job`` link, is only known once the trainer exists).
        Defaults are left out (``canonical_deployment_spec``); maps become sorted dicts.
        """
        skip = {"deployment_id", "shape_source", "hot_load_transition", *DEPLOYMENT_LIFECYCLE_FIELDS}
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in skip or value is None or value == ():
                continue
            if f.name in ("annotations", "extra_values"):
                value = dict(sorted(value))
            out[f.name] = value
        if self.hot_load_transition is not None:
            out["hot_load_transition_type"] = self.hot_load_transition.value
        if self.needs_trainer_shape:
            out["deployment_shape_from"] = ShapeSource.TRAINER.value  # the planner fills the shape in
        return canonical_deployment_spec(out)


class StateBackendKind(StrEnum):
    """Where the state lives (``[state] backend``, DESIGN.md §4)."""

    LOCAL = "local"
    POSTGRES = "postgres"
    S3 = "s3"


# Terraform's pg backend reads the same variable, so a team's CI secret can be reused.
DEFAULT_CONN_STR_ENV = "PG_CONN_STR"
DEFAULT_PG_SCHEMA = "rlorinfra"


@dataclass(frozen=True)
class StateSettings:
    """The checked ``[state]`` table: which backend and its keys (the others stay at their defaults).

    ``path`` is the absolute local state file (always set: the local default
    when another backend is chosen, so messages about it still make sense).
    ``conn_str_env`` is the NAME of the variable holding the PostgreSQL
    connection string; the string itself is never part of the config.
    """

    backend: StateBackendKind = StateBackendKind.LOCAL
    path: Path = Path("rlorinfra.state.json")
    conn_str_env: str = DEFAULT_CONN_STR_ENV
    schema: str = DEFAULT_PG_SCHEMA
    name: str = "rlorinfra"
    bucket: str = ""
    key: str = ""
    region: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True)
class Config:
    """A whole validated desired-state file."""

    path: Path
    control_plane: ControlPlaneSettings
    state_path: Path
    jobs: dict[str, JobSpec]
    digest: str  # sha256 of the file bytes: saved plans refuse a changed config
    warnings: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)  # checked [defaults] values
    state: StateSettings | None = None  # None: local at state_path (configs built by hand in tests)
    deployments: dict[str, DeploymentSpec] = field(default_factory=dict)  # by deployment ID
    pricing: PriceTable = field(default_factory=PriceTable)  # [pricing] (or --pricing FILE); empty: all unknown
    policy: CostPolicy = field(default_factory=CostPolicy)  # [policy] (or --max-hourly-delta)

    @property
    def state_settings(self) -> StateSettings:
        """The ``[state]`` settings; a config built without them is the local file at ``state_path``."""
        return self.state if self.state is not None else StateSettings(path=self.state_path)

    @property
    def emulator_db_path(self) -> Path:
        """Database of the embedded emulator: ``.rlorinfra/`` beside the config."""
        return self.path.parent / ".rlorinfra" / "control-plane.sqlite3"
