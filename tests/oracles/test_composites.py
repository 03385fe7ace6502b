"""How the evaluators run a Composite (the call of a user gate): its body for the forward, the branch
and SymPy's form, its d lines (or backprop through its body) for the VJP, and the body values one
VJP through nested bodies shares, held by that VJP and by nothing global."""

from contextvars import ContextVar

import numpy as np
import sympy

from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff, complexstep, symbolic

TEXT = """gate sig(t) = 1 / (1 + exp(-t))
  dt = dout * out * (1 - out)
gate halfsig(t) = sig(t) / 2
  dt = dout * out * (1 - 2 * out)
gate soft(t) = exp(t) * t
gate clip(t) = max(t, 0) + min(t, 1)
x = [0.5, -1.5]
f = sum(sig(x) + halfsig(x) + soft(x) + clip(x))
"""


def composite(graph, name):
    """The composite of that name called in the graph or, nested, in a body it calls."""
    for node in graph.nodes:
        if node.composite is not None:
            if node.gate.name == name:
                return node.gate
            nested = composite(node.composite.body, name)
            if nested is not None:
                return nested
    return None


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


def test_its_forward_is_its_body_on_plain_and_batched_operands():
    sig = composite(load(TEXT), "sig")
    t = np.array([0.5, -1.5])
    assert np.allclose(autodiff.gate_forward(sig, [t], {}), sigmoid(t))
    rows = np.array([[0.5, -1.5], [2.0, 0.0], [-3.0, 1.0]])
    assert np.allclose(autodiff.gate_forward(sig, [rows], {}, batched=True), sigmoid(rows))


def test_its_forward_is_nan_where_its_body_is_undefined_rather_than_an_error():
    graph = load("gate lg(t) = log(t) * 2\nx = [1, 2]\nf = sum(lg(x))\n")
    out = autodiff.gate_forward(composite(graph, "lg"), [np.array([-1.0, np.e])], {})
    assert np.isnan(out[0]) and np.isclose(out[1], 2.0)


def test_its_vjp_runs_the_d_lines_when_written_and_backprop_through_the_body_when_not():
    graph = load(TEXT)
    t = np.array([0.5, -1.5])
    g = np.array([[1.0, 2.0]])
    sig = composite(graph, "sig")
    (d,) = autodiff.gate_vjp(sig, g, [t], sigmoid(t), {})
    assert np.allclose(d, g * sigmoid(t) * (1 - sigmoid(t)))
    soft = composite(graph, "soft")
    (d,) = autodiff.gate_vjp(soft, g, [t], np.exp(t) * t, {})
    assert np.allclose(d, g * np.exp(t) * (1 + t))


def test_a_wrong_d_line_is_what_its_vjp_returns_and_its_body_vjp_is_still_right():
    graph = load(TEXT)
    t = np.array([0.5, -1.5])
    g = np.ones((1, 2))
    half = composite(graph, "halfsig")
    out = sigmoid(t) / 2
    (theirs,) = autodiff.gate_vjp(half, g, [t], out, {})
    (right,) = autodiff.body_vjp(half, g, [t])
    assert np.allclose(theirs, out * (1 - 2 * out))
    assert np.allclose(right, sigmoid(t) * (1 - sigmoid(t)) / 2)


def test_one_vjp_through_nested_bodies_runs_each_body_once(monkeypatch):
    text = ("gate a(t) = exp(t) * t\ngate b(t) = a(t) + a(t)\ngate c(t) = b(t) * b(t)\n"
            "gate d(t) = c(t) - c(t)\nx = 0.3\nf = d(x)\n")
    graph = load(text)
    runs: dict = {}
    plain = autodiff.forward

    def counted(g, inputs=None, **kw):
        runs[id(g)] = runs.get(id(g), 0) + 1
        return plain(g, inputs, **kw)
    monkeypatch.setattr(autodiff, "forward", counted)
    d = composite(graph, "d")
    (grad,) = autodiff.body_vjp(d, np.ones((1,)), [np.array(0.3)])
    bodies = {name: id(composite(graph, name).body) for name in "abcd"}
    assert {name: runs.get(key, 0) for name, key in bodies.items()} == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert np.isclose(grad[0], 0.0)  # d(t) = c(t) - c(t)


def test_the_body_values_are_kept_by_the_vjp_that_made_them_and_nothing_is_module_global(monkeypatch):
    assert not any(isinstance(v, ContextVar) for v in vars(autodiff).values())
    graph = load("gate a(t) = exp(t) * t\ngate b(t) = a(t) * 2\nx = 0.3\nf = b(x)\n")
    b = composite(graph, "b")
    runs = []
    plain = autodiff.forward
    monkeypatch.setattr(autodiff, "forward", lambda g, inputs=None, **kw: runs.append(id(g)) or plain(g, inputs, **kw))
    first = autodiff.body_vjp(b, np.ones((1,)), [np.array(0.3)])
    second = autodiff.body_vjp(b, np.ones((1,)), [np.array(0.3)])
    assert runs.count(id(b.body)) == 2  # a second VJP computes afresh: nothing outlived the first
    assert np.allclose(first[0], second[0])
    shared = autodiff.BodyValues()
    values = shared.of(b, [np.array(0.3)])
    assert shared.of(b, [np.array(0.3)]) is values and shared.of(b, [np.array(0.4)]) is not values


def test_its_branch_is_its_body_kink_gates_branches_side_by_side():
    graph = load(TEXT)
    clip = composite(graph, "clip")
    assert clip.has_kinks and not composite(graph, "sig").has_kinks
    branch = autodiff.gate_branch(clip, [np.array([0.5, -1.5])], {})
    assert branch.shape == (1, 4)  # one row: max's two elements, then min's


def test_its_sympy_form_is_its_body_built_from_the_operands_expressions():
    graph = load(TEXT)
    t = sympy.Symbol("t", real=True)
    (expr,) = symbolic.gate_sym(composite(graph, "soft"), [np.array([t], dtype=object)], {})
    assert sympy.simplify(expr - sympy.exp(t) * t) == 0


def test_it_is_complex_analytic_when_every_gate_of_its_body_is():
    graph = load(TEXT)
    assert complexstep.analytic(composite(graph, "soft"))
    assert not complexstep.analytic(composite(graph, "clip"))


def test_sympys_forms_kept_between_checks_are_those_of_the_gate_checked_now():
    # symbolic._kept shares a gate call's SymPy expressions between checks: a gate of the same name and
    # shapes whose body, a nested gate's body, a constant, or an attribute differs must be built anew
    # (each SymPy column against the derivative worked by hand, at x = 1.5 and on a 2 x 2 x)
    from gradcheck_cli import check

    def grad(text, name="x"):
        report = check(text, complex_step=False)
        row = next(n for n in report.nodes if n.name == name)
        return report.passed, np.asarray(row.symbolic, dtype=float)
    for body, derivative in (("t * t", 2 * 1.5), ("t * t * t", 3 * 1.5 ** 2), ("t * 2.0", 2.0), ("t * 3.0", 3.0)):
        assert grad(f"gate g(t) = {body}\nx = 1.5\nf = g(x)\n") == (True, derivative)
    for c in ([2.0, 3.0], [4.0, 5.0]):  # a constant of the body: a literal node's value
        passed, column = grad(f"gate g(t) = sum(t * {c})\nx = [1.5, 0.5]\nf = g(x)\n")
        assert passed and np.array_equal(column, c)
    for inner, derivative in (("t", 2 * 1.5), ("t * t", 3 * 1.5 ** 2)):
        assert grad(f"gate h(t) = {inner}\ngate g(t) = h(t) * t\nx = 1.5\nf = g(x)\n") == (True, derivative)
    w = np.array([1.0, 2.0])
    for axis, by_hand in ((0, np.tile(w / 2, (2, 1))), (1, np.tile(w[:, None] / 2, (1, 2)))):
        passed, column = grad(f"x = [[0.5, -1.0], [2.0, 0.25]]\nf = sum(mean(x, axis={axis}) * [1.0, 2.0])\n")
        assert passed and np.array_equal(column, by_hand)
