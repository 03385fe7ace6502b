"""A note under a table (rich markup), wrapped with its continuation lines indented; apart from the
table so that a command printing notes only (`gates`) does not import the check's reports."""

from __future__ import annotations


def print_note(console, line: str) -> None:
    """A note (rich markup) under a table, wrapped with its continuation lines indented under it. Its text
    as written: rich's `:name:` emoji codes are not read (a file named `:smile:.grad` is named so)."""
    from rich.text import Text
    indent = len(line) - len(line.lstrip(" "))
    text = Text.from_markup(line[indent:], emoji=False)
    for i, part in enumerate(text.wrap(console, max(20, console.width - indent - 4))):
        part.rstrip()
        console.print(Text(" " * (indent if i == 0 else indent + 4)) + part, highlight=False, crop=False,
                      no_wrap=True)
