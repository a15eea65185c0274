"""The outputs table, as ``output``, ``show`` and apply list them.

A job's outputs are its ID, job name and trainer endpoint, keyed by its display
name; a deployment's are its address, ID, name, observed state, hot-load bucket
URL and trainer link, keyed by its address ``deployment.ID`` (a bare key stays a
job's, as it always was, so scripts reading jobs by name keep working).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rlorinfra.model.address import Address, Kind
from rlorinfra.state.model import DeploymentRecord, JobRecord, Record, State

Outputs = dict[str, str]


def record_outputs(record: JobRecord) -> Outputs:
    """One job's outputs (``job_id``, ``job_name``, ``endpoint``)."""
    return {"job_id": record.job_id, "job_name": record.job_name, "endpoint": record.endpoint}


def deployment_outputs(record: DeploymentRecord) -> Outputs:
    """One deployment's outputs; a value state does not know yet is ``""`` (never absent, for scripts)."""
    return {
        "address": str(Address(Kind.DEPLOYMENT, record.deployment_id)),
        "deployment_id": record.deployment_id,
        "deployment_name": record.deployment_name,
        "state": record.observed_state or "",
        "hot_load_bucket_url": record.hot_load_bucket_url or "",
        "hot_load_trainer_job": record.hot_load_trainer_job or "",
    }


def resource_outputs(record: Record) -> Outputs:
    """The outputs of any record, by its kind."""
    return record_outputs(record) if isinstance(record, JobRecord) else deployment_outputs(record)


def output_key(address: Address) -> str:
    """The key of a resource in the outputs table: a job's bare name, any other kind's address."""
    return address.name if address.kind is Kind.JOB else str(address)


def state_outputs(state: State | None) -> dict[str, Outputs]:
    """Every resource's outputs: the jobs by name, sorted, then the deployments by address (``{}`` without a state)."""
    if state is None:
        return {}
    jobs = {name: record_outputs(record) for name, record in sorted(state.jobs.items())}
    deployments = {
        output_key(Address(Kind.DEPLOYMENT, name)): deployment_outputs(record)
        for name, record in sorted(state.deployments.items())
    }
    return {**jobs, **deployments}


def assignments(pairs: list[tuple[str, Any]], indent: str) -> list[str]:
    """``key = value`` lines with the ``=`` aligned, Terraform style (JSON literals read as HCL)."""
    width = max((len(key) for key, _ in pairs), default=0)
    return [f"{indent}{key:<{width}} = {json.dumps(value, ensure_ascii=False)}" for key, value in pairs]


def render_outputs(values: Mapping[str, str]) -> str:
    """One resource's outputs as a ``{ ... }`` block."""
    return "\n".join(["{", *assignments(list(values.items()), "  "), "}"])


def render_outputs_text(state: State | None) -> str:
    """Every resource's outputs as ``rlorinfra output`` prints them (also shown after apply)."""
    return "\n".join(f"{name} = {render_outputs(values)}" for name, values in state_outputs(state).items())
