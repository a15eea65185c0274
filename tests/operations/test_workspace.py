"""The workspace chooses the control plane; api/connect.py only builds clients."""

from __future__ import annotations

import ast
from pathlib import Path

from rlorinfra.api.connect import EMBEDDED_BASE_URL
from rlorinfra.config.load import load_config
from rlorinfra.operations import Workspace
from tests.cli.conftest import write_quickstart

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


def test_the_store_is_opened_once(tmp_path):
    ws = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None)
    assert ws.store is ws.store and ws.store.path == ws.config.state_path
