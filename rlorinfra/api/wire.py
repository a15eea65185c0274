"""Wire format of the Fireworks RLOR control plane, as pure functions and values.

This module does no I/O and imports no httpx, so the planner and the renderers
may use the values it defines. It maps a job spec (``JobSpec.spec()``) to the
create request the official SDK would send (PROTOCOL.md §2.1) and a job
resource (§3.1) back to a ``LiveJob``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

JOB_STATE_PREFIX = "JOB_STATE_"

# State sets, named as the official SDK names them (PROTOCOL.md §3.2).
TOMBSTONE_STATES = frozenset({"JOB_STATE_DELETED", "JOB_STATE_ARCHIVED"})
RESUMABLE_STATES = frozenset(
    {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED", "JOB_STATE_COMPLETED"}
)
# Serving: the only state the SDK can find ready (RUNNING plus a healthy probe).
# IDLE is not among them: the SDK never treats an IDLE trainer as ready.
SERVING_STATES = frozenset({"JOB_STATE_RUNNING"})
# States that settle by themselves; apply waits them out.
TRANSITIONAL_STATES = frozenset(
    {
        "JOB_STATE_UNSPECIFIED",
        "JOB_STATE_CREATING",
        "JOB_STATE_PENDING",
        "JOB_STATE_CANCELLING",
        "JOB_STATE_DELETING",
        "JOB_STATE_DELETING_CLEANING_UP",
        "JOB_STATE_WRITING_RESULTS",
        "JOB_STATE_VALIDATING",
        "JOB_STATE_RE_QUEUEING",
        "JOB_STATE_CREATING_INPUT_DATASET",
        # Transitional to the SDK too: no healthy trainer to connect to, so not ready.
        "JOB_STATE_IDLE",
    }
)
# Terminal and not resumable: the job must be replaced to serve again.
DEAD_STATES = frozenset({"JOB_STATE_EARLY_STOPPED", "JOB_STATE_EXPIRED"})

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

    @classmethod
    def from_resource(cls, resource: dict[str, Any]) -> "LiveJob":
        """Build from a job resource (E3 body or one element of an E4 page)."""
        name = str(resource.get("name", ""))
        status = resource.get("status") or {}
        if not isinstance(status, dict):
            status = {"message": str(status)}
        spec, reported = read_reported_spec(resource)
        return cls(
            job_id=name.rsplit("/", 1)[-1],
            name=name,
            display_name=str(resource.get("displayName") or ""),
            state=str(resource.get("state") or "JOB_STATE_UNSPECIFIED"),
            status_code=str(status.get("code") or ""),
            status_message=str(
                resource.get("statusMessage") or resource.get("message") or status.get("message") or ""
            ),
            create_time=str(resource.get("createTime") or ""),
            spec=tuple(sorted(spec.items(), key=lambda kv: kv[0])),
            reported=frozenset(reported),
            accelerator_seconds=_accelerator_seconds(resource.get("acceleratorSeconds")),
        )


def _accelerator_seconds(value: Any) -> tuple[tuple[str, int], ...]:
    """``acceleratorSeconds`` (type -> proto-JSON int64 string) as sorted pairs; junk is skipped."""
    if not isinstance(value, dict):
        return ()
    out = []
    for kind, seconds in value.items():
        try:
            out.append((str(kind), int(seconds)))
        except (TypeError, ValueError):
            continue
    return tuple(sorted(out))


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

    @property
    def shape(self) -> str:
        """The parent shape name, without ``/versions/...``."""
        return self.name.split("/versions/", 1)[0]

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "ShapeVersion":
        """Parse a version body with the SDK's defaults (PROTOCOL.md §4.2)."""
        snap = payload.get("snapshot") or {}
        return cls(
            name=str(payload.get("name") or ""),
            accelerator_type=str(snap.get("acceleratorType") or ""),
            accelerator_count=int(snap.get("acceleratorCount") or 0),
            node_count=int(snap.get("nodeCount") or 1),
            max_supported_context_length=int(snap.get("maxSupportedContextLength") or 0),
            trainer_image_tag=str(snap.get("trainerImageTag") or ""),
            trainer_mode=str(snap.get("trainerMode") or ""),
        )


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


def _format_duration(seconds: int) -> str:
    return f"{int(seconds)}s"


def _parse_duration(value: Any) -> int | None:
    if isinstance(value, str) and value.endswith("s"):
        try:
            return int(float(value[:-1]))
        except ValueError:
            return None
    return None


def create_request(display_name: str, spec: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Query parameters (without ``rlorTrainerJobId``) and JSON body for E2.

    Mirrors ``TrainerJobManager._create`` of fireworks-ai 1.2.30: which fields
    go where on the shape, auto-shape and manual paths (PROTOCOL.md §2.1, §4.3).
    """
    shape = spec.get("training_shape")
    manual = create_path(spec) == "manual"
    params: list[tuple[str, str]] = []
    if spec.get("hot_load_deployment_id"):
        params.append(("deploymentId", spec["hot_load_deployment_id"]))
    if shape:
        params.append(("trainingShape", shape))
        if spec.get("skip_validations"):
            params.append(("skipValidations", "true"))
    elif manual:
        params.append(("skipValidations", "true"))
    return params, _create_body(display_name, spec, shape=bool(shape), manual=manual)


def _training_config(spec: dict[str, Any], *, shape: bool, manual: bool) -> dict[str, Any]:
    tc: dict[str, Any] = {
        "baseModel": spec["base_model"],
        "loraRank": spec.get("lora_rank", 0),
        "learningRate": spec.get("learning_rate", 1e-5),
    }
    if spec.get("max_context_length") and not shape:
        tc["maxContextLength"] = spec["max_context_length"]
    if spec.get("custom_image_tag"):
        tc["customImageTag"] = spec["custom_image_tag"]
    if manual and spec.get("accelerator_type"):
        tc["acceleratorType"] = spec["accelerator_type"]
    if manual and spec.get("accelerator_count"):
        tc["acceleratorCount"] = spec["accelerator_count"]
    if spec.get("region"):
        tc["region"] = spec["region"]
    if spec.get("extra_args"):
        # The SDK splits any element containing whitespace into several.
        tc["extraArgs"] = [part for arg in spec["extra_args"] for part in str(arg).split()]
    return tc


def _create_body(display_name: str, spec: dict[str, Any], *, shape: bool, manual: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serviceMode": True,
        "keepAlive": False,
        "dataset": "",
        "trainingConfig": _training_config(spec, shape=shape, manual=manual),
    }
    if manual:
        body["nodeCount"] = spec.get("node_count") or 1
    if spec.get("trainer_replica_count"):
        body["trainerReplicaCount"] = spec["trainer_replica_count"]
    body["useReservation"] = bool(spec.get("use_reservation", True)) and not spec.get("reservation_target")
    if spec.get("reservation_target"):
        body["reservationTarget"] = spec["reservation_target"]
    if display_name:
        body["displayName"] = display_name
    if spec.get("hot_load_deployment_id"):
        body["hotLoadDeploymentId"] = spec["hot_load_deployment_id"]
    if spec.get("forward_only"):
        body["forwardOnly"] = True
    if spec.get("inactivity_timeout"):
        body["inactivityTimeout"] = _format_duration(spec["inactivity_timeout"])
    return body


# Spec fields the real API is known to return (PROTOCOL.md §3.5): resource key
# path -> spec key. Nothing else is read back, whatever a server echoes.
_REPORTED_PATHS = {
    ("trainingConfig", "baseModel"): "base_model",
    ("trainingConfig", "loraRank"): "lora_rank",
    ("trainingConfig", "learningRate"): "learning_rate",
    ("trainingConfig", "region"): "region",
    ("forwardOnly",): "forward_only",
    ("hotLoadDeploymentId",): "hot_load_deployment_id",
    # Declared too, but on the shape and auto paths the server fills them from
    # the shape: they mean something only for a manual-path job.
    ("nodeCount",): "node_count",
    ("trainingConfig", "maxContextLength"): "max_context_length",
}
REPORTED_FIELDS = ("base_model", "lora_rank", "learning_rate", "region", "forward_only", "hot_load_deployment_id")
MANUAL_REPORTED_FIELDS = ("node_count", "max_context_length")


def read_reported_spec(resource: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The declared spec fields a job resource carries: (canonical spec, keys present)."""
    spec: dict[str, Any] = {}
    present: set[str] = set()
    for path, key in _REPORTED_PATHS.items():
        value: Any = resource
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or value == "":
            continue
        present.add(key)
        spec[key] = value
    if spec.get("forward_only") is not True:
        spec.pop("forward_only", None)  # only true is meaningful (the SDK sends only true)
    return canonical_spec(spec), present


def spec_from_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """The declared spec fields of a job resource, in ``JobSpec.spec()`` form."""
    return read_reported_spec(resource)[0]


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


def _copy(src: dict[str, Any], key: str, dst: dict[str, Any], name: str, default: Any = None) -> None:
    value = src.get(key, default)
    if value not in (None, ""):
        dst[name] = value


_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.ip_address("::1")


def is_loopback(url: str) -> bool:
    """True when the host of ``url`` is literally this machine, so plain http cannot leak the key.

    Only three spellings count, decided from the text before any DNS lookup:
    the name ``localhost``, an IPv4 literal in 127.0.0.0/8 (``127.0.0.2`` too)
    and the IPv6 literal ``::1`` (``[::1]`` in a URL). Names that merely end in
    ``.localhost`` (``evil.localhost``) or resolve to 127.0.0.1 do not count: a
    resolver or a hosts file could point them anywhere.
    """
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:  # e.g. an unclosed "[" in the host
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 4:
        return address in _LOOPBACK_V4
    return address == _LOOPBACK_V6


def not_ours(live: LiveJob, display_name: str, spec: dict[str, Any]) -> str:
    """Why ``live`` is not the job ``display_name``/``spec`` would have created ("" when it is).

    A job holding an ID rlorinfra chose is ours only with the same display
    name and the same value for every field the API reports (PROTOCOL.md §3.5).
    """
    if live.display_name != display_name:
        return f'display name "{live.display_name}", not "{display_name}"'
    for key in sorted(set(comparable_fields(spec)) & live.reported):
        wanted, found = spec.get(key, SPEC_DEFAULTS.get(key)), live.reported_value(key)
        if wanted != found and not (isinstance(wanted, (int, float)) and isinstance(found, (int, float))
                                    and float(wanted) == float(found)):
            return f"{key} is {found!r}, not {wanted!r}"
    return ""
