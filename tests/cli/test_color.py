"""One colour decision for the whole CLI."""

from __future__ import annotations

import io

import pytest

from rlorinfra.cli.common import wants_color


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "no_color,env,stream,expected",
    [
        (False, {}, Tty(), True),
        (True, {}, Tty(), False),
        (False, {"NO_COLOR": "1"}, Tty(), False),
        (False, {"NO_COLOR": ""}, Tty(), True),  # an empty NO_COLOR is unset (no-color.org)
        (False, {}, io.StringIO(), False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(no_color, env, stream, expected):
    assert wants_color(no_color=no_color, env=env, stream=stream) is expected
