"""The control-plane calls apply makes, as a protocol (DESIGN.md §10: apply never imports ``api``).

``rlorinfra.api.client.ControlPlaneClient`` satisfies it, and so do the test
fakes (``tests/apply/fakes.py``); mypy checks both.
"""

from __future__ import annotations

from typing import Any, Protocol

from rlorinfra.model.jobs import LiveJob


class ControlPlane(Protocol):
    """Exactly the client methods the executor uses."""

    def create_job(self, job_id: str, display_name: str, spec: dict[str, Any]) -> LiveJob:
        """POST with a client-chosen ID; a 409 raises ``AlreadyExistsError``."""
        ...

    def get_job(self, job_id: str) -> LiveJob | None:
        """The job, or None when it does not exist (404)."""
        ...

    def list_jobs(self) -> list[LiveJob]:
        """Every job on every page (tombstones hidden)."""
        ...

    def delete_job(self, job_id: str) -> bool:
        """DELETE; False when the job was already gone."""
        ...

    def resume_job(self, job_id: str) -> LiveJob:
        """POST ``:resume`` (not idempotent)."""
        ...

    def cancel_job(self, job_id: str) -> None:
        """POST ``:cancel`` (not idempotent)."""
        ...

    def healthy(self, job_id: str) -> bool:
        """True only when the trainer health check answers 200."""
        ...

    def endpoint(self, job_id: str) -> str:
        """The trainer base URL of a job."""
        ...

    def job_name(self, job_id: str) -> str:
        """``accounts/{account}/rlorTrainerJobs/{job_id}``."""
        ...
