"""The workspace chooses the control plane; api/connect.py only builds clients."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rlorinfra.api.connect import EMBEDDED_BASE_URL
from rlorinfra.config.load import load_config
from rlorinfra.errors import StateChangedError
from rlorinfra.operations import Operation, Workspace
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.backends.memory import InMemoryBackend
from rlorinfra.state.model import JobRecord
from tests.cli.conftest import write_quickstart

RECORD = JobRecord(job_id="a-1", job_name="accounts/x/rlorTrainerJobs/a-1", endpoint="http://e", spec={}, phase="ready")
CONNECT = Path(__file__).resolve().parents[2] / "rlorinfra" / "api" / "connect.py"


def test_connect_imports_neither_the_emulator_nor_the_config():
    tree = ast.parse(CONNECT.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.startswith(("rlorinfra.controlplane", "rlorinfra.config")) for m in modules), modules


def test_a_local_url_opens_the_embedded_emulator_once(tmp_path):
    ws = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key="a-real-key-never-sent")
    try:
        client = ws.client()
        assert client.base_url == EMBEDDED_BASE_URL and ws.client() is client
        assert ws.control_plane()["url"] == "local" and (tmp_path / ".rlorinfra").is_dir()
    finally:
        ws.close()


def test_the_backend_and_store_are_opened_once(tmp_path):
    ws = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None)
    assert ws.store is ws.store and ws.state_backend() is ws.state_backend()
    backend = ws.state_backend()
    assert isinstance(backend, LocalBackend) and backend.path == ws.config.state_path.resolve()


def test_a_given_backend_is_used_for_state_and_lock(tmp_path):
    memory = InMemoryBackend()
    ws = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None, backend=memory)
    with ws.lock(Operation.STATE_RM, 0):
        holder = memory.lock_info()
        assert holder is not None and holder.operation == "state rm"
    ws.store.write(ws.store.read().with_job("a", RECORD))
    assert memory.read()[0].jobs["a"] == RECORD
    assert not ws.config.state_path.exists()  # nothing went to the local file


def test_a_write_after_someone_else_wrote_is_refused(tmp_path):
    memory = InMemoryBackend()
    ws = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None, backend=memory)
    state = ws.store.read()
    memory.write(state.with_job("other", RECORD), None)  # another run got in first
    with pytest.raises(StateChangedError):
        ws.store.write(state.with_job("a", RECORD))
    assert set(memory.read()[0].jobs) == {"other"}
