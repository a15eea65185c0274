"""End-to-end fixtures: the emulator served on a real loopback socket, and a
workspace folder with a config pointing at it.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

API_KEY = "e2e-secret-key-0123456789"
KEY_ENV = "RLOR_E2E_KEY"


@dataclass
class World:
    """A served emulator plus a config folder that points at it."""

    url: str
    store: object
    folder: Path
    server: object

    @property
    def config(self) -> Path:
        return self.folder / "rlorinfra.toml"

    @property
    def state_path(self) -> Path:
        return self.folder / "rlorinfra.state.json"

    def write_config(self, jobs_toml: str, extra: str = "") -> Path:
        """Write rlorinfra.toml with the given [jobs...] blocks."""
        header = f'[control_plane]\nurl = "{self.url}"\napi_key_env = "{KEY_ENV}"\n{extra}\n'
        self.config.write_text(header + textwrap.dedent(jobs_toml))
        return self.config

    def cli(self, *args: str, input: str | None = None):
        """Run rlorinfra with this world's config and key."""
        return run_cli(
            ["--no-color", *args[:1], "-f", str(self.config), *args[1:]],
            input=input,
            env={KEY_ENV: API_KEY, "NO_COLOR": "1"},
        )

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def live_jobs(self) -> list[dict]:
        """Every non-tombstoned job on the emulator (via the store, not our client)."""
        import httpx

        jobs, token = [], ""
        with httpx.Client(base_url=self.url, headers={"X-Api-Key": API_KEY}) as http:
            while True:
                params = {"pageSize": 200, **({"pageToken": token} if token else {})}
                body = http.get("/v1/accounts/local/rlorTrainerJobs", params=params).json()
                jobs += body.get("rlorTrainerJobs", [])
                token = body.get("nextPageToken") or ""
                if not token:
                    return jobs


def serve_world(tmp_path: Path, *, provision_seconds: float = 0.2, capacity: int = 10_000, **app_kw) -> World:
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import serve_in_thread
    from rlorinfra.controlplane.store import Store

    store = Store(tmp_path / "cp.sqlite3", provision_seconds=provision_seconds, capacity=capacity)
    server = serve_in_thread(make_app(store, api_key=API_KEY, **app_kw))
    folder = tmp_path / "ws"
    folder.mkdir()
    return World(url=server.url, store=store, folder=folder, server=server)


@pytest.fixture
def world(tmp_path):
    """A served emulator (0.2 s provisioning) and an empty workspace folder."""
    w = serve_world(tmp_path)
    yield w
    w.server.stop()


JOB = """
[jobs.{name}]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"
{extra}
"""


def jobs_toml(*names: str, extra: dict[str, str] | None = None) -> str:
    """[jobs.NAME] blocks on the policy shape; ``extra`` adds lines per name."""
    extra = extra or {}
    return "".join(JOB.format(name=n, extra=extra.get(n, "")) for n in names)
