"""User text is shown as written in the terminal faces: rich reads `:name:` as an emoji code unless told
not to, which turned a file named `:smile:.grad` into 😄.grad, in its reproduce command too (a command
that then named no file). A note under a table is rich's markup with its emoji codes left as they are."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.text import Text

from gradcheck_cli.cli import main
from gradcheck_cli.render.notes import print_note

LINES = [
    "✓ /tmp/:smile:.grad  output [bold]f[/] = 0.731059",  # a code in a file name: rich would show the emoji
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
def test_a_note_is_its_markup_with_its_text_as_written(line):
    console = _console()  # (rich's default console, which reads emoji codes: the note itself must not)
    print_note(console, line)
    indent = len(line) - len(line.lstrip(" "))
    expected = " " * indent + Text.from_markup(line[indent:], emoji=False).plain
    assert console.file.getvalue() == expected.rstrip() + "\n"


def test_the_lines_tell_emoji_from_none():
    """The cases above discriminate: some lines do change under rich's emoji look-up, some do not."""
    changed = [Text.from_markup(line).plain != Text.from_markup(line, emoji=False).plain for line in LINES]
    assert changed[:3] == [True, True, True] and not any(changed[3:])


def test_a_file_named_with_an_emoji_code_is_named_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ":smile:_bad.grad").write_text("gate sq(t) = t^2\n  dt = dout * t\nx = 1.5\nf = sq(x)\n",
                                               encoding="utf-8")
    for args in (["check", ":smile:_bad.grad"], ["explain", ":smile:_bad.grad"]):
        out = CliRunner().invoke(main, args, env={"COLUMNS": "100"}).output
        assert ":smile:_bad.grad" in out and "😄" not in out, out
    out = CliRunner().invoke(main, ["check", ":smile:_bad.grad"], env={"COLUMNS": "100"}).output
    assert "reproduce: gradcheck check :smile:_bad.grad --seed 0" in out, out
