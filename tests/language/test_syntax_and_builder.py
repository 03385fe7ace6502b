"""Unit tests of the parser (positions, precedence) and the graph builder (names, gate forms, order)."""

import numpy as np
import pytest

from gradcheck_cli.language.builder import build
from gradcheck_cli.language.syntax import parse


def expr_of(src):
    return parse(src).statements[-1].expr


def test_precedence_and_associativity():
    e = expr_of("f = -x^2")               # unary minus binds looser than ^
    assert e.op == "neg" and e.args[0].op == "^"
    e = expr_of("f = a ^ b ^ c")           # ^ is right-associative
    assert e.op == "^" and e.args[1].op == "^"
    e = expr_of("f = a - b - c")           # - is left-associative
    assert e.op == "-" and e.args[0].op == "-"
    e = expr_of("f = a + b * c @ d")
    assert e.op == "+" and e.args[1].op == "@" and e.args[1].args[0].op == "*"
    e = expr_of("f = a ** 2")
    assert e.op == "^"
    e = expr_of("f = a + b > c")
    assert e.op == ">" and e.args[0].op == "+"
    e = expr_of("f = W.T.T")
    assert e.op == ".T" and e.args[0].op == ".T"


def test_positions_are_one_based_and_spans_include_parentheses():
    src = "x = 1\nf = (x + 1) * exp(x)"
    e = expr_of(src)
    assert (e.pos.line, e.pos.col) == (2, 5)
    text = parse(src).text
    assert text[e.args[0].pos.start:e.args[0].pos.end] == "x + 1"
    assert text[e.pos.start:e.pos.end] == "(x + 1) * exp(x)"
    assert (e.op_pos.line, e.op_pos.col) == (2, 13)


def test_statements():
    p = parse("x = 1; const c = 2\noutput x\nexpect dx = 3\n# c\n\nf = x\n")
    kinds = [type(s).__name__ for s in p.statements]
    assert kinds == ["Assign", "Assign", "Output", "Expect", "Assign"]
    assert p.statements[1].const is True


def test_multiline_brackets_and_line_continuation():
    p = parse("m = [[1, 2],\n     [3, 4]]\nf = sum(m,\n  axis=0)\ng = m \\\n  * 2\n")
    assert len(p.statements) == 3


def test_cs231n_gate_forms_and_names():
    g = build(parse("x = 2\na = 1 + x\nb = x - 3\nc = 4 - x\nd = 2 * x\ne = x / 4\nh = 1 / x\n"
                    "i = 3 / x\nj = x ^ 2\nk = 2 ^ x\nl = -x\nm = x * x"))
    labels = {n.name: n.label for n in g.nodes}
    assert labels == {"x": "input", "a": "+1", "b": "-3", "c": "4-x", "d": "*2", "e": "*0.25", "h": "1/x",
                      "i": "3/x", "j": "^2", "k": "2^x", "l": "*-1", "m": "*"}


def test_unnamed_gates_are_named_by_source_text_and_order_is_topological():
    g = build(parse("w = 2; x = -1\nf = 1 / (1 + exp(-(w * x)))"))
    assert [n.name for n in g.nodes] == ["w", "x", "w * x", "-(w * x)", "exp(-(w * x))", "1 + exp(-(w * x))", "f"]
    for n in g.nodes:
        assert all(i < n.id for i in n.inputs)


def test_long_names_are_shortened():
    g = build(parse("x = 1\nf = " + " + ".join(["x"] * 40) + " + exp(x)"))
    assert all(len(n.name) <= 60 for n in g.nodes)
    assert any("…" in n.name for n in g.nodes)


def test_constant_folding_and_leaves():
    g = build(parse("W = 0.5 * ones(2, 3)\nc = 2 * 3\nf = sum(W) * c"), seed=0)
    by = {n.name: n for n in g.nodes}
    assert by["W"].kind == "leaf" and np.all(by["W"].value == 0.5)
    assert by["c"].kind == "leaf" and float(by["c"].value) == 6
    assert by["f"].label == "*"


def test_seeded_values_are_reproducible_and_change_with_the_seed():
    a = build(parse("W = randn(3)\nf = sum(W)"), seed=1).nodes[0].value
    b = build(parse("W = randn(3)\nf = sum(W)"), seed=1).nodes[0].value
    c = build(parse("W = randn(3)\nf = sum(W)"), seed=2).nodes[0].value
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_randn_values_are_numpys_default_rng_of_the_seed_in_order():
    # as documented: the leaves' randn(...) values are default_rng(--seed) itself, drawn in program order
    src = "W = randn(2)\nv = randn(3)\nf = sum(W) + sum(v)"
    nodes = build(parse(src), seed=5).nodes
    want = np.random.default_rng(5)
    assert np.array_equal(nodes[0].value, want.standard_normal(2))
    assert np.array_equal(nodes[1].value, want.standard_normal(3))


@pytest.mark.parametrize("src,shape", [
    ("W = ones(2, 3); x = ones(3)\nf = W @ x", (2,)),
    ("W = ones(2, 3); x = ones(2)\nf = x @ W", (3,)),
    ("u = ones(3); v = ones(3)\nf = u @ v", ()),
    ("W = ones(2, 3)\nf = W.T", (3, 2)),
    ("W = ones(2, 3)\nf = sum(W, axis=1, keepdims=1)", (2, 1)),
    ("W = ones(2, 3)\nf = logsumexp(W, axis=0)", (3,)),
    ("W = ones(2, 3)\nf = softmax(W, axis=1)", (2, 3)),
    ("W = ones(2, 3)\nf = max(W, axis=[0, 1])", ()),
])
def test_shapes(src, shape):
    g = build(parse(src))
    assert g.nodes[g.output].shape == shape


def test_free_names_in_inline_mode():
    g = build(parse("(x + y) * max(y, z)"), free_names=True, at={"x": np.asarray(1.0)})
    assert [n.name for n in g.nodes if n.kind == "leaf"] == ["x", "y", "z"]
    assert float(g.nodes[0].value) == 1.0 and g.nodes[g.output].name == "f"


def test_a_text_parsed_again_is_its_kept_tree_and_still_under_the_limits(monkeypatch):
    # the last PARSED_KEPT texts' trees are kept (immutable: nodes are frozen): a text checked again in one
    # process is not parsed again, yet a limit lowered since refuses it as it would a new text
    from gradcheck_cli.core.errors import GradSyntaxError
    from gradcheck_cli.language import syntax
    text = "x = 0.5\na = x + 1\nb = a * 2\nf = b + a\n"
    first = parse(text)
    monkeypatch.setattr(syntax, "_parser", lambda: pytest.fail("parsed again"))
    assert parse(text) is first and parse(text.rstrip("\n")) is first  # the same text once normalized
    monkeypatch.setattr(syntax, "MAX_STATEMENTS", 3)
    with pytest.raises(GradSyntaxError, match="4 lines of code"):
        parse(text)
    monkeypatch.undo()
    for k in range(syntax.PARSED_KEPT):  # the oldest go first
        parse(f"x = {k}\nf = x * x\n")
    assert parse(text) is not first and parse(text) == first
