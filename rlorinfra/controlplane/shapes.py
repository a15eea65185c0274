"""The built-in training-shape catalogue (E9, E10), owned by account ``fireworks``.

Each shape has two versions. ``latestValidated`` marks the version a launch
with an unversioned ``trainingShape`` resolves to; for
``ts-qwen3-8b-lora`` the newest version is *not* validated, so "latest
validated" and "newest" differ there, as they can on the real service.
Payloads follow PROTOCOL.md §4.2 (integers are JSON numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

SHAPE_OWNER = "fireworks"
_CREATE_TIME = "2025-06-01T00:00:00Z"
_CREATE_TIME_V2 = "2025-09-15T00:00:00Z"
_SHAPE_NAME_RE = re.compile(r"^accounts/([^/]+)/trainingShapes/([^/]+)(?:/versions/([^/]+))?$")


@dataclass(frozen=True)
class ShapeVersion:
    """One version of a shape: what a job launched from it runs on."""

    shape_id: str
    version_id: str
    base_model: str
    trainer_mode: str  # POLICY_TRAINER | LORA_TRAINER | FORWARD_ONLY
    accelerator_type: str
    accelerator_count: int
    node_count: int
    max_context_length: int
    trainer_image_tag: str
    pipeline_parallelism: int = 1
    validated: bool = True
    latest_validated: bool = False
    create_time: str = _CREATE_TIME

    @property
    def name(self) -> str:
        """Full version name ``accounts/fireworks/trainingShapes/{s}/versions/{v}``."""
        return f"{shape_name(self.shape_id)}/versions/{self.version_id}"

    @property
    def demand(self) -> int:
        """Accelerators a job on this version occupies."""
        return self.accelerator_count * self.node_count

    def payload(self) -> dict[str, Any]:
        """The version resource as the API returns it."""
        return {
            "name": self.name,
            "createTime": self.create_time,
            "validated": self.validated,
            "latestValidated": self.latest_validated,
            "public": True,
            "snapshot": {
                "trainerImageTag": self.trainer_image_tag,
                "maxSupportedContextLength": self.max_context_length,
                "nodeCount": self.node_count,
                "deploymentShapeVersion": (
                    f"accounts/{SHAPE_OWNER}/deploymentShapes/{self.shape_id.removeprefix('ts-')}"
                    f"/versions/{self.version_id}"
                ),
                "deploymentImageTag": self.trainer_image_tag,
                "acceleratorType": self.accelerator_type,
                "acceleratorCount": self.accelerator_count,
                "baseModelWeightPrecision": "BF16",
                "trainerShardingScheme": {"pipelineParallelism": self.pipeline_parallelism},
                "trainerMode": self.trainer_mode,
                "baseModel": self.base_model,
            },
        }


def shape_name(shape_id: str) -> str:
    """``accounts/fireworks/trainingShapes/{shape_id}``."""
    return f"accounts/{SHAPE_OWNER}/trainingShapes/{shape_id}"


def _pair(
    shape_id: str,
    base_model: str,
    mode: str,
    acc: str,
    count: int,
    nodes: int,
    ctx: int,
    *,
    pp: int = 1,
    newest_validated: bool = True,
) -> tuple[ShapeVersion, ShapeVersion]:
    """An older and a newer version of one shape; the newest validated one is latest."""
    old = ShapeVersion(
        shape_id=shape_id,
        version_id="v1",
        base_model=base_model,
        trainer_mode=mode,
        accelerator_type=acc,
        accelerator_count=count,
        node_count=nodes,
        max_context_length=ctx,
        trainer_image_tag="1.4.0",
        pipeline_parallelism=pp,
        latest_validated=not newest_validated,
    )
    new = replace(
        old,
        version_id="v2",
        trainer_image_tag="1.5.2",
        validated=newest_validated,
        latest_validated=newest_validated,
        create_time=_CREATE_TIME_V2,
    )
    return old, new


_QWEN8B = "accounts/fireworks/models/qwen3-8b"
_QWEN4B = "accounts/fireworks/models/qwen3-4b"
_LLAMA70B = "accounts/fireworks/models/llama-v3p1-70b-instruct"

CATALOGUE: dict[str, tuple[ShapeVersion, ...]] = {
    "ts-qwen3-8b-policy": _pair("ts-qwen3-8b-policy", _QWEN8B, "POLICY_TRAINER", "NVIDIA_H200_141GB", 8, 1, 32768),
    "ts-qwen3-8b-lora": _pair(
        "ts-qwen3-8b-lora", _QWEN8B, "LORA_TRAINER", "NVIDIA_H100_80GB", 2, 1, 16384, newest_validated=False
    ),
    "ts-qwen3-8b-reference": _pair("ts-qwen3-8b-reference", _QWEN8B, "FORWARD_ONLY", "NVIDIA_H100_80GB", 1, 1, 32768),
    "ts-qwen3-4b-policy": _pair("ts-qwen3-4b-policy", _QWEN4B, "POLICY_TRAINER", "NVIDIA_H200_141GB", 4, 1, 40960),
    "ts-llama-v3p1-70b-policy": _pair(
        "ts-llama-v3p1-70b-policy", _LLAMA70B, "POLICY_TRAINER", "NVIDIA_H100_80GB", 8, 2, 16384, pp=2
    ),
}


def shape_payload(shape_id: str) -> dict[str, Any]:
    """The parent shape resource (``GET .../trainingShapes/{s}``)."""
    latest = latest_validated(shape_id)
    return {
        "name": shape_name(shape_id),
        "displayName": shape_id,
        "createTime": _CREATE_TIME,
        "baseModel": latest.base_model,
        "trainerMode": latest.trainer_mode,
        "latestValidatedVersion": latest.name,
    }


def versions(shape_id: str) -> tuple[ShapeVersion, ...]:
    """All versions of a shape, oldest first (empty for an unknown shape)."""
    return CATALOGUE.get(shape_id, ())


def latest_validated(shape_id: str) -> ShapeVersion:
    """The version an unversioned reference resolves to (KeyError if unknown)."""
    return next(v for v in CATALOGUE[shape_id] if v.latest_validated)


def find_version(shape_id: str, version_id: str) -> ShapeVersion | None:
    """One exact version, or None."""
    return next((v for v in versions(shape_id) if v.version_id == version_id), None)


def parse_shape_name(name: str) -> tuple[str, str, str | None] | None:
    """``(owner, shape_id, version_id|None)`` of a full shape name, or None if malformed."""
    match = _SHAPE_NAME_RE.match(name)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def resolve(name: str) -> ShapeVersion | None:
    """The version a ``trainingShape`` query value launches on (latest validated if unversioned)."""
    parsed = parse_shape_name(name)
    if parsed is None or parsed[0] != SHAPE_OWNER or parsed[1] not in CATALOGUE:
        return None
    owner, shape_id, version_id = parsed
    if version_id is None or version_id == "latest":
        return latest_validated(shape_id)
    return find_version(shape_id, version_id)


def auto_select(base_model: str, *, lora: bool, forward_only: bool, context: int | None) -> ShapeVersion | None:
    """The auto-shape path's pick: a validated shape for this model, mode and context.

    Preference: forward-only jobs take a FORWARD_ONLY shape, LoRA jobs a
    LORA_TRAINER shape, others a POLICY_TRAINER shape; failing that, any
    shape for the model whose context fits.
    """
    wanted = "FORWARD_ONLY" if forward_only else "LORA_TRAINER" if lora else "POLICY_TRAINER"
    fits = [
        latest_validated(s)
        for s in CATALOGUE
        if latest_validated(s).base_model == base_model
        and (not context or context <= latest_validated(s).max_context_length)
    ]
    preferred = [v for v in fits if v.trainer_mode == wanted]
    if preferred or fits:
        return (preferred or fits)[0]
    return None
