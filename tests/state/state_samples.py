"""Sample states for the state tests."""

from __future__ import annotations

from rlorinfra.state.model import PHASE_CREATING, PHASE_READY, JobRecord, State


def make_record(job_id: str, *, phase: str = PHASE_READY, **spec) -> JobRecord:
    """A plausible record for job ``job_id`` on account ``acct``."""
    return JobRecord(
        job_id=job_id,
        job_name=f"accounts/acct/rlorTrainerJobs/{job_id}",
        endpoint=f"https://gw.example/training/v1/rlorTrainerJobs/acct/{job_id}",
        spec={"base_model": "accounts/fireworks/models/qwen3-8b", **spec},
        phase=phase,
        observed_state="JOB_STATE_RUNNING" if phase == PHASE_READY else None,
        training_shape_version="accounts/fireworks/trainingShapes/ts-qwen3-8b-policy/versions/v3",
        created_at="2025-01-02T03:04:05Z",
        updated_at="2025-01-02T03:14:05Z",
    )


def sample_state() -> State:
    """Two jobs, one still being created, on a recorded control plane."""
    state = State(control_plane={"url": "local", "account_id": "acct"})
    state = state.with_job("trainer-b", make_record("job-b", lora_rank=16))
    return state.with_job("trainer-a", make_record("job-a", phase=PHASE_CREATING))
