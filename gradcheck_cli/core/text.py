"""Text that came from a student (exception messages, file names), made safe once, where it enters:
valid UTF-8 (a lone surrogate replaced), no control characters (escape sequences, a bell, a newline
that would start a CI workflow command), and at most a few hundred characters, with a note when cut.
Each face escapes its own markup on top (rich's, Markdown's, HTML's)."""

from __future__ import annotations

import shlex
import unicodedata

MAX_REASON = 400   # characters of a student's text kept in a reason
MAX_NAME = 80      # characters of a student's name (from the file name)


def student_text(text: str, limit: int = MAX_REASON, total: int | None = None) -> str:
    """`text` with every control or unpaired-surrogate character replaced, cut at `limit` characters
    (`total`: how long it was before an earlier shortening, as `cut` says it)."""
    text = str(text).encode("utf-8", "replace").decode("utf-8", "replace")
    text = "".join(" " if ch in "\t\n\r" else ("?" if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")
                                              else ch) for ch in text)
    return cut(text, limit, total)


def cut(text: str, limit: int, total: int | None = None) -> str:
    """`text`, or, past `limit` characters, its start and how long it was (`total`, where `text` is
    itself a shortened one: the length before that)."""
    if len(text) <= limit:
        return text
    return text[: limit - 40].rstrip() + f" … (cut: {max(total or 0, len(text)):,} characters in all)"


def student_name(name: str) -> str:
    return student_text(name, MAX_NAME)


def visible(text: str) -> str:
    """`text` with every control, format or separator character written as its escape (`\\x1b`,
    `\\n`, `\\u202e`): a file name shown as itself, never acted on by a terminal or a CI log."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def visible_lines(text: str) -> str:
    """`visible` line by line: the newlines kept (a message of several lines, an error with its source
    line and caret)."""
    return "\n".join(visible(line) for line in str(text).split("\n"))


def shell_quote(word: str) -> str:
    """`word` quoted for bash, as shlex.quote does, or — where it holds a control, format or separator
    character, or a byte that is not UTF-8 (a file name's surrogate escape) — ANSI-C quoted, `$'a\\x1bb'`,
    so a command line that holds it is both printable and, pasted into bash, the same word."""
    if str(word).isprintable():
        return shlex.quote(word)
    out = []
    for ch in str(word):
        code = ord(ch)
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # a byte (a surrogate escape holds one)
            out.append(f"\\x{code & 0xFF:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "$'" + "".join(out) + "'"
