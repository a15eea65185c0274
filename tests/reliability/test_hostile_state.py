"""Hostile state files, symlinked state paths, configs read from pipes, and umasks,
through the real CLI (in-process, and in subprocesses where a pipe or umask needs one).

Every hostile state ends in the corrupt-state error naming ``<state>.backup``, exit 1,
no traceback, no "internal error", and not a byte or mode changed in the workspace.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.e2e.conftest import API_KEY, KEY_ENV, serve_world
from tests.reliability.helpers import REPO, record_figures, snapshot, subprocess_env

CONFIG = "rlorinfra.toml"
STATE = "rlorinfra.state.json"
MODEL = "accounts/fireworks/models/qwen3-8b"
MAX_STDERR = 6000


def config_text(url: str, extra: str = "", names: tuple[str, ...] = ("alpha",)) -> str:
    jobs = "".join(f'[jobs.{n}]\nbase_model = "{MODEL}"\ntraining_shape = "ts-qwen3-8b-policy"\n' for n in names)
    return f'[control_plane]\nurl = "{url}"\napi_key_env = "{KEY_ENV}"\n{extra}\n{jobs}'


def job(job_id: str) -> str:
    return json.dumps(
        {
            "job_id": job_id,
            "job_name": f"accounts/local/rlorTrainerJobs/{job_id}",
            "endpoint": f"http://127.0.0.1/training/v1/rlorTrainerJobs/local/{job_id}",
            "spec": {"base_model": MODEL},
            "phase": "ready",
        }
    )


def state_text(url: str, *, serial: str = "3", jobs: str | None = None, head: str = "") -> str:
    jobs = jobs if jobs is not None else f'"alpha": {job("alpha-123abc")}'
    return (
        f'{{{head}"format_version": 1, "serial": {serial}, "lineage": "7d9f3c1e-0000-4000-8000-000000000000", '
        f'"control_plane": {{"url": "{url}", "account_id": "local"}}, "jobs": {{{jobs}}}}}'
    )


def deep_spec(url: str, depth: int) -> str:
    value = "[" * depth + "]" * depth
    return state_text(url, jobs=f'"alpha": {job("alpha-123abc")[:-1]}, "extra": {value}}}')


HOSTILE = {
    # name: (state text from the served URL, words the error must contain)
    "duplicate-job": (
        lambda u: state_text(u, jobs=f'"alpha": {job("alpha-111aaa")}, "alpha": {job("alpha-222bbb")}'),
        ['"alpha"', "twice"],
    ),
    "duplicate-serial": (lambda u: state_text(u, head='"serial": 99, '), ['"serial"', "twice"]),
    "duplicate-spec-key": (
        lambda u: state_text(u).replace(f'"base_model": "{MODEL}"', f'"base_model": "{MODEL}", "base_model": "other"'),
        ['"base_model"'],
    ),
    "serial-5000-digits": (lambda u: state_text(u, serial="7" * 5000), ["5000 digits"]),
    "serial-nan": (lambda u: state_text(u, serial="NaN"), ["NaN"]),
    "serial-infinity": (lambda u: state_text(u, serial="-Infinity"), ["Infinity"]),
    "float-1e999": (lambda u: state_text(u, serial="1e999"), ["finite"]),
    "nesting-65": (lambda u: deep_spec(u, 62), ["deeper than 64"]),  # document > jobs > alpha > 62
    "nesting-100000": (lambda u: deep_spec(u, 100_000), ["deeper than 64"]),
    "lone-surrogate": (lambda u: state_text(u, jobs=f'"alpha\\udc80": {job("alpha-123abc")}'), ["surrogate"]),
}
COMMANDS = [
    ["plan"],
    ["apply", "--auto-approve"],
    ["show"],
    ["state", "list"],
    ["state", "rm", "alpha"],
    ["import", "beta", "beta-123abc"],
    ["output", "--json"],
    ["destroy", "--auto-approve"],
    ["plan", "--refresh-only"],
    ["state", "mv", "alpha", "beta"],
]
CASES = [
    (name, cmd)
    for i, name in enumerate(HOSTILE)
    for cmd in (COMMANDS[i % len(COMMANDS)], COMMANDS[(i + 3) % len(COMMANDS)])
]
CASES += [("duplicate-job", cmd) for cmd in COMMANDS if cmd not in [c for n, c in CASES if n == "duplicate-job"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = serve_world(tmp_path_factory.mktemp("hostile"), provision_seconds=0.1)
    yield world
    world.server.stop()


def cli(folder: Path, *args: str, config: Path | None = None):
    argv = list(args)
    where = 2 if argv[0] == "state" else 1
    argv[where:where] = ["-f", str(config or folder / CONFIG)]
    return run_cli(["--no-color", *argv], env={KEY_ENV: API_KEY, "NO_COLOR": "1"}, cwd=folder)


def assert_clean_failure(result, words: list[str]) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output.lower(), result.output
    assert len(result.stderr) < MAX_STDERR, result.stderr[:2000]
    for word in words:
        assert word.lower() in result.stderr.lower(), f"{word!r} not in: {result.stderr}"


SEEN: set[str] = set()


@pytest.mark.parametrize("name,argv", CASES, ids=[f"{n}-{'-'.join(c)}" for n, c in CASES])
def test_a_hostile_state_is_corrupt_and_nothing_changes(tmp_path, served, name, argv):
    folder = tmp_path / "ws"
    folder.mkdir()
    make, words = HOSTILE[name]
    (folder / CONFIG).write_text(config_text(served.url, names=("alpha", "beta")))
    (folder / STATE).write_text(make(served.url))
    (folder / STATE).chmod(0o600)
    (folder / (STATE + ".lock")).touch(mode=0o600)
    before = snapshot(folder)
    result = cli(folder, *argv)
    assert_clean_failure(result, ["is corrupt", f"{STATE}.backup", *words])
    assert snapshot(folder) == before
    SEEN.add(f"{name} {' '.join(argv)}")
    record_figures("hostile_state", {"cases": len(CASES), "passed_so_far": len(SEEN), "hostile_files": len(HOSTILE)})


def test_a_state_file_over_64_mib_is_refused_unread(tmp_path, served):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / CONFIG).write_text(config_text(served.url))
    with (folder / STATE).open("wb") as handle:
        handle.truncate(64 * 1024 * 1024 + 1)  # sparse: no disk, and the CLI must not read it
    for argv in (["plan"], ["apply", "--auto-approve"], ["state", "list"]):
        result = cli(folder, *argv)
        assert_clean_failure(result, ["is corrupt", "67108865 bytes", f"{STATE}.backup"])
    assert (folder / STATE).stat().st_size == 64 * 1024 * 1024 + 1
    assert not (folder / (STATE + ".backup")).exists()


def test_a_saved_plan_with_a_duplicate_key_is_refused(tmp_path, served):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / CONFIG).write_text(config_text(served.url))
    assert cli(folder, "plan", "--out", "p.plan").exit_code == 0
    text = (folder / "p.plan").read_text()
    (folder / "p.plan").write_text(text.replace('"state_serial": 0', '"state_serial": 0,\n  "state_serial": 0', 1))
    before = snapshot(folder)
    for argv in (["apply", "p.plan"], ["show", "p.plan"]):
        assert_clean_failure(cli(folder, *argv), ["p.plan", "twice"])
    assert snapshot(folder) == before


# -- symlinked state paths ----------------------------------------------------------------------


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".rlorinfra"))


@pytest.mark.parametrize("how", ["default-path", "state-path-absolute", "state-path-relative"])
def test_a_symlinked_state_path_is_written_through_and_stays_a_link(tmp_path, served, how):
    folder, vault = tmp_path / "ws", tmp_path / "vault"
    folder.mkdir()
    vault.mkdir()
    target = vault / "team.state.json"
    link = folder / (STATE if how == "default-path" else "linked.json")
    link.symlink_to(target)  # dangling: the first apply creates the target
    extra = {
        "default-path": "",
        "state-path-absolute": f'[state]\npath = "{link}"\n',
        "state-path-relative": '[state]\npath = "linked.json"\n',
    }[how]
    (folder / CONFIG).write_text(config_text(served.url, extra, names=(f"sym-{how}",)))
    first = cli(folder, "apply", "--auto-approve")
    assert first.exit_code == 0, first.output
    first_bytes = target.read_bytes()
    (folder / CONFIG).write_text(config_text(served.url, extra, names=(f"sym-{how}", f"sym2-{how}")))
    second = cli(folder, "apply", "--auto-approve")
    assert second.exit_code == 0, second.output
    assert link.is_symlink() and link.resolve() == target and not target.is_symlink()
    assert sorted(json.loads(target.read_text())["resources"]["job"]) == sorted([f"sym-{how}", f"sym2-{how}"])
    backup = json.loads((vault / "team.state.json.backup").read_text())
    assert json.loads(first_bytes)["serial"] <= backup["serial"] < json.loads(target.read_text())["serial"]
    assert files(vault) == ["team.state.json", "team.state.json.backup", "team.state.json.lock"]
    assert files(folder) == sorted([CONFIG, link.name])  # no backup, lock or temp beside the link
    assert cli(folder, "state", "list").stdout.split() == sorted([f"sym-{how}", f"sym2-{how}"])
    assert cli(folder, "destroy", "--auto-approve").exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())["resources"]["job"] == {}


def test_a_run_holding_the_lock_through_the_target_blocks_one_through_the_link(tmp_path, served):
    from rlorinfra.state.lock import StateLock

    folder, vault = tmp_path / "ws", tmp_path / "vault"
    folder.mkdir()
    vault.mkdir()
    (folder / STATE).symlink_to(vault / "real.json")
    (folder / CONFIG).write_text(config_text(served.url))
    with StateLock(vault / "real.json", "apply"):
        result = cli(folder, "apply", "--auto-approve")
    assert_clean_failure(result, ["locked by another rlorinfra run", str(vault / "real.json")])


# -- configs read from pipes ----------------------------------------------------------------------


def rlorinfra(args: list[str], *, cwd: Path, umask: int | None = None, **kw) -> subprocess.CompletedProcess:
    """``python -m rlorinfra ARGS`` in a child process (a real stdin, a real umask)."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(
        [sys.executable, "-m", "rlorinfra", "--no-color", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
        **kw,
    )


def assert_refused_for_pipe(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not a regular file" in proc.stderr and "[state] path" in proc.stderr, proc.stderr
    assert "locked" not in proc.stderr and "Cannot create the folder" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_config_piped_to_dev_stdin_is_refused_clearly(tmp_path, served):
    proc = rlorinfra(["plan", "-f", "/dev/stdin"], cwd=tmp_path, input=config_text(served.url))
    assert_refused_for_pipe(proc)
    assert list(tmp_path.iterdir()) == []


def test_a_config_from_process_substitution_is_refused_clearly(tmp_path, served):
    (tmp_path / "src.toml").write_text(config_text(served.url, '[state]\npath = "rel.state.json"\n'))
    script = f'exec "{sys.executable}" -m rlorinfra --no-color plan -f <(cat src.toml)'
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert_refused_for_pipe(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.toml"]


def test_dev_stdin_redirected_from_a_file_works_and_keeps_the_files_name(tmp_path, served):
    (tmp_path / "prod.toml").write_text(config_text(served.url, names=("stdin-file",)))
    with (tmp_path / "prod.toml").open() as stdin:
        proc = rlorinfra(["apply", "--auto-approve", "-f", "/dev/stdin"], cwd=tmp_path, stdin=stdin)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stdin-file" in json.loads((tmp_path / "prod.state.json").read_text())["resources"]["job"]
    assert not (tmp_path / "stdin.state.json").exists()


def test_a_fifo_config_with_an_absolute_state_path_works(tmp_path, served):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    state = tmp_path / "states" / "fifo.state.json"
    text = config_text(served.url, f'[state]\npath = "{state}"\n', names=("fifo-job",))
    writer = threading.Thread(target=fifo.write_text, args=(text,), daemon=True)
    writer.start()
    proc = rlorinfra(["apply", "--auto-approve", "-f", str(fifo)], cwd=tmp_path)
    writer.join(10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fifo-job" in json.loads(state.read_text())["resources"]["job"]


def test_a_fifo_config_with_the_default_state_path_is_refused(tmp_path, served):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(config_text(served.url),), daemon=True)
    writer.start()
    proc = rlorinfra(["plan", "-f", str(fifo)], cwd=tmp_path)
    writer.join(10)
    assert_refused_for_pipe(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.fifo"]


def test_a_piped_config_for_the_embedded_emulator_says_it_needs_a_file(tmp_path):
    text = f'[state]\npath = "{tmp_path / "x.state.json"}"\n[jobs.a]\nbase_model = "{MODEL}"\n'
    proc = rlorinfra(["plan", "-f", "/dev/stdin"], cwd=tmp_path, input=text)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'control_plane.url = "local" needs the configuration in a file' in proc.stderr
    assert "Traceback" not in proc.stderr and "Cannot create" not in proc.stderr


# -- modes under any umask ------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o077], ids=["umask-000", "umask-077"])
def test_every_file_and_folder_rlorinfra_creates_for_state_is_private(tmp_path, served, umask):
    state = tmp_path / "private" / "nested" / "prod.state.json"
    (tmp_path / CONFIG).write_text(config_text(served.url, f'[state]\npath = "{state}"\n', names=(f"m{umask:o}",)))
    assert rlorinfra(["apply", "--auto-approve"], cwd=tmp_path, umask=umask).returncode == 0
    (tmp_path / CONFIG).write_text(
        config_text(served.url, f'[state]\npath = "{state}"\n', names=(f"m{umask:o}", f"n{umask:o}"))
    )
    proc = rlorinfra(["plan", "--out", "release.plan"], cwd=tmp_path, umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert rlorinfra(["apply", "release.plan"], cwd=tmp_path, umask=umask).returncode == 0
    assert mode(tmp_path / "private") == 0o700 and mode(tmp_path / "private" / "nested") == 0o700
    for path in (
        state,
        state.with_name(state.name + ".backup"),
        state.with_name(state.name + ".lock"),
        tmp_path / "release.plan",
    ):
        assert mode(path) == 0o600, path


def test_lock_info_is_0600_while_held_under_umask_000(tmp_path):
    code = (
        "import os, stat, sys; os.umask(0); from pathlib import Path; "
        "from rlorinfra.state.lock import StateLock, lock_info_path; p = Path(sys.argv[1]); "
        "l = StateLock(p, 'apply'); l.acquire(); "
        "print(oct(stat.S_IMODE(lock_info_path(p).stat().st_mode)), oct(stat.S_IMODE(p.parent.stat().st_mode)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "new" / "s.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert proc.stdout.split() == ["0o600", "0o700"], proc.stderr
