"""The state file format: deterministic encoding, strict decoding with useful errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlorinfra.errors import StateError
from rlorinfra.model.address import Address, Kind
from rlorinfra.state.codec import SUPPORTED_FORMAT_VERSION, decode_state, encode_state
from rlorinfra.state.model import PHASES, JobRecord, State
from tests.state.state_samples import sample_state

PATH = Path("/srv/team/prod.state.json")


def _jobs(document: dict) -> dict:
    """The job section of a format-2 or format-1 document."""
    return document["resources"]["job"] if "resources" in document else document["jobs"]


def as_format_1(document: dict) -> dict:
    """The same state as format 1 wrote it: a top-level "jobs" instead of "resources"."""
    old = {key: value for key, value in document.items() if key != "resources"}
    return {**old, "format_version": 1, "jobs": json.loads(json.dumps(document["resources"]["job"]))}


def encoded(state: State | None = None) -> dict:
    return json.loads(encode_state(state or replace(sample_state(), serial=3, lineage="lin-1")))


def test_round_trip_keeps_every_field():
    state = replace(sample_state(), serial=7, lineage="5b7c7a3e-0000-4000-8000-000000000000")
    assert decode_state(encode_state(state), PATH) == state


def test_encoding_is_pretty_sorted_and_ends_with_newline():
    state = sample_state()  # built with trainer-b first
    data = encode_state(state)
    text = data.decode()
    assert text.endswith("}\n")
    assert text.startswith('{\n  "format_version": 2,\n')
    assert list(json.loads(data)["resources"]["job"]) == ["trainer-a", "trainer-b"]
    # The same state built in another order gives the same bytes.
    other = State(
        control_plane={"account_id": "acct", "url": "local"}, resources={Kind.JOB: dict(reversed(state.jobs.items()))}
    )
    assert encode_state(other) == data


def test_top_level_and_job_fields_are_exactly_the_documented_ones():
    document = encoded()
    assert set(document) == {"format_version", "serial", "lineage", "control_plane", "resources"}
    assert set(document["resources"]) == {"job"}
    assert set(document["resources"]["job"]["trainer-b"]) == {
        "job_id",
        "job_name",
        "endpoint",
        "spec",
        "phase",
        "observed_state",
        "training_shape_version",
        "created_at",
        "updated_at",
    }
    assert "api_key" not in json.dumps(document).lower()


@pytest.mark.parametrize(
    "data",
    [b"", b"   \n", b'{"format_version": 1, "serial": 2, "jo', b"\xff\xfe{}", b"[1, 2]", b"null"],
    ids=["empty", "blank", "truncated", "not-utf8", "list", "null"],
)
def test_corrupt_bytes_point_at_the_backup(data):
    with pytest.raises(StateError) as err:
        decode_state(data, PATH)
    text = str(err.value)
    assert err.value.summary == f"State file {PATH} is corrupt"
    assert f"{PATH}.backup" in text
    assert f"cp {PATH}.backup {PATH}" in text


def test_truncated_real_state_is_reported_as_corrupt():
    data = encode_state(sample_state())
    with pytest.raises(StateError, match="is corrupt") as err:
        decode_state(data[: len(data) // 2], PATH)
    assert "not valid JSON" in err.value.detail


def test_newer_format_version_asks_for_an_upgrade():
    document = encoded()
    document["format_version"] = SUPPORTED_FORMAT_VERSION + 1
    document["resources"] = "a shape this version cannot know"
    with pytest.raises(StateError) as err:
        decode_state(json.dumps(document).encode(), PATH)
    assert "written by a newer rlorinfra" in err.value.summary
    assert "Upgrade rlorinfra" in err.value.detail


def _set(document: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    target = document
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format_version", _DELETE),
        ("format_version", "1"),
        ("format_version", 0),
        ("serial", _DELETE),
        ("serial", "3"),
        ("serial", -1),
        ("serial", True),
        ("lineage", 5),
        ("control_plane", ["local"]),
        ("control_plane.account_id", 12),
        ("resources", _DELETE),
        ("resources", []),
        ("resources.job", []),
        ("resources.job.trainer-a", "job-a"),
        ("resources.job.trainer-a.job_id", _DELETE),
        ("resources.job.trainer-a.job_id", ""),
        ("resources.job.trainer-a.job_name", None),
        ("resources.job.trainer-a.endpoint", 3),
        ("resources.job.trainer-a.spec", _DELETE),
        ("resources.job.trainer-a.spec", ["base_model"]),
        ("resources.job.trainer-a.phase", _DELETE),
        ("resources.job.trainer-a.phase", "exploded"),
        ("resources.job.trainer-a.observed_state", 1),
        ("resources.job.trainer-a.created_at", {}),
    ],
)
def test_missing_or_garbled_fields_are_named(field, value):
    document = encoded()
    _set(document, field, value)
    with pytest.raises(StateError) as err:
        decode_state(json.dumps(document).encode(), PATH)
    assert f"`{field}`" in err.value.detail
    assert f"{PATH}.backup" in err.value.detail


def test_optional_fields_may_be_null():
    document = encoded()
    document["lineage"] = None
    document["control_plane"] = None
    document["resources"]["job"]["trainer-a"]["training_shape_version"] = None
    state = decode_state(json.dumps(document).encode(), PATH)
    assert state.lineage is None and state.control_plane == {}
    assert state.jobs["trainer-a"].training_shape_version is None


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _text
_job_ids = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
_records = st.builds(
    JobRecord,
    job_id=_job_ids,
    job_name=_text,
    endpoint=_text,
    spec=st.dictionaries(_text, _scalars | st.lists(_text, max_size=3), max_size=4),
    phase=st.sampled_from(PHASES),
    observed_state=st.none() | _text,
    training_shape_version=st.none() | _text,
    created_at=st.none() | _text,
    updated_at=st.none() | _text,
    depends_on=st.lists(st.builds(Address, st.sampled_from(Kind), _text), max_size=2).map(tuple),
)
_states = st.builds(
    State,
    serial=st.integers(0, 10**6),
    lineage=st.none() | _text,
    control_plane=st.fixed_dictionaries({}, optional={"url": _text, "account_id": _text}),
    resources=st.dictionaries(_text, _records, max_size=4).map(lambda jobs: {Kind.JOB: jobs}),
).filter(lambda s: len({r.job_id for r in s.jobs.values()}) == len(s.jobs))  # one record per job ID


@given(_states)
def test_any_state_survives_a_round_trip(state):
    decoded = decode_state(encode_state(state), PATH)
    # Lists come back as lists (tuples in a spec are a caller's choice, not state).
    assert decoded == state
    assert encode_state(decoded) == encode_state(state)


def test_only_url_and_account_of_the_control_plane_are_ever_written():
    state = State(control_plane={"url": "local", "account_id": "acct", "api_key": "fw-secret", "api_key_env": "K"})
    data = encode_state(state)
    assert b"fw-secret" not in data and b"api_key" not in data
    assert decode_state(data, PATH).control_plane == {"url": "local", "account_id": "acct"}


@pytest.mark.parametrize(
    "edit,problem",
    [
        (lambda d: _jobs(d)["b"].update(job_id=_jobs(d)["a"]["job_id"]), "tracks job"),
        (lambda d: _jobs(d)["a"].update(deposed_job_ids=[_jobs(d)["a"]["job_id"]]), "tracks job"),
        (lambda d: _jobs(d)["b"].update(deposed_job_ids=[_jobs(d)["a"]["job_id"]]), "tracks job"),
        (lambda d: _jobs(d)["a"].update(job_id="../../etc"), "invalid job ID"),
    ],
)
def test_a_state_that_names_one_job_twice_or_a_bad_id_is_corrupt(edit, problem):
    """In format 2 and in format 1 alike."""
    import json

    from rlorinfra.errors import StateError

    records = {
        name: JobRecord(job_id=f"{name}-1", job_name="n", endpoint="e", spec={}, phase="ready") for name in ("a", "b")
    }
    document = json.loads(encode_state(State(serial=1, lineage="l", resources={Kind.JOB: records})))
    for version in (document, as_format_1(document)):
        edit(version)
        with pytest.raises(StateError, match="corrupt") as info:
            decode_state(json.dumps(version).encode(), PATH)
        assert problem in info.value.detail
