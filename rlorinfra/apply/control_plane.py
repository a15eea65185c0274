"""The control-plane calls apply makes, as a protocol (DESIGN.md §10: apply never imports ``api``).

``rlorinfra.api.client.ControlPlaneClient`` satisfies it, and so do the test
fakes (``tests/apply/fakes.py``); mypy checks both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from rlorinfra.model.deployments import LiveDeployment
from rlorinfra.model.jobs import LiveJob


class ControlPlane(Protocol):
    """Exactly the client methods the executor uses."""

    @property
    def account_id(self) -> str:
        """The account every resource lives in (a trainer link names it)."""
        ...

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

    def deployment_name(self, deployment_id: str) -> str:
        """``accounts/{account}/deployments/{deployment_id}``."""
        ...

    def create_deployment(self, deployment_id: str, spec: dict[str, Any]) -> LiveDeployment:
        """POST with the config key as ID; a 409 raises ``AlreadyExistsError``."""
        ...

    def get_deployment(self, deployment_id: str) -> LiveDeployment | None:
        """The deployment, or None when it does not exist (404)."""
        ...

    def iter_deployment_pages(
        self, *, filter: str | None = None, show_deleted: bool = False, page_size: int = 200
    ) -> Iterator[list[LiveDeployment]]:
        """LIST, one page at a time (DELETED rows only with ``show_deleted``)."""
        ...

    def update_deployment(
        self, deployment_id: str, fields: dict[str, Any], update_mask: list[str] | tuple[str, ...] | None
    ) -> LiveDeployment:
        """PATCH (never blindly retried: a lost answer raises ``OutcomeUnknownError``)."""
        ...

    def delete_deployment(self, deployment_id: str) -> bool:
        """DELETE; False when the deployment was already gone."""
        ...
