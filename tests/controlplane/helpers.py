"""Helpers shared by the emulator tests (requests like the SDK sends, a fake clock)."""

from __future__ import annotations

from typing import Any

import httpx

QWEN8B = "accounts/fireworks/models/qwen3-8b"
POLICY_SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"
JOBS = "/v1/accounts/local/rlorTrainerJobs"
KEY = {"X-Api-Key": "local"}  # the customer key
SUPERUSER_KEY = "root-key"
SUPERUSER = {"X-Api-Key": SUPERUSER_KEY}
INSTANCE_HEADER = "X-Rlorinfra-Emulator-Instance"
# Clients of the loopback emulator pass verify=False: plain http, and it skips
# building a TLS context (~0.2 s per client).


class FakeClock:
    """A clock that only moves when told to (lifecycle tests are deterministic)."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def body(base_model: str = QWEN8B, **top: Any) -> dict[str, Any]:
    """A create body like the SDK's, with top-level overrides."""
    tc = top.pop("trainingConfig", {})
    return {
        "serviceMode": True,
        "keepAlive": False,
        "dataset": "",
        "trainingConfig": {"baseModel": base_model, "loraRank": 0, "learningRate": 1e-5, **tc},
        "useReservation": True,
        **top,
    }


def create(
    client: httpx.Client, job_id: str, *, shape: str | None = POLICY_SHAPE, manual: bool = False, **top: Any
) -> httpx.Response:
    """POST a create on the shape path (default), the manual path, or the auto path (shape=None)."""
    params = {}
    if shape and not manual:
        params["trainingShape"] = shape
    if manual:
        params["skipValidations"] = "true"
    params["rlorTrainerJobId"] = job_id
    return client.post(JOBS, params=params, json=body(**top))
