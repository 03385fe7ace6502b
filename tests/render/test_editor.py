"""The editor's view of a file (render.editor), without the protocol: what the language server sends."""

import math

from gradcheck_cli.render import editor
from gradcheck_cli.render.editor import Severity, Span

# d(t²)/dt = 2t: the d line below forgets the 2 (line 2 of the file, line 1 counted from 0)
WRONG = "gate sq(t) = t^2\n  dt = dout * t   # the slip\n\nx = 1.5\ny = -0.5\nf = exp(x) * y + sq(x)\n"


def test_a_wrong_d_line_is_one_error_at_that_line_with_the_rows_it_explains():
    marks = editor.analyse(WRONG, source="w.grad").marks
    assert [(m.severity, m.code) for m in marks] == [(Severity.ERROR, "fail")]
    assert marks[0].span == Span(line=1, character=2, end_line=1, end_character=15)  # the code, not the comment
    assert marks[0].message.startswith("gate sq(x): dt: backprop disagrees with both")
    assert "also: x (1 row inherits it)" in marks[0].message


def test_columns_are_utf16_code_units():
    text = "x = 1\nf = x * \U0001F600 + x\n"
    (mark,) = editor.analyse(text, source="e.grad").marks
    assert mark.severity == Severity.ERROR and mark.span.line == 1
    assert (mark.span.character, mark.span.end_character) == (8, 10)  # one code point, two UTF-16 units
    assert editor.offset(text, 1, 13) == text.index("+ x") + 3 - 1  # the x after the emoji (units 13, code point 12)


def test_a_bug_of_ours_is_a_mark_not_an_exception(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("boom")
    monkeypatch.setattr(editor, "check_graph", broken)
    (mark,) = editor.analyse("x = 1\nf = x * x\n", source="b.grad").marks
    assert mark.severity == Severity.ERROR and "ValueError: boom" in mark.message and "bug of gradcheck" in mark.message


def test_every_prefix_of_a_file_is_marks_only():
    text = "gate g(a, b) = a * b + max(a, 0)\n  da = dout * (b + (a > 0))\n  db = dout * a\nv = g(2, [1, 3])\nf = sum(v)\n"
    for n in range(len(text) + 1):
        analysis = editor.analyse(text[:n], source="p.grad")
        assert not any("bug of gradcheck" in m.message for m in analysis.marks), (text[:n], analysis.marks)
        for line in range(text[:n].count("\n") + 1):  # hovers, definitions and the chain rule never raise either
            for character in (0, 5, 12):
                editor.hover(analysis, line, character)
                editor.definition(analysis, line, character)
                editor.chain_rule(analysis, line, character)


def test_an_empty_file_has_no_marks():
    assert editor.analyse("", source="n.grad").marks == []
    assert editor.analyse("# a comment\n\n", source="n.grad").marks == []


def test_definitions_inside_a_gate_are_its_own_names():
    text = "gate g(t) = s * t\n  s = t + 1\n  dt = dout * (s + t)\nt = 2\nf = g(t)\n"
    analysis = editor.analyse(text, source="d.grad")
    assert editor.definition(analysis, 2, 16) == Span(line=1, character=2, end_line=1, end_character=3)  # s: the local
    assert editor.definition(analysis, 2, 20) == Span(line=0, character=7, end_line=0, end_character=8)  # t: the param
    assert editor.definition(analysis, 4, 6) == Span(line=3, character=0, end_line=3, end_character=1)   # t: the leaf
    assert editor.definition(analysis, 4, 4) == Span(line=0, character=5, end_line=0, end_character=6)   # g: the gate


def test_the_chain_rule_at_a_node_sums_its_terms():
    text = "const c = 3\nx = 2\nu = 4\nf = x * x + c * x\n"
    analysis = editor.analyse(text, source="c.grad")
    at_x = editor.chain_rule(analysis, 1, 0)
    assert "x * x → x" in at_x and f"total: dx = {2 * 2 + 3:g}" in at_x  # d(x² + 3x)/dx = 2x + 3
    assert editor.chain_rule(analysis, 0, 6).endswith("c is a const: frozen, no gradient flows into it")
    assert editor.chain_rule(analysis, 2, 0).endswith("does not reach the output f: du = 0")
    assert "is the output" in editor.chain_rule(analysis, 3, 0)
    assert editor.hover(analysis, 3, 6).startswith("**x * x** · gate `*`")
    assert f"value: `{math.pow(2, 2):g}`" in editor.hover(analysis, 3, 6)
