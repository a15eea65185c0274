"""watch's bookkeeping in a state record: written only when set, round-tripped, strictly decoded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rlorinfra.errors import StateError
from rlorinfra.state.codec import decode_state, encode_state
from rlorinfra.state.model import State, WatchRecord
from tests.state.state_samples import sample_state

PATH = Path("/srv/team/prod.state.json")


def _with_watch(watch: WatchRecord) -> State:
    state = replace(sample_state(), serial=3, lineage="lin-1")
    name, record = next(iter(state.jobs.items()))
    return state.with_job(name, replace(record, watch=watch))


def test_an_empty_watch_record_writes_no_key():
    document = json.loads(encode_state(_with_watch(WatchRecord())))
    assert all("watch" not in record for record in document["resources"]["job"].values())


def test_watch_bookkeeping_round_trips():
    watch = WatchRecord(resumes=(1.5, 2.0), resumable_seen=1, backoff_until=99.0, quarantined=True)
    state = _with_watch(watch)
    decoded = decode_state(encode_state(state), PATH)
    assert decoded == state
    assert [r.watch for r in decoded.jobs.values() if not r.watch.is_empty] == [watch]


def test_only_set_keys_are_written():
    document = json.loads(encode_state(_with_watch(WatchRecord(quarantined=True))))
    watched = [r["watch"] for r in document["resources"]["job"].values() if "watch" in r]
    assert watched == [{"quarantined": True}]


@pytest.mark.parametrize(
    "watch,field",
    [
        ([], "watch"),
        ({"resumes": ["yesterday"]}, "watch.resumes"),
        ({"resumable_seen": -1}, "watch.resumable_seen"),
        ({"resumable_seen": True}, "watch.resumable_seen"),
        ({"backoff_until": "soon"}, "watch.backoff_until"),
        ({"quarantined": "yes"}, "watch.quarantined"),
        ({"paused": True}, "watch.paused"),
    ],
)
def test_a_malformed_watch_record_is_refused_naming_the_field(watch, field):
    document = json.loads(encode_state(_with_watch(WatchRecord())))
    name = next(iter(document["resources"]["job"]))
    document["resources"]["job"][name]["watch"] = watch
    with pytest.raises(StateError) as info:
        decode_state(json.dumps(document).encode(), PATH)
    assert field in str(info.value.summary) + str(info.value.detail)
