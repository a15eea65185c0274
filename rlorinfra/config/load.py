"""Load and validate the desired-state TOML into a frozen ``Config``.

Everything is checked before anything touches the network or the state: types,
ranges, create-path rules (PROTOCOL.md §4.3, §6.1), unknown keys (with a "did
you mean"), display names. Every problem is collected, each naming the file,
the job, the key and (best effort) the line, so one run shows them all.

Public entry points:

- ``load_config(path, env)`` -> ``Config`` or ``ConfigError`` (with ``.problems``)
- ``load_config_text(text, path, env)`` / ``load_config_bytes(data, path, env)`` for tests
- ``validate_config(path, env)`` -> ``Report`` (all diagnostics, for ``validate --json``)

The environment is passed in; this package never reads ``os.environ``.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rlorinfra.config import fields as F
from rlorinfra.config.deployments import check_deployments
from rlorinfra.config.diagnostics import ERROR, Collector, Diagnostic, Report, path_at_line
from rlorinfra.config.durations import parse_duration
from rlorinfra.config.model import (
    DEFAULT_API_KEY_ENV,
    INFRA_FIELDS,
    LOCAL_URL,
    Config,
    ControlPlaneSettings,
    EmulatorSettings,
    JobSpec,
    StateBackendKind,
    StateSettings,
)
from rlorinfra.config.pricing import check_policy, check_pricing
from rlorinfra.model.jobs import create_path
from rlorinfra.model.urls import is_loopback

TOP_LEVEL_KEYS = ("control_plane", "state", "defaults", "pricing", "policy", "jobs", "deployments")
CONTROL_PLANE_KEYS = (
    "url",
    "api_key_env",
    "account_id",
    "trainer_gateway_url",
    "allow_insecure",
    "retry_budget",
    "emulator",
)
EMULATOR_KEYS = ("provision_seconds", "capacity")
# [state] keys per backend; a key of another backend is an error naming the backend it belongs to.
BACKEND_KEYS: dict[StateBackendKind, tuple[str, ...]] = {
    StateBackendKind.LOCAL: ("path",),
    StateBackendKind.POSTGRES: ("conn_str_env", "schema", "name"),
    StateBackendKind.S3: ("bucket", "key", "region", "endpoint_url"),
}
STATE_KEYS = ("backend", *(key for keys in BACKEND_KEYS.values() for key in keys))
REQUIRED_BACKEND_KEYS: dict[StateBackendKind, tuple[str, ...]] = {StateBackendKind.S3: ("bucket", "key")}
# A PostgreSQL identifier rlorinfra quotes nowhere: letters, digits, underscores, at most 63 bytes.
_PG_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTROL_PLANE_ALIASES = {"base_url": "url", "endpoint": "url", "account": "account_id",
                         "gateway_url": "trainer_gateway_url", "insecure": "allow_insecure"}  # fmt: skip

# Environment variable -> control_plane key it replaces (empty values are ignored).
ENV_OVERRIDES = {
    "FIREWORKS_BASE_URL": "url",
    "FIREWORKS_ACCOUNT_ID": "account_id",
    "FIREWORKS_TRAINER_GATEWAY_URL": "trainer_gateway_url",
}

_SECRET_KEY_RE = re.compile(r"^(fireworks)?api_?key$")
_TOML_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")
_MAX_PROVISION_SECONDS = 86400.0
DEFAULT_RETRY_BUDGET_S = 120.0
_MAX_RETRY_BUDGET_S = 3600


# --------------------------------------------------------------------------- entry points


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read, check and return the config at ``path``; ``ConfigError`` lists every problem."""
    return validate_config(path, env).config_or_raise()


def load_config_text(text: str, path: Path, env: Mapping[str, str]) -> Config:
    """Like ``load_config`` for TOML text that claims to live at ``path`` (nothing is read)."""
    return load_config_bytes(text.encode("utf-8"), path, env)


def load_config_bytes(data: bytes, path: Path, env: Mapping[str, str]) -> Config:
    """Like ``load_config`` for raw file bytes that claim to live at ``path``."""
    return validate_bytes(data, path, env).config_or_raise()


def validate_config(path: Path, env: Mapping[str, str]) -> Report:
    """Check the file at ``path``; never raises for a problem in (or with) the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _fatal(path, f"No configuration file at {path}",
                      "Run `rlorinfra init` to write a starter rlorinfra.toml, or pass `-f PATH` "
                      "to use another file.")  # fmt: skip
    except IsADirectoryError:
        return _fatal(path, f"{path} is a directory, not a configuration file",
                      "Pass the TOML file itself with `-f PATH` (for example `-f rlorinfra.toml`).")  # fmt: skip
    except OSError as exc:
        return _fatal(path, f"Cannot read {path}: {exc.strerror or exc}",
                      "Check that the file exists and that you may read it.")  # fmt: skip
    report = validate_bytes(data, path, env)
    if report.config is not None and report.config.control_plane.is_local and not path.is_file():
        # Read from a pipe: there is no folder beside it for the embedded emulator's .rlorinfra/.
        problem = Diagnostic(ERROR, f'control_plane.url = "local" needs the configuration in a file: {path} '
                             "is a pipe or a device",
                             "The embedded emulator keeps its database in .rlorinfra/ beside the configuration. "
                             "Save the configuration to a file and pass that with -f, or point control_plane.url "
                             "at a served emulator (`rlorinfra control-plane serve`) or the real API.",
                             file=str(path), key="control_plane.url")  # fmt: skip
        report = Report(path=path, diagnostics=(*report.diagnostics, problem))
    return report


def validate_bytes(data: bytes, path: Path, env: Mapping[str, str]) -> Report:
    """Check raw file bytes that claim to live at ``path``."""
    path = Path(path)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        return _fatal(path, f"{path} is not UTF-8 text (bad byte at offset {exc.start})",
                      "A configuration file is TOML, which must be UTF-8. Is this the right file?")  # fmt: skip
    collector = Collector(file=str(path), text=text)
    doc = _parse_toml(text, collector)
    config = None if doc is None else _check_document(doc, path, env, collector, data)
    diagnostics = collector.diagnostics()
    if any(d.severity == ERROR for d in diagnostics):
        config = None
    return Report(path=path, diagnostics=diagnostics, config=config)


def _fatal(path: Path, summary: str, detail: str) -> Report:
    diagnostic = Diagnostic(ERROR, summary, detail, file=str(path))
    return Report(path=path, diagnostics=(diagnostic,), fatal=True)


def _parse_toml(text: str, c: Collector) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except RecursionError:
        c.error("TOML nesting is too deep", "Flatten the arrays or tables.")
    except ValueError as exc:  # TOMLDecodeError, and int-too-long ValueErrors
        _syntax_error(str(exc), text, c)
    return None


def _syntax_error(message: str, text: str, c: Collector) -> None:
    """Report a TOML syntax error at tomllib's line/column, naming the job and key there if any."""
    position = _TOML_POSITION_RE.search(message)
    reason = _TOML_POSITION_RE.sub("", message).strip().rstrip(".")
    reason = re.sub(r"^Cannot declare \(.*\) twice$", "this table is declared twice", reason)
    reason = re.sub(r"^Cannot overwrite a value$", "this key is set twice", reason)
    if position is None:
        c.error(f"TOML syntax error: {reason}", "Fix the TOML syntax.")
        return
    line, column = int(position.group(1)), int(position.group(2))
    path = path_at_line(text, line)
    job = path[1] if len(path) >= 2 and path[0] == "jobs" else None
    address = f"deployment.{path[1]}" if len(path) >= 2 and path[0] == "deployments" else None
    key = path[-1] if path and (job is None and address is None or len(path) > 2) else None
    at = f' (key "{key}")' if key else ""
    c.error(f"TOML syntax error at line {line}, column {column}: {reason}{at}",
            "Fix the TOML syntax at that line.", job=job, key=key, line=line, address=address)  # fmt: skip


# --------------------------------------------------------------------------- the document


def _check_document(doc: dict[str, Any], path: Path, env: Mapping[str, str], c: Collector,
                    data: bytes) -> Config | None:  # fmt: skip
    _check_top_keys(doc, c)
    control_plane = _control_plane(doc.get("control_plane"), env, c)
    state = _state(doc.get("state"), path, c)
    defaults, bad_defaults = _defaults(doc.get("defaults"), c)
    jobs = _jobs(doc.get("jobs"), (defaults, bad_defaults), control_plane, c)
    raw_jobs = doc.get("jobs")
    jobs_table: dict[str, Any] = raw_jobs if isinstance(raw_jobs, dict) else {}
    deployments = check_deployments(doc.get("deployments"), jobs_table, jobs, control_plane, c, _unknown_key)
    pricing, policy = check_pricing(doc.get("pricing"), c), check_policy(doc.get("policy"), c)
    if not jobs and not deployments and not c.has_errors:
        c.warning("no jobs declared", 'Add a [jobs."<name>"] table; plan would delete every managed job.',
                  key="jobs", where=("jobs",))  # fmt: skip
    if c.has_errors:
        return None
    return Config(
        path=path.resolve(),
        control_plane=control_plane,
        state_path=state.path,
        jobs=jobs,
        digest=hashlib.sha256(data).hexdigest(),
        defaults=dict(defaults),
        warnings=tuple(_warning_messages(c)),
        state=state,
        deployments=deployments,
        pricing=pricing,
        policy=policy,
    )


def _warning_messages(c: Collector) -> list[str]:
    # Lines are resolved here too, so Config.warnings read like validate's output.
    return [d.message() for d in c.diagnostics() if d.severity != ERROR]


def _check_top_keys(doc: dict[str, Any], c: Collector) -> None:
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            _unknown_key(key, TOP_LEVEL_KEYS, c, job=None, key=key, where=(key,), table="the top level")


def _table(value: Any, key: str, c: Collector) -> dict[str, Any]:
    """``value`` if it is a table (missing = empty); otherwise an error and ``{}``."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    c.error(f"{key} must be a table, {F.got(value)}", f"Write it as a [{key}] section.",
            key=key, where=tuple(key.split(".")))  # fmt: skip
    return {}


def _unknown_key(name: str, known: Any, c: Collector, *, job: str | None, key: str,
                 where: tuple[str, ...], table: str, aliases: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """An unknown key: a secret gets its own message; others a "did you mean"."""
    normalized = _snake(name)
    if _SECRET_KEY_RE.match(normalized.replace("_", "")) or _SECRET_KEY_RE.match(normalized):
        c.error(f"{F.printable(key)}: an API key must never be written in the configuration (value not shown)",
                "Remove it and export the key in the environment variable named by "
                f'control_plane.api_key_env (default "{DEFAULT_API_KEY_ENV}"). If it was a real key, rotate it.',
                job=job, key=key, where=where)  # fmt: skip
        return
    target = (aliases or {}).get(normalized) or (normalized if normalized in known and normalized != name else "")
    hint = f'Did you mean "{target}"?' if target else F.suggestion(name, known)
    if job is not None and normalized in ("display_name", "name"):
        hint = f'The display name is the table key: [jobs."{job}"].'
    hint = hint or f"Known keys in {table}: {', '.join(known)}."
    c.error(f"unknown key {F.show(name)} in {table}", hint, job=job, key=key, where=where)


def _snake(name: str) -> str:
    """``loraRank`` / ``lora-rank`` / ``LORA_RANK`` -> ``lora_rank``."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return name.replace("-", "_").lower()


# --------------------------------------------------------------------------- [control_plane]


def _control_plane(value: Any, env: Mapping[str, str], c: Collector) -> ControlPlaneSettings:
    table = _table(value, "control_plane", c)
    for key in table:
        if key not in CONTROL_PLANE_KEYS:
            _unknown_key(key, CONTROL_PLANE_KEYS, c, job=None, key=f"control_plane.{key}",
                         where=("control_plane", key), table="[control_plane]",
                         aliases=CONTROL_PLANE_ALIASES)  # fmt: skip
    allow_insecure = _cp_value(table, "allow_insecure", F.boolean, c, default=False)
    url = _cp_url(table, "url", env, c, local_ok=True)
    gateway = _cp_url(table, "trainer_gateway_url", env, c, local_ok=False)
    account = _cp_value(table, "account_id", F.account_id, c, env=env)
    api_key_env = _cp_value(table, "api_key_env", F.env_var_name, c, default=DEFAULT_API_KEY_ENV)
    retry_budget = _cp_value(table, "retry_budget", _retry_budget, c, default=DEFAULT_RETRY_BUDGET_S)
    emulator = _emulator(table.get("emulator"), c, used=url in (None, LOCAL_URL) or _is_local_http(url))
    _warn_plain_http(url, allow_insecure, c)
    return ControlPlaneSettings(url=url or LOCAL_URL, api_key_env=api_key_env, account_id=account,
                                trainer_gateway_url=gateway, allow_insecure=allow_insecure,
                                emulator=emulator, retry_budget_s=retry_budget)  # fmt: skip


def _is_local_http(url: str | None) -> bool:
    """A plain-http loopback URL: a served emulator, which `control-plane serve -f` configures."""
    return bool(url and url.startswith("http://") and is_loopback(url))


def _warn_plain_http(url: str | None, allow_insecure: bool, c: Collector) -> None:
    """Plain http to a remote host is refused at connect time (unless --insecure); say so early."""
    host = urlsplit(url).hostname if url and url.startswith("http://") else None
    if host and not is_loopback(url or "") and not allow_insecure:
        c.warning("control_plane.url uses plain http to a non-local host",
                  "The API key would travel in clear text: plan and apply refuse it unless you pass "
                  "--insecure or set control_plane.allow_insecure = true. Prefer https.",
                  key="control_plane.url", where=("control_plane", "url"))  # fmt: skip


def _env_override(env: Mapping[str, str], key: str) -> tuple[str, str] | None:
    """``(variable, value)`` when a non-empty environment variable replaces ``key``."""
    for variable, target in ENV_OVERRIDES.items():
        if target == key and env.get(variable):
            return variable, env[variable]
    return None


def _cp_value(table: dict[str, Any], key: str, check: F.Check, c: Collector, *,
              default: Any = None, env: Mapping[str, str] | None = None) -> Any:  # fmt: skip
    """Check ``control_plane.<key>`` and its environment override (which wins); ``default`` if unset/bad."""
    value = default
    if key in table:
        value = _checked(table[key], key, check, c, source="", default=default)
    override = _env_override(env or {}, key)
    if override is not None:
        value = _checked(override[1], key, check, c, source=f" (from {override[0]})", default=default)
    return value


def _checked(raw: Any, key: str, check: F.Check, c: Collector, *, source: str, default: Any) -> Any:
    try:
        return check(raw)
    except F.Invalid as exc:
        c.error(f"control_plane.{key}{source} {exc.summary}", exc.hint, key=f"control_plane.{key}",
                where=("control_plane", key))  # fmt: skip
        return default


def _cp_url(table: dict[str, Any], key: str, env: Mapping[str, str], c: Collector, *,
            local_ok: bool) -> str | None:  # fmt: skip
    def check(value: Any) -> str:
        if local_ok and value == LOCAL_URL:
            return LOCAL_URL
        return F.http_url(value)

    url: str | None = _cp_value(table, key, check, c, env=env)
    return url


def _emulator(value: Any, c: Collector, *, used: bool) -> EmulatorSettings:
    table = _table(value, "control_plane.emulator", c)
    settings: dict[str, Any] = {}
    for key, raw in table.items():
        where = ("control_plane", "emulator", key)
        name = f"control_plane.emulator.{key}"
        if key not in EMULATOR_KEYS:
            _unknown_key(key, EMULATOR_KEYS, c, job=None, key=name, where=where, table="[control_plane.emulator]")
            continue
        check = _provision_seconds if key == "provision_seconds" else F.integer(1)
        try:
            settings[key] = check(raw)
        except F.Invalid as exc:
            c.error(f"{name} {exc.summary}", exc.hint, key=name, where=where)
    if table and not used:
        c.warning("control_plane.emulator is ignored: control_plane.url is neither \"local\" nor a loopback "
                  "http:// emulator",
                  key="control_plane.emulator", where=("control_plane", "emulator"))  # fmt: skip
    return EmulatorSettings(**settings)


def _provision_seconds(value: Any) -> float:
    """``provision_seconds``: a finite number of seconds in ``[0, 86400]`` (TOML allows nan and inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise F.Invalid(f"must be a number of seconds >= 0, {F.got(value)}")
    from math import isfinite  # (here: the only float check in this module)

    if not isfinite(value):
        raise F.Invalid(
            f"must be a finite number of seconds, {F.got(value)}",
            f"Give a number between 0 and {int(_MAX_PROVISION_SECONDS)}, e.g. provision_seconds = 2.",
        )
    if not 0 <= value <= _MAX_PROVISION_SECONDS:
        raise F.Invalid(f"must be between 0 and {int(_MAX_PROVISION_SECONDS)} seconds, {F.got(value)}")
    return float(value)


def _retry_budget(value: Any) -> float:
    """``retry_budget``: a duration above 0s and at most 1h, in seconds.

    ``parse_duration`` yields whole seconds (floats, NaN and infinity are refused
    there), so the budget is always finite; the cap keeps a typo from turning
    an outage into an hour-long hang.
    """
    hint = 'For example retry_budget = "2m" (the default), "90s" or "10m".'
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise F.Invalid(f"{exc}, {F.got(value)}", hint) from None
    if not 0 < seconds <= _MAX_RETRY_BUDGET_S:
        raise F.Invalid(f"must be more than 0s and at most 1h, {F.got(value)}", hint)
    return float(seconds)


# --------------------------------------------------------------------------- [state]


def _state(value: Any, config_path: Path, c: Collector) -> StateSettings:
    """The ``[state]`` table: its backend, that backend's keys checked, every other key refused."""
    table = _table(value, "state", c)
    backend = _state_backend(table, c)
    _check_state_keys(table, backend, c)
    local = {k: v for k, v in table.items() if k != "path" or backend is StateBackendKind.LOCAL}
    path = _state_path(local, config_path, c, remote=backend is not StateBackendKind.LOCAL)
    settings = StateSettings(backend=backend, path=path, name=_default_state_name(config_path))
    if backend is StateBackendKind.POSTGRES:
        return _postgres_settings(table, settings, c)
    if backend is StateBackendKind.S3:
        return _s3_settings(table, settings, c)
    return settings


def _state_backend(table: dict[str, Any], c: Collector) -> StateBackendKind:
    """``backend``: one of ``StateBackendKind`` (a "did you mean" otherwise); local when absent or wrong."""
    if "backend" not in table:
        return StateBackendKind.LOCAL
    raw = table["backend"]
    try:
        return StateBackendKind(raw)
    except ValueError:
        choices = [kind.value for kind in StateBackendKind]
        hint = F.suggestion(raw, choices) if isinstance(raw, str) else ""
        c.error(f"state.backend must be one of {', '.join(choices)}, {F.got(raw)}",
                hint or f'For example backend = "postgres". Known backends: {", ".join(choices)}.',
                key="state.backend", where=("state", "backend"))  # fmt: skip
        return StateBackendKind.LOCAL


def _check_state_keys(table: dict[str, Any], backend: StateBackendKind, c: Collector) -> None:
    """Unknown keys get a "did you mean"; another backend's keys say whose they are."""
    own = ("backend", *BACKEND_KEYS[backend])
    for key in table:
        if key in own:
            continue
        owner = next((kind for kind, keys in BACKEND_KEYS.items() if key in keys), None)
        if owner is None:
            _unknown_key(key, STATE_KEYS, c, job=None, key=f"state.{key}", where=("state", key), table="[state]")
            continue
        c.error(f'state.{key} belongs to backend = "{owner.value}", not "{backend.value}"',
                f'Remove {key}, or set backend = "{owner.value}". Keys of backend "{backend.value}": '
                f"{', '.join(BACKEND_KEYS[backend])}.", key=f"state.{key}", where=("state", key))  # fmt: skip
    for key in REQUIRED_BACKEND_KEYS.get(backend, ()):
        if key not in table:
            c.error(f'state.{key} is required with backend = "{backend.value}"',
                    f'Add {key} = "..." to [state] (the S3 bucket and the object key of the state).',
                    key=f"state.{key}", where=("state",))  # fmt: skip


def _default_state_name(config_path: Path) -> str:
    """The config stem as a state name when it is a valid identifier (else ``rlorinfra``)."""
    stem = config_path.stem.replace("-", "_").replace(".", "_")
    return stem if _PG_IDENTIFIER_RE.match(stem) else "rlorinfra"


def _postgres_settings(table: dict[str, Any], settings: StateSettings, c: Collector) -> StateSettings:
    checks = {"conn_str_env": _env_var_name, "schema": _pg_identifier, "name": _pg_identifier}
    values: dict[str, Any] = {}
    for key, check in checks.items():
        if key not in table:
            continue
        try:
            values[key] = check(table[key])
        except F.Invalid as exc:
            c.error(f"state.{key} {exc.summary}", exc.hint, key=f"state.{key}", where=("state", key))
    return replace(settings, **values)


def _env_var_name(value: Any) -> str:
    """The NAME of an environment variable; a value that looks like a connection string is refused."""
    hint = 'Name the environment variable that holds the connection string, e.g. conn_str_env = "PG_CONN_STR".'
    if isinstance(value, str) and ("://" in value or "=" in value or "@" in value):
        raise F.Invalid(
            "looks like a connection string (value not shown): it must be the NAME of the environment "
            "variable that holds one",
            f"{hint} Then `export PG_CONN_STR=...` (in CI, from a secret). A connection string holds a "
            "password and is never written in the configuration; if this one did, change that password.",
        )
    name = F.text(value)
    if not _ENV_NAME_RE.match(name):
        raise F.Invalid(f"must be an environment variable name (letters, digits, _), {F.got(name)}", hint)
    return name


def _pg_identifier(value: Any) -> str:
    name = F.text(value)
    if not _PG_IDENTIFIER_RE.match(name):
        raise F.Invalid(
            f"must be letters, digits and underscores, starting with a letter or _, at most 63 characters, "
            f"{F.got(name)}",
            'For example schema = "rlorinfra", name = "prod".',
        )
    return name


def _s3_settings(table: dict[str, Any], settings: StateSettings, c: Collector) -> StateSettings:
    values: dict[str, Any] = {}
    for key in ("bucket", "key", "region", "endpoint_url"):
        if key not in table:
            continue
        try:
            values[key] = F.text(table[key], spaces=False)
            if key == "endpoint_url":
                _check_endpoint_url(values[key])
        except F.Invalid as exc:
            c.error(f"state.{key} {exc.summary}", exc.hint, key=f"state.{key}", where=("state", key))
    return replace(settings, **values)


def _check_endpoint_url(value: str) -> None:
    """An http(s) URL without credentials (those come from the AWS environment only)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise F.Invalid(f"must be an http:// or https:// URL, {F.got(value)}",
                        'For example endpoint_url = "https://minio.internal:9000".')  # fmt: skip
    if parts.username or parts.password:
        raise F.Invalid("must not hold credentials (value not shown)",
                        "S3 credentials come only from the standard AWS environment "
                        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...).")  # fmt: skip


def _state_path(table: dict[str, Any], config_path: Path, c: Collector, *, remote: bool = False) -> Path:
    """Absolute state path: ``[state] path`` relative to the config's folder, or the default.

    Symlinks are resolved here, once: the state, its backup and its lock all live
    beside the link's target, and the link stays a link. A config that is not a
    regular file (``-f /dev/stdin`` fed by a pipe, ``-f <(cat x.toml)``) has no
    folder to keep the state in: only an absolute ``[state] path`` works then.
    """
    config_file = config_path.resolve()
    folder = config_file.parent
    # /dev/stdin, /dev/fd/N name a descriptor: the default takes the name of the file behind it.
    stem = config_file.stem if str(config_path).startswith(("/dev/", "/proc/")) else config_path.stem
    default = folder / f"{stem}.state.json"
    # A pipe or a device: no folder beside it for a local state (a shared backend needs none).
    not_a_file = config_path.exists() and not config_path.is_file() and not remote
    raw = None
    if "path" in table:
        try:
            raw = F.text(table["path"])
        except F.Invalid as exc:
            c.error(f"state.path {exc.summary}", key="state.path", where=("state", "path"))
            return default
    if not_a_file and (raw is None or not Path(raw).expanduser().is_absolute()):
        c.error(f"the configuration {config_path} is not a regular file (a pipe or a device), so the state "
                "cannot be kept beside it",
                "Save the configuration to a file and pass that with -f, or set an absolute state path in it: "
                '[state] path = "/home/me/prod.state.json" (with control_plane.url = "local" a file is needed '
                "anyway: the embedded emulator keeps its database in .rlorinfra/ beside it).", key="state.path",
                where=("state", "path") if raw is not None else ("state",))  # fmt: skip
        return default
    try:
        state_path = default.resolve() if raw is None else (folder / Path(raw).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
        c.error(f"state.path cannot be used: {exc}", key="state.path", where=("state", "path"))
        return default
    if state_path == config_file:
        c.error("state.path points at the configuration file itself", 'Choose another file, e.g. '
                'path = "prod.state.json".', key="state.path", where=("state", "path"))  # fmt: skip
    return state_path


# --------------------------------------------------------------------------- [defaults] and [jobs]


def _defaults(value: Any, c: Collector) -> Defaults:
    """Checked ``[defaults]`` values and the keys that failed (reported once here, not per job)."""
    table = _table(value, "defaults", c)
    good = _fields(table, c, job=None, prefix=("defaults",))
    return good, set(table) - set(good)


def _fields(table: dict[str, Any], c: Collector, *, job: str | None, prefix: tuple[str, ...]) -> dict[str, Any]:
    """Check each key of a job (or defaults) table against ``JOB_RULES``; return the good ones."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = key if job is not None else f"defaults.{key}"
        where = prefix + (key,)
        if key == UNSET_KEY and job is not None:
            continue  # checked by _unset_keys: it names [defaults] keys, it is no field
        rule = F.JOB_RULES.get(key)
        if rule is None:
            table_name = f'[jobs."{job}"]' if job is not None else "[defaults]"
            _unknown_key(key, F.JOB_RULES, c, job=job, key=name, where=where, table=table_name,
                         aliases=F.JOB_ALIASES)  # fmt: skip
            continue
        try:
            out[key] = rule.check(value)
        except F.Invalid as exc:
            c.error(f"{name} {exc.summary}", exc.hint, job=job, key=name, where=where)
            continue
        if rule.warning:
            c.warning(rule.warning, job=job, key=name, where=where)
    return out


Defaults = tuple[dict[str, Any], set[str]]  # checked [defaults] values, keys that failed


def _jobs(value: Any, defaults: Defaults, cp: ControlPlaneSettings, c: Collector) -> dict[str, JobSpec]:
    table = _table(value, "jobs", c)
    jobs: dict[str, JobSpec] = {}
    seen: dict[str, str] = {}  # NFC form -> name as written
    for name, body in table.items():
        if not _check_display_name(name, seen, c):
            continue
        if not isinstance(body, dict):
            c.error(f'jobs.{F.show(name)} must be a table, {F.got(body)}',
                    f'Declare each job as a table: [jobs."{name}"] with base_model = "..." and so on.',
                    job=name, key=None, where=("jobs", name))  # fmt: skip
            continue
        spec = _job(name, body, defaults, cp, c)
        if spec is not None:
            jobs[name] = spec
    return jobs


def _check_display_name(name: str, seen: dict[str, str], c: Collector) -> bool:
    """Display-name rules (PROTOCOL.md §6.1); records the NFC form to catch look-alike duplicates."""
    where = ("jobs", name)
    reason = F.display_name_problem(name)
    problem = f"job name {reason}" if reason else ""
    if problem:
        shown = F.printable(name if len(name) <= 100 else name[:97] + "...")  # keep the message readable
        c.error(problem, "The table key of [jobs.\"<name>\"] is the job's display name.",
                job=shown, key=None, where=where)  # fmt: skip
        return False
    normal = unicodedata.normalize("NFC", name)
    if normal in seen:
        c.error(f'duplicate job name after normalization: same as "{seen[normal]}"',
                "Two job names differ only in Unicode composition; rename one.",
                job=name, key=None, where=where)  # fmt: skip
        return False
    seen[normal] = name
    return True


def _job(name: str, body: dict[str, Any], defaults: Defaults, cp: ControlPlaneSettings,
         c: Collector) -> JobSpec | None:  # fmt: skip
    """Merge ``[defaults]`` under the job (job wins, ``unset`` drops), check it, build its ``JobSpec``."""
    errors_before = sum(1 for p in c.pending if p.severity == ERROR)
    own = _fields(body, c, job=name, prefix=("jobs", name))
    good_defaults, bad_defaults = defaults
    unset = _unset_keys(name, body, good_defaults, bad_defaults, own, c)
    bad_keys = {key for key in body if key not in own and key != UNSET_KEY} | bad_defaults
    merged = {k: v for k, v in good_defaults.items() if k not in bad_keys and k not in unset}
    merged.update(own)
    origin: dict[str, tuple[str, ...]] = {
        key: ("jobs", name, key) if key in own else ("defaults", key) for key in merged
    }
    if not bad_keys & {"training_shape", "accelerator_type", "accelerator_count"}:
        _check_paths(name, merged, origin, cp, c)  # (a path-deciding key that failed is reported already)
    if "base_model" not in merged and "base_model" not in bad_keys:
        c.error("base_model is required", 'Add base_model = "accounts/fireworks/models/<model>".',
                job=name, key="base_model", where=("jobs", name))  # fmt: skip
    if "base_model" not in merged or sum(1 for p in c.pending if p.severity == ERROR) > errors_before:
        return None  # (a bad base_model in [defaults] was reported there, once)
    return JobSpec(display_name=name, **merged)


UNSET_KEY = "unset"


def _unset_keys(name: str, body: dict[str, Any], good_defaults: dict[str, Any], bad_defaults: set[str],
                own: dict[str, Any], c: Collector) -> set[str]:  # fmt: skip
    """``unset = ["key", ...]``: [defaults] keys this job drops (each must be a [defaults] key)."""
    if UNSET_KEY not in body:
        return set()
    value, where = body[UNSET_KEY], ("jobs", name, UNSET_KEY)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        c.error(f"unset must be an array of [defaults] key names, {F.got(value)}",
                'For example unset = ["region"].', job=name, key=UNSET_KEY, where=where)  # fmt: skip
        return set()
    known = set(good_defaults) | bad_defaults
    for key in value:
        if key not in known:
            hint = F.suggestion(key, sorted(known)) or f"[defaults] sets: {', '.join(sorted(known)) or 'nothing'}."
            c.error(f"unset names {F.show(key)}, which [defaults] does not set", hint,
                    job=name, key=UNSET_KEY, where=where)  # fmt: skip
        elif key in own:
            c.error(f"{key} is both set and unset", f"Remove {key} from unset, or remove the job's {key}.",
                    job=name, key=UNSET_KEY, where=where)  # fmt: skip
    return set(value)


def _check_paths(name: str, merged: dict[str, Any], origin: dict[str, tuple[str, ...]],
                 cp: ControlPlaneSettings, c: Collector) -> None:  # fmt: skip
    """Every declared field must be sent on the job's create path (PROTOCOL.md §2.1, §4.3)."""
    path = create_path(merged)
    checks = {"shape": _shape_path_problems, "auto": _auto_path_problems, "manual": _manual_path_problems}
    for key, summary, hint in checks[path](merged, cp):
        c.error(f"{key}{_from_defaults(origin, key)} {summary}", hint, job=name, key=key,
                where=origin.get(key, ("jobs", name)))  # fmt: skip
    _superuser_notes(name, merged, origin, cp, c)


def _from_defaults(origin: dict[str, tuple[str, ...]], key: str) -> str:
    return " (from [defaults])" if origin.get(key, ("",))[0] == "defaults" else ""


Problem = tuple[str, str, str]  # (key, summary after the key, what to do)


def _shape_path_problems(merged: dict[str, Any], cp: ControlPlaneSettings) -> list[Problem]:
    problems = [(key, "is not allowed with training_shape: the shape owns it (shape path)",
                 f"The training shape decides {', '.join(INFRA_FIELDS)}. Remove {key} to use the shape, or set "
                 'training_shape = "" with accelerator_type and accelerator_count for the manual path '
                 "(superuser key).")
                for key in INFRA_FIELDS if merged.get(key)]  # fmt: skip
    if merged.get("max_context_length"):
        problems.append(("max_context_length", "is never sent on the shape path: the training shape supplies it",
                         "Remove max_context_length (the shape's context length applies), or drop training_shape "
                         "to let the auto-shape path pick a shape that fits it."))  # fmt: skip
    if merged.get("skip_validations") and cp.is_local:
        problems.append(("skip_validations", "needs a superuser API key, and the embedded emulator's key is a "
                         "customer key", "Remove skip_validations: the shape path validates the job, which is "
                         "what a customer key gets. To try it, serve an emulator with `rlorinfra control-plane "
                         "serve --superuser-key KEY` and point [control_plane] url at it."))  # fmt: skip
    return problems


def _auto_path_problems(merged: dict[str, Any], cp: ControlPlaneSettings) -> list[Problem]:
    why = "is never sent on the auto-shape path (no training_shape, no accelerator_type/accelerator_count)"
    problems = []
    if merged.get("node_count"):
        problems.append(("node_count", f"{why}: the selected shape decides it",
                         "Remove node_count, set training_shape, or set accelerator_type and accelerator_count "
                         "for the manual path (which needs a superuser API key)."))  # fmt: skip
    if merged.get("skip_validations"):
        problems.append(("skip_validations", why, "Remove skip_validations, or set training_shape (skip_validations "
                         "applies to the shape path and needs a superuser API key)."))  # fmt: skip
    return problems


def _manual_path_problems(merged: dict[str, Any], cp: ControlPlaneSettings) -> list[Problem]:
    key = "accelerator_type" if merged.get("accelerator_type") else "accelerator_count"
    if cp.is_local:
        return [
            (
                key,
                "selects the manual path, which always sends skipValidations=true: that needs a superuser "
                "API key, and the embedded emulator's key is a customer key",
                _SUPERUSER_WAY_OUT,
            )
        ]
    if not merged.get("skip_validations"):
        return [
            (
                key,
                "selects the manual path, which always sends skipValidations=true: the real API refuses "
                "that from a customer key (HTTP 400)",
                "With a superuser key, add skip_validations = true to say so. With a customer key, use "
                "training_shape, or drop accelerator_type/accelerator_count/node_count for the auto-shape path.",
            )
        ]
    return []


_SUPERUSER_WAY_OUT = (
    "Use training_shape (or no infra fields: the auto-shape path). To try the manual path, serve an emulator "
    "with a superuser key (`rlorinfra control-plane serve --superuser-key KEY`) and point [control_plane] url at it."
)


def _superuser_notes(name: str, merged: dict[str, Any], origin: dict[str, tuple[str, ...]],
                     cp: ControlPlaneSettings, c: Collector) -> None:  # fmt: skip
    """extra_args needs a superuser key: an error on the embedded emulator, a warning elsewhere."""
    if not merged.get("extra_args"):
        return
    where = origin["extra_args"]
    if cp.is_local:
        c.error(f"extra_args{_from_defaults(origin, 'extra_args')} needs a superuser API key, and the embedded "
                "emulator's key is a customer key", _SUPERUSER_WAY_OUT, job=name, key="extra_args",
                where=where)  # fmt: skip
    else:
        c.warning("extra_args needs a superuser API key on the real control plane",
                  "Customer keys get HTTP 400.", job=name, key="extra_args", where=where)  # fmt: skip
