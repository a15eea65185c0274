"""The embedded Fireworks RLOR control-plane emulator (DESIGN.md §6).

A WSGI application (``app.make_app``) over a SQLite store (``store.Store``)
whose lifecycle is driven by time, so that separate CLI runs, threads and
server processes share one consistent world. ``server.serve_in_thread`` serves
it over HTTP; ``embedded_app`` is what the CLI uses in-process through
``httpx.WSGITransport`` when ``control_plane.url = "local"``.

This package imports nothing from ``rlorinfra.api``, ``rlorinfra.plan`` or
``rlorinfra.apply``: it is an independent implementation of PROTOCOL.md, so it
cannot quietly agree with the client's mistakes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlorinfra.controlplane.app import EmulatorApp

LOCAL_API_KEY = "local"
LOCAL_ACCOUNT_ID = "local"


def embedded_app(db_path: str | Path, *, provision_seconds: float = 2.0, capacity: int = 256) -> EmulatorApp:
    """The in-process emulator over ``db_path``: customer key ``local`` (no superuser key), account ``local``.

    Faithful by default, like a served one: superuser-only parameters are
    refused and responses carry only the fields the real API returns.
    """
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.store import Store

    store = Store(db_path, provision_seconds=provision_seconds, capacity=capacity, account_id=LOCAL_ACCOUNT_ID)
    return make_app(store, api_key=LOCAL_API_KEY)


__all__ = ["embedded_app", "LOCAL_API_KEY", "LOCAL_ACCOUNT_ID"]
