"""Extract runnable steps from the Markdown docs and turn them into one bash script per file.

What runs, in document order:

* every line starting with ``$ `` inside a fenced ```` ```console ```` block (a line
  ending in ``\\`` continues on the next one). Output lines are not compared: the
  command must exit 0, or the code its trailing ``# exit N`` comment states;
* every fenced block right after an ``<!-- docs-test: write PATH -->`` comment, which
  is written to PATH first (the doc shows the file and says to save it under that name).

Blocks in ```` ```bash ````, ```` ```sh ````, ```` ```toml ```` etc. are never run:
that is where commands that need the real Fireworks API (a real key, real
accelerators) belong.

The script runs in one shell, as a reader pasting the lines into a terminal
would, so ``VAR=$(...)``, ``export`` and pipes carry over between lines.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

FENCE_RE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
WRITE_RE = re.compile(r"^<!--\s*docs-test:\s*write\s+(\S+)\s*-->\s*$")
EXIT_RE = re.compile(r"#\s*exit\s+(\d+)\s*$")
PORT_RE = re.compile(r"--port\s+(\d+)")


@dataclass(frozen=True)
class Command:
    """One ``$ `` line (continuations joined) and the exit code the doc expects."""

    text: str
    line: int
    expected_exit: int = 0


@dataclass(frozen=True)
class WriteFile:
    """A fenced block the doc asks to save as ``path``."""

    path: str
    content: str
    line: int


Step = Command | WriteFile


def extract_steps(markdown: str) -> list[Step]:
    """Every runnable step of a Markdown document, in order."""
    lines = markdown.splitlines()
    steps: list[Step] = []
    index = 0
    pending_write: str | None = None
    while index < len(lines):
        fence = FENCE_RE.match(lines[index])
        write = WRITE_RE.match(lines[index].strip())
        if write:
            pending_write = write.group(1)
        elif fence:
            body, end = _fenced_body(lines, index, fence.group(2))
            if pending_write is not None:
                steps.append(WriteFile(pending_write, "\n".join(body) + "\n", index + 1))
            elif fence.group(3) == "console":
                steps.extend(_commands(body, index + 2))
            pending_write = None
            index = end
        elif lines[index].strip():
            pending_write = None
        index += 1
    return steps


def _fenced_body(lines: list[str], start: int, ticks: str) -> tuple[list[str], int]:
    """The lines inside the fence opened at ``start`` (dedented) and the closing line's index."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    body: list[str] = []
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == ticks:
            return body, end
        line = lines[end]
        body.append(line[indent:] if not indent or line[:indent].isspace() else line.lstrip())
    raise ValueError(f"unclosed code fence opened on line {start + 1}")


def _commands(body: list[str], first_line: int) -> list[Command]:
    out: list[Command] = []
    index = 0
    while index < len(body):
        if body[index].startswith("$ "):
            start = index
            text = body[index][2:]
            while text.endswith("\\") and index + 1 < len(body):
                index += 1
                text = text + "\n" + body[index]
            match = EXIT_RE.search(text)
            out.append(Command(text, first_line + start, int(match.group(1)) if match else 0))
        index += 1
    return out


def build_script(steps: list[Step], out_dir: Path, prelude: str = "") -> str:
    """A bash script that runs ``steps`` in order and stops at the first unexpected exit code.

    Command ``i`` writes its output to ``out_dir/i.out`` and its exit code to
    ``out_dir/i.rc``. Background jobs (``cmd &``) are killed when the script ends;
    after one that serves on ``--port N`` the script waits until the port answers.
    """
    parts = ["set +e", "trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT", prelude]
    for number, step in enumerate(steps):
        if isinstance(step, WriteFile):
            parts.append(f'mkdir -p "$(dirname {shlex.quote(step.path)})"')
            parts.append(f"cat > {shlex.quote(step.path)} <<'__DOCS_TEST_EOF__'\n{step.content}__DOCS_TEST_EOF__")
            parts.append("_docs_test_after_step")
            continue
        out = shlex.quote(str(out_dir / f"{number}.out"))
        rc = shlex.quote(str(out_dir / f"{number}.rc"))
        parts.append(f"{{ {step.text}\n}} >{out} 2>&1 </dev/null")
        parts.append(f"echo $? >{rc}")
        port = PORT_RE.search(step.text)
        if step.text.rstrip().endswith("&") and port:
            parts.append(_wait_for_port(port.group(1)))
        parts.append("_docs_test_after_step")
        parts.append(f'[ "$(cat {rc})" = "{step.expected_exit}" ] || exit 100')
    return "\n".join(parts) + "\nexit 0\n"


def _wait_for_port(port: str) -> str:
    return f"for _i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done"
