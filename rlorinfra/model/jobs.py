"""Job identities, canonical specs, create paths and live snapshots.

A job's *spec* is the normalized set of control-plane fields it is created
from (``JobSpec.spec()``), recorded in state and compared on every plan.
``LiveJob`` and ``ShapeVersion`` are what the control plane reports, reduced to
what rlorinfra uses; ``api/wire.py`` builds them from resources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rlorinfra.model.states import TOMBSTONE_STATES

SHAPE_OWNER_DEFAULT = "fireworks"

# A job ID as it appears in a resource name: lowercase letters, digits and hyphens,
# at most 63 characters (also keeps IDs from escaping their URL path segment).
JOB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_valid_job_id(job_id: str) -> bool:
    """True for a well-formed job ID (the control plane's own form)."""
    return bool(JOB_ID_RE.match(job_id))


# Spec fields whose default value is left out of a canonical spec, so that a
# config that spells out a default, a config that omits it and a resource that
# echoes it all produce the same spec.
SPEC_DEFAULTS: dict[str, Any] = {
    "lora_rank": 0,
    "learning_rate": 1e-5,
    "skip_validations": False,
    "forward_only": False,
    "use_reservation": True,
}


def canonical_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Drop unset and default-valued fields, turn tuples into lists, sort keys."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if value is None or (key in SPEC_DEFAULTS and value == SPEC_DEFAULTS[key]):
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    return dict(sorted(out.items()))


def shape_full_name(ref: str) -> str:
    """Normalize a shape reference: a short id gets the ``fireworks`` owner."""
    if ref.startswith("accounts/"):
        return ref
    return f"accounts/{SHAPE_OWNER_DEFAULT}/trainingShapes/{ref}"


def job_name(account_id: str, job_id: str) -> str:
    """``accounts/{account}/rlorTrainerJobs/{job_id}``."""
    return f"accounts/{account_id}/rlorTrainerJobs/{job_id}"


def trainer_endpoint(gateway_url: str, account_id: str, job_id: str) -> str:
    """The trainer base URL the SDK returns as ``TrainerServiceEndpoint.base_url``."""
    return f"{gateway_url.rstrip('/')}/training/v1/rlorTrainerJobs/{account_id}/{job_id}"


# Spec fields the real API is known to return (PROTOCOL.md §3.5); nothing else is read back.
REPORTED_FIELDS = ("base_model", "lora_rank", "learning_rate", "region", "forward_only", "hot_load_deployment_id")
MANUAL_REPORTED_FIELDS = ("node_count", "max_context_length")


def comparable_fields(recorded_spec: dict[str, Any]) -> tuple[str, ...]:
    """Spec fields whose live value can be compared with a record of this spec.

    The path-independent declared fields always; ``node_count`` and
    ``max_context_length`` only on the manual path, where the job sent them.
    """
    if create_path(recorded_spec) == "manual":
        return REPORTED_FIELDS + MANUAL_REPORTED_FIELDS
    return REPORTED_FIELDS


def create_path(spec: dict[str, Any]) -> str:
    """``shape``, ``manual`` or ``auto``, as the SDK's managed flow decides it.

    No ``training_shape``: the auto-shape path, unless ``accelerator_type`` or
    ``accelerator_count`` force the manual path (``managed.py``
    ``_uses_manual_training_infra``; ``node_count`` alone does not).
    """
    if spec.get("training_shape"):
        return "shape"
    if spec.get("accelerator_type") or spec.get("accelerator_count"):
        return "manual"
    return "auto"


@dataclass(frozen=True)
class LiveJob:
    """A job as the control plane reports it, reduced to what rlorinfra uses.

    ``spec`` holds the spec fields the resource carried, canonical (defaults
    dropped); ``reported`` names every spec field the resource carried at
    all, so a reported default (``loraRank: 0``) still counts as reported.
    Only fields of ``REPORTED_FIELDS`` (and, for manual-path jobs,
    ``MANUAL_REPORTED_FIELDS``) are ever read: the real API declares no
    others (PROTOCOL.md §3.5). ``healthy`` is the trainer health check's
    answer when refresh made one (None: not checked).
    """

    job_id: str
    name: str
    display_name: str
    state: str
    status_code: str = ""
    status_message: str = ""
    create_time: str = ""
    spec: tuple[tuple[str, Any], ...] = ()  # spec_from_resource(), frozen
    reported: frozenset[str] = frozenset()
    accelerator_seconds: tuple[tuple[str, int], ...] = ()
    healthy: bool | None = None

    @property
    def is_tombstone(self) -> bool:
        """Deleted (or archived) but still readable during retention."""
        return self.state in TOMBSTONE_STATES

    def spec_dict(self) -> dict[str, Any]:
        """The spec fields the resource carries, as a dict."""
        return dict(self.spec)

    def reported_value(self, key: str) -> Any:
        """The live value of a reported spec field, its default when canonicalized away."""
        return dict(self.spec).get(key, SPEC_DEFAULTS.get(key))


@dataclass(frozen=True)
class ShapeVersion:
    """A training-shape version (E9/E10), reduced to the profile fields we use."""

    name: str  # accounts/{a}/trainingShapes/{s}/versions/{v}
    accelerator_type: str = ""
    accelerator_count: int = 0
    node_count: int = 1
    max_supported_context_length: int = 0
    trainer_image_tag: str = ""
    trainer_mode: str = ""
    # The snapshot's deploymentShapeVersion: the deployment shape a deployment
    # hot-loading this trainer defaults to (DeploymentConfig.from_training_profile).
    deployment_shape_version: str = ""

    @property
    def shape(self) -> str:
        """The parent shape name, without ``/versions/...``."""
        return self.name.split("/versions/", 1)[0]


def not_ours(live: LiveJob, display_name: str, spec: dict[str, Any]) -> str:
    """Why ``live`` is not the job ``display_name``/``spec`` would have created ("" when it is).

    A job holding an ID rlorinfra chose is ours only with the same display
    name and the same value for every field the API reports (PROTOCOL.md §3.5).
    """
    if live.display_name != display_name:
        return f'display name "{live.display_name}", not "{display_name}"'
    for key in sorted(set(comparable_fields(spec)) & live.reported):
        wanted, found = spec.get(key, SPEC_DEFAULTS.get(key)), live.reported_value(key)
        if wanted != found and not (
            isinstance(wanted, (int, float)) and isinstance(found, (int, float)) and float(wanted) == float(found)
        ):
            return f"{key} is {found!r}, not {wanted!r}"
    return ""
