"""`core.text.shell_quote`: a word of a reproduce line is printable (no control, format or separator
character reaches a terminal or a CI log) and, pasted into bash, is the same word, byte for byte — a file
name's undecodable bytes (surrogate escapes) included. Bash itself is the oracle."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from gradcheck_cli.core.text import shell_quote

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is the oracle here, and it is missing")

ODD = [chr(c) for c in [0x1b, 0x07, 0x0a, 0x0d, 0x09, 0x7f, 0x85, 0xa0, 0xad, 0x200b, 0x202e, 0x2028, 0xfeff, 0xe0001,
                        0xdc80, 0xdcff]] + list("$`'\"\\!*?[]{}();&|<> #~%")
WORDS = st.lists(st.one_of(st.sampled_from(ODD), st.characters(min_codepoint=0x20, max_codepoint=0x10FFFF,
                                                             blacklist_categories=("Cs",))),
                 min_size=1, max_size=12).map("".join)


def _bash(quoted: str) -> bytes:
    return subprocess.run(["bash", "-c", "printf %s " + quoted], capture_output=True, timeout=30, check=True).stdout


@settings(max_examples=60, deadline=None)
@given(WORDS)
def test_a_quoted_word_is_printable_and_bash_reads_it_back(word):
    quoted = shell_quote(word)
    assert quoted.isprintable()
    assert _bash(quoted) == word.encode("utf-8", "surrogateescape")


def test_a_plain_word_is_quoted_as_shlex_quotes_it():
    assert shell_quote("a b.grad") == "'a b.grad'" and shell_quote("x.grad") == "x.grad"
    assert shell_quote("a\x1b[2J.grad") == "$'a\\x1b[2J.grad'"
