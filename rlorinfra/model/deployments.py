"""Deployment states, names, canonical specs and live snapshots (PROTOCOL.md §10).

A deployment's *spec* is the normalized set of fields it is created from
(snake_case keys, SDK defaults left out), recorded in state and compared on
every plan. ``LiveDeployment`` is what the control plane reports, reduced to
the fields the real API is known to return (§10.6); ``api/wire.py`` builds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rlorinfra.model.jobs import is_valid_job_id, job_name


class DeploymentState(StrEnum):
    """``Deployment.state`` as the API spells it (PROTOCOL.md §10.6)."""

    UNSPECIFIED = "STATE_UNSPECIFIED"
    CREATING = "CREATING"
    READY = "READY"
    UPDATING = "UPDATING"
    FAILED = "FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"

    @classmethod
    def parse(cls, value: Any) -> DeploymentState:
        """The state of a resource; missing or unknown reads as UNSPECIFIED (the SDK polls those)."""
        try:
            return cls(str(value or ""))
        except ValueError:
            return cls.UNSPECIFIED


class HotLoadTransition(StrEnum):
    """``hotLoadTransitionType``; unset means ASYNC on a hot-load deployment (PROTOCOL.md §10.2)."""

    ASYNC = "ASYNC"
    SYNC = "SYNC"

    @classmethod
    def parse(cls, value: Any) -> HotLoadTransition | None:
        """As the SDK reads it: blank or ``*UNSPECIFIED`` is None, case-insensitive, junk is None."""
        text = str(value or "").strip().upper()
        if text in ("", "UNSPECIFIED", "HOT_LOAD_TRANSITION_TYPE_UNSPECIFIED"):
            return None
        try:
            return cls(text)
        except ValueError:
            return None  # the SDK raises; a snapshot only reports what it can read


# State sets, as the SDK's wait and create_or_get treat them (PROTOCOL.md §10.6, §10.7).
READY_STATES = frozenset({DeploymentState.READY})
# Settle by themselves; apply waits them out (UPDATING: a PATCH is restarting the pod).
TRANSITIONAL_STATES = frozenset({DeploymentState.UNSPECIFIED, DeploymentState.CREATING, DeploymentState.UPDATING})
# Serving traffic: the managed SDK counts UPDATING as serving (PROTOCOL.md §10.6).
SERVING_STATES = frozenset({DeploymentState.READY, DeploymentState.UPDATING})
FAILED_STATES = frozenset({DeploymentState.FAILED})
# On their way out or soft-deleted: for planning already gone (the SDK deletes and recreates).
GONE_STATES = frozenset({DeploymentState.DELETING, DeploymentState.DELETED})
TOMBSTONE_STATES = frozenset({DeploymentState.DELETED})
# What the SDK's waits call "entered bad state" (an error, not something to wait out).
BAD_STATES = FAILED_STATES | GONE_STATES

# Same form as a job ID; also keeps an ID from escaping its URL path segment.
DEPLOYMENT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TRAINER_LINK_RE = re.compile(r"^accounts/([^/]+)/rlorTrainerJobs/([^/]+)$")


def is_valid_deployment_id(deployment_id: str) -> bool:
    """True for a well-formed deployment ID."""
    return bool(DEPLOYMENT_ID_RE.match(deployment_id))


def deployment_name(account_id: str, deployment_id: str) -> str:
    """``accounts/{account}/deployments/{id}`` (also the ``fireworks-deployment`` header)."""
    return f"accounts/{account_id}/deployments/{deployment_id}"


def deployment_id_of(name: str) -> str:
    """The short ID of a deployment name (a bare ID is returned as is)."""
    return name.rsplit("/", 1)[-1]


def trainer_link(account_id: str, job_id: str) -> str:
    """The ``hotLoadTrainerJob`` value naming a trainer job (PROTOCOL.md §10.8)."""
    return job_name(account_id, job_id)


def trainer_job_id(link: str | None) -> str | None:
    """The job ID a ``hotLoadTrainerJob`` names; None when unset or not a trainer job name."""
    match = _TRAINER_LINK_RE.match(link or "")
    if match is None or not is_valid_job_id(match.group(2)):
        return None
    return match.group(2)


def trainer_account(link: str | None) -> str | None:
    """The account of a ``hotLoadTrainerJob`` link (None when it is not one)."""
    match = _TRAINER_LINK_RE.match(link or "")
    return match.group(1) if match else None


# SDK DeploymentConfig defaults (PROTOCOL.md §10.2): a spec that spells one out, one that
# omits it and a resource that echoes it all canonicalize to the same spec.
DEFAULT_DESCRIPTION = "Fireworks training deployment"
DEFAULT_ACCELERATOR_TYPE = "NVIDIA_H200_141GB"
DEFAULT_BUCKET_TYPE = "FW_HOSTED"
DEPLOYMENT_SPEC_DEFAULTS: dict[str, Any] = {
    "description": DEFAULT_DESCRIPTION,
    "min_replica_count": 0,
    "max_replica_count": 1,
    "enable_hot_load": True,
    "for_training": False,
    "hot_load_bucket_type": DEFAULT_BUCKET_TYPE,
    "skip_shape_validation": False,
    "accept_shapeless_risk": False,
    "disable_speculative_decoding": False,
    "preemptible": False,
    "hot_load_transition_type": "ASYNC",  # what the control plane picks when unset
}

# Spec keys the real API is known to return (§10.6); nothing else is read back.
REPORTED_SPEC_FIELDS = (
    "base_model",
    "description",
    "deployment_shape",
    "accelerator_type",
    "min_replica_count",
    "max_replica_count",
    "region",
    "enable_hot_load",
    "hot_load_bucket_type",
    "hot_load_trainer_job",
    "hot_load_transition_type",
)
# Sent on create, never guaranteed to come back: no drift or import may rely on them.
SENT_ONLY_SPEC_FIELDS = ("for_training", "extra_args", "extra_values", "annotations", "preemptible")
# Query parameters of E13, in the order the SDK sends them after ``deploymentId``.
CREATE_QUERY_FLAGS = (
    ("skip_shape_validation", "skipShapeValidation"),
    ("accept_shapeless_risk", "acceptShapelessRisk"),
    ("disable_speculative_decoding", "disableSpeculativeDecoding"),
)


def canonical_deployment_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Drop unset and default-valued fields, turn tuples into lists, sort keys.

    The transition type is upper-cased (the SDK normalizes it) and
    ``accelerator_type`` is dropped on the shape path, where it is never sent.
    """
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if value is None or value == "" or (key in DEPLOYMENT_SPEC_DEFAULTS and value == DEPLOYMENT_SPEC_DEFAULTS[key]):
            continue
        if key == "hot_load_transition_type":
            value = str(value).upper()
        out[key] = list(value) if isinstance(value, tuple) else value
    if out.get("deployment_shape"):
        out.pop("accelerator_type", None)
    return dict(sorted(out.items()))


def snake_to_camel(path: str) -> str:
    """An update-mask path (``hot_load_trainer_job``) as its JSON key (``hotLoadTrainerJob``)."""
    head, *rest = path.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class LiveDeployment:
    """A deployment as the control plane reports it, reduced to what rlorinfra uses.

    Only fields the real API is known to return are kept (PROTOCOL.md §10.6):
    the declared ``Deployment`` fields plus ``hotLoadTrainerJob`` and
    ``hotLoadTransitionType``. Replica counts are None when not reported.
    ``reported`` names every spec field (``REPORTED_SPEC_FIELDS``) the
    resource carried, so drift never reads an absent field as a change.
    """

    deployment_id: str
    name: str
    state: DeploymentState
    base_model: str = ""
    description: str = ""
    deployment_shape: str = ""  # the stored shape *version* name
    accelerator_type: str = ""
    accelerator_count: int | None = None
    region: str = ""
    min_replica_count: int | None = None
    max_replica_count: int | None = None
    replica_count: int | None = None
    enable_hot_load: bool | None = None
    hot_load_bucket_type: str = ""
    hot_load_bucket_url: str = ""
    hot_load_trainer_job: str = ""
    hot_load_transition_type: HotLoadTransition | None = None
    status_code: str = ""
    status_message: str = ""
    create_time: str = ""
    update_time: str = ""
    reported: frozenset[str] = frozenset()

    @property
    def is_ready(self) -> bool:
        """READY (the only state a wait ends on without a probe)."""
        return self.state in READY_STATES

    @property
    def is_transitional(self) -> bool:
        """Settles by itself: CREATING, UPDATING, unspecified."""
        return self.state in TRANSITIONAL_STATES

    @property
    def is_failed(self) -> bool:
        """FAILED: must be deleted and created again to serve."""
        return self.state in FAILED_STATES

    @property
    def is_gone(self) -> bool:
        """DELETING or DELETED: for planning, no longer there."""
        return self.state in GONE_STATES

    @property
    def trainer_job_id(self) -> str | None:
        """The job ID this deployment hot-loads from (PER_TRAINER scope), if any."""
        return trainer_job_id(self.hot_load_trainer_job)

    @property
    def effective_transition(self) -> HotLoadTransition:
        """The transition type in force: unset means ASYNC (PROTOCOL.md §10.2)."""
        return self.hot_load_transition_type or HotLoadTransition.ASYNC

    def spec_dict(self) -> dict[str, Any]:
        """The reported spec fields in ``canonical_deployment_spec`` form."""
        values: dict[str, Any] = {
            "base_model": self.base_model,
            "description": self.description,
            "deployment_shape": self.deployment_shape,
            "accelerator_type": self.accelerator_type,
            "min_replica_count": self.min_replica_count,
            "max_replica_count": self.max_replica_count,
            "region": self.region,
            "enable_hot_load": self.enable_hot_load,
            "hot_load_bucket_type": self.hot_load_bucket_type,
            "hot_load_trainer_job": self.hot_load_trainer_job,
            "hot_load_transition_type": self.hot_load_transition_type.value if self.hot_load_transition_type else None,
        }
        return canonical_deployment_spec({k: v for k, v in values.items() if k in self.reported})


@dataclass(frozen=True)
class HotLoadReplica:
    """One replica of the hot-load status answer (E22, PROTOCOL.md §10.9)."""

    current_snapshot_identity: str = ""
    readiness: bool = False
    stage: str = ""
    target_snapshot_identity: str = ""
    loaded_identities: tuple[str, ...] = ()  # loaded_adapters entries with status "loaded"

    def has_loaded(self, identity: str) -> bool:
        """Done as the SDK decides it: ready and the snapshot is current or a loaded adapter."""
        return self.readiness and (self.current_snapshot_identity == identity or identity in self.loaded_identities)

    def failed_loading(self, identity: str) -> bool:
        """An error stage for this very snapshot (an error for another target is stale)."""
        return self.stage == "error" and self.target_snapshot_identity == identity


# Fields the API changes in place with a PATCH (DESIGN.md §5 "update"); any other
# declared change (base model, shape, accelerator, region …) means a replacement.
IN_PLACE_FIELDS = (
    "min_replica_count",
    "max_replica_count",
    "hot_load_trainer_job",
    "hot_load_transition_type",
    "description",
)
# A PATCH of these restarts the serving pod (UPDATING, then READY): the SDK folds
# them into one PATCH so the pod rolls once (PROTOCOL.md §10.4).
POD_RESTART_FIELDS = frozenset({"hot_load_trainer_job", "hot_load_transition_type"})


def update_request_for(changed: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(fields, update mask) for a PATCH of the in-place ``changed`` spec fields.

    A field changed to its default (or to nothing) is still sent, with the
    default value, so the mask never clears more than the caller meant. The
    mask follows ``IN_PLACE_FIELDS`` order (trainer link before transition
    type, as the SDK sends them). Any other field is a ValueError: it cannot
    change in place.
    """
    not_in_place = sorted(set(changed) - set(IN_PLACE_FIELDS))
    if not_in_place:
        raise ValueError(f"not updatable in place: {', '.join(not_in_place)}")
    mask = [key for key in IN_PLACE_FIELDS if key in changed]
    fields = {key: _with_default(key, changed[key]) for key in mask}
    return fields, mask


def _with_default(key: str, value: Any) -> Any:
    if value is None or value == "":
        return DEPLOYMENT_SPEC_DEFAULTS.get(key, "")
    return str(value).upper() if key == "hot_load_transition_type" else value


def _same_shape(wanted: str, found: str) -> bool:
    """The server stores a shape *version*: an unversioned or ``default`` request matches any version."""
    if wanted == "default":
        return True
    if "/versions/" in wanted:
        return wanted == found
    return found.split("/versions/", 1)[0] == wanted


def deployment_not_ours(live: LiveDeployment, spec: dict[str, Any]) -> str:
    """Why ``live`` is not the deployment ``spec`` would have created ("" when it is).

    Only reported fields are compared (PROTOCOL.md §10.6); a field the
    resource did not carry is no evidence either way. Used before adopting a
    deployment that answered 409 to our create.
    """
    wanted_spec = canonical_deployment_spec(spec)
    found_spec = live.spec_dict()
    for key in sorted(live.reported):
        wanted = wanted_spec.get(key, DEPLOYMENT_SPEC_DEFAULTS.get(key))
        found = found_spec.get(key, DEPLOYMENT_SPEC_DEFAULTS.get(key))
        if key == "deployment_shape" and wanted is not None and found is not None:
            if _same_shape(str(wanted), str(found)):
                continue
        elif key == "hot_load_transition_type" and (wanted or "ASYNC") == (found or "ASYNC"):
            continue  # unset means ASYNC on both sides
        elif wanted == found:
            continue
        return f"{key} is {found!r}, not {wanted!r}"
    return ""
