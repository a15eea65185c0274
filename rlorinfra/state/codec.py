"""State <-> bytes: the on-disk JSON format of the state file.

Format 2 (always written) keeps records under ``resources`` by kind, then by
name; format 1 (a top-level ``jobs``) is still read, and becomes format 2 with
the next write that changes content. Each kind's section has its decoder in
``_SECTION_DECODERS``; a section of any other kind is refused.

Encoding is deterministic (pretty JSON, kinds, names and spec keys sorted, trailing
newline) so that two writes of the same state give the same bytes and a state
file diffs well under version control. Decoding checks every field and turns
anything unexpected into a ``StateError`` that names the field and says how to
restore the previous version from ``<state>.backup``.

Parsing is strict (``load_strict_json``, shared with saved plan files): a key
given twice in one object, ``NaN``/``Infinity``, an integer longer than any
64-bit value, a lone surrogate in a string, nesting deeper than
``MAX_JSON_DEPTH`` and a file bigger than ``MAX_STATE_BYTES`` are all refused,
so a hand-edited or hostile file can never shadow a job, overflow a later
computation or surface as an internal error.

There is no field for the API key: it can never be written to state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

from rlorinfra.errors import StateError
from rlorinfra.model.address import Kind
from rlorinfra.model.deployments import is_valid_deployment_id
from rlorinfra.model.jobs import is_valid_job_id
from rlorinfra.model.times import parse_rfc3339
from rlorinfra.state.model import (
    FORMAT_VERSION,
    PHASES,
    DeploymentRecord,
    JobRecord,
    Record,
    State,
    parse_recorded_address,
)

# The newest format this rlorinfra reads (and the one it always writes).
SUPPORTED_FORMAT_VERSION = FORMAT_VERSION

# Only these are recorded about the control plane: never a key or its env var name.
CONTROL_PLANE_KEYS = ("account_id", "url", "instance")
_REQUIRED_JOB_STRINGS = ("job_id", "job_name", "endpoint")
_OPTIONAL_JOB_STRINGS = ("observed_state", "training_shape_version", "created_at", "updated_at", "deposed_job_id")

# Limits of a sane state (or plan) document. A real state is a few kilobytes, nests
# about five levels and holds no integer beyond 64 bits; these are far above that.
MAX_STATE_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 20  # 2**64 has 20 digits


class StrictJsonError(ValueError):
    """JSON text that parses but is not acceptable (``problem`` is a full sentence)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def load_strict_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys, non-finite numbers, huge integers and deep nesting.

    Raises ``json.JSONDecodeError`` for text that is not JSON and
    ``StrictJsonError`` for JSON that no rlorinfra ever writes.
    """
    try:
        document = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        # json's C scanner recurses once per level: thousands of `[` exhaust the stack.
        raise StrictJsonError(f"It nests deeper than {MAX_JSON_DEPTH} levels.") from None
    _check_tree(document)
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The default hook keeps the last of two equal keys: one job would silently shadow another.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise StrictJsonError(f"The key {json.dumps(key)} appears twice in one object.")
        document[key] = value
    return document


def _refuse_constant(name: str) -> Any:
    raise StrictJsonError(f"It contains the number {name}, which is not a finite number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999 parses as infinity
        raise StrictJsonError(f"It contains the number {_clip(text)}, which is not a finite number.")
    return value


def _bounded_int(text: str) -> int:
    # Checked before int(): converting thousands of digits is slow and, past 4300, a ValueError.
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise StrictJsonError(f"It contains an integer with {digits} digits ({_clip(text)}).")
    return int(text)


def _clip(text: str) -> str:
    # An error is a paragraph: never echo a hostile file's thousands of digits back.
    return text if len(text) <= 60 else f"{text[:56]}..."


def _check_tree(document: Any) -> None:
    """Depth and string checks, iteratively (a recursive walk could itself overflow)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise StrictJsonError(f"It nests deeper than {MAX_JSON_DEPTH} levels.")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(value: str) -> None:
    # JSON may spell a lone surrogate (\ud800); it cannot be written back as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StrictJsonError(f"It contains a string with an unpaired surrogate ({_clip(repr(value))}).") from None


def backup_path_for(path: Path) -> Path:
    """``<state>.backup``: where the previous content of ``path`` is kept."""
    return path.with_name(path.name + ".backup")


def encode_state(state: State) -> bytes:
    """The state as pretty JSON bytes: sorted job names, sorted spec keys, trailing newline."""
    return (json.dumps(state_document(state), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def state_document(state: State) -> dict[str, Any]:
    """The JSON document ``encode_state`` writes (always the newest format), as plain values."""
    return {
        "format_version": SUPPORTED_FORMAT_VERSION,
        "serial": state.serial,
        "lineage": state.lineage,
        "control_plane": {key: state.control_plane[key] for key in CONTROL_PLANE_KEYS if key in state.control_plane},
        "resources": _encode_resources(state),
        **({"listed_jobs": state.listed_jobs} if state.listed_jobs is not None else {}),
        **({"listed_deployments": state.listed_deployments} if state.listed_deployments is not None else {}),
    }


def same_content(state: State, other: State) -> bool:
    """True when writing ``state`` over ``other`` would change nothing (serial and lineage aside).

    Compares what would be written, so a tuple and a list with the same items are
    no change. Not via ``encode_state``: its pretty-printing runs json's slow
    pure-Python encoder.
    """
    return bool(_content_json(state) == _content_json(other))


def _content_json(state: State) -> Any:
    document = state_document(replace(state, serial=0, lineage=None))
    return json.loads(json.dumps(document, ensure_ascii=False))


def _encode_resources(state: State) -> dict[str, dict[str, Any]]:
    # The job section is always written, empty or not, so readers (and scripts) can
    # always index `resources.job`; other kinds only when they hold records (a state
    # without deployments keeps the bytes older rlorinfra wrote). Kinds sort by name.
    kinds = {Kind.JOB} | {kind for kind, records in state.resources.items() if records}
    return {
        kind.value: {name: _encode_record(rec) for name, rec in sorted(state.resources.get(kind, {}).items())}
        for kind in sorted(kinds)
    }


def _encode_record(record: Record) -> dict[str, Any]:
    data = record.to_dict()
    data["spec"] = _sorted_deep(data["spec"])
    return data


def _sorted_deep(value: Any) -> Any:
    # Sorted keys at every depth make the bytes independent of insertion order.
    if isinstance(value, dict):
        return {key: _sorted_deep(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted_deep(item) for item in value]
    return value


def decode_state(data: bytes, path: Path) -> State:
    """Parse state file bytes read from ``path`` (format 2, or format 1 upgraded in memory).

    Raises ``StateError`` for bytes that are not a state document (corrupt or
    truncated: the message points at ``<state>.backup``), for a format written
    by a newer rlorinfra, for a resource kind this rlorinfra does not know, and
    for any missing or mistyped field (named).
    """
    document = _parse_json(data, path)
    version = _check_format_version(document, path)
    return State(
        format_version=SUPPORTED_FORMAT_VERSION,
        serial=_serial(document, path),
        lineage=_optional_str(document, "lineage", "lineage", path),
        control_plane=_control_plane(document, path),
        resources=_resources(document, version, path),
        listed_jobs=_listed_count(document, "listed_jobs", path),
        listed_deployments=_listed_count(document, "listed_deployments", path),
    )


def _resources(document: dict[str, Any], version: int, path: Path) -> dict[Kind, Mapping[str, Record]]:
    """The ``resources`` section by kind; format 1's top-level ``jobs`` becomes the job section."""
    if version == 1:
        return {Kind.JOB: _jobs(document, "jobs", path)}
    sections = document.get("resources")
    if not isinstance(sections, dict):
        problem = "is missing" if "resources" not in document else "must be an object keyed by resource kind"
        raise _field_error(path, "resources", problem)
    kinds = [_known_kind(text, path) for text in sections]
    return {kind: _SECTION_DECODERS[kind](sections, f"resources.{kind.value}", path) for kind in kinds}


def _known_kind(text: str, path: Path) -> Kind:
    if text in {kind.value for kind in _SECTION_DECODERS}:
        return Kind(text)
    known = ", ".join(f"`{kind.value}`" for kind in sorted(_SECTION_DECODERS))
    raise StateError(
        f"State file {path} holds resources of an unknown kind",
        f"Its `resources` has a section `{_clip(text)}`; this rlorinfra manages the kinds {known}. "
        "The file was written by a newer rlorinfra (upgrade with `pip install -U rlorinfra` and run "
        f"the command again) or edited by hand (the previous version is in {backup_path_for(path)}). "
        "The file was not changed.",
    )


def corrupt_state_error(path: Path, problem: str) -> StateError:
    """The error for a state file that cannot be used as it is, with recovery steps."""
    backup = backup_path_for(path)
    return StateError(
        f"State file {path} is corrupt",
        f"{problem} The file may have been truncated by a crash or a full disk, or edited "
        f"by hand. rlorinfra keeps the previous version in {backup}: inspect it, restore it "
        f"with `cp {backup} {path}`, then run `rlorinfra plan` to see what changed since "
        "(jobs created after that version are found again by their recorded IDs or can be "
        "adopted with `rlorinfra import NAME JOB_ID`).",
    )


def too_big_error(path: Path, size: int) -> StateError:
    """The corrupt-state error for a file over ``MAX_STATE_BYTES`` (refused unparsed)."""
    return corrupt_state_error(path, f"It is {size} bytes; a state file is never bigger than {MAX_STATE_BYTES} bytes.")


def _parse_json(data: bytes, path: Path) -> dict[str, Any]:
    if len(data) > MAX_STATE_BYTES:
        raise too_big_error(path, len(data))
    if not data.strip():
        raise corrupt_state_error(path, "It is empty.")
    try:
        document = load_strict_json(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise corrupt_state_error(path, f"It is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise corrupt_state_error(path, f"It is not valid JSON ({exc.msg} at {where}).") from None
    except StrictJsonError as exc:
        raise corrupt_state_error(path, exc.problem) from None
    except ValueError as exc:  # anything else json refuses must not become an internal error
        raise corrupt_state_error(path, f"It cannot be parsed ({_clip(str(exc))}).") from None
    if not isinstance(document, dict):
        raise corrupt_state_error(path, f"Its top level is a JSON {type(document).__name__}, not an object.")
    return document


def _field_error(path: Path, field: str, problem: str) -> StateError:
    return corrupt_state_error(path, f"Field `{field}` {problem}.")


def _check_format_version(document: dict[str, Any], path: Path) -> int:
    if "format_version" not in document:
        raise _field_error(path, "format_version", "is missing")
    version = document["format_version"]
    if not _is_int(version) or version < 1:
        raise _field_error(path, "format_version", f"must be a positive integer, not {version!r}")
    if version > SUPPORTED_FORMAT_VERSION:
        raise StateError(
            f"State file {path} was written by a newer rlorinfra",
            f"It has format_version {version}; this rlorinfra reads format_version "
            f"{SUPPORTED_FORMAT_VERSION} and older. Upgrade rlorinfra (`pip install -U rlorinfra`) "
            "and run the command again. The file was not changed.",
        )
    return int(version)


def _serial(document: dict[str, Any], path: Path) -> int:
    serial = document.get("serial")
    if not _is_int(serial) or serial < 0:
        problem = "is missing" if "serial" not in document else f"must be a non-negative integer, not {serial!r}"
        raise _field_error(path, "serial", problem)
    return serial


def _control_plane(document: dict[str, Any], path: Path) -> dict[str, Any]:
    value = document.get("control_plane", {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _field_error(path, "control_plane", "must be an object with `url` and `account_id`")
    return {key: _optional_str(value, key, f"control_plane.{key}", path) for key in CONTROL_PLANE_KEYS if key in value}


def _listed_count(document: dict[str, Any], key: str, path: Path) -> int | None:
    """``listed_jobs`` / ``listed_deployments``: how many rows the last full LIST returned, or absent."""
    value = document.get(key)
    if value is not None and (not _is_int(value) or value < 0):
        raise _field_error(path, key, f"must be a non-negative integer or absent, not {value!r}")
    return value


def _jobs(document: dict[str, Any], where: str, path: Path) -> dict[str, JobRecord]:
    """The job section found at ``where`` (``jobs`` in format 1, ``resources.job`` in format 2)."""
    key = where.rpartition(".")[2]
    if key not in document:
        if where == "jobs":
            raise _field_error(path, where, "is missing")
        return {}  # format 2: a kind with nothing managed may be left out
    jobs = document[key]
    if not isinstance(jobs, dict):
        raise _field_error(path, where, "must be an object keyed by display name")
    records = {name: _job(name, data, f"{where}.{name}", path) for name, data in jobs.items()}
    _check_ids_unique(records, where, path)
    return records


def _check_ids_unique(records: dict[str, JobRecord], where: str, path: Path) -> None:
    """Every job ID is well formed and tracked once: one live job, one record, one role.

    A state that names one job twice (under two names, or as a record's own job
    and as deposed) would have two records fight over it, or delete a running
    job as "deposed": corrupt, not something to plan with.
    """
    owner: dict[str, str] = {}
    for name, record in records.items():
        for job_id in (record.job_id, *record.deposed_job_ids):
            if not is_valid_job_id(job_id):
                raise _field_error(path, f"{where}.{name}", f"names an invalid job ID {job_id[:80]!r}")
            if job_id in owner:
                raise _field_error(path, f"{where}.{name}", f"tracks job {job_id}, which {owner[job_id]} tracks too")
            owner[job_id] = f'"{name}"'


def _job(name: str, data: Any, where: str, path: Path) -> JobRecord:
    if not name:
        raise _field_error(path, where.rpartition(".")[0], "has an entry with an empty display name")
    if not isinstance(data, dict):
        raise _field_error(path, where, "must be an object")
    for key in _REQUIRED_JOB_STRINGS:
        if not isinstance(data.get(key), str) or not data[key]:
            problem = "is missing" if key not in data else f"must be a non-empty string, not {data[key]!r}"
            raise _field_error(path, f"{where}.{key}", problem)
    for key in _OPTIONAL_JOB_STRINGS:
        _optional_str(data, key, f"{where}.{key}", path)
    if not isinstance(data.get("spec"), dict):
        raise _field_error(path, f"{where}.spec", "must be an object" if "spec" in data else "is missing")
    if "phase" not in data:
        raise _field_error(path, f"{where}.phase", "is missing")
    if data["phase"] not in PHASES:
        raise _field_error(path, f"{where}.phase", f"must be one of {', '.join(PHASES)}, not {data['phase']!r}")
    deposed = data.get("deposed_job_ids", [])
    if not isinstance(deposed, list) or not all(isinstance(k, str) and k for k in deposed):
        raise _field_error(path, f"{where}.deposed_job_ids", "must be a list of job IDs")
    unread = data.get("unread_fields", [])
    if not isinstance(unread, list) or not all(isinstance(k, str) for k in unread):
        raise _field_error(path, f"{where}.unread_fields", "must be a list of field names")
    _check_depends_on(data.get("depends_on", []), f"{where}.depends_on", path)
    _check_lifecycle(data, where, path)
    _check_watch(data.get("watch", {}), f"{where}.watch", path)
    return JobRecord.from_dict(data)


def _check_depends_on(value: Any, where: str, path: Path) -> None:
    if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise _field_error(path, where, "must be a list of addresses such as job.NAME")
    for text in value:
        try:
            parse_recorded_address(text)
        except ValueError:
            raise _field_error(path, where, f"names {_clip(repr(text))}, not an address such as job.NAME") from None


def _check_lifecycle(data: dict[str, Any], where: str, path: Path) -> None:
    """``protected`` (a boolean) and ``expires_at`` (an RFC 3339 time), both optional."""
    if not isinstance(data.get("protected", False), bool):
        raise _field_error(path, f"{where}.protected", f"must be true or false, not {_clip(repr(data['protected']))}")
    expires = _optional_str(data, "expires_at", f"{where}.expires_at", path)
    if expires is not None and parse_rfc3339(expires) is None:
        raise _field_error(path, f"{where}.expires_at", f"must be an RFC 3339 time, not {_clip(repr(expires))}")


def _check_watch(value: Any, where: str, path: Path) -> None:
    """watch's bookkeeping: an object of known keys, each of its type (a bad one is corrupt, not ignored)."""
    if not isinstance(value, dict):
        raise _field_error(path, where, "must be an object")
    unknown = sorted(set(value) - {"resumes", "resumable_seen", "backoff_until", "quarantined"})
    if unknown:
        raise _field_error(path, f"{where}.{unknown[0]}", "is not a field of watch's bookkeeping")
    resumes = value.get("resumes", [])
    if not isinstance(resumes, list) or not all(_is_number(t) for t in resumes):
        raise _field_error(path, f"{where}.resumes", "must be a list of unix times")
    seen = value.get("resumable_seen", 0)
    if not _is_int(seen) or seen < 0:
        raise _field_error(path, f"{where}.resumable_seen", f"must be an integer >= 0, not {seen!r}")
    backoff = value.get("backoff_until")
    if backoff is not None and not _is_number(backoff):
        raise _field_error(path, f"{where}.backoff_until", f"must be a unix time or null, not {backoff!r}")
    if not isinstance(value.get("quarantined", False), bool):
        raise _field_error(path, f"{where}.quarantined", "must be true or false")


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float))) and not isinstance(value, bool)


def _deployments(document: dict[str, Any], where: str, path: Path) -> dict[str, DeploymentRecord]:
    """The deployment section found at ``where`` (``resources.deployment``); absent is empty."""
    key = where.rpartition(".")[2]
    section = document.get(key, {})
    if not isinstance(section, dict):
        raise _field_error(path, where, "must be an object keyed by deployment ID")
    return {name: _deployment(name, data, f"{where}.{name}", path) for name, data in section.items()}


def _deployment(name: str, data: Any, where: str, path: Path) -> DeploymentRecord:
    if not isinstance(data, dict):
        raise _field_error(path, where, "must be an object")
    for key in ("deployment_id", "deployment_name"):
        if not isinstance(data.get(key), str) or not data[key]:
            problem = "is missing" if key not in data else f"must be a non-empty string, not {data[key]!r}"
            raise _field_error(path, f"{where}.{key}", problem)
    if data["deployment_id"] != name or not is_valid_deployment_id(name):
        raise _field_error(path, f"{where}.deployment_id", f"must equal its key, a valid deployment ID, not {name!r}")
    for key in _OPTIONAL_DEPLOYMENT_STRINGS:
        _optional_str(data, key, f"{where}.{key}", path)
    if not isinstance(data.get("spec"), dict):
        raise _field_error(path, f"{where}.spec", "must be an object" if "spec" in data else "is missing")
    if data.get("phase") not in PHASES:
        problem = "is missing" if "phase" not in data else f"must be one of {', '.join(PHASES)}, not {data['phase']!r}"
        raise _field_error(path, f"{where}.phase", problem)
    unread = data.get("unread_fields", [])
    if not isinstance(unread, list) or not all(isinstance(k, str) for k in unread):
        raise _field_error(path, f"{where}.unread_fields", "must be a list of field names")
    _check_depends_on(data.get("depends_on", []), f"{where}.depends_on", path)
    _check_lifecycle(data, where, path)
    _check_watch(data.get("watch", {}), f"{where}.watch", path)
    return DeploymentRecord.from_dict(data)


_OPTIONAL_DEPLOYMENT_STRINGS = (
    "observed_state",
    "hot_load_trainer_job",
    "hot_load_bucket_url",
    "deployment_shape_version",
    "created_at",
    "updated_at",
)

# The kinds this rlorinfra keeps in state, each with the decoder of its section.
# A new kind adds its decoder here; a section of any other kind is refused.
_SECTION_DECODERS: dict[Kind, Callable[[dict[str, Any], str, Path], Mapping[str, Record]]] = {
    Kind.JOB: _jobs,
    Kind.DEPLOYMENT: _deployments,
}


def _optional_str(data: dict[str, Any], key: str, field: str, path: Path) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _field_error(path, field, f"must be a string or null, not {value!r}")
    return value


def _is_int(value: Any) -> TypeGuard[int]:
    # bool is an int subclass; `true` is not a serial.
    return isinstance(value, int) and not isinstance(value, bool)
