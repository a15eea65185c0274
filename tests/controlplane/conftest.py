"""Fixtures for the emulator tests: a fake clock, a store, in-process and served clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.server import serve_in_thread
from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import KEY, SUPERUSER, SUPERUSER_KEY, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cp.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Store:
    """A store on the fake clock: provisioning 10 s, settling 1 s, 64 accelerators."""
    return Store(db_path, provision_seconds=10, capacity=64, clock=clock, settle_seconds=1)


@pytest.fixture
def app(store: Store) -> Any:
    """The faithful app: customer key ``local``, superuser key ``root-key``."""
    return make_app(store, superuser_keys=(SUPERUSER_KEY,))


@pytest.fixture
def client(app: Any) -> Iterator[httpx.Client]:
    """In-process client (WSGITransport) with the customer key."""
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://emulator", headers=KEY) as c:
        yield c


@pytest.fixture
def root_client(app: Any) -> Iterator[httpx.Client]:
    """In-process client of the same app with the superuser key."""
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://emulator", headers=SUPERUSER) as c:
        yield c


@pytest.fixture
def real_store(db_path: Path) -> Store:
    """A store on the real clock with tiny delays (for served tests)."""
    return Store(db_path, provision_seconds=0.05, capacity=256, settle_seconds=0.05)


@pytest.fixture
def served(real_store: Store) -> Iterator[Any]:
    with serve_in_thread(make_app(real_store)) as emulator:
        yield emulator


@pytest.fixture
def served_client(served: Any) -> Iterator[httpx.Client]:
    with httpx.Client(verify=False, base_url=served.url, headers=KEY, timeout=30) as c:
        yield c
