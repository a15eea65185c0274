"""Strict reading of state and plan files: duplicate keys, absurd numbers, deep nesting,
huge files and non-files are corrupt, with the usual recovery message, never a crash."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from rlorinfra.errors import PlanFileError, StateError
from rlorinfra.plan.planfile import read_plan_file, write_plan_file
from rlorinfra.state import codec
from rlorinfra.state.codec import MAX_JSON_DEPTH, MAX_STATE_BYTES, decode_state, encode_state, load_strict_json
from rlorinfra.state.store import StateStore
from tests.state.state_samples import sample_state

PATH = Path("/srv/team/prod.state.json")


def good_text() -> str:
    return encode_state(sample_state()).decode()


def job_text(name: str, job_id: str) -> str:
    job = {
        "job_id": job_id,
        "job_name": f"accounts/a/rlorTrainerJobs/{job_id}",
        "endpoint": "https://gw/x",
        "spec": {"base_model": "m"},
        "phase": "ready",
    }
    return f'"{name}": {json.dumps(job)}'


def assert_corrupt(data: bytes | str, *words: str) -> StateError:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(StateError) as info:
        decode_state(raw, PATH)
    err = info.value
    assert "is corrupt" in err.summary, err
    assert f"{PATH}.backup" in err.detail
    assert len(str(err)) < 2000, "an error is a paragraph, never an echo of the input"
    for word in words:
        assert word.lower() in err.detail.lower(), err.detail
    return err


# -- duplicate keys --------------------------------------------------------------------------


def test_a_job_given_twice_is_corrupt_not_shadowed():
    text = (
        '{"format_version": 1, "serial": 2, "lineage": "L", "control_plane": {}, "jobs": {'
        + job_text("alpha", "alpha-1")
        + ", "
        + job_text("alpha", "alpha-2")
        + "}}"
    )
    assert_corrupt(text, '"alpha"', "twice")


def test_a_duplicate_top_level_key_is_corrupt():
    text = good_text().replace('"serial": 0,', '"serial": 0, "serial": 9,')
    assert '"serial": 9' in text
    assert_corrupt(text, '"serial"', "twice")


def test_a_duplicate_key_inside_a_spec_is_corrupt():
    text = good_text().replace('"lora_rank": 16', '"lora_rank": 16, "lora_rank": 64', 1)
    assert '"lora_rank": 64' in text
    assert_corrupt(text, '"lora_rank"', "twice")


def test_a_duplicate_control_plane_key_is_corrupt():
    text = good_text().replace('"account_id": "acct"', '"account_id": "acct", "account_id": "other"')
    assert_corrupt(text, '"account_id"')


# -- absurd numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [21, 4301, 5000, 100_000])
def test_an_integer_with_thousands_of_digits_is_corrupt(digits):
    text = good_text().replace('"serial": 0', '"serial": ' + "9" * digits)
    err = assert_corrupt(text, f"{digits} digits")
    assert "9" * 100 not in str(err)


def test_a_20_digit_integer_still_reads():
    doc = json.loads(good_text())
    doc["serial"] = 2**64 - 1
    assert decode_state(json.dumps(doc).encode(), PATH).serial == 2**64 - 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_corrupt(literal):
    text = good_text().replace('"lora_rank": 16', f'"lora_rank": {literal}', 1)
    assert_corrupt(text, "not a finite number")


def test_a_non_finite_serial_is_corrupt():
    assert_corrupt(good_text().replace('"serial": 0', '"serial": NaN'), "NaN")


# -- nesting, strings ------------------------------------------------------------------------


def nested_spec(depth: int) -> str:
    """The sample state with a spec value nested so the whole document is ``depth`` deep."""
    doc = json.loads(good_text())
    value: object = 1
    for _ in range(depth - 5):  # document > resources > job > record > spec > value...
        value = [value]
    doc["resources"]["job"]["trainer-a"]["spec"]["extra"] = value
    return json.dumps(doc)


def test_nesting_up_to_the_limit_reads():
    state = decode_state(nested_spec(MAX_JSON_DEPTH).encode(), PATH)
    assert "extra" in state.jobs["trainer-a"].spec


def test_nesting_beyond_the_limit_is_corrupt():
    assert_corrupt(nested_spec(MAX_JSON_DEPTH + 1), f"deeper than {MAX_JSON_DEPTH}")


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_nesting_that_would_exhaust_the_stack_is_corrupt_not_a_recursion_error(depth):
    assert_corrupt("[" * depth + "]" * depth, "deeper than")
    assert_corrupt('{"a":' * depth + "1" + "}" * depth, "deeper than")


def test_a_lone_surrogate_is_corrupt_and_not_a_crash_on_the_next_write():
    text = good_text().replace('"trainer-a":', '"trainer-\\ud800":', 1)
    assert_corrupt(text, "surrogate")


def test_load_strict_json_accepts_what_rlorinfra_writes():
    text = good_text()
    assert load_strict_json(text) == json.loads(text)


# -- size and file type ----------------------------------------------------------------------


def test_a_state_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "prod.state.json"
    with path.open("wb") as handle:  # sparse: costs no disk and no time
        handle.truncate(MAX_STATE_BYTES + 1)
    store = StateStore(path)
    for action in (store.read, lambda: store.write(sample_state())):
        with pytest.raises(StateError) as info:
            action()
        assert "is corrupt" in info.value.summary
        assert str(MAX_STATE_BYTES + 1) in info.value.detail and f"{path}.backup" in info.value.detail
    assert path.stat().st_size == MAX_STATE_BYTES + 1
    assert not store.backup_path.exists()


def test_decode_refuses_oversized_bytes(monkeypatch):
    monkeypatch.setattr(codec, "MAX_STATE_BYTES", 100)
    assert_corrupt(good_text(), "bytes")


def test_a_fifo_as_state_path_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "prod.state.json"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def read() -> None:
        try:
            StateStore(fifo).read()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO state path blocked"
    assert isinstance(result[0], StateError) and "not a regular file" in result[0].summary


def test_a_folder_as_state_path_is_refused(tmp_path):
    folder = tmp_path / "prod.state.json"
    folder.mkdir()
    with pytest.raises(StateError) as info:
        StateStore(folder).write(sample_state())
    assert "not a regular file" in info.value.summary and "[state] path" in info.value.detail
    assert list(folder.iterdir()) == []


# -- plan files ------------------------------------------------------------------------------


@pytest.fixture
def plan_text(tmp_path) -> str:
    path = tmp_path / "saved.plan"
    write_plan_file(
        path,
        {"changes": [{"name": "a", "action": "create"}]},
        state_lineage="L",
        state_serial=3,
        config_digest="d" * 64,
        control_plane={"url": "local", "account_id": "acct"},
    )
    return path.read_text()


def assert_damaged_plan(tmp_path: Path, text: str, *words: str) -> None:
    path = tmp_path / "bad.plan"
    path.write_text(text)
    with pytest.raises(PlanFileError) as info:
        read_plan_file(path)
    assert str(path) in info.value.summary
    assert "rlorinfra plan --out" in info.value.detail
    for word in words:
        assert word.lower() in str(info.value).lower(), info.value


def test_a_saved_plan_reads_back(tmp_path, plan_text):
    path = tmp_path / "ok.plan"
    path.write_text(plan_text)
    assert read_plan_file(path).state_serial == 3


def test_a_plan_file_with_a_duplicate_key_is_damaged(tmp_path, plan_text):
    text = plan_text.replace('"state_serial": 3', '"state_serial": 3,\n  "state_serial": 4')
    assert_damaged_plan(tmp_path, text, '"state_serial"', "twice")


def test_a_plan_file_with_a_duplicate_key_in_the_document_is_damaged(tmp_path, plan_text):
    text = plan_text.replace('"action": "create"', '"action": "create", "action": "delete"')
    assert '"delete"' in text
    assert_damaged_plan(tmp_path, text, '"action"')


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_a_plan_file_nested_too_deep_is_damaged(tmp_path, plan_text, depth):
    text = plan_text.replace('"changes": [', '"deep": ' + "[" * depth + "]" * depth + ', "changes": [')
    assert_damaged_plan(tmp_path, text, "deeper than")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "9" * 5000])
def test_a_plan_file_with_an_absurd_number_is_damaged(tmp_path, plan_text, value):
    assert_damaged_plan(tmp_path, plan_text.replace('"state_serial": 3', f'"state_serial": {value}'))
