"""The outputs table: each job's ID, job name and trainer endpoint, as ``output``, ``show`` and apply list them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rlorinfra.state.model import JobRecord, State

Outputs = dict[str, str]


def record_outputs(record: JobRecord) -> Outputs:
    """One job's outputs (``job_id``, ``job_name``, ``endpoint``)."""
    return {"job_id": record.job_id, "job_name": record.job_name, "endpoint": record.endpoint}


def state_outputs(state: State | None) -> dict[str, Outputs]:
    """Every job's outputs by name, sorted (``{}`` without a state)."""
    if state is None:
        return {}
    return {name: record_outputs(record) for name, record in sorted(state.jobs.items())}


def assignments(pairs: list[tuple[str, Any]], indent: str) -> list[str]:
    """``key = value`` lines with the ``=`` aligned, Terraform style (JSON literals read as HCL)."""
    width = max((len(key) for key, _ in pairs), default=0)
    return [f"{indent}{key:<{width}} = {json.dumps(value, ensure_ascii=False)}" for key, value in pairs]


def render_outputs(values: Mapping[str, str]) -> str:
    """One job's outputs as a ``{ ... }`` block."""
    return "\n".join(["{", *assignments(list(values.items()), "  "), "}"])


def render_outputs_text(state: State | None) -> str:
    """Every job's outputs as ``rlorinfra output`` prints them (also shown after apply)."""
    return "\n".join(f"{name} = {render_outputs(values)}" for name, values in state_outputs(state).items())
