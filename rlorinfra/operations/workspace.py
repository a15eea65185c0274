"""One command's workspace: its config, state backend, lock and (lazily) control-plane client.

The workspace chooses the control plane: the embedded emulator (an in-process
WSGI app with its database beside the config) or a real one over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

from rlorinfra.api.client import ControlPlaneClient
from rlorinfra.api.connect import for_http, for_wsgi_app
from rlorinfra.config.model import Config, ControlPlaneSettings, StateBackendKind, StateSettings
from rlorinfra.errors import RlorinfraError, StateError
from rlorinfra.operations.ui import Operation
from rlorinfra.state.backend import FencedState, StateBackend
from rlorinfra.state.backends.local import LocalBackend

STATE_TIMEOUT_ENV = "RLORINFRA_STATE_TIMEOUT"
DEFAULT_STATE_TIMEOUT = 30.0  # seconds; both team backends' own default

Trace = Callable[[str], None]


@dataclass
class Workspace:
    """One config, its state backend and (lazily) its control-plane client.

    Built once per command; :meth:`close` closes what it opened. ``backend`` is
    the config's (``[state]``) unless one is given (tests pass an in-memory one).
    """

    config: Config
    api_key: str | None
    insecure: bool = False
    trace: Trace | None = None
    # Told once, the first time the client retries (the CLI prints it on stderr).
    notify: Trace | None = None
    _client: ControlPlaneClient | None = field(default=None, repr=False)
    backend: StateBackend | None = None
    _store: FencedState | None = field(default=None, repr=False)
    # The environment the CLI read (connection strings come from here, by the name [state] gives).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def state_backend(self) -> StateBackend:
        """Where the state lives, built once from ``[state]`` unless another was given."""
        if self.backend is None:
            self.backend = open_backend(self.config.state_settings, self.environ, config_path=self.config.path)
        return self.backend

    @property
    def is_local_state(self) -> bool:
        """True when the state is the config's local file (messages then name the file)."""
        return isinstance(self.state_backend(), LocalBackend)

    def state_where(self) -> str:
        """Where the state lives, for messages: ``local file PATH``, ``PostgreSQL ...`` (never a secret)."""
        return self.state_backend().describe()

    @property
    def store(self) -> FencedState:
        """This command's reads and writes of the state; each write is fenced by the last version seen."""
        if self._store is None:
            self._store = FencedState(self.state_backend())
        return self._store

    def lock(self, operation: Operation, timeout: float) -> AbstractContextManager[object]:
        """The state lock for ``operation``, waiting up to ``timeout`` seconds for it."""
        return self.state_backend().lock(operation.value, timeout)

    def client(self, account_hint: str | None = None) -> ControlPlaneClient:
        """The control-plane client, opened on first use.

        ``account_hint`` is used, when the config names no account and this call
        opens the client, instead of asking the control plane for one (--no-refresh
        passes the state's account so that planning sends no request).
        """
        if self._client is None:
            self._require_key()
            settings = self.config.control_plane
            if account_hint and not settings.account_id:
                settings = replace(settings, account_id=account_hint)
            self._client = open_client(
                settings,
                api_key=self.api_key,
                emulator_db=self.config.emulator_db_path,
                insecure=self.insecure,
                trace=self.trace,
                notify=self.notify,
            )
        return self._client

    def _require_key(self) -> None:
        settings = self.config.control_plane
        if not settings.is_local and not self.api_key:
            raise RlorinfraError(
                f"No API key: the environment variable {settings.api_key_env} is not set",
                f"rlorinfra reads the Fireworks API key only from the environment. Run "
                f"`export {settings.api_key_env}=...` (in CI, from a secret) and try again. "
                f"The key is never written to any file.",
            )

    def control_plane(self, account_hint: str | None = None) -> dict[str, str]:
        """``{"url", "account_id"[, "instance"]}`` of the control plane in use (resolves the account).

        ``instance`` is the emulator instance the client has heard from (``""``
        for a control plane that names none, the real API); absent until a
        response has been seen.
        """
        client = self.client(account_hint)
        url = "local" if self.config.control_plane.is_local else client.base_url
        identity = {"url": url, "account_id": client.account_id}
        instance = client.emulator_instance
        if instance is not None:
            identity["instance"] = instance
        return identity

    def close(self) -> None:
        """Close the client and the state backend, if they were opened."""
        if self._client is not None:
            self._client.close()
        if self.backend is not None:
            self.backend.close()


def open_backend(
    settings: StateSettings, environ: Mapping[str, str], *, config_path: Path | None = None
) -> StateBackend:
    """The state backend ``settings`` describe; the driver modules are imported only when used.

    The PostgreSQL connection string is read from ``environ`` under the name
    ``conn_str_env`` gives; a missing one is an error that names the variable.
    """
    if settings.backend is StateBackendKind.POSTGRES:
        return _postgres_backend(settings, environ, config_path)
    if settings.backend is StateBackendKind.S3:
        # (written in parallel with this module: the ignore goes once it exists on the same branch)
        from rlorinfra.state.backends.s3 import S3Backend

        s3: StateBackend = S3Backend(
            bucket=settings.bucket,
            key=settings.key,
            region=settings.region,
            endpoint_url=settings.endpoint_url,
            timeout=state_timeout(environ),
            config_path=config_path,
        )
        return s3
    return LocalBackend(settings.path, config_path=config_path)


def _postgres_backend(settings: StateSettings, environ: Mapping[str, str], config_path: Path | None) -> StateBackend:
    conn_str = environ.get(settings.conn_str_env, "")
    if not conn_str.strip():
        raise StateError(
            f"No PostgreSQL connection string: the environment variable {settings.conn_str_env} is not set",
            f'[state] backend = "postgres" reads the libpq connection string only from the environment '
            f"variable that conn_str_env names. Run `export {settings.conn_str_env}=postgres://USER@HOST/DB` "
            "(in CI, from a secret) and try again. It is never written to any file.",
        )
    from rlorinfra.state.backends.postgres import PostgresBackend

    postgres: StateBackend = PostgresBackend(
        conn_str,
        schema=settings.schema,
        name=settings.name,
        config_path=config_path,
        timeout=state_timeout(environ),
    )
    return postgres


def state_timeout(environ: Mapping[str, str]) -> float:
    """Seconds a team backend's server may take to answer (``RLORINFRA_STATE_TIMEOUT``, default 30).

    A server that went silent mid-run (partition, hung host) then fails the run
    with an error instead of hanging it forever.
    """
    raw = environ.get(STATE_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_STATE_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not (0 < seconds <= 3600):  # also refuses nan and inf
        raise StateError(
            f"{STATE_TIMEOUT_ENV} is not a valid timeout",
            f"{STATE_TIMEOUT_ENV}={raw!r}: it must be a number of seconds above 0 and at most 3600 "
            f"(unset, it is {DEFAULT_STATE_TIMEOUT:g}). Fix or unset it and run the command again.",
        )
    return seconds


def open_client(
    settings: ControlPlaneSettings,
    *,
    api_key: str | None,
    emulator_db: Path,
    insecure: bool = False,
    trace: Trace | None = None,
    notify: Trace | None = None,
) -> ControlPlaneClient:
    """A client for ``settings``: the embedded emulator when the URL is ``local``, else HTTP.

    ``trace`` gets every attempt (``--debug``); ``notify`` the first retry. The
    retry budget is ``[control_plane] retry_budget``; errors about the key name
    the variable ``api_key_env`` names.
    """
    if settings.is_local:
        # The embedded emulator only knows its own key: whatever the environment
        # holds is meant for a real control plane and must not be sent here.
        return _embedded_client(settings, emulator_db=emulator_db, trace=trace, notify=notify)
    return for_http(
        settings.url,
        api_key or "",
        account_id=settings.account_id,
        gateway_url=settings.trainer_gateway_url,
        allow_insecure=insecure or settings.allow_insecure,
        retry_budget_s=settings.retry_budget_s,
        trace=trace,
        notify=notify,
        key_source=settings.api_key_env,
    )


def _embedded_client(
    settings: ControlPlaneSettings, *, emulator_db: Path, trace: Trace | None, notify: Trace | None
) -> ControlPlaneClient:
    from rlorinfra.controlplane import embedded_app

    _make_emulator_folder(emulator_db.parent)
    app = embedded_app(
        emulator_db,
        provision_seconds=settings.emulator.provision_seconds,
        capacity=settings.emulator.capacity,
    )
    return for_wsgi_app(
        app,
        account_id=settings.account_id,
        gateway_url=settings.trainer_gateway_url,
        retry_budget_s=settings.retry_budget_s,
        trace=trace,
        notify=notify,
    )


def _make_emulator_folder(folder: Path) -> None:
    """``.rlorinfra/`` beside the config, private (0700) whatever the umask."""
    from rlorinfra.state.store import make_private_folder

    try:
        make_private_folder(folder)
    except OSError as exc:
        raise RlorinfraError(
            f"Cannot create the embedded emulator's folder {folder}",
            f"{exc.strerror or exc}. The embedded control plane keeps its database in .rlorinfra/ "
            "beside the config file; make that folder writable.",
        ) from None
