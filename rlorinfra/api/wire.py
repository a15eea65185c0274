"""Wire format of the Fireworks RLOR control plane, as pure functions.

This module does no I/O and imports no httpx. It maps a job spec
(``JobSpec.spec()``) to the create request the official SDK would send
(PROTOCOL.md §2.1), and a job resource (§3.1) or shape version (§4.2) to the
domain values of ``rlorinfra.model``.
"""

from __future__ import annotations

from typing import Any

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
