"""Field rules of the desired-state file: one table drives validation (and the docs).

Each job field has a ``FieldRule``: a ``check`` that returns the normalized value
or raises ``Invalid``, plus the facts ``docs/configuration.md`` documents (type,
default, create path, whether a change replaces the job). Checks are pure and
small so that every problem in a file can be collected in one pass.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rlorinfra.config.durations import FORMAT_HINT, MAX_INACTIVITY_SECONDS, parse_duration
from rlorinfra.config.model import DESIRED_STATES, ResumeOn
from rlorinfra.model.jobs import shape_full_name

MAX_INT32 = 2**31 - 1
MAX_CONTEXT_LENGTH = 10**7
MAX_RESUMES = 1000
MAX_STRING = 1024
MAX_EXTRA_ARGS = 256
MAX_DISPLAY_NAME = 63  # the SDK requires fewer than 64 characters (PROTOCOL.md §6.1)

# PROTOCOL.md §3.2 (REGION_UNSPECIFIED is left out: omit `region` instead).
REGIONS = (
    "US_IOWA_1", "US_VIRGINIA_1", "US_VIRGINIA_2", "US_ILLINOIS_1", "AP_TOKYO_1", "EU_LONDON_1",
    "US_ARIZONA_1", "US_TEXAS_1", "US_ILLINOIS_2", "EU_FRANKFURT_1", "US_TEXAS_2", "EU_PARIS_1",
    "EU_HELSINKI_1", "US_NEVADA_1", "EU_ICELAND_1", "EU_ICELAND_2", "US_WASHINGTON_1",
    "US_WASHINGTON_2", "EU_ICELAND_DEV_1", "US_WASHINGTON_3", "US_ARIZONA_2", "AP_TOKYO_2",
    "US_CALIFORNIA_1", "US_MISSOURI_1", "US_UTAH_1", "US_TEXAS_3", "US_ARIZONA_3", "US_GEORGIA_1",
    "US_GEORGIA_2", "US_WASHINGTON_4", "US_GEORGIA_3", "NA_BRITISHCOLUMBIA_1", "US_GEORGIA_4",
    "EU_ICELAND_3", "US_OHIO_1", "US_NEWYORK_1",
)  # fmt: skip

# The API's accelerator enum (generated client of fireworks-ai 1.2.30,
# types/deployment.py; ACCELERATOR_TYPE_UNSPECIFIED is left out: omit the key).
ACCELERATOR_TYPES = (
    "NVIDIA_A100_80GB", "NVIDIA_H100_80GB", "AMD_MI300X_192GB", "NVIDIA_A10G_24GB", "NVIDIA_A100_40GB",
    "NVIDIA_L4_24GB", "NVIDIA_H200_141GB", "NVIDIA_B200_180GB", "AMD_MI325X_256GB", "AMD_MI350X_288GB",
)  # fmt: skip

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_SEGMENT_PATTERN = _SEGMENT
_SHAPE_ID_RE = re.compile(rf"^{_SEGMENT}$")
_MODEL_NAME_RE = re.compile(rf"^accounts/{_SEGMENT}/models/{_SEGMENT}$")
_SHAPE_NAME_RE = re.compile(rf"^accounts/({_SEGMENT})/trainingShapes/({_SEGMENT})(?:/versions/({_SEGMENT}))?$")
_ACCOUNT_RE = re.compile(rf"^{_SEGMENT}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class Invalid(ValueError):
    """A value that fails its rule: ``summary`` follows the key name, ``hint`` says what to do."""

    def __init__(self, summary: str, hint: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.hint = hint


# --------------------------------------------------------------------------- showing values


def type_name(value: Any) -> str:
    """The TOML name of a value's type (``integer``, ``string``, ``table``...)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, datetime.datetime):
        return "datetime"
    names = {int: "integer", float: "float", str: "string", list: "array", dict: "table",
             datetime.date: "date", datetime.time: "time"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A short, safe rendering of a value for a message (huge values are elided)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # Python refuses to print ints over 4300 digits; nobody needs to see them.
        return str(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + printable(text).replace('"', '\\"') + '"'
    return f"a {type_name(value)}"


def printable(text: str) -> str:
    """``text`` with unprintable characters escaped, so a message never carries raw ones."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def got(value: Any) -> str:
    """``got <value>`` or ``got a <type>`` for composite values."""
    return f"got {show(value)}"


# --------------------------------------------------------------------------- checks


Check = Callable[[Any], Any]


def integer(minimum: int, maximum: int = MAX_INT32) -> Check:
    """An integer (never a boolean) in ``[minimum, maximum]``."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer >= {minimum}, {got(value)}")
        if value < minimum:
            raise Invalid(f"must be an integer >= {minimum}, {got(value)}")
        if value > maximum:
            raise Invalid(f"must be at most {maximum}, {got(value)}")
        return value

    return check


def positive_number(value: Any) -> float:
    """A finite number > 0 (integers are accepted and become floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"must be a number > 0, {got(value)}")
    if isinstance(value, int) and value.bit_length() > 64:
        raise Invalid(f"must be a reasonable number > 0, {got(value)}")
    if not math.isfinite(value) or value <= 0:
        raise Invalid(f"must be a finite number > 0, {got(value)}")
    return float(value)


def boolean(value: Any) -> bool:
    """``true`` or ``false`` (TOML booleans only)."""
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, {got(value)}")
    return value


def text(value: Any, *, allow_empty: bool = False, spaces: bool = True) -> str:
    """A string of at most ``MAX_STRING`` characters without control characters."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string, {got(value)}")
    if not value and not allow_empty:
        raise Invalid("must not be empty")
    if len(value) > MAX_STRING:
        raise Invalid(f"must be at most {MAX_STRING} characters, got {len(value)}")
    if _CONTROL_CHARS.search(value):
        raise Invalid(f"must not contain control characters, {got(value)}")
    if not spaces and any(ch.isspace() for ch in value):
        raise Invalid(f"must not contain whitespace, {got(value)}")
    return value


def optional_id(value: Any) -> str | None:
    """An identifier-like string without whitespace; ``""`` means unset."""
    value = text(value, allow_empty=True, spaces=False)
    return value or None


def base_model(value: Any) -> str:
    """The model to train: a resource name ``accounts/<account>/models/<model>``."""
    given = text(value, spaces=False)
    if _MODEL_NAME_RE.match(given):
        return given
    hint = "Write the model's full resource name, e.g. accounts/fireworks/models/qwen3-8b."
    if _SHAPE_ID_RE.match(given):
        hint = f'Did you mean "accounts/fireworks/models/{given}"?'
    raise Invalid(f"must be a model resource name accounts/<account>/models/<model>, {got(given)}", hint)


def region(value: Any) -> str | None:
    """One of the control plane's region enum values; ``""`` means unset."""
    given = text(value, allow_empty=True, spaces=False)
    if not given:
        return None
    if given in REGIONS:
        return given
    hint = f'Did you mean "{given.upper()}"?' if given.upper() in REGIONS else ""
    hint = hint or suggestion(given.upper(), REGIONS) or f"Valid regions: {', '.join(REGIONS)}."
    raise Invalid(f"must be a known region, {got(given)}", hint)


def accelerator_type(value: Any) -> str | None:
    """One of the API's accelerator types (``ACCELERATOR_TYPES``); ``""`` means unset."""
    given = text(value, allow_empty=True, spaces=False)
    if not given:
        return None
    if given in ACCELERATOR_TYPES:
        return given
    hint = f'Did you mean "{given.upper()}"?' if given.upper() in ACCELERATOR_TYPES else ""
    hint = hint or suggestion(given.upper(), ACCELERATOR_TYPES) or f"Valid types: {', '.join(ACCELERATOR_TYPES)}."
    raise Invalid(f"must be one of the API's accelerator types, {got(given)}", hint)


def training_shape(value: Any) -> str | None:
    """A short shape id (owner ``fireworks``) or a full shape name, normalized to the full name.

    A ``/versions/latest`` pin is the same as no pin (the server resolves the
    latest validated version at launch), so it is dropped as the SDK does.
    """
    given = text(value, allow_empty=True, spaces=False)
    if not given:
        return None
    if given.startswith("accounts/"):
        if not _SHAPE_NAME_RE.match(given):
            raise Invalid(
                f"must be a shape id or accounts/<account>/trainingShapes/<shape>[/versions/<version>], {got(given)}"
            )
        return given.removesuffix("/versions/latest")
    if not _SHAPE_ID_RE.match(given):
        raise Invalid(f"must be a shape id like ts-qwen3-8b-policy or a full shape name, {got(given)}")
    return shape_full_name(given)


def extra_args(value: Any) -> tuple[str, ...] | None:
    """A list of strings; an element with a space is split on whitespace, as the SDK does."""
    if not isinstance(value, list):
        raise Invalid(f"must be an array of strings, {got(value)}")
    if len(value) > MAX_EXTRA_ARGS:
        raise Invalid(f"must have at most {MAX_EXTRA_ARGS} elements, got {len(value)}")
    out: list[str] = []
    for index, arg in enumerate(value):
        if not isinstance(arg, str) or not arg.strip():
            raise Invalid(f"element {index} must be a non-empty string, {got(arg)}")
        try:
            arg = text(arg)
        except Invalid as exc:
            raise Invalid(f"element {index} {exc.summary}") from None
        out.extend(arg.split() if " " in arg else [arg])
    return tuple(out) or None


def ttl(value: Any) -> int:
    """A lifetime > 0, as whole seconds (any duration of the file's syntax, up to a year)."""
    return _positive_seconds(value, "Omit ttl to keep the resource until its block is removed.")


def _positive_seconds(value: Any, hint: str) -> int:
    """A duration of the file's syntax, > 0, as whole seconds; ``hint`` says what leaving it out means."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise Invalid(f"{exc}, {got(value)}") from None
    if seconds <= 0:
        raise Invalid(f"must be > 0, {got(value)}", hint)
    return seconds


def inactivity_timeout(value: Any) -> int:
    """A duration of 1 s .. 3 h, as whole seconds."""
    seconds = _positive_seconds(value, "Omit it to use the server default of 60 minutes.")
    if seconds > MAX_INACTIVITY_SECONDS:
        raise Invalid(f"must be at most 3h (10800s), {got(value)}")
    return seconds


def desired_state(value: Any) -> str:
    """``running`` or ``stopped``."""
    if not isinstance(value, str) or value not in DESIRED_STATES:
        raise Invalid(f'must be "running" or "stopped", {got(value)}')
    return value


def resume_on(value: Any) -> tuple[str, ...]:
    """A list of ``ResumeOn`` values (the stops watch may resume beyond failures)."""
    allowed = [r.value for r in ResumeOn]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid(f"must be an array of strings, {got(value)}", f"Use e.g. {json.dumps(allowed)}.")
    for item in value:
        if item not in allowed:
            hint = suggestion(item, allowed) or f"Use any of {json.dumps(allowed)}."
            raise Invalid(f'has "{item[:40]}", which is not one of {", ".join(allowed)}', hint)
    return tuple(sorted(set(value)))


def gradient_accumulation_steps(value: Any) -> int:
    """Only 1 is accepted (server-side accumulation is deprecated); never sent."""
    if isinstance(value, bool) or not isinstance(value, int) or value != 1:
        raise Invalid(
            f"must be 1, {got(value)}",
            "Server-side gradient accumulation is deprecated on the RLOR path; remove the key "
            "and accumulate in your training loop.",
        )
    return value


def suggestion(word: str, choices: Any) -> str:
    """``Did you mean "x"?`` for the closest choice, or ``""``."""
    import difflib  # only paid for when a key is wrong

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'Did you mean "{match[0]}"?' if match else ""


# --------------------------------------------------------------------------- job field table


@dataclass(frozen=True)
class FieldRule:
    """How one job field is checked and documented."""

    name: str
    check: Check
    type_doc: str
    default_doc: str
    path: str  # create path(s) it belongs to: "all", "shape", "manual", ...
    replaces: str  # what changing it does: "replace", "never", "never sent"
    doc: str
    warning: str = ""  # emitted wherever the key is set (deprecations)


def _rule(name: str, check: Check, type_doc: str, default_doc: str, path: str, doc: str,
          *, replaces: str = "replace", warning: str = "") -> FieldRule:  # fmt: skip
    return FieldRule(name, check, type_doc, default_doc, path, replaces, doc, warning)


JOB_RULES: dict[str, FieldRule] = {r.name: r for r in (
    _rule("base_model", base_model, "string", "required", "all",
          "Model to train, e.g. `accounts/fireworks/models/qwen3-8b`."),
    _rule("lora_rank", integer(0), "integer >= 0", "0", "all",
          "LoRA rank; 0 means full-parameter training."),
    _rule("max_context_length", integer(1, MAX_CONTEXT_LENGTH), "integer 1..10000000", "unset", "manual, auto",
          "Maximum context length. On the shape path the shape supplies it and the value is not sent."),
    _rule("learning_rate", positive_number, "float > 0", "1e-5", "all", "Learning rate."),
    _rule("gradient_accumulation_steps", gradient_accumulation_steps, "integer, only 1", "unset", "all",
          "Deprecated; only 1 is accepted and it is never sent.", replaces="never sent",
          warning="gradient_accumulation_steps is deprecated and ignored (never sent); remove it."),
    _rule("node_count", integer(1), "integer >= 1", "1 on the manual path", "manual",
          "Number of nodes. Forbidden with `training_shape` (the shape owns it)."),
    _rule("hot_load_deployment_id", optional_id, "string", "unset", "all",
          "Deprecated hot-load link to a serving deployment (sent as `deploymentId` and "
          "`hotLoadDeploymentId`).",
          warning="hot_load_deployment_id is deprecated: set hotLoadTrainerJob on the deployment instead."),
    _rule("region", region, "string (region enum)", "unset", "all", "Region, e.g. `US_VIRGINIA_1`."),
    _rule("custom_image_tag", optional_id, "string", "unset", "all", "Custom trainer image tag."),
    _rule("extra_args", extra_args, "array of strings", "unset", "all",
          "Extra trainer arguments (superuser key). Elements containing a space are split on whitespace."),
    _rule("accelerator_type", accelerator_type, "string", "unset", "manual",
          "Accelerator, e.g. `NVIDIA_H100_80GB`. Forbidden with `training_shape`."),
    _rule("accelerator_count", integer(1), "integer >= 1", "unset", "manual",
          "Accelerators per node. Forbidden with `training_shape`."),
    _rule("skip_validations", boolean, "boolean", "false", "shape",
          "Skip server-side shape validation (superuser key). The manual path always sends it."),
    _rule("forward_only", boolean, "boolean", "false", "all",
          "Forward-only trainer (e.g. a GRPO reference model)."),
    _rule("training_shape", training_shape, "string", "unset", "shape",
          "Training shape: a short id (owner `fireworks`) or `accounts/<a>/trainingShapes/<s>[/versions/<v>]`."),
    _rule("inactivity_timeout", inactivity_timeout, "duration", "unset (server default 60 min)", "all",
          f"Stop the trainer after this long without activity: {FORMAT_HINT}; at most 3h."),
    _rule("use_reservation", boolean, "boolean", "true", "all", "Use the account's reserved capacity."),
    _rule("reservation_target", optional_id, "string", "unset", "all",
          "A named reservation or group (disables spillover to shared capacity)."),
    _rule("trainer_replica_count", integer(1), "integer >= 1", "unset", "all",
          "Data-parallel (HSDP) trainer replicas."),
    _rule("desired_state", desired_state, "string", '"running"', "all",
          '"running", or "stopped" to cancel the job and keep it.', replaces="never"),
    _rule("prevent_destroy", boolean, "boolean", "false", "all",
          "Make any plan that deletes or replaces this job fail.", replaces="never"),
    _rule("create_before_destroy", boolean, "boolean", "false", "all",
          "On replacement, create the new job before deleting the old one.", replaces="never"),
    _rule("max_resumes", integer(0, MAX_RESUMES), "integer 0..1000", "3", "all",
          "How many times apply resumes a job that fails or is preempted while it waits.",
          replaces="never"),
    _rule("ttl", ttl, "duration", "unset", "all",
          f"Delete the job this long after its creation: {FORMAT_HINT}.", replaces="never"),
    _rule("resume_on", resume_on, "array of strings", "[] (failures and preemptions only)", "all",
          '`watch` also resumes the job after these stops: "inactivity" (the idle stop), "completed".',
          replaces="never"),
    _rule("suspend", boolean, "boolean", "false", "all",
          "`watch` takes no automated action on this job (it still reports it).", replaces="never"),
)}  # fmt: skip

# Common misspellings that difflib would not catch, mapped to the real key.
JOB_ALIASES = {
    "shape": "training_shape", "model": "base_model", "context_length": "max_context_length",
    "max_context": "max_context_length", "replicas": "trainer_replica_count", "lr": "learning_rate",
    "state": "desired_state", "gpu_type": "accelerator_type", "gpu_count": "accelerator_count",
    "gpus": "accelerator_count", "nodes": "node_count", "timeout": "inactivity_timeout",
    "image_tag": "custom_image_tag", "reservation": "reservation_target", "deployment_id": "hot_load_deployment_id",
}  # fmt: skip


# --------------------------------------------------------------------------- control plane


def env_var_name(value: Any) -> str:
    """The NAME of an environment variable; a value that looks like a key is refused unseen."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string naming an environment variable, {got(value)}")
    looks_like_key = value.lower().startswith("fw_") or (
        len(value) > 20 and any(c.islower() for c in value) and any(c.isdigit() for c in value)
    )
    if looks_like_key:
        raise Invalid(
            "looks like an API key, not an environment variable name (value not shown)",
            'Put the NAME of the variable there (e.g. "FIREWORKS_API_KEY") and export the key in '
            "that variable; never write the key itself in a file. If it was a real key, rotate it.",
        )
    if not _ENV_NAME_RE.match(value):
        raise Invalid(
            "must be an environment variable name such as FIREWORKS_API_KEY (value not shown)",
            "Use letters, digits and underscores, not starting with a digit.",
        )
    return value


def account_id(value: Any) -> str | None:
    """An account id (a URL path segment); ``""`` means resolve it from the key."""
    value = text(value, allow_empty=True, spaces=False)
    if value and not _ACCOUNT_RE.match(value):
        raise Invalid(f"must be an account id like my-account, {got(value)}")
    return value or None


def http_url(value: Any) -> str:
    """An http(s) URL without credentials."""
    given = text(value, spaces=False)
    try:
        parts = urlsplit(given)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise Invalid(f'must be "local" or an http(s) URL, {got(given)}')
    if parts.username or parts.password:
        raise Invalid(
            "must not contain credentials (value not shown)",
            "Put the API key in the environment variable named by control_plane.api_key_env.",
        )
    # Plain http to a remote host is refused by the client at connect time (the
    # one place that sends the key), where --insecure can still allow it.
    return given.rstrip("/")


def display_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a job display name (PROTOCOL.md §6.1), or None.

    Shared by the config loader, ``state mv`` and ``import`` so a name accepted
    in one place is accepted everywhere.
    """
    if not name:
        return "must not be empty"
    if len(name) > MAX_DISPLAY_NAME:
        return f"must be at most {MAX_DISPLAY_NAME} characters, got {len(name)}"
    if name != name.strip():
        return "must not start or end with whitespace"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "must not contain control or invisible characters"
    return None
