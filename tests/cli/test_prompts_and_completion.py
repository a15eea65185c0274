"""Prompts that behave like Terraform's (force-unlock asks, Ctrl-D is a "no"), the
friendly error of `show` for a missing plan file, shell completion of job names, and
--help texts that describe the options the commands really take."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tty(monkeypatch):
    """Standard input is a terminal (the prompt's answers come from ``input=``)."""
    monkeypatch.setattr("rlorinfra.cli.runtime.stdin_is_tty", lambda: True)


# ------------------------------------------------------------------ force-unlock asks


@pytest.fixture
def stale_lock(folder: Path) -> str:
    """A lock left behind by a run that is gone: its info file, with its ID."""
    from rlorinfra.state.lock import StateLock, lock_info_path

    state = folder / "rlorinfra.state.json"
    info_path = lock_info_path(state)
    with StateLock(state, "apply") as info:
        saved = info_path.read_bytes()
    info_path.write_bytes(saved)
    return info.id


def _locked(folder: Path) -> bool:
    return (folder / "rlorinfra.state.json.lock.info").exists()


def test_force_unlock_asks_and_yes_unlocks(folder, stale_lock, tty):
    result = run_cli(["force-unlock", stale_lock], cwd=folder, input="yes\n")
    assert result.exit_code == 0, result.output
    assert "Do you really want to force-unlock?" in result.stdout
    assert "Only 'yes' will be accepted" in result.stdout
    assert "successfully unlocked" in result.stdout
    assert not _locked(folder)


@pytest.mark.parametrize("answer", ["no\n", "y\n", "\n", ""])  # "" is Ctrl-D
def test_force_unlock_anything_but_yes_keeps_the_lock(folder, stale_lock, tty, answer):
    result = run_cli(["force-unlock", stale_lock], cwd=folder, input=answer)
    assert result.exit_code == 1, result.output
    assert "force-unlock cancelled." in result.stderr and "Traceback" not in result.output
    assert _locked(folder)


def test_force_unlock_without_a_terminal_needs_force(folder, stale_lock):
    result = run_cli(["force-unlock", stale_lock], cwd=folder)
    assert result.exit_code == 1
    assert "standard input is not a terminal" in result.stderr and "--force" in result.stderr
    assert _locked(folder)


@pytest.mark.parametrize("flag", ["--force", "-force"])
def test_force_skips_the_question(folder, stale_lock, flag):
    result = run_cli(["force-unlock", flag, stale_lock], cwd=folder)
    assert result.exit_code == 0, result.output
    assert "Do you really" not in result.stdout and not _locked(folder)


def test_force_unlock_checks_the_lock_before_asking(folder, stale_lock, tty):
    wrong = run_cli(["force-unlock", "not-the-id"], cwd=folder, input="yes\n")
    assert wrong.exit_code == 1 and "Lock ID does not match" in wrong.stderr
    assert "Do you really" not in wrong.stdout and _locked(folder)
    (folder / "rlorinfra.state.json.lock.info").unlink()
    none = run_cli(["force-unlock", "1234"], cwd=folder)  # no TTY either: the real problem is said first
    assert none.exit_code == 1 and "No lock to remove" in none.stderr


# ------------------------------------------------------------------ Ctrl-D at the apply/destroy prompt


@pytest.mark.parametrize("verb,word", [("apply", "Apply"), ("destroy", "Destroy")])
def test_end_of_input_at_the_confirmation_is_a_no(folder, tty, verb, word):
    if verb == "destroy":
        assert run_cli(["apply", "--auto-approve"], cwd=folder).exit_code == 0
    result = run_cli([verb], cwd=folder, input="")  # Ctrl-D: EOF at the prompt
    assert result.exit_code == 1, result.output
    assert f"Error: {word} cancelled." in result.stderr
    assert "Interrupted" not in result.output
    if verb == "apply":
        assert (
            not (folder / "rlorinfra.state.json").exists()
            or "job_id" not in (folder / "rlorinfra.state.json").read_text()
        )


def test_ctrl_c_at_the_confirmation_is_still_an_interrupt(folder, tty, monkeypatch):
    def prompt(*args, **kwargs):
        raise _abort_from(KeyboardInterrupt())  # what click.prompt raises on Ctrl-C

    monkeypatch.setattr(click, "prompt", prompt)
    result = run_cli(["apply"], cwd=folder)
    assert result.exit_code == 130, result.output
    assert "Interrupted." in result.stderr and "cancelled" not in result.stderr


def _abort_from(cause: BaseException) -> click.exceptions.Abort:
    """The Abort click.prompt raises for ``cause`` (it raises ``from None`` inside the handler)."""
    try:
        try:
            raise cause
        except BaseException:
            raise click.exceptions.Abort() from None
    except click.exceptions.Abort as abort:
        return abort


def test_yes_at_the_confirmation_applies(folder, tty):
    result = run_cli(["apply"], cwd=folder, input="yes\n")
    assert result.exit_code == 0, result.output
    assert "Apply complete! Resources: 2 created" in result.stdout


# ------------------------------------------------------------------ show of a missing plan file


def test_show_of_a_missing_plan_file_is_the_friendly_plan_file_error(folder):
    shown = run_cli(["show", "missing.plan"], cwd=folder)
    applied = run_cli(["apply", "missing.plan"], cwd=folder)
    assert shown.exit_code == applied.exit_code == 1
    assert shown.stderr.startswith("Error: Plan file missing.plan does not exist")
    assert "rlorinfra plan --out missing.plan" in shown.stderr
    assert "Usage:" not in shown.stderr
    assert shown.stderr == applied.stderr


def test_show_of_a_folder_is_still_refused(folder):
    result = run_cli(["show", "."], cwd=folder)
    assert result.exit_code == 1 and "Traceback" not in result.output


# ------------------------------------------------------------------ shell completion


def _complete(words: str, cwd: Path) -> list[str]:
    """What bash completion offers for ``words`` (the last word is the incomplete one)."""
    parts = words.split(" ")
    env = {
        **os.environ,
        "_RLORINFRA_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "rlorinfra"], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


BOTH = ["grpo-policy-trainer", "grpo-reference-trainer"]


@pytest.mark.parametrize(
    "words,expected",
    [
        ("rlorinfra plan --target ", BOTH),
        ("rlorinfra plan --target grpo-r", ["grpo-reference-trainer"]),
        ("rlorinfra plan --replace grpo-p", ["grpo-policy-trainer"]),
        ("rlorinfra apply --target ", BOTH),
        ("rlorinfra destroy --target ", BOTH),
        ("rlorinfra state show ", BOTH),
        ("rlorinfra state rm ", BOTH),
        ("rlorinfra state mv grpo-p", ["grpo-policy-trainer"]),
        ("rlorinfra output ", BOTH),
        ("rlorinfra import ", BOTH),
    ],
)
def test_job_names_complete_from_the_default_config(folder, words, expected):
    assert _complete(words, folder) == expected


def test_completion_reads_the_config_given_with_f(tmp_path):
    (tmp_path / "other.toml").write_text(
        '[jobs.alpha]\nbase_model = "accounts/fireworks/models/qwen3-8b"\ntraining_shape = "ts-qwen3-8b-policy"\n'
    )
    assert _complete("rlorinfra plan -f other.toml --target ", tmp_path) == ["alpha"]
    assert _complete("rlorinfra state show -f other.toml ", tmp_path) == ["alpha"]


@pytest.mark.parametrize("content", [None, "[jobs.x]\nlora_rank = -1\n", "not toml ["])
def test_completion_without_a_usable_config_offers_nothing_and_prints_nothing(tmp_path, content):
    if content is not None:
        (tmp_path / "rlorinfra.toml").write_text(content)
    assert _complete("rlorinfra plan --target ", tmp_path) == []
    assert _complete("rlorinfra state show ", tmp_path) == []


def test_state_commands_complete_names_only_in_state_too(folder):
    assert run_cli(["apply", "--auto-approve"], cwd=folder).exit_code == 0
    config = (folder / "rlorinfra.toml").read_text()
    (folder / "rlorinfra.toml").write_text(config[: config.index("[jobs.grpo-reference-trainer]")])
    assert _complete("rlorinfra state show ", folder) == BOTH
    assert _complete("rlorinfra plan --target ", folder) == ["grpo-policy-trainer"]


def test_completion_in_process_with_clicks_machinery(folder, monkeypatch):
    from click.shell_completion import ShellComplete

    from rlorinfra.cli.main import cli

    monkeypatch.chdir(folder)
    completer = ShellComplete(cli, {}, "rlorinfra", "_RLORINFRA_COMPLETE")
    items = completer.get_completions(["destroy", "--target"], "grpo-")
    assert [item.value for item in items] == BOTH


# ------------------------------------------------------------------ help describes the real options


def _long_options(command: click.Command) -> set[str]:
    return {
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--") and opt != "--file"
    }


@pytest.mark.parametrize("name", ["apply", "destroy"])
def test_help_of_apply_and_destroy_names_every_option_they_take(name):
    from rlorinfra.cli.main import cli

    command = cli.get_command(click.Context(cli), name)
    doc = command.help or ""
    missing = [opt for opt in sorted(_long_options(command)) if opt not in doc and opt != "--insecure"]
    assert not missing, f"`rlorinfra {name} --help` does not describe {missing}"


def test_help_of_destroy_does_not_describe_plan_options_it_lacks():
    from rlorinfra.cli.main import cli

    destroy = cli.get_command(click.Context(cli), "destroy")
    for opt in ("--replace", "--refresh", "--health-check", "PLANFILE"):
        assert opt not in (destroy.help or ""), opt
    apply = cli.get_command(click.Context(cli), "apply")
    assert "PLANFILE" in apply.help and "--health-check/--no-health-check" in apply.help
