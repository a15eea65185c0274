"""Commands on state through the real CLI: state list/show/rm/mv, output, show, force-unlock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlorinfra.state import lock as lock_module
from rlorinfra.state.codec import encode_state
from rlorinfra.state.lock import lock_info_path, read_lock_info
from rlorinfra.state.store import StateStore
from tests.state.state_samples import sample_state

CONFIG = """\
[jobs.trainer-a]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[state]
path = "team.state.json"
"""


@pytest.fixture
def project(tmp_path: Path):
    """A config, and its state seeded with two jobs (serial 1)."""
    config = tmp_path / "prod.toml"
    config.write_text(CONFIG)
    store = StateStore(tmp_path / "team.state.json")
    store.write(sample_state())
    return config, store


def test_state_list_prints_one_name_per_line(cli, project):
    config, _ = project
    result = cli(["state", "list", "-f", config])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "trainer-a\ntrainer-b\n", "")


def test_state_list_of_no_state_prints_nothing(cli, tmp_path):
    (tmp_path / "rlorinfra.toml").write_text(CONFIG.split("[state]")[0])
    result = cli(["state", "list"], cwd=tmp_path)
    assert (result.exit_code, result.stdout) == (0, "")


def test_state_show_prints_the_record_readably(cli, project):
    config, _ = project
    result = cli(["state", "show", "trainer-b", "-f", config])
    assert result.exit_code == 0
    for text in (
        "# trainer-b:",
        'job_id                 = "job-b"',
        'endpoint               = "https://gw.example/training/v1/rlorTrainerJobs/acct/job-b"',
        'phase                  = "ready"',
        'observed_state         = "JOB_STATE_RUNNING"',
        'training_shape_version = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy/versions/v3"',
        "        lora_rank  = 16",
    ):
        assert text in result.stdout


def test_state_show_json_is_the_record(cli, project):
    config, store = project
    result = cli(["state", "show", "trainer-a", "--json", "-f", config])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == store.read().jobs["trainer-a"].to_dict()


def test_state_show_of_an_unknown_name_suggests_state_list(cli, project):
    config, _ = project
    result = cli(["state", "show", "nope", "-f", config])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: No job named 'nope' in state")
    assert "rlorinfra state list" in result.stderr


def test_state_rm_forgets_the_job_and_explains_how_to_readopt_it(cli, project):
    config, store = project
    before = store.path.read_bytes()
    result = cli(["state", "rm", "trainer-b", "-f", config])
    assert result.exit_code == 0, result.output
    assert "Removed trainer-b" in result.stdout
    assert f"rlorinfra import trainer-b job-b -f {config}" in result.stdout
    assert "keep running on the control plane" in result.stdout
    state = store.read()
    assert sorted(state.jobs) == ["trainer-a"] and state.serial == 2
    assert store.backup_path.read_bytes() == before
    assert not lock_info_path(store.path).exists()  # the lock was released


def test_state_rm_of_a_job_still_declared_warns(cli, project):
    config, store = project
    result = cli(["state", "rm", "trainer-a", "-f", config])
    assert result.exit_code == 0
    assert "Warning: 'trainer-a' is still declared" in result.stderr


def test_state_rm_of_an_unknown_name_changes_nothing(cli, project):
    config, store = project
    before = store.path.read_bytes()
    result = cli(["state", "rm", "trainer-b", "nope", "-f", config])
    assert result.exit_code == 1
    assert "No job named 'nope'" in result.stderr
    assert store.path.read_bytes() == before


def test_state_mv_renames_and_notes_the_live_display_name(cli, project):
    config, store = project
    record = store.read().jobs["trainer-b"]
    result = cli(["state", "mv", "trainer-b", "trainer-c", "-f", config])
    assert result.exit_code == 0, result.output
    assert 'Move "trainer-b" to "trainer-c"' in result.stdout
    assert "keeps its displayName 'trainer-b'" in result.stdout
    state = store.read()
    assert state.jobs["trainer-c"] == record and "trainer-b" not in state.jobs
    assert state.serial == 2


def test_state_mv_of_a_declared_job_warns_to_rename_the_config(cli, project):
    config, _ = project
    result = cli(["state", "mv", "trainer-a", "trainer-x", "-f", config])
    assert result.exit_code == 0
    assert "rename it to [jobs.trainer-x]" in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("trainer-a", "trainer-b", "Job 'trainer-b' already exists in state"),
        ("trainer-a", "x" * 64, "must be at most 63 characters"),
        ("trainer-a", " spaced", "whitespace"),
        ("nope", "trainer-z", "No job named 'nope'"),
    ],
)
def test_state_mv_refusals_change_nothing(cli, project, old, new, message):
    config, store = project
    before = store.path.read_bytes()
    result = cli(["state", "mv", old, new, "-f", config])
    assert result.exit_code == 1
    assert message in result.stderr
    assert store.path.read_bytes() == before


def test_output_text_lists_every_job(cli, project):
    config, _ = project
    result = cli(["output", "-f", config])
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "trainer-a = {\n"
        '  job_id   = "job-a"\n'
        '  job_name = "accounts/acct/rlorTrainerJobs/job-a"\n'
        '  endpoint = "https://gw.example/training/v1/rlorTrainerJobs/acct/job-a"\n'
        "}\n"
        "trainer-b = {\n"
    )


def test_output_json_maps_names_to_ids_and_endpoints(cli, project):
    config, _ = project
    result = cli(["output", "--json", "-f", config])
    assert json.loads(result.stdout) == {
        name: {
            "job_id": f"job-{name[-1]}",
            "job_name": f"accounts/acct/rlorTrainerJobs/job-{name[-1]}",
            "endpoint": f"https://gw.example/training/v1/rlorTrainerJobs/acct/job-{name[-1]}",
        }
        for name in ("trainer-a", "trainer-b")
    }


def test_output_of_one_name(cli, project):
    config, _ = project
    as_json = cli(["output", "trainer-b", "--json", "-f", config])
    assert json.loads(as_json.stdout)["job_id"] == "job-b"
    raw = cli(["output", "trainer-b", "--raw", "-f", config])
    assert raw.stdout == "https://gw.example/training/v1/rlorTrainerJobs/acct/job-b\n"
    unknown = cli(["output", "nope", "-f", config])
    assert unknown.exit_code == 1 and "rlorinfra state list" in unknown.stderr
    assert cli(["output", "--raw", "-f", config]).exit_code == 1


def test_output_of_an_empty_state(cli, tmp_path):
    (tmp_path / "rlorinfra.toml").write_text(CONFIG)
    result = cli(["output"], cwd=tmp_path)
    assert result.exit_code == 0 and result.stdout == ""
    assert "No outputs found" in result.stderr
    assert json.loads(cli(["output", "--json"], cwd=tmp_path).stdout) == {}


def test_show_renders_every_job_and_json_is_the_state_file(cli, project):
    config, store = project
    text = cli(["show", "-f", config])
    assert text.exit_code == 0
    assert "# trainer-a:" in text.stdout and "# trainer-b:" in text.stdout
    assert "serial 1" in text.stdout
    as_json = cli(["show", "--json", "-f", config])
    assert as_json.stdout.encode() == encode_state(store.read())


def test_show_of_an_empty_state(cli, tmp_path):
    (tmp_path / "rlorinfra.toml").write_text(CONFIG)
    result = cli(["show"], cwd=tmp_path)
    assert (result.exit_code, result.stdout) == (0, "The state file is empty. No jobs are managed.\n")


def test_show_of_a_saved_plan(cli, project, tmp_path):
    import rlorinfra.plan.planfile as planfile_module

    config, _ = project
    from rlorinfra.plan.document import plan_document
    from rlorinfra.plan.model import Plan

    document = plan_document(Plan(), control_plane={"url": "local", "account_id": "local"})
    planfile_module.write_plan_file(
        tmp_path / "saved.plan",
        document,
        state_lineage=None,
        state_serial=0,
        config_digest="d",
        control_plane={"url": "local"},
    )
    text = cli(["show", tmp_path / "saved.plan", "-f", config])
    assert text.exit_code == 0, text.output
    assert "No changes." in text.stdout
    as_json = cli(["show", tmp_path / "saved.plan", "--json", "-f", config])
    assert json.loads(as_json.stdout) == document
    garbled = tmp_path / "garbled.plan"
    planfile_module.write_plan_file(
        garbled,
        {"format_version": 1},
        state_lineage=None,
        state_serial=0,
        config_digest="d",
        control_plane={"url": "local"},
    )
    damaged = cli(["show", garbled, "-f", config])
    assert damaged.exit_code == 1 and "not a valid rlorinfra plan" in damaged.stderr
    assert "Traceback" not in damaged.output


def test_corrupt_state_is_a_clean_error(cli, project):
    config, store = project
    store.path.write_text('{"format_version": 1, "ser')
    result = cli(["state", "list", "-f", config])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"cp {store.backup_path} {store.path}" in result.stderr


# ------------------------------------------------------------- locking


def test_writing_commands_fail_at_once_when_another_process_holds_the_lock(cli, project, lock_holder):
    config, store = project
    before = store.path.read_bytes()
    holder = lock_holder(store.path, "apply")
    for args in (["state", "rm", "trainer-b"], ["state", "mv", "trainer-b", "trainer-c"]):
        result = cli([*args, "-f", config])
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: Error acquiring the state lock")
        assert f"ID:        {holder.info['id']}" in result.stderr
        assert f"PID:       {holder.proc.pid}" in result.stderr
        assert "Operation: apply" in result.stderr
        assert f"rlorinfra force-unlock {holder.info['id']} -f {config}" in result.stderr
    assert store.path.read_bytes() == before
    # Reading commands take no lock.
    assert cli(["state", "list", "-f", config]).exit_code == 0
    assert cli(["output", "-f", config]).exit_code == 0


def test_lock_timeout_waits_for_the_holder_to_release(cli, project, lock_holder, monkeypatch):
    config, store = project
    holder = lock_holder(store.path, "apply")
    sleeps: list[float] = []

    class WaitingTime:
        """The real clock; the first backoff sleep is when the holder finishes."""

        monotonic = staticmethod(lock_module.time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            holder.release()

    monkeypatch.setattr(lock_module, "time", WaitingTime)
    result = cli(["state", "rm", "trainer-b", "--lock-timeout", "60", "-f", config])
    assert result.exit_code == 0, result.output
    assert sleeps == [0.1]
    assert "trainer-b" not in store.read().jobs


def test_force_unlock_refuses_a_wrong_id_and_accepts_the_right_one(cli, project, lock_holder):
    config, store = project
    holder = lock_holder(store.path, "apply")
    wrong = cli(["force-unlock", "00000000-0000-4000-8000-000000000000", "-f", config])
    assert wrong.exit_code == 1
    assert "Lock ID does not match" in wrong.stderr and holder.info["id"] in wrong.stderr
    assert cli(["state", "rm", "trainer-b", "-f", config]).exit_code == 1

    right = cli(["force-unlock", "--force", holder.info["id"], "-f", config])
    assert right.exit_code == 0
    assert "successfully unlocked" in right.stdout
    result = cli(["state", "rm", "trainer-b", "-f", config])  # the holder is still alive
    assert result.exit_code == 0, result.output
    assert "trainer-b" not in store.read().jobs


def test_force_unlock_without_a_lock(cli, project):
    config, _ = project
    result = cli(["force-unlock", "whatever", "-f", config])
    assert result.exit_code == 1 and "No lock to remove" in result.stderr


def test_a_killed_holder_does_not_block_the_next_command(cli, project, lock_holder):
    config, store = project
    holder = lock_holder(store.path, "apply")
    holder.kill()
    result = cli(["state", "mv", "trainer-b", "trainer-c", "-f", config])
    assert result.exit_code == 0, result.output
    assert "trainer-c" in store.read().jobs
    assert read_lock_info(store.path) is None  # the stale info was replaced, then removed
