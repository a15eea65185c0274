"""``rlorinfra control-plane ...``: serve the emulator over HTTP and inject faults.

``serve`` runs until Ctrl-C (or SIGTERM) and then exits 0: stopping is the
normal way to end a server, not an interruption of work.

The fault commands act on the embedded emulator of the config given with
``-f`` (its SQLite database, opened directly) or, with ``--url``, on a served
emulator through its admin route.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import click

from rlorinfra.cli.common import file_option, get_globals, json_option, load_config
from rlorinfra.errors import NotFoundError, RlorinfraError

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
DEFAULT_KEY = "local"


@click.group("control-plane")
def control_plane_group() -> None:
    """Run the embedded Fireworks control-plane emulator and inject faults into it.

    Fault commands act on the embedded emulator of the -f config, or on a
    served one with --url. JOB_ID is the job's ID (see `rlorinfra output`).

    \b
    Examples:
      rlorinfra control-plane serve --port 8765
      rlorinfra control-plane preempt grpo-policy-trainer-1a2b3c
      rlorinfra control-plane fail JOB_ID --url http://127.0.0.1:8765
    """


# -- serve ---------------------------------------------------------------------


@control_plane_group.command("serve")
@file_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0 picks a free one; the printed URL shows it).")
@click.option("--db", "db_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="SQLite database [default: .rlorinfra/control-plane.sqlite3 beside the -f config].")
@click.option("--provision-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How long a job stays CREATING.")
@click.option("--capacity", type=click.IntRange(min=1), default=256, show_default=True,
              help="Accelerators available before jobs queue in PENDING.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Delay added to every API request.")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability of an injected 503.")
@click.option("--rate-limit-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability of an injected 429 with Retry-After.")
@click.option("--retry-after", type=click.IntRange(min=0), default=1, show_default=True,
              help="Retry-After seconds on injected 429s.")
@click.option("--api-key", default=DEFAULT_KEY, show_default=True, help="The only key the emulator accepts.")
@click.option("--account-id", default="local", show_default=True, help="The emulator's account.")
def serve_cmd(config_path: Path, host: str, port: int, db_path: Path | None, provision_seconds: float,
              capacity: int, latency_ms: float, error_rate: float, rate_limit_rate: float, retry_after: int,
              api_key: str, account_id: str) -> int:
    """Serve the control-plane emulator over HTTP until Ctrl-C.

    \b
    Example:
      rlorinfra control-plane serve --port 8765 --db cp.sqlite3
      FIREWORKS_BASE_URL=http://127.0.0.1:8765 FIREWORKS_API_KEY=local rlorinfra plan
    """
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import make_server
    from rlorinfra.controlplane.store import Store

    db_path = db_path or config_path.parent / ".rlorinfra" / "control-plane.sqlite3"
    if not api_key.strip():
        raise RlorinfraError("--api-key must not be empty", "Pass the key clients will send, e.g. --api-key local.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", account_id):
        raise RlorinfraError(f"Invalid --account-id {account_id!r}",
                             "Use letters, digits, '-', '_' or '.', e.g. --account-id local.")
    if host not in LOOPBACK_HOSTS:
        from rlorinfra.cli.common import echo_warning

        echo_warning(f"binding to {host} exposes the emulator (and its key) beyond this machine.")
    store = Store(db_path, provision_seconds=provision_seconds, capacity=capacity, account_id=account_id)
    app = make_app(store, api_key=api_key, latency_ms=latency_ms, error_rate=error_rate,
                   rate_limit_rate=rate_limit_rate, retry_after_s=retry_after)
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        raise RlorinfraError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}",
            "Another process may be using the port. Pick another one with --port, or --port 0 for a free one.",
        ) from None
    key_note = "local (the default)" if api_key == DEFAULT_KEY else "as given with --api-key"
    click.echo(f"Fireworks control-plane emulator listening on {server.url}")
    click.echo(f"  account {account_id}, API key {key_note}, database {db_path}")
    click.echo(f"  provisioning {provision_seconds:g}s, capacity {capacity} accelerators. Press Ctrl-C to stop.")
    return _serve_until_interrupted(server)


def _serve_until_interrupted(server: Any) -> int:
    """Run the server in this thread; Ctrl-C or SIGTERM stops it cleanly (exit 0)."""

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        click.echo("Stopping the emulator.")
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close_connections()
        server.server_close()
    return 0


# -- fault injection -------------------------------------------------------------

FAULT_VERBS = {
    "preempt": "Preempted",
    "fail": "Failed",
    "set-idle": "Idled",
    "mark-unhealthy": "Marked unhealthy",
    "mark-healthy": "Marked healthy",
}


def _target_options(func: Any) -> Any:
    func = click.option("--api-key", default=None,
                        help="Key of the served emulator [default: $FIREWORKS_API_KEY, else local].")(func)
    func = click.option("--url", default=None, help="A served emulator (control-plane serve) instead of -f's.")(func)
    func = click.option("--insecure", is_flag=True, help="Allow plain http:// to a non-loopback --url.")(func)
    return file_option(json_option(func))


def _embedded_fault(config_path: Path, job_id: str, fault: str, message: str | None) -> dict[str, Any]:
    """Apply a fault directly to the embedded emulator's database."""
    from rlorinfra.controlplane.errors import EmulatorError, NotFound
    from rlorinfra.controlplane.store import Store

    config = load_config(config_path)
    if not config.control_plane.is_local:
        raise RlorinfraError(
            f"{config_path} does not use the embedded emulator",
            f'Its control plane is {config.control_plane.url}, and faults can only be injected into an emulator. '
            'Use `url = "local"` in [control_plane], or pass --url URL of a `rlorinfra control-plane serve`.',
        )
    db_path = config.emulator_db_path
    if not db_path.exists():
        raise NotFoundError(
            f"No job {job_id}: the embedded emulator of {config_path} has no database yet",
            f"Expected {db_path}. Run `rlorinfra apply -f {config_path}` to create jobs first.",
        )
    emulator = config.control_plane.emulator
    store = Store(db_path, provision_seconds=emulator.provision_seconds, capacity=emulator.capacity)
    actions = {
        "preempt": lambda: store.preempt(job_id),
        "fail": lambda: store.fail(job_id, message) if message else store.fail(job_id),
        "set-idle": lambda: store.set_idle(job_id),
        "mark-unhealthy": lambda: store.mark_unhealthy(job_id, True),
        "mark-healthy": lambda: store.mark_unhealthy(job_id, False),
    }
    try:
        return actions[fault]()
    except NotFound:
        raise NotFoundError(
            f"No job {job_id} in the embedded emulator of {config_path}",
            "Check the ID with `rlorinfra output` or `rlorinfra state list`.",
        ) from None
    except EmulatorError as exc:
        raise RlorinfraError(f"Cannot {fault} job {job_id}: {exc.message}",
                             "Faults apply to live jobs; check the job's state with `rlorinfra plan`.") from None
    finally:
        store.close()


def _served_fault(url: str, api_key: str | None, insecure: bool, job_id: str, fault: str,
                  message: str | None) -> dict[str, Any]:
    """Apply a fault to a served emulator through its admin route."""
    from rlorinfra.api.client import ControlPlaneClient

    key = api_key or get_globals().env.get("FIREWORKS_API_KEY") or DEFAULT_KEY
    with ControlPlaneClient(base_url=url, api_key=key, allow_insecure=insecure) as client:
        return client.inject_fault(job_id, fault, message=message)


def _run_fault(fault: str, job_id: str, config_path: Path, url: str | None, api_key: str | None,
               insecure: bool, as_json: bool, message: str | None = None) -> int:
    if url:
        job = _served_fault(url, api_key, insecure, job_id, fault, message)
    else:
        job = _embedded_fault(config_path, job_id, fault, message)
    if as_json:
        click.echo(json.dumps(job, indent=2, sort_keys=True))
        return 0
    status = job.get("status") or {}
    detail = f" ({status.get('code')}: {status.get('message')})" if status.get("message") else ""
    click.echo(f"{FAULT_VERBS[fault]} job {job_id}: now {job.get('state')}{detail}.")
    return 0


@control_plane_group.command("preempt")
@click.argument("job_id")
@_target_options
def preempt_cmd(job_id: str, **options: Any) -> int:
    """Preempt a job's pod: it goes to FAILED with status UNAVAILABLE "pod preempted".

    The next plan reports the drift and plans a resume under the same ID.

    \b
    Example:
      rlorinfra control-plane preempt grpo-policy-trainer-1a2b3c -f rlorinfra.toml
    """
    return _run_fault("preempt", job_id, **options)


@control_plane_group.command("fail")
@click.argument("job_id")
@click.option("--message", default=None, help="Status message of the failure.")
@_target_options
def fail_cmd(job_id: str, message: str | None, **options: Any) -> int:
    """Crash a job's trainer: it goes to FAILED with status INTERNAL.

    \b
    Example:
      rlorinfra control-plane fail grpo-policy-trainer-1a2b3c --message "CUDA error"
    """
    return _run_fault("fail", job_id, message=message, **options)


@control_plane_group.command("set-idle")
@click.argument("job_id")
@_target_options
def set_idle_cmd(job_id: str, **options: Any) -> int:
    """Put a running job in JOB_STATE_IDLE (up, holding its GPUs, no active training).

    \b
    Example:
      rlorinfra control-plane set-idle grpo-policy-trainer-1a2b3c
    """
    return _run_fault("set-idle", job_id, **options)


@control_plane_group.command("mark-unhealthy")
@click.argument("job_id")
@_target_options
def mark_unhealthy_cmd(job_id: str, **options: Any) -> int:
    """Make a job's trainer health check answer 503 (until a resume or mark-healthy).

    \b
    Example:
      rlorinfra control-plane mark-unhealthy grpo-policy-trainer-1a2b3c
    """
    return _run_fault("mark-unhealthy", job_id, **options)


@control_plane_group.command("mark-healthy")
@click.argument("job_id")
@_target_options
def mark_healthy_cmd(job_id: str, **options: Any) -> int:
    """Undo mark-unhealthy: the job's health check answers 200 again.

    \b
    Example:
      rlorinfra control-plane mark-healthy grpo-policy-trainer-1a2b3c
    """
    return _run_fault("mark-healthy", job_id, **options)
