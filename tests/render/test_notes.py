"""A note under a table is what rich's markup makes of its line, emoji codes included: the look-up
of rich's table of names is skipped only on a line that cannot hold a code, never changing a character."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from gradcheck_cli.render.notes import print_note

LINES = [
    "✓ /tmp/:smile:.grad  output [bold]f[/] = 0.731059",  # a code in a file name: rich shows the emoji
    "[dim]- :100:.grad: not checked: a syntax error[/]",      # a name of digits, inside a style
    "  x :thumbs_up-emoji: and :x: twice",                    # a variant suffix; indented
    "::smile:",                                                # rich reads '::' first: no emoji
    "a:b c:d.grad  output f = 1",                              # colons with a blank between: no code
    "examples/layer.py::affine  (line 3): off by a factor 2",  # check-py's FILE.py::NAME
    "no colon at all [bold]here[/]",
    "✗ a:[bold]smile[/]:b",                                   # a tag between the colons
]


def _console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None, force_terminal=False)


@pytest.mark.parametrize("line", LINES)
def test_a_note_reads_as_rich_reads_its_markup(line):
    console = _console()
    print_note(console, line)
    indent = len(line) - len(line.lstrip(" "))
    expected = " " * indent + Text.from_markup(line[indent:]).plain  # rich's defaults: emoji codes replaced
    assert console.file.getvalue() == expected.rstrip() + "\n"


def test_the_lines_tell_emoji_from_none():
    """The cases above discriminate: some lines do change under rich's emoji look-up, some do not."""
    changed = [Text.from_markup(line).plain != Text.from_markup(line, emoji=False).plain for line in LINES]
    assert changed[:3] == [True, True, True] and not any(changed[3:])
