"""The real ``--help`` text of every command, and the copies of it in docs/commands.md.

docs/commands.md holds each command's help between ``<!-- help: COMMAND -->`` and
``<!-- /help -->`` markers. ``tests/docs/test_help.py`` checks they match the CLI;
after changing a command's options or help text, regenerate them with::

    python -m tests.docs.helptext --write
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[2]
COMMANDS_DOC = REPO / "docs" / "commands.md"
WIDTH = 80  # click wraps at columns - 2
BLOCK_RE = re.compile(r"<!-- help: (?P<name>[^>]*?) -->\n```text\n.*?```\n<!-- /help -->", re.S)


def _root() -> click.Group:
    from rlorinfra.cli.main import cli

    return cli


def command_paths() -> list[tuple[str, ...]]:
    """Every command path, groups included: ``()``, ``("plan",)``, ``("state", "show")``..."""
    paths: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...], ctx: click.Context) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, path + (name,), click.Context(sub, info_name=name, parent=ctx))

    root = _root()
    walk(root, (), click.Context(root, info_name="rlorinfra"))
    return paths


def command_at(path: tuple[str, ...]) -> tuple[click.Command, click.Context]:
    """The command at ``path`` and a context for it, at a fixed help width."""
    command: click.Command = _root()
    settings = {"terminal_width": WIDTH - 2, "max_content_width": WIDTH, **command.context_settings}
    ctx = click.Context(command, info_name="rlorinfra", **settings)
    for name in path:
        command = command.get_command(ctx, name)  # type: ignore[union-attr]
        ctx = click.Context(command, info_name=name, parent=ctx, terminal_width=WIDTH - 2, max_content_width=WIDTH)
    return command, ctx


def help_text(path: tuple[str, ...]) -> str:
    """``rlorinfra PATH --help`` as printed at an 80-column terminal."""
    command, ctx = command_at(path)
    return command.get_help(ctx).rstrip() + "\n"


def render_block(name: str) -> str:
    path = tuple(name.split()[1:])
    return f"<!-- help: {name} -->\n```text\n{help_text(path)}```\n<!-- /help -->"


def refreshed(markdown: str) -> str:
    """``markdown`` with every help block replaced by the current help text."""
    return BLOCK_RE.sub(lambda m: render_block(m.group("name")), markdown)


def documented_commands(markdown: str) -> list[str]:
    """The names of the help blocks in ``markdown``, e.g. ``rlorinfra state show``."""
    return [m.group("name") for m in BLOCK_RE.finditer(markdown)]


if __name__ == "__main__":
    text = COMMANDS_DOC.read_text()
    new = refreshed(text)
    if "--write" in sys.argv:
        COMMANDS_DOC.write_text(new)
        print(f"updated {COMMANDS_DOC}" if new != text else f"{COMMANDS_DOC} already up to date")
    else:
        print("up to date" if new == text else "out of date: run with --write")
