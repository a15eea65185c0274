"""A shared backend's messages name its own state and config, never a local file that is not there."""

from __future__ import annotations

import pytest

from rlorinfra.config.model import StateBackendKind, StateSettings
from rlorinfra.errors import StateLockedError
from rlorinfra.operations.workspace import open_backend
from rlorinfra.state.backend import StateBackend
from tests.state.pg_server import unique_name
from tests.state.s3_server import REGION


@pytest.fixture(params=["postgres", "s3"])
def two_runs(request, tmp_path) -> tuple[StateBackend, StateBackend]:
    """Two backends over one shared state, as two runs of the config ``team.toml`` open them."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        settings = StateSettings(backend=StateBackendKind.POSTGRES, name=unique_name("msg").replace("-", "_"))
        environ = {"PG_CONN_STR": server.conninfo()}
    else:
        moto = request.getfixturevalue("moto_s3")
        bucket = moto.new_bucket()
        settings = StateSettings(
            backend=StateBackendKind.S3, bucket=bucket, key="team.json", region=REGION, endpoint_url=moto.endpoint_url
        )
        environ = {}
    runs = tuple(open_backend(settings, environ, config_path=tmp_path / "team.toml") for _ in range(2))
    yield runs
    for backend in runs:
        backend.close()


def test_the_lock_error_gives_the_force_unlock_command_with_the_config(two_runs, tmp_path):
    first, second = two_runs
    with first.lock("apply", 0) as held:
        with pytest.raises(StateLockedError) as err:
            with second.lock("plan", 0):
                pass
    detail = err.value.detail
    assert f"`rlorinfra force-unlock {held.id} -f {tmp_path / 'team.toml'}`" in detail
    assert first.describe() in detail and "state file" not in detail
