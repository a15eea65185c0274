"""``rlorinfra control-plane ...``: serve the emulator over HTTP and inject faults.

``serve`` runs until Ctrl-C (or SIGTERM) and then exits 0: stopping is the
normal way to end a server, not an interruption of work. Its key is a customer
key, as a Fireworks customer holds; ``--superuser-key`` adds keys that may send
the superuser-only parameters (the manual path's ``skipValidations``).

The fault commands act on the embedded emulator of the config given with
``-f`` (its SQLite database, opened directly), on a served emulator through its
admin route with ``--url``, or on the served emulator the ``-f`` config points
at (its ``url``, key from the variable its ``api_key_env`` names).
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rlorinfra.cli.common import FiniteFloat, file_option, get_globals, json_option, load_config
from rlorinfra.errors import NotFoundError, RlorinfraError
from rlorinfra.model.urls import is_loopback

DEFAULT_KEY = "local"
DEFAULT_PROVISION_SECONDS = 2.0
DEFAULT_CAPACITY = 256
DROP_OPERATIONS = ("create", "resume", "cancel", "delete")


@click.group("control-plane")
def control_plane_group() -> None:
    """Run the embedded Fireworks control-plane emulator and inject faults into it.

    Fault commands act on the embedded emulator of the -f config, on a served
    one with --url, or on the served one the -f config's url names. JOB_ID is
    the job's ID (see `rlorinfra output`).

    \b
    Examples:
      rlorinfra control-plane serve --port 8765
      rlorinfra control-plane preempt grpo-policy-trainer-1a2b3c
      rlorinfra control-plane fail JOB_ID --url http://127.0.0.1:8765
      rlorinfra control-plane drop-response create --count 1
    """


# -- serve ---------------------------------------------------------------------


@control_plane_group.command("serve")
@file_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0 picks a free one; the printed URL shows it).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="SQLite database [default: .rlorinfra/control-plane.sqlite3 beside the -f config].",
)
@click.option(
    "--provision-seconds",
    type=FiniteFloat(min=0),
    default=None,
    help="How long a job stays CREATING [default: the -f config's, else 2].",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=None,
    help="Accelerators available before jobs queue in PENDING [default: the -f config's, else 256].",
)
@click.option(
    "--latency-ms", type=FiniteFloat(min=0), default=0.0, show_default=True, help="Delay added to every API request."
)
@click.option(
    "--error-rate",
    type=FiniteFloat(min=0, max=1),
    default=0.0,
    show_default=True,
    help="Probability of an injected 503.",
)
@click.option(
    "--rate-limit-rate",
    type=FiniteFloat(min=0, max=1),
    default=0.0,
    show_default=True,
    help="Probability of an injected 429 with Retry-After.",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=0, max=2**31 - 1),
    default=1,
    show_default=True,
    help="Retry-After seconds on injected 429s.",
)
@click.option(
    "--api-key",
    default=DEFAULT_KEY,
    show_default=True,
    help="The customer key: refused superuser-only parameters, as on the real API.",
)
@click.option(
    "--superuser-key",
    "superuser_keys",
    multiple=True,
    metavar="KEY",
    help="A key that may also send superuser-only parameters (skipValidations, extraArgs, ...). Repeatable.",
)
@click.option(
    "--echo-create-fields",
    is_flag=True,
    help="Answer every field sent on create (plus trainingShape, updateTime), not only the returned ones.",
)
@click.option("--account-id", default="local", show_default=True, help="The emulator's account.")
def serve_cmd(
    config_path: Path,
    host: str,
    port: int,
    db_path: Path | None,
    provision_seconds: float | None,
    capacity: int | None,
    latency_ms: float,
    error_rate: float,
    rate_limit_rate: float,
    retry_after: int,
    api_key: str,
    superuser_keys: tuple[str, ...],
    echo_create_fields: bool,
    account_id: str,
) -> int:
    """Serve the control-plane emulator over HTTP until Ctrl-C.

    With -f CONFIG, its [control_plane.emulator] settings are the defaults of
    --provision-seconds and --capacity.

    \b
    Example:
      rlorinfra control-plane serve --port 8765 --db cp.sqlite3
      FIREWORKS_BASE_URL=http://127.0.0.1:8765 FIREWORKS_API_KEY=local rlorinfra plan
    """
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import make_server
    from rlorinfra.controlplane.store import Store

    db_path = db_path or config_path.parent / ".rlorinfra" / "control-plane.sqlite3"
    _check_serve_options(api_key, superuser_keys, account_id, host)
    provision_seconds, capacity = _emulator_settings(config_path, provision_seconds, capacity)
    store = Store(db_path, provision_seconds=provision_seconds, capacity=capacity, account_id=account_id)
    app = make_app(
        store,
        api_key=api_key,
        superuser_keys=superuser_keys,
        echo_create_fields=echo_create_fields,
        latency_ms=latency_ms,
        error_rate=error_rate,
        rate_limit_rate=rate_limit_rate,
        retry_after_s=retry_after,
    )
    try:
        server = make_server(app, host, port)
    except OSError as exc:
        raise RlorinfraError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}",
            "Another process may be using the port. Pick another one with --port, or --port 0 for a free one.",
        ) from None
    key_note = "local (the default)" if api_key == DEFAULT_KEY else "as given with --api-key"
    supers = f"{len(superuser_keys)} superuser key(s)" if superuser_keys else "no superuser key"
    view = "echoing create fields" if echo_create_fields else "returned fields only"
    banner = (
        f"Fireworks control-plane emulator listening on {server.url}\n"
        f"  account {account_id}, customer API key {key_note}, {supers}, database {db_path}\n"
        f"  provisioning {provision_seconds:g}s, capacity {capacity} accelerators, {view}, "
        f"instance {store.instance_id}. Press Ctrl-C to stop."
    )
    return _serve_until_interrupted(server, banner)


def _check_serve_options(api_key: str, superuser_keys: tuple[str, ...], account_id: str, host: str) -> None:
    if not api_key.strip():
        raise RlorinfraError("--api-key must not be empty", "Pass the key clients will send, e.g. --api-key local.")
    if any(not key.strip() for key in superuser_keys):
        raise RlorinfraError("--superuser-key must not be empty", "Pass a key, e.g. --superuser-key root.")
    if api_key in superuser_keys:
        raise RlorinfraError(
            "--api-key is also a --superuser-key",
            "The customer key must differ from the superuser keys, or it would be both.",
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", account_id):
        raise RlorinfraError(
            f"Invalid --account-id {account_id!r}", "Use letters, digits, '-', '_' or '.', e.g. --account-id local."
        )
    if not is_loopback(f"http://[{host}]" if ":" in host else f"http://{host}"):
        from rlorinfra.cli.common import echo_warning

        echo_warning(f"binding to {host} exposes the emulator (and its key) beyond this machine.")


def _emulator_settings(config_path: Path, provision_seconds: float | None, capacity: int | None) -> tuple[float, int]:
    """Explicit flags, else the -f config's [control_plane.emulator] (only when -f was given), else defaults."""
    source = click.get_current_context().get_parameter_source("config_path")
    if source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT):
        emulator = load_config(config_path).control_plane.emulator
        defaults = (emulator.provision_seconds, emulator.capacity)
    else:
        defaults = (DEFAULT_PROVISION_SECONDS, DEFAULT_CAPACITY)
    return (
        defaults[0] if provision_seconds is None else provision_seconds,
        defaults[1] if capacity is None else capacity,
    )


def _serve_until_interrupted(server: Any, banner: str) -> int:
    """Print the banner and serve in this thread; Ctrl-C or SIGTERM stops it cleanly (exit 0).

    The banner is printed inside the ``try``: a client that reads the URL and
    stops the server at once must still get a clean exit.
    """

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        click.echo(banner)
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
    "complete": "Completed",
    "pause": "Paused",
    "early-stop": "Early-stopped",
    "expire": "Expired",
    "flap": "Set flapping on",
    "fail-deployment": "Failed",
}
DEPLOYMENT_FAULT = "fail-deployment"  # the one fault that targets a deployment, not a job


@dataclass(frozen=True)
class Fault:
    """One fault request, as the admin route takes it (``job_id`` None for drop-response and deployments)."""

    fault: str
    job_id: str | None = None
    deployment_id: str | None = None
    message: str | None = None
    period: float | None = None
    off: bool = False
    operation: str | None = None
    count: int = 1

    @property
    def target(self) -> str:
        """What the fault acts on, in words (``job ID`` or ``deployment ID``)."""
        if self.deployment_id is not None:
            return f"deployment {self.deployment_id}"
        return f"job {self.job_id}"

    def body(self) -> dict[str, Any]:
        """The ``POST /_emulator/faults`` body."""
        if self.fault == "drop-response":
            return {"fault": self.fault, "operation": self.operation, "count": self.count}
        body: dict[str, Any] = {"fault": self.fault}
        if self.deployment_id is not None:
            body["deploymentId"] = self.deployment_id
        else:
            body["jobId"] = self.job_id
        if self.message:
            body["message"] = self.message
        if self.fault == "flap":
            body.update(period=self.period, off=self.off)
        return body


def _target_options(func: Any) -> Any:
    func = click.option(
        "--api-key",
        default=None,
        help="Key of the served emulator [default: $FIREWORKS_API_KEY, else local; with a "
        "served -f config, the variable its api_key_env names].",
    )(func)
    func = click.option("--url", default=None, help="A served emulator (control-plane serve) instead of -f's.")(func)
    func = click.option("--insecure", is_flag=True, help="Allow plain http:// to a non-loopback --url.")(func)
    return file_option(json_option(func))


def _open_store(config: Any, config_path: Path, fault: Fault) -> Any:
    """The embedded emulator's store (a drop-response may be armed before the first apply)."""
    from rlorinfra.controlplane.store import Store

    db_path = config.emulator_db_path
    if not db_path.exists() and (fault.job_id or fault.deployment_id) is not None:
        raise NotFoundError(
            f"No {fault.target}: the embedded emulator of {config_path} has no database yet",
            f"Expected {db_path}. Run `rlorinfra apply -f {config_path}` to create jobs first.",
        )
    emulator = config.control_plane.emulator
    return Store(db_path, provision_seconds=emulator.provision_seconds, capacity=emulator.capacity)


def _store_action(store: Any, fault: Fault) -> Callable[[], dict[str, Any]]:
    if fault.fault == "drop-response":
        return lambda: store.arm_drop(fault.operation, fault.count)
    if fault.fault == DEPLOYMENT_FAULT:
        return lambda: store.deployments.fail(fault.deployment_id, fault.message)
    return lambda: store.job_fault(fault.fault, fault.job_id, message=fault.message, period=fault.period, off=fault.off)


def _embedded_fault(config: Any, config_path: Path, fault: Fault) -> dict[str, Any]:
    """Apply a fault directly to the embedded emulator's database."""
    from rlorinfra.controlplane.errors import EmulatorError, NotFound

    store = _open_store(config, config_path, fault)
    try:
        return _store_action(store, fault)()
    except NotFound:
        raise NotFoundError(
            f"No {fault.target} in the embedded emulator of {config_path}",
            "Check the ID with `rlorinfra output` or `rlorinfra state list`.",
        ) from None
    except EmulatorError as exc:
        raise RlorinfraError(
            f"Cannot {fault.fault} {fault.target}: {exc.message}",
            "Faults apply to live jobs; check the job's state with `rlorinfra plan`.",
        ) from None
    finally:
        store.close()


def _served_fault(url: str, api_key: str, insecure: bool, fault: Fault) -> dict[str, Any]:
    """Apply a fault to a served emulator through its admin route."""
    from rlorinfra.api.client import ControlPlaneClient

    into = fault.job_id or fault.deployment_id
    what = f"inject {fault.fault}" + (f" into {into}" if into else f" for {fault.operation}")
    with ControlPlaneClient(base_url=url, api_key=api_key, allow_insecure=insecure) as client:
        # The client's inject_fault sends only jobId/fault/message; its _request keeps
        # the retries and typed errors for the other fields (flap, drop-response).
        answer: dict[str, Any] = client._request("POST", "/_emulator/faults", what=what, json=fault.body()).json()
        return answer


def _served_target(
    config_path: Path, url: str | None, api_key: str | None, insecure: bool
) -> tuple[str, str, bool] | tuple[None, Any, bool]:
    """``(url, key, insecure)`` of a served emulator, or ``(None, config, insecure)`` for the embedded one."""
    env = get_globals().env
    if url:
        return url, api_key or env.get("FIREWORKS_API_KEY") or DEFAULT_KEY, insecure
    config = load_config(config_path)
    cp = config.control_plane
    if cp.is_local:
        return None, config, insecure
    key = api_key or env.get(cp.api_key_env)
    if not key:
        raise RlorinfraError(
            f"No API key for the control plane of {config_path} ({cp.url})",
            f"Set the environment variable {cp.api_key_env} (its control_plane.api_key_env) to the emulator's key, "
            "or pass --api-key. Faults can only be injected into an emulator (`rlorinfra control-plane serve`).",
        )
    return cp.url, key, insecure or cp.allow_insecure


def _run_fault(
    fault: Fault, config_path: Path, url: str | None, api_key: str | None, insecure: bool, as_json: bool
) -> int:
    target, key_or_config, insecure = _served_target(config_path, url, api_key, insecure)
    if target is not None:
        result = _served_fault(target, key_or_config, insecure, fault)
    else:
        result = _embedded_fault(key_or_config, config_path, fault)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(_summary(fault, result))
    return 0


def _summary(fault: Fault, result: dict[str, Any]) -> str:
    """The one-line report of a fault command."""
    if fault.fault == "drop-response":
        return (
            f"Armed drop-response: the next {result.get('count')} successful {fault.operation} request(s) "
            "are carried out, then answered 503 UNAVAILABLE."
        )
    status = result.get("status") or {}
    detail = f" ({status.get('code')}: {status.get('message')})" if status.get("message") else ""
    verb = "Stopped flapping" if fault.fault == "flap" and fault.off else FAULT_VERBS[fault.fault]
    suffix = f" (every {fault.period:g}s of RUNNING ends in FAILED)" if fault.fault == "flap" and not fault.off else ""
    return f"{verb} {fault.target}{suffix}: now {result.get('state')}{detail}."


def _job_fault_command(name: str, doc: str) -> None:
    """Register ``control-plane NAME JOB_ID`` for a fault without options of its own."""

    @control_plane_group.command(name, help=doc)
    @click.argument("job_id")
    @_target_options
    def command(job_id: str, **options: Any) -> int:
        return _run_fault(Fault(name, job_id), **options)


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
    return _run_fault(Fault("preempt", job_id), **options)


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
    return _run_fault(Fault("fail", job_id, message=message), **options)


@control_plane_group.command("fail-deployment")
@click.argument("deployment_id")
@click.option("--message", default=None, help="Status message of the failure.")
@_target_options
def fail_deployment_cmd(deployment_id: str, message: str | None, **options: Any) -> int:
    """Fail a serving deployment: it goes to FAILED with status INTERNAL.

    The official SDK's create_or_get then deletes and recreates it; its
    wait_for_ready and reattach_trainer stop with "entered bad state".

    \b
    Example:
      rlorinfra control-plane fail-deployment policy-serving --message "OOM"
    """
    return _run_fault(Fault(DEPLOYMENT_FAULT, deployment_id=deployment_id, message=message), **options)


_job_fault_command(
    "set-idle",
    """Put a running job in JOB_STATE_IDLE (up, holding its GPUs, no active training).

\b
Example:
  rlorinfra control-plane set-idle grpo-policy-trainer-1a2b3c
""",
)
_job_fault_command(
    "mark-unhealthy",
    """Make a job's trainer health check answer 503 (until a resume or mark-healthy).

\b
Example:
  rlorinfra control-plane mark-unhealthy grpo-policy-trainer-1a2b3c
""",
)
_job_fault_command(
    "mark-healthy",
    """Undo mark-unhealthy: the job's health check answers 200 again.

\b
Example:
  rlorinfra control-plane mark-healthy grpo-policy-trainer-1a2b3c
""",
)
_job_fault_command(
    "complete",
    """Finish a live job: JOB_STATE_COMPLETED (resumable); its accelerators are freed.

\b
Example:
  rlorinfra control-plane complete grpo-policy-trainer-1a2b3c
""",
)
_job_fault_command(
    "pause",
    """Pause a live job as the platform would (e.g. account suspension): JOB_STATE_PAUSED.

Paused jobs are resumable; the accelerators are freed.

\b
Example:
  rlorinfra control-plane pause grpo-policy-trainer-1a2b3c
""",
)
_job_fault_command(
    "early-stop",
    """Stop a live job early: JOB_STATE_EARLY_STOPPED (never resumed); accelerators freed.

\b
Example:
  rlorinfra control-plane early-stop grpo-policy-trainer-1a2b3c
""",
)
_job_fault_command(
    "expire",
    """Expire a live job: JOB_STATE_EXPIRED, status DEADLINE_EXCEEDED; accelerators freed.

\b
Example:
  rlorinfra control-plane expire grpo-policy-trainer-1a2b3c
""",
)


@control_plane_group.command("flap")
@click.argument("job_id")
@click.option(
    "--period",
    type=FiniteFloat(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds of RUNNING before each crash.",
)
@click.option("--off", is_flag=True, help="Stop the crash loop.")
@_target_options
def flap_cmd(job_id: str, period: float, off: bool, **options: Any) -> int:
    """Put a job in a crash loop: every PERIOD seconds of RUNNING end in FAILED.

    The failure has status INTERNAL "trainer crashed (flapping)". A resume
    brings the job back through CREATING to RUNNING, and it fails again, until
    `flap JOB_ID --off`.

    \b
    Example:
      rlorinfra control-plane flap grpo-policy-trainer-1a2b3c --period 2
      rlorinfra control-plane flap grpo-policy-trainer-1a2b3c --off
    """
    return _run_fault(Fault("flap", job_id, period=period, off=off), **options)


@control_plane_group.command("drop-response")
@click.argument("operation", type=click.Choice(DROP_OPERATIONS))
@click.option(
    "--count",
    type=click.IntRange(min=0, max=2**31 - 1),
    default=1,
    show_default=True,
    help="How many responses to drop (0 disarms).",
)
@_target_options
def drop_response_cmd(operation: str, count: int, **options: Any) -> int:
    """Drop the responses of the next COUNT successful OPERATION requests.

    The emulator carries each request out, then answers 503 UNAVAILABLE
    "response dropped after the request was processed (injected)", as when a
    connection dies after the server acted. OPERATION is create, resume,
    cancel or delete.

    \b
    Example:
      rlorinfra control-plane drop-response create --count 2
    """
    return _run_fault(Fault("drop-response", operation=operation, count=count), **options)
