"""Wire format of the Fireworks RLOR control plane, as pure functions.

This module does no I/O and imports no httpx. It maps a job spec
(``JobSpec.spec()``) to the create request the official SDK would send
(PROTOCOL.md §2.1), and a job resource (§3.1) or shape version (§4.2) to the
domain values of ``rlorinfra.model``; likewise a deployment spec to the E13
create and E16 update requests, and a deployment resource to a
``LiveDeployment`` (§10).
"""

from __future__ import annotations

from typing import Any

from rlorinfra.model.deployments import (
    CREATE_QUERY_FLAGS,
    DEFAULT_ACCELERATOR_TYPE,
    DEPLOYMENT_SPEC_DEFAULTS,
    REPORTED_SPEC_FIELDS,
    DeploymentState,
    HotLoadReplica,
    HotLoadTransition,
    LiveDeployment,
    deployment_id_of,
    snake_to_camel,
)
from rlorinfra.model.jobs import LiveJob, ShapeVersion, canonical_spec, create_path


def live_job(resource: dict[str, Any]) -> LiveJob:
    """A ``LiveJob`` from a job resource (E3 body or one element of an E4 page)."""
    name = str(resource.get("name", ""))
    status = resource.get("status") or {}
    if not isinstance(status, dict):
        status = {"message": str(status)}
    spec, reported = read_reported_spec(resource)
    return LiveJob(
        job_id=name.rsplit("/", 1)[-1],
        name=name,
        display_name=str(resource.get("displayName") or ""),
        state=str(resource.get("state") or "JOB_STATE_UNSPECIFIED"),
        status_code=str(status.get("code") or ""),
        status_message=str(resource.get("statusMessage") or resource.get("message") or status.get("message") or ""),
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


def shape_version(payload: dict[str, Any]) -> ShapeVersion:
    """A ``ShapeVersion`` from a version body, with the SDK's defaults (PROTOCOL.md §4.2)."""
    snap = payload.get("snapshot") or {}
    return ShapeVersion(
        name=str(payload.get("name") or ""),
        accelerator_type=str(snap.get("acceleratorType") or ""),
        accelerator_count=int(snap.get("acceleratorCount") or 0),
        node_count=int(snap.get("nodeCount") or 1),
        max_supported_context_length=int(snap.get("maxSupportedContextLength") or 0),
        trainer_image_tag=str(snap.get("trainerImageTag") or ""),
        trainer_mode=str(snap.get("trainerMode") or ""),
        deployment_shape_version=str(snap.get("deploymentShapeVersion") or ""),
    )


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


def _copy(src: dict[str, Any], key: str, dst: dict[str, Any], name: str, default: Any = None) -> None:
    value = src.get(key, default)
    if value not in (None, ""):
        dst[name] = value


# -- deployments (PROTOCOL.md §10) ----------------------------------------


def deployment_create_request(spec: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Query flags (without ``deploymentId``) and JSON body for E13, as the SDK builds them.

    ``spec`` is a deployment spec (``canonical_deployment_spec`` form or not):
    absent fields take the SDK's ``DeploymentConfig`` defaults (§10.2).
    """
    params = [(name, "true") for key, name in CREATE_QUERY_FLAGS if spec.get(key)]
    return params, _deployment_body(spec)


def _setting(spec: dict[str, Any], key: str) -> Any:
    value = spec.get(key)
    return DEPLOYMENT_SPEC_DEFAULTS.get(key) if value is None else value


def _deployment_body(spec: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "baseModel": spec["base_model"],
        "description": _setting(spec, "description"),
        "minReplicaCount": _setting(spec, "min_replica_count"),
        "maxReplicaCount": _setting(spec, "max_replica_count"),
        "enableHotLoad": _setting(spec, "enable_hot_load"),
        "forTraining": _setting(spec, "for_training"),
    }
    if spec.get("region"):
        body["placement"] = {"region": spec["region"]}
    bucket_type = _setting(spec, "hot_load_bucket_type")
    if bucket_type and str(bucket_type).upper() != "NONE":  # "none" opts out of the bucket
        body["hotLoadBucketType"] = bucket_type
    if spec.get("hot_load_trainer_job"):
        body["hotLoadTrainerJob"] = spec["hot_load_trainer_job"]
    if spec.get("hot_load_transition_type"):
        body["hotLoadTransitionType"] = str(spec["hot_load_transition_type"]).upper()
    # Shape path or manual path: the server rejects an accelerator next to a shape.
    if spec.get("deployment_shape"):
        body["deploymentShape"] = spec["deployment_shape"]
    else:
        body["acceleratorType"] = spec.get("accelerator_type") or DEFAULT_ACCELERATOR_TYPE
    if spec.get("extra_args"):
        body["extraArgs"] = [part for arg in spec["extra_args"] for part in str(arg).split()]
    for key, name in (("extra_values", "extraValues"), ("annotations", "annotations")):
        if spec.get(key):
            body[name] = dict(spec[key])
    if spec.get("preemptible"):
        body["preemptible"] = True  # the SDK sends only true
    return body


def deployment_update_request(
    fields: dict[str, Any], update_mask: list[str] | tuple[str, ...] | None
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Query and camelCase body for E16 from snake_case ``fields`` (PROTOCOL.md §10.4).

    With a mask, every field must be named in it (the server would ignore the
    rest silently); a masked path absent from ``fields`` clears that field.
    Without a mask no ``updateMask`` is sent, as ``scale_to_zero`` does.
    """
    if update_mask is not None:
        unmasked = sorted(set(fields) - set(update_mask))
        if unmasked:
            raise ValueError(f"fields outside the update mask would be ignored: {', '.join(unmasked)}")
        if not update_mask:
            raise ValueError("an empty update mask changes nothing")
    params = [("updateMask", ",".join(update_mask))] if update_mask else []
    return params, {snake_to_camel(key): value for key, value in fields.items()}


# Declared resource keys -> LiveDeployment fields that are strings (PROTOCOL.md §10.6).
_DEPLOYMENT_TEXT = {
    "baseModel": "base_model",
    "description": "description",
    "deploymentShape": "deployment_shape",
    "acceleratorType": "accelerator_type",
    "hotLoadBucketType": "hot_load_bucket_type",
    "hotLoadBucketUrl": "hot_load_bucket_url",
    "hotLoadTrainerJob": "hot_load_trainer_job",
    "createTime": "create_time",
    "updateTime": "update_time",
}
_DEPLOYMENT_INTS = {
    "acceleratorCount": "accelerator_count",
    "minReplicaCount": "min_replica_count",
    "maxReplicaCount": "max_replica_count",
    "replicaCount": "replica_count",
}


def deployment_from_resource(resource: dict[str, Any]) -> LiveDeployment:
    """A ``LiveDeployment`` from a deployment resource (E13/E14/E16 body or an E15 row).

    Reads only the fields the real API is known to return (§10.6): sent-only
    fields (``forTraining``, ``annotations``, ``extraArgs`` …) are ignored even
    when a server echoes them. proto-JSON int32s may come as strings.
    """
    name = str(resource.get("name") or "")
    values: dict[str, Any] = {}
    for key, attr in _DEPLOYMENT_TEXT.items():
        if resource.get(key) not in (None, ""):
            values[attr] = str(resource[key])
    for key, attr in _DEPLOYMENT_INTS.items():
        values[attr] = _int_or_none(resource.get(key))
    if isinstance(resource.get("enableHotLoad"), bool):
        values["enable_hot_load"] = resource["enableHotLoad"]
    region = _region(resource)
    if region:
        values["region"] = region
    transition = HotLoadTransition.parse(resource.get("hotLoadTransitionType"))
    if transition is not None:
        values["hot_load_transition_type"] = transition
    raw_status = resource.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    return LiveDeployment(
        deployment_id=deployment_id_of(name),
        name=name,
        state=DeploymentState.parse(resource.get("state")),
        status_code=str(status.get("code") or ""),
        status_message=str(status.get("message") or ""),
        reported=frozenset(_reported(values)),
        **values,
    )


def _reported(values: dict[str, Any]) -> set[str]:
    return {key for key in REPORTED_SPEC_FIELDS if values.get(key) is not None}


def _region(resource: dict[str, Any]) -> str:
    """``placement.region`` (what create sends), else the declared top-level ``region``."""
    placement = resource.get("placement")
    if isinstance(placement, dict) and placement.get("region"):
        return str(placement["region"])
    return str(resource.get("region") or "")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def hot_load_replicas(body: dict[str, Any]) -> list[HotLoadReplica]:
    """The replicas of an E22 answer (PROTOCOL.md §10.9); ``replicas`` not a list is an error."""
    replicas = body.get("replicas")
    if not isinstance(replicas, list):
        raise ValueError("hot-load status has no replicas list")
    return [_hot_load_replica(r) for r in replicas if isinstance(r, dict)]


def _hot_load_replica(row: dict[str, Any]) -> HotLoadReplica:
    raw_loading, raw_adapters = row.get("loading_state"), row.get("loaded_adapters")
    loading: dict[str, Any] = raw_loading if isinstance(raw_loading, dict) else {}
    adapters: list[Any] = raw_adapters if isinstance(raw_adapters, list) else []
    return HotLoadReplica(
        current_snapshot_identity=str(row.get("current_snapshot_identity") or ""),
        readiness=row.get("readiness") is True,
        stage=str(loading.get("stage") or ""),
        target_snapshot_identity=str(loading.get("target_snapshot_identity") or ""),
        loaded_identities=tuple(
            str(a.get("identity")) for a in adapters if isinstance(a, dict) and a.get("status") == "loaded"
        ),
    )
