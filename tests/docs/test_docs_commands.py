"""Every command shown in README.md and docs/*.md runs and exits as the doc says.

For each Markdown file, the ``$ `` lines of its ```` ```console ```` blocks run in
order, in one bash shell, in a fresh temporary folder holding a copy of
``examples/`` (see ``docblocks.py`` for the rules, including ``# exit N`` and
``<!-- docs-test: write PATH -->``). ``rlorinfra`` and ``python3`` on PATH are the
interpreter running the tests.

Commands that need the real Fireworks API (a real key, real accelerators) cannot run
here: docs must show them in ```` ```bash ```` blocks, never ```` ```console ````.

Two rewrites keep the run fast and isolated, and are the only differences from
what a reader types: every ``provision_seconds = N`` in a TOML file in the folder
becomes ``0.1`` (checked again after each step, so files written by ``rlorinfra
init`` are covered too), and the example port ``8765`` becomes a free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.docblocks import Command, WriteFile, build_script, extract_steps

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FAST_PROVISION = "0.1"
EXAMPLE_PORT = "8765"

# Runs after every step: make emulator provisioning fast in any config in the folder.
PRELUDE = rf"""
_docs_test_after_step() {{
  for f in *.toml examples/*.toml; do
    [ -f "$f" ] && grep -Eq '^provision_seconds *= *' "$f" \
      && ! grep -Eq '^provision_seconds = {FAST_PROVISION}( |$)' "$f" \
      && sed -i -E 's/^provision_seconds *= *[0-9.]+/provision_seconds = {FAST_PROVISION}/' "$f"
  done
  return 0
}}
_docs_test_after_step
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shims(folder: Path) -> Path:
    """``rlorinfra``, ``python3`` and ``python`` running this test's interpreter."""
    folder.mkdir()
    scripts = {
        "rlorinfra": f'exec "{sys.executable}" -m rlorinfra "$@"',
        "python3": f'exec "{sys.executable}" "$@"',
        "python": f'exec "{sys.executable}" "$@"',
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


def _environment(shims: Path, home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FIREWORKS_", "RLORINFRA_", "_RLORINFRA_"))
    }
    env.update(PATH=f"{shims}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1", HOME=str(home), PYTHONPATH=str(REPO))
    return env


def _with_port(steps, port: int):
    """The steps with the docs' example port replaced by a free one."""
    out = []
    for step in steps:
        if isinstance(step, Command):
            out.append(Command(step.text.replace(EXAMPLE_PORT, str(port)), step.line, step.expected_exit))
        else:
            out.append(WriteFile(step.path, step.content.replace(EXAMPLE_PORT, str(port)), step.line))
    return out


def _failure(doc: Path, steps, out_dir: Path) -> str | None:
    """A readable message for the first command that exited unexpectedly, or None."""
    for number, step in enumerate(steps):
        if not isinstance(step, Command):
            continue
        rc_file = out_dir / f"{number}.rc"
        if not rc_file.exists():
            return f"{doc.name}:{step.line}: `{step.text}` never ran"
        code = int(rc_file.read_text().strip())
        if code != step.expected_exit:
            output = (out_dir / f"{number}.out").read_text(errors="replace")
            return (
                f"{doc.name}:{step.line}: `{step.text}` exited {code}, the doc expects "
                f"{step.expected_exit}.\n--- output ---\n{output}"
            )
    return None


def _runnable_docs() -> list[Path]:
    return [doc for doc in DOCS if any(isinstance(s, Command) for s in extract_steps(doc.read_text()))]


def test_the_docs_have_commands_to_run():
    names = {doc.name for doc in _runnable_docs()}
    assert {
        "README.md",
        "getting-started.md",
        "drift-detection.md",
        "control-plane.md",
        "migrating.md",
        "commands.md",
    } <= names


def _start(doc: Path, folder: Path) -> tuple[subprocess.Popen, list, Path]:
    """Start running ``doc``'s commands in a fresh folder; returns (process, steps, output folder)."""
    work = folder / "work"
    shutil.copytree(REPO / "examples", work / "examples")
    out_dir = folder / "out"
    out_dir.mkdir()
    home = folder / "home"
    home.mkdir()
    steps = _with_port(extract_steps(doc.read_text()), _free_port())
    # Its own session: the docs start emulators in the background (`serve ... &`) and never
    # stop them, so the whole process group is ended once the doc has run.
    process = subprocess.Popen(
        ["bash", "-c", build_script(steps, out_dir, PRELUDE)],
        cwd=work,
        env=_environment(_shims(folder / "bin"), home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return process, steps, out_dir


def _end_group(process: subprocess.Popen) -> None:
    """End the doc's shell and everything it left running (background emulators)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory):
    """Every runnable doc, started at once: each waits on the emulator most of the time,
    and they share nothing (own folder, own emulator database, own port)."""
    runs = {doc.name: _start(doc, tmp_path_factory.mktemp(doc.stem)) for doc in _runnable_docs()}
    yield runs
    for process, _, _ in runs.values():
        _end_group(process)


@pytest.mark.parametrize("doc", _runnable_docs(), ids=lambda doc: doc.name)
def test_console_commands_in_doc_run(doc: Path, doc_runs):
    process, steps, out_dir = doc_runs[doc.name]
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        _end_group(process)
    failure = _failure(doc, steps, out_dir)
    assert failure is None, failure
    assert process.returncode == 0, stderr


def test_console_blocks_never_need_the_real_api():
    for doc in DOCS:
        for step in extract_steps(doc.read_text()):
            if isinstance(step, Command):
                assert "api.fireworks.ai" not in step.text, (
                    f"{doc.name}:{step.line}: commands against the real API belong in ```bash blocks"
                )


def test_extract_steps_reads_commands_exit_codes_and_files():
    markdown = "\n".join(
        [
            "<!-- docs-test: write a.toml -->",
            "```toml",
            "x = 1",
            "```",
            "```console",
            "$ rlorinfra plan --detailed-exitcode   # exit 2",
            "output",
            "$ echo a \\",
            "  b",
            "```",
            "```bash",
            "$ not run",
            "```",
        ]
    )
    steps = extract_steps(markdown)
    assert steps == [
        WriteFile("a.toml", "x = 1\n", 2),
        Command("rlorinfra plan --detailed-exitcode   # exit 2", 6, 2),
        Command("echo a \\\n  b", 8, 0),
    ]
