"""A newcomer's path: the README's main command says what it left running and how to
remove it, `init` after the tour's copy of the quickstart is not an error, and the CI
example installs rlorinfra from where it really is."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
WORKFLOW = EXAMPLES / "ci" / "github-actions-drift.yml"
SUMMARY_SCRIPT = EXAMPLES / "ci" / "drift_summary.py"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder like a checkout: ``examples/`` with fast emulator provisioning."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    for path in (tmp_path / "examples").glob("*.toml"):
        path.write_text(re.sub(r"(?m)^provision_seconds\s*=\s*[0-9.]+", "provision_seconds = 0.1", path.read_text()))
    return tmp_path


# ------------------------------------------------------------------ what the main command leaves running


def test_the_readme_main_command_says_what_runs_and_how_to_destroy_it(checkout):
    result = run_cli(["apply", "-f", "examples/quickstart.toml", "--auto-approve"], cwd=checkout)
    assert result.exit_code == 0, result.output
    last = result.stdout.rstrip().splitlines()[-1]
    assert last.startswith(
        "The jobs above (grpo-policy-trainer, grpo-reference-trainer) are running on the "
        "embedded emulator (.rlorinfra/ beside examples/quickstart.toml)."
    )
    assert last.endswith("Destroy them with: rlorinfra destroy -f examples/quickstart.toml")
    assert (checkout / "examples" / ".rlorinfra").is_dir()

    again = run_cli(["apply", "-f", "examples/quickstart.toml", "--auto-approve"], cwd=checkout)  # no changes
    assert "are running on the embedded emulator" in again.stdout

    destroyed = run_cli(["destroy", "-f", "examples/quickstart.toml", "--auto-approve"], cwd=checkout)
    assert destroyed.exit_code == 0, destroyed.output
    assert "embedded emulator" not in destroyed.stdout


def test_the_note_uses_the_default_config_without_f_and_not_in_json(checkout):
    shutil.copy(checkout / "examples" / "quickstart.toml", checkout / "rlorinfra.toml")
    result = run_cli(["apply", "--auto-approve"], cwd=checkout)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("Destroy them with: rlorinfra destroy")
    as_json = run_cli(["apply", "--auto-approve", "--json"], cwd=checkout)
    assert as_json.exit_code == 0 and "embedded emulator" not in as_json.output


def test_no_note_for_another_control_plane_or_when_nothing_runs():
    from rlorinfra.cli.runtime import emulator_note
    from rlorinfra.model.address import Kind
    from rlorinfra.state.model import JobRecord, State

    record = JobRecord(
        job_id="a-1", job_name="accounts/x/rlorTrainerJobs/a-1", endpoint="http://e", spec={}, phase="ready"
    )
    local = State(resources={Kind.JOB: {"a": record}}, control_plane={"url": "local", "account_id": "local"})
    assert "rlorinfra destroy -f 'my dir/x.toml'" in emulator_note(local, Path("my dir/x.toml"))
    real = State(
        resources={Kind.JOB: {"a": record}}, control_plane={"url": "https://api.fireworks.ai", "account_id": "acme"}
    )
    assert emulator_note(real, Path("x.toml")) == ""
    assert emulator_note(State(control_plane={"url": "local"}), Path("x.toml")) == ""
    assert emulator_note(None, Path("x.toml")) == ""


# ------------------------------------------------------------------ init after the tour


def test_init_after_copying_the_quickstart_is_not_an_error(checkout):
    shutil.copy(checkout / "examples" / "quickstart.toml", checkout / "rlorinfra.toml")
    before = (checkout / "rlorinfra.toml").read_bytes()
    result = run_cli(["init"], cwd=checkout)
    assert result.exit_code == 0, result.output
    assert "rlorinfra.toml already exists; nothing to do. Edit it, or `rlorinfra init -f other.toml`" in result.stdout
    assert "2 jobs, control plane: local (embedded emulator)." in result.stdout
    assert (checkout / "rlorinfra.toml").read_bytes() == before


def test_init_on_a_written_starter_is_not_an_error_either(tmp_path):
    assert run_cli(["init"], cwd=tmp_path).exit_code == 0
    again = run_cli(["init"], cwd=tmp_path)
    assert again.exit_code == 0 and "nothing to do" in again.stdout


@pytest.mark.parametrize("content", ["# mine\n", "", "[jobs.x]\nlora_rank = -1\n", "not toml [", "title = 'x'\n"])
def test_init_refuses_an_existing_file_that_is_not_a_valid_config(tmp_path, content):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(content)
    result = run_cli(["init"], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    assert "already exists" in result.stderr and "Traceback" not in result.output
    assert path.read_text() == content


# ------------------------------------------------------------------ the CI example


def test_the_workflow_installs_rlorinfra_from_its_repository_pinned():
    text = WORKFLOW.read_text()
    assert not re.search(r"pip install [\"']?rlorinfra[=<>~ \"']", text), "rlorinfra is not on PyPI"
    assert 'pip install "git+https://github.com/' in text
    assert "@${RLORINFRA_REF}" in text and re.search(r"RLORINFRA_REF: \S+", text)
    assert "SHA" in text and "tag" in text  # the comment says how to pin it


def test_the_workflow_install_step_parses():
    yaml = pytest.importorskip("yaml")

    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["drift"]["steps"]
    install = next(step for step in steps if step.get("name") == "Install rlorinfra")
    assert install["run"].startswith('python -m pip install "git+https://')
    assert install["env"]["RLORINFRA_REF"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_drift_summary_help_prints_usage_and_exits_0(flag):
    result = subprocess.run([sys.executable, str(SUMMARY_SCRIPT), flag], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: drift_summary.py PLAN_JSON")
    assert result.stderr == ""


def test_drift_summary_without_arguments_prints_usage_and_exits_1():
    result = subprocess.run([sys.executable, str(SUMMARY_SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("usage: drift_summary.py PLAN_JSON")


def test_build_folder_of_pip_install_is_ignored_by_git():
    """`pip install .` builds in-tree (setuptools writes build/ and *.egg-info/): git ignores both."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("build/", "build/lib/rlorinfra/__init__.py", "rlorinfra.egg-info/PKG-INFO"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert result.returncode == 0, f"{path} (left by `pip install .`) is not ignored by git"
