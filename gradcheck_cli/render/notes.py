"""A note under a table (rich markup), wrapped with its continuation lines indented; apart from the
table so that a command printing notes only (`gates`) does not import the check's reports."""

from __future__ import annotations

import re


# rich replaces `:name:` emoji codes (a name of one or more characters, no blank, between two colons) after
# importing its table of 4,000 names (4 ms): a line with no such span can hold none (`file.py::f` neither),
# and is the same text without the look-up.
EMOJI_CODE = re.compile(r":\S+?:")


def print_note(console, line: str) -> None:
    """A note (rich markup) under a table, wrapped with its continuation lines indented under it."""
    from rich.text import Text
    indent = len(line) - len(line.lstrip(" "))
    text = Text.from_markup(line[indent:], emoji=EMOJI_CODE.search(line) is not None)
    for i, part in enumerate(text.wrap(console, max(20, console.width - indent - 4))):
        part.rstrip()
        console.print(Text(" " * (indent if i == 0 else indent + 4)) + part, highlight=False, crop=False,
                      no_wrap=True)
