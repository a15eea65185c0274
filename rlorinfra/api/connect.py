"""Constructors of the control-plane client: over HTTP, or through an in-process WSGI app.

Lives in ``api/`` because it is the one place that chooses an httpx transport.
Which control plane to use is the workspace's choice (``operations/workspace.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlorinfra.api.client import DEFAULT_KEY_SOURCE, ControlPlaneClient, RetryPolicy

# Base URL of an in-process app. Requests never leave the process (they go
# through httpx.WSGITransport); the host only shows up in recorded endpoints.
EMBEDDED_BASE_URL = "http://rlorinfra-emulator.local"
EMBEDDED_API_KEY = "local"

Trace = Callable[[str], None]


def for_http(
    url: str,
    api_key: str,
    *,
    account_id: str | None = None,
    gateway_url: str | None = None,
    allow_insecure: bool = False,
    retry_budget_s: float = 120.0,
    trace: Trace | None = None,
    notify: Trace | None = None,
    key_source: str = DEFAULT_KEY_SOURCE,
) -> ControlPlaneClient:
    """A client of the control plane at ``url``.

    ``trace`` gets every attempt (``--debug``); ``notify`` the first retry;
    ``key_source`` names where the key came from in errors about it.
    """
    return ControlPlaneClient(
        url,
        api_key,
        account_id=account_id,
        gateway_url=gateway_url,
        allow_insecure=allow_insecure,
        retry=RetryPolicy(budget_s=retry_budget_s),
        trace=trace,
        notify=notify,
        key_source=key_source,
    )


def for_wsgi_app(
    app: Callable[..., Any],
    *,
    api_key: str = EMBEDDED_API_KEY,
    account_id: str | None = None,
    gateway_url: str | None = None,
    retry_budget_s: float = 120.0,
    trace: Trace | None = None,
    notify: Trace | None = None,
) -> ControlPlaneClient:
    """A client of the WSGI ``app`` served in this process (the embedded emulator)."""
    import httpx

    return ControlPlaneClient(
        EMBEDDED_BASE_URL,
        api_key,
        account_id=account_id,
        gateway_url=gateway_url,
        transport=httpx.WSGITransport(app=app),
        retry=RetryPolicy(budget_s=retry_budget_s),
        trace=trace,
        notify=notify,
    )
