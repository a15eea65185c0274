"""State format 2 (resources by kind, then name) and reading format 1 (a top-level "jobs")."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rlorinfra.errors import StateError
from rlorinfra.model.address import Address, Kind
from rlorinfra.state.codec import decode_state, encode_state
from rlorinfra.state.model import State
from rlorinfra.state.store import StateStore
from tests.state.state_samples import make_record, sample_state
from tests.state.test_state_codec import as_format_1

PATH = Path("/srv/team/prod.state.json")
FIXTURE = Path(__file__).with_name("fixtures") / "format1" / "state-format1.json"


def document_of(state: State) -> dict:
    return json.loads(encode_state(state))


def test_records_sit_under_resources_by_kind_then_name():
    document = document_of(replace(sample_state(), serial=3, lineage="L"))
    assert document["format_version"] == 2
    assert "jobs" not in document
    assert list(document["resources"]) == ["job"]
    assert list(document["resources"]["job"]) == ["trainer-a", "trainer-b"]
    assert document["resources"]["job"]["trainer-b"]["job_id"] == "job-b"


def test_an_empty_state_still_has_a_job_section():
    # Scripts index resources.job without checking for it first.
    assert document_of(State())["resources"] == {"job": {}}


def test_depends_on_is_written_only_when_set_and_round_trips():
    plain = document_of(sample_state())
    assert "depends_on" not in plain["resources"]["job"]["trainer-a"]
    record = replace(make_record("job-c"), depends_on=(Address.job("trainer-a"), Address(Kind.DEPLOYMENT, "d")))
    state = sample_state().with_job("trainer-c", record)
    assert document_of(state)["resources"]["job"]["trainer-c"]["depends_on"] == ["job.trainer-a", "deployment.d"]
    assert decode_state(encode_state(state), PATH).jobs["trainer-c"].depends_on == record.depends_on


@pytest.mark.parametrize("value", ["job.a", [3], ["trainer-a"], ["job."], ["cluster.x"]])
def test_a_bad_depends_on_is_named(value):
    document = document_of(sample_state())
    document["resources"]["job"]["trainer-a"]["depends_on"] = value
    with pytest.raises(StateError, match="corrupt") as err:
        decode_state(json.dumps(document).encode(), PATH)
    assert "`resources.job.trainer-a.depends_on`" in err.value.detail


@pytest.mark.parametrize("kind", ["cluster", "deployments", "jobs", ""])
def test_an_unknown_kind_is_refused_clearly(kind):
    document = document_of(sample_state())
    document["resources"][kind] = {}
    with pytest.raises(StateError) as err:
        decode_state(json.dumps(document).encode(), PATH)
    assert err.value.summary == f"State file {PATH} holds resources of an unknown kind"
    assert f"section `{kind}`" in err.value.detail and "`job`" in err.value.detail
    assert "newer rlorinfra" in err.value.detail and "not changed" in err.value.detail


def test_format_1_reads_as_the_same_state():
    state = replace(sample_state(), serial=5, lineage="L")
    old = as_format_1(document_of(state))
    assert decode_state(json.dumps(old).encode(), PATH) == state


def test_format_1_errors_name_format_1_fields():
    old = as_format_1(document_of(sample_state()))
    del old["jobs"]["trainer-a"]["job_id"]
    with pytest.raises(StateError, match="corrupt") as err:
        decode_state(json.dumps(old).encode(), PATH)
    assert "`jobs.trainer-a.job_id`" in err.value.detail
    del old["jobs"]
    with pytest.raises(StateError, match="corrupt") as err:
        decode_state(json.dumps(old).encode(), PATH)
    assert "`jobs` is missing" in err.value.detail


def test_format_2_does_not_read_a_top_level_jobs():
    document = document_of(sample_state())
    document["jobs"] = document.pop("resources")["job"]
    with pytest.raises(StateError, match="corrupt") as err:
        decode_state(json.dumps(document).encode(), PATH)
    assert "`resources` is missing" in err.value.detail


def test_the_real_format_1_file_reads():
    state = decode_state(FIXTURE.read_bytes(), FIXTURE)
    assert sorted(state.jobs) == ["grpo-policy", "grpo-reference"]
    assert state.serial == 8 and state.lineage and state.control_plane["instance"]
    assert all(record.phase == "stopped" and not record.depends_on for record in state.jobs.values())


def test_a_format_1_file_is_upgraded_by_the_next_change_only(tmp_path):
    path = tmp_path / "prod.state.json"
    path.write_bytes(FIXTURE.read_bytes())
    store = StateStore(path)
    state = store.read()
    assert store.write(state) == state  # same content: nothing written, still format 1
    assert path.read_bytes() == FIXTURE.read_bytes()
    written = store.write(state.without_job("grpo-reference"))
    assert json.loads(path.read_bytes())["format_version"] == 2
    assert (written.serial, written.lineage) == (state.serial + 1, state.lineage)
    assert store.backup_path.read_bytes() == FIXTURE.read_bytes()
    assert store.read() == written
