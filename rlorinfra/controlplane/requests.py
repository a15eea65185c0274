"""Validation of create requests (E2), turning body + query into a ``NewJob``.

Pure functions: no database, no clock. Rules follow PROTOCOL.md §2.1, §4.3 and
§6.1. Three launch paths:

* shape path: ``trainingShape`` query param; infra fields are forbidden; the
  version (latest validated when unversioned) supplies node count, accelerators
  and ``trainingConfig.maxContextLength`` (the SDK does not send it there);
* manual path: ``skipValidations=true`` or any infra field (``nodeCount``,
  ``trainingConfig.acceleratorType/acceleratorCount``); defaults 1 x 1;
* auto-shape path: neither; a catalogue shape for the base model is picked.

Key-gated parameters (PROTOCOL.md §6.4: ``skipValidations=true``,
``trainingConfig.extraArgs``, ``extraValues``, ``preemptible: true``,
``purpose``, ``managedBy``) are refused unless the caller holds a superuser key.
Checks the real API is not shown to make (a shape's base model, a context
length against the shape) are not made. Every problem is an
``InvalidArgument`` (400) with a message naming the field, never a 5xx.

Each ``NewJob`` carries two views of its static fields: ``echo`` (everything
sent, plus defaults and the path's additions) and ``public`` (only the fields
PROTOCOL.md §3.5 lists as returned, with the server-filled ``nodeCount`` and
``trainingConfig.maxContextLength`` on the shape and auto paths).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from rlorinfra.controlplane import shapes
from rlorinfra.controlplane.errors import InvalidArgument

JOB_ID_RE = re.compile(r"^[a-z0-9-]{1,63}$")
DURATION_RE = re.compile(r"^(-?)(\d+)(\.\d{1,9})?s$")
DEFAULT_INACTIVITY_S = 3600.0
MAX_INACTIVITY_S = 3 * 3600.0
DISPLAY_NAME_LIMIT = 64

REGIONS = frozenset(
    "REGION_UNSPECIFIED US_IOWA_1 US_VIRGINIA_1 US_VIRGINIA_2 US_ILLINOIS_1 AP_TOKYO_1 EU_LONDON_1 "
    "US_ARIZONA_1 US_TEXAS_1 US_ILLINOIS_2 EU_FRANKFURT_1 US_TEXAS_2 EU_PARIS_1 EU_HELSINKI_1 "
    "US_NEVADA_1 EU_ICELAND_1 EU_ICELAND_2 US_WASHINGTON_1 US_WASHINGTON_2 EU_ICELAND_DEV_1 "
    "US_WASHINGTON_3 US_ARIZONA_2 AP_TOKYO_2 US_CALIFORNIA_1 US_MISSOURI_1 US_UTAH_1 US_TEXAS_3 "
    "US_ARIZONA_3 US_GEORGIA_1 US_GEORGIA_2 US_WASHINGTON_4 US_GEORGIA_3 NA_BRITISHCOLUMBIA_1 "
    "US_GEORGIA_4 EU_ICELAND_3 US_OHIO_1 US_NEWYORK_1".split()
)

# Field name -> expected JSON kind. "int+" = positive integer, "int0" = >= 0.
TOP_LEVEL_FIELDS: dict[str, str] = {
    "displayName": "str",
    "serviceMode": "bool",
    "keepAlive": "bool",
    "dataset": "str",
    "trainingConfig": "object",
    "nodeCount": "int+",
    "trainerReplicaCount": "int+",
    "useReservation": "bool",
    "reservationTarget": "str",
    "hotLoadDeploymentId": "str",
    "extraValues": "strmap",
    "forwardOnly": "bool",
    "purpose": "str",
    "preemptible": "bool",
    "managedBy": "str",
    "inactivityTimeout": "duration",
    "disableInactivityCleanup": "bool",
    # generated-schema extras the SDK never sends: accepted and echoed as sent
    "awsS3Config": "object",
    "azureBlobStorageConfig": "object",
    "evalAutoCarveout": "bool",
    "evaluationDataset": "str",
    "lossConfig": "object",
    "rewardWeights": "strlist",
    "rolloutDeploymentName": "str",
    "usePurpose": "str",
    "wandbConfig": "object",
}
TRAINING_CONFIG_FIELDS: dict[str, str] = {
    "baseModel": "str",
    "warmStartFrom": "str",
    "loraRank": "int0",
    "learningRate": "number",
    "maxContextLength": "int+",
    "batchSize": "int+",
    "batchSizeSamples": "int+",
    "epochs": "int+",
    "gradientAccumulationSteps": "int+",
    "learningRateWarmupSteps": "int0",
    "optimizerWeightDecay": "number",
    "jinjaTemplate": "str",
    "outputModel": "str",
    "samplerCheckpointSaveIntervalSteps": "int+",
    "region": "str",
    "acceleratorType": "str",
    "acceleratorCount": "int+",
    "customImageTag": "str",
    "extraArgs": "strlist",
    "projectionHeadDim": "int0",
}
QUERY_PARAMS = ("trainingShape", "skipValidations", "rlorTrainerJobId", "deploymentId")

# PROTOCOL.md §3.5: the fields the real API is known to return (the generated
# response type). Everything else that was sent is stored but not answered.
RETURNED_FIELDS = frozenset(
    "acceleratorSeconds awsS3Config azureBlobStorageConfig completedTime createdBy createTime dataset "
    "directRouteHandle displayName evalAutoCarveout evaluationDataset forwardOnly hotLoadDeploymentId "
    "jobProgress keepAlive lossConfig name nodeCount rewardWeights rolloutDeploymentName serviceMode state "
    "status trainingConfig usePurpose wandbConfig".split()
)
RETURNED_TRAINING_CONFIG_FIELDS = frozenset(
    "baseModel batchSize batchSizeSamples samplerCheckpointSaveIntervalSteps epochs gradientAccumulationSteps "
    "jinjaTemplate learningRate learningRateWarmupSteps loraRank maxContextLength optimizerWeightDecay "
    "outputModel region warmStartFrom".split()
)
DEFAULT_ACCELERATOR_TYPE = "NVIDIA_H100_80GB"


@dataclass(frozen=True)
class NewJob:
    """A validated create request, ready for the store."""

    job_id: str | None  # None: the store generates a UUID
    echo: dict[str, Any]  # static fields of the resource, exactly as they will be echoed
    demand: int  # accelerators occupied while running
    inactivity_s: float  # 0 = never auto-stopped
    display_name: str = ""
    public: dict[str, Any] | None = None  # the returned static fields (None: derive from ``echo``)
    accelerator_type: str = DEFAULT_ACCELERATOR_TYPE  # the key of acceleratorSeconds


def _kind_ok(value: Any, kind: str) -> bool:
    """Whether a JSON value has the expected kind (bools are never numbers)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    checks = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "object": isinstance(value, dict),
        "number": is_int or (isinstance(value, float) and math.isfinite(value)),
        "int+": is_int and value > 0,
        "int0": is_int and value >= 0,
        "strlist": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "strmap": isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
        "duration": isinstance(value, str),
    }
    return checks[kind]


_KIND_TEXT = {
    "str": "a string",
    "bool": "a boolean",
    "object": "a JSON object",
    "number": "a number",
    "int+": "a positive integer",
    "int0": "a non-negative integer",
    "strlist": "a list of strings",
    "strmap": "a map of strings to strings",
    "duration": 'a duration string such as "1800s"',
}


def _check_fields(obj: dict[str, Any], allowed: dict[str, str], prefix: str) -> None:
    for key, value in obj.items():
        kind = allowed.get(key)
        if kind is None:
            raise InvalidArgument(f'unknown field "{prefix}{key}" in the job; check the spelling (camelCase)')
        if not _kind_ok(value, kind):
            raise InvalidArgument(f'"{prefix}{key}" must be {_KIND_TEXT[kind]}')


def parse_duration(value: str) -> float:
    """Seconds of a proto-JSON duration such as ``"1800s"`` or ``"0.5s"`` (400 otherwise)."""
    match = DURATION_RE.match(value)
    if not match:
        raise InvalidArgument(
            f'inactivityTimeout "{value[:40]}" is not a duration; use seconds with an "s" suffix, e.g. "1800s"'
        )
    if match.group(1):
        raise InvalidArgument("inactivityTimeout must not be negative")
    seconds = float(match.group(2) + (match.group(3) or ""))
    if seconds > MAX_INACTIVITY_S:
        raise InvalidArgument(f"inactivityTimeout must be at most 3 hours (10800s), got {value}")
    return seconds


def validate_job_id(job_id: str) -> str:
    """A requested ``rlorTrainerJobId``: 1-63 lowercase letters, digits and hyphens."""
    if not JOB_ID_RE.match(job_id):
        raise InvalidArgument(
            f'rlorTrainerJobId "{job_id[:80]}" is invalid: use 1-63 lowercase letters, digits and hyphens'
        )
    return job_id


def _bool_param(query: dict[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return False
    if value.lower() not in ("true", "false", "1", "0"):
        raise InvalidArgument(f'query parameter {name} must be "true" or "false", got "{value[:40]}"')
    return value.lower() in ("true", "1")


def _check_body(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Type-check the body; return (body, trainingConfig)."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object describing the job")
    _check_fields(body, TOP_LEVEL_FIELDS, "")
    tc = body.get("trainingConfig") or {}
    _check_fields(tc, TRAINING_CONFIG_FIELDS, "trainingConfig.")
    if not tc.get("baseModel"):
        raise InvalidArgument("trainingConfig.baseModel is required (e.g. accounts/fireworks/models/qwen3-8b)")
    if len(body.get("displayName", "")) >= DISPLAY_NAME_LIMIT:
        raise InvalidArgument(f"displayName must be fewer than {DISPLAY_NAME_LIMIT} characters")
    if "region" in tc and tc["region"] not in REGIONS:
        raise InvalidArgument(f'trainingConfig.region "{tc["region"][:40]}" is not a known region (e.g. US_IOWA_1)')
    return body, tc


def _infra_fields(body: dict[str, Any], tc: dict[str, Any]) -> list[str]:
    present = ["nodeCount"] if "nodeCount" in body else []
    return present + [f"trainingConfig.{k}" for k in ("acceleratorType", "acceleratorCount") if k in tc]


@dataclass(frozen=True)
class _Placement:
    """What a launch path decided: echo additions, server-filled fields, demand, accelerator."""

    extra: dict[str, Any]
    filled: dict[str, Any]  # nodeCount and trainingConfig.maxContextLength the server sets
    demand: int
    accelerator_type: str


def _shape_path(shape_ref: str, body: dict[str, Any], tc: dict[str, Any]) -> _Placement:
    """Resolve the shape: it owns the infrastructure and the context length."""
    infra = _infra_fields(body, tc)
    if infra:
        raise InvalidArgument(
            f"{', '.join(infra)} cannot be set with trainingShape: the shape owns the infrastructure. "
            "Remove them, or launch on the manual path without trainingShape"
        )
    version = shapes.resolve(shape_ref)
    if version is None:
        raise InvalidArgument(
            f'training shape "{shape_ref[:120]}" was not found; known shapes: '
            + ", ".join(shapes.shape_name(s) for s in shapes.CATALOGUE)
        )
    # No base-model or context-length check: PROTOCOL.md shows the real API making neither.
    tc.setdefault("maxContextLength", version.max_context_length)
    return _Placement(
        {"nodeCount": version.node_count, "trainingShape": shape_ref},
        _filled(version),
        version.demand,
        version.accelerator_type,
    )


def _filled(version: shapes.ShapeVersion) -> dict[str, Any]:
    return {"nodeCount": version.node_count, "maxContextLength": version.max_context_length}


def _auto_path(body: dict[str, Any], tc: dict[str, Any]) -> _Placement:
    version = shapes.auto_select(
        tc["baseModel"],
        lora=tc.get("loraRank", 0) > 0,
        forward_only=bool(body.get("forwardOnly")),
        context=tc.get("maxContextLength"),
    )
    if version is None:
        raise InvalidArgument(
            f"no validated training shape fits base model {tc['baseModel'][:120]}"
            + (f" with maxContextLength {tc['maxContextLength']}" if tc.get("maxContextLength") else "")
            + "; pass trainingShape, or use the manual path (acceleratorType/acceleratorCount/nodeCount)"
        )
    return _Placement({"nodeCount": version.node_count}, _filled(version), version.demand, version.accelerator_type)


def _manual_path(body: dict[str, Any], tc: dict[str, Any]) -> _Placement:
    nodes = body.get("nodeCount", 1)
    return _Placement(
        {"nodeCount": nodes},
        {},
        tc.get("acceleratorCount", 1) * nodes,
        tc.get("acceleratorType") or DEFAULT_ACCELERATOR_TYPE,
    )


def _superuser_only(body: dict[str, Any], tc: dict[str, Any], skip: bool) -> list[str]:
    """The key-gated parameters of a request (PROTOCOL.md §6.4), in the order they are named."""
    gated = ["skipValidations"] if skip else []
    gated += ["trainingConfig.extraArgs"] if "extraArgs" in tc else []
    gated += ["extraValues"] if "extraValues" in body else []
    gated += ["preemptible"] if body.get("preemptible") is True else []
    return gated + [name for name in ("purpose", "managedBy") if name in body]


def _check_key(body: dict[str, Any], tc: dict[str, Any], skip: bool, superuser: bool) -> None:
    gated = [] if superuser else _superuser_only(body, tc, skip)
    if gated:
        hint = (
            (
                "; customers launch with trainingShape or on the auto-shape path (the manual path always "
                "sends skipValidations=true)"
            )
            if gated[0] == "skipValidations"
            else ""
        )
        also = f" (also superuser-only in this request: {', '.join(gated[1:])})" if gated[1:] else ""
        raise InvalidArgument(f"{gated[0]} requires a superuser API key; this is a customer key{also}{hint}")


def _inactivity(body: dict[str, Any], account_id: str) -> float:
    if body.get("disableInactivityCleanup"):
        if account_id != shapes.SHAPE_OWNER:
            raise InvalidArgument("disableInactivityCleanup is only supported for trainers in the fireworks account")
        return 0.0
    if "inactivityTimeout" not in body:
        return DEFAULT_INACTIVITY_S
    return parse_duration(body["inactivityTimeout"]) or DEFAULT_INACTIVITY_S


def parse_create(
    body: Any, query: dict[str, str], *, account_id: str, created_by: str, superuser: bool = True
) -> NewJob:
    """Validate an E2 request (body already JSON-decoded) into a ``NewJob``.

    ``superuser`` is whether the caller's key may send the key-gated
    parameters; a customer key gets a 400 naming the first one it sent.
    """
    job_id = query.get("rlorTrainerJobId") or None
    if job_id is not None:
        validate_job_id(job_id)
    body, tc = _check_body(body)
    body = dict(body)
    tc = dict(tc)
    skip = _bool_param(query, "skipValidations")
    _check_key(body, tc, skip, superuser)
    inactivity_s = _inactivity(body, account_id)
    if "trainingShape" in query:
        placement = _shape_path(query["trainingShape"], body, tc)
    elif skip or _infra_fields(body, tc):
        placement = _manual_path(body, tc)
    else:
        placement = _auto_path(body, tc)
    deployment = query.get("deploymentId")
    if deployment and body.get("hotLoadDeploymentId", deployment) != deployment:
        raise InvalidArgument("query deploymentId and body hotLoadDeploymentId disagree")
    echo = _echo(body, tc, placement.extra, created_by)
    if deployment:
        echo.setdefault("hotLoadDeploymentId", deployment)
    return NewJob(
        job_id=job_id,
        echo=echo,
        demand=placement.demand,
        inactivity_s=inactivity_s,
        display_name=body.get("displayName", ""),
        public=public_fields(echo, placement.filled),
        accelerator_type=placement.accelerator_type,
    )


def _echo(body: dict[str, Any], tc: dict[str, Any], extra: dict[str, Any], created_by: str) -> dict[str, Any]:
    """The static resource fields: as sent, plus defaults and the path's additions."""
    echo = {
        "displayName": "",
        "serviceMode": False,
        "keepAlive": False,
        "dataset": "",
        "forwardOnly": False,
        "useReservation": True,
        **body,
        "trainingConfig": tc,
        "createdBy": created_by,
    }
    echo.update(extra)
    return echo


def public_fields(echo: dict[str, Any], filled: dict[str, Any] | None = None) -> dict[str, Any]:
    """The returned static fields: ``echo`` cut to PROTOCOL.md §3.5, then the server-filled values."""
    public = {k: v for k, v in echo.items() if k in RETURNED_FIELDS}
    tc = {k: v for k, v in dict(echo.get("trainingConfig") or {}).items() if k in RETURNED_TRAINING_CONFIG_FIELDS}
    filled = filled or {}
    if "nodeCount" in filled:
        public["nodeCount"] = filled["nodeCount"]
    if "maxContextLength" in filled:
        tc["maxContextLength"] = filled["maxContextLength"]
    public["trainingConfig"] = tc
    return public
