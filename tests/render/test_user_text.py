"""Text that comes from the user's code (an exception's message, what it printed) is shown as itself in
every face: no terminal escape, no workflow command, no Markdown link, tag or table row, no HTML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from conftest import gradcheck_in_process

from gradcheck_cli.render.common import md_code, md_text

MESSAGE = "a | b `code` <img src=x> [link](http://x) **bold** \x1b[31mred\x07\n::error file=x::forged"
LAYER = f'''import numpy as np
def affine_forward(x, w):
    return x @ w, (x, w)
def affine_backward(dout, cache):
    raise ValueError({MESSAGE!r})
'''


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    where = tmp_path_factory.mktemp("user_text")
    (where / "layer.py").write_text(LAYER, encoding="utf-8")
    out = {}
    for fmt in ("table", "github", "junit", "markdown", "html", "json"):
        done = gradcheck_in_process("check-py", "layer.py::affine", "--shape", "x=3,4", "--shape", "w=4,2", "--format",
                                    fmt, cwd=where, env={"COLUMNS": "200", "PATH": ""})
        assert done.returncode == 1, (fmt, done.stderr[-500:])
        out[fmt] = done.stdout
    return out


def test_no_face_carries_a_control_character_or_a_line_of_its_own(faces):
    for fmt, text in faces.items():
        assert "\x1b" not in text and "\x07" not in text, fmt
        assert not any(line.lstrip().startswith("::error file=x") for line in text.splitlines()), fmt


def test_markdown_shows_the_markup_as_text(faces):
    md = faces["markdown"]
    assert "<img" not in md and "[link](" not in md and "**bold**" not in md
    assert r"\[link\](http://x)" in md and r"\*\*bold\*\*" in md and "&lt;img src=x&gt;" in md
    for line in md.splitlines():  # a pipe in the message is no new cell: each table row keeps its 6 cells
        if line.startswith("| `x`"):
            assert len([c for c in line.replace("\\|", "").split("|")]) == 8


def test_html_junit_and_json_stay_what_they_are(faces):
    assert "<img src=x>" not in faces["html"] and "&lt;img src=x&gt;" in faces["html"]
    ET.fromstring(faces["junit"])
    notes = json.dumps(json.loads(faces["json"]))
    assert "img src=x" in notes


@pytest.mark.parametrize("text, shown", [
    ("a`b", "``a`b``"), ("``x", "``` ``x ```"), ("a|b", "`a\\|b`"), ("line\nbreak", "`line break`"),
])
def test_inline_code_is_fenced_past_its_backticks(text, shown):
    assert md_code(text) == shown


def test_markdown_text_escapes_every_markup_character():
    assert md_text("*_[]#|`\\<&") == "\\*\\_\\[\\]\\#\\|\\`\\\\&lt;&amp;"
