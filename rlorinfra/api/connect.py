"""Build the control-plane client for a config: the embedded emulator or a real URL.

Lives in ``api/`` because it is the one place that chooses an httpx transport.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rlorinfra.api.client import ControlPlaneClient, RetryPolicy
from rlorinfra.errors import ApiError
from rlorinfra.model.control_plane import ControlPlaneSettings

# Base URL of the in-process emulator. Requests never leave the process (they go
# through httpx.WSGITransport); the host only shows up in recorded endpoints.
EMBEDDED_BASE_URL = "http://rlorinfra-emulator.local"
EMBEDDED_API_KEY = "local"


def open_client(
    settings: ControlPlaneSettings,
    *,
    api_key: str | None,
    emulator_db: Path,
    insecure: bool = False,
    trace: Callable[[str], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> ControlPlaneClient:
    """A client for ``settings``; ``api_key`` comes from the environment (CLI's job).

    ``trace`` gets every attempt (``--debug``); ``notify`` the first retry. The
    retry budget is ``[control_plane] retry_budget``; errors about the key name
    the variable ``api_key_env`` names.
    """
    if settings.is_local:
        # The embedded emulator only knows its own key: whatever the environment
        # holds is meant for a real control plane and must not be sent here.
        return _embedded_client(settings, emulator_db=emulator_db, trace=trace, notify=notify)
    return ControlPlaneClient(
        settings.url,
        api_key or "",
        account_id=settings.account_id,
        gateway_url=settings.trainer_gateway_url,
        allow_insecure=insecure or settings.allow_insecure,
        retry=RetryPolicy(budget_s=settings.retry_budget_s),
        trace=trace,
        notify=notify,
        key_source=settings.api_key_env,
    )


def _embedded_client(
    settings: ControlPlaneSettings,
    *,
    emulator_db: Path,
    trace: Callable[[str], None] | None,
    notify: Callable[[str], None] | None,
) -> ControlPlaneClient:
    import httpx

    from rlorinfra.controlplane import embedded_app

    try:
        emulator_db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApiError(
            f"Cannot create the embedded emulator's folder {emulator_db.parent}",
            f"{exc.strerror or exc}. The embedded control plane keeps its database in .rlorinfra/ "
            "beside the config file; make that folder writable.",
        ) from None
    app = embedded_app(
        emulator_db,
        provision_seconds=settings.emulator.provision_seconds,
        capacity=settings.emulator.capacity,
    )
    return ControlPlaneClient(
        EMBEDDED_BASE_URL,
        EMBEDDED_API_KEY,
        account_id=settings.account_id,
        gateway_url=settings.trainer_gateway_url,
        transport=httpx.WSGITransport(app=app),
        retry=RetryPolicy(budget_s=settings.retry_budget_s),
        trace=trace,
        notify=notify,
    )
