"""SymPy along axes at scale: a large reduction's (or softmax's) local Jacobian from SymPy's partials of
its own form on one slice, evaluated at every slice, once SymPy has confirmed at reduced shapes that
every slice's form is that one's. Against SymPy's expressions of the whole operand, entry by entry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gradcheck_cli import check, gates
from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff, symbolic


def _dense(jac, n_out: int, n_in: int) -> np.ndarray:
    rows, cols, vals = jac
    out = np.zeros((n_out, n_in))
    np.add.at(out, (rows, cols), vals)
    return out


def _gate_node(text: str):
    graph = load(text)
    values = autodiff.forward(graph)
    node = graph.nodes[graph.output]
    return node, [values[i] for i in node.inputs]


CASES = [
    ("logsumexp(x, axis=1)", (40, 8)),
    ("logsumexp(x, axis=0, keepdims=1)", (8, 40)),
    ("softmax(x, axis=1)", (30, 10)),
    ("sum(x, axis=[0, 2])", (4, 10, 9)),
    ("mean(x, axis=1)", (50, 6)),
    ("norm(x, axis=1)", (45, 7)),
    ("max(x, axis=1)", (40, 8)),
]


@pytest.mark.parametrize("call, shape", CASES, ids=[c for c, _ in CASES])
def test_one_slices_partials_are_sympys_jacobian_of_the_whole_form(call, shape, monkeypatch):
    text = f"x = randn({', '.join(map(str, shape))})\nf = {call}\n"
    node, args = _gate_node(text)
    found = symbolic._slice_jacobian(node, args, symbolic.Work(10 ** 9))
    assert found is not None
    (jac,), how = found
    assert "confirmed" in how and f"{node.gate.name}'s own form" in how
    monkeypatch.setattr(symbolic, "SLICE_PAST", 10 ** 9)  # the whole operand's SymPy expressions
    (whole,) = symbolic.local_jacobian(node, args, symbolic.Work(10 ** 9))
    size = int(np.prod(shape))
    np.testing.assert_allclose(_dense(jac, node.size, size), _dense(whole, node.size, size), rtol=1e-14, atol=1e-300)


def test_a_small_operand_or_a_single_slice_stays_with_sympys_expressions():
    for text in ("x = randn(4, 5)\nf = logsumexp(x, axis=1)\n", "x = randn(1, 400)\nf = logsumexp(x, axis=1)\n",
                 "x = randn(20, 20)\nf = sum(x)\n"):
        node, args = _gate_node(text)
        assert symbolic._slice_jacobian(node, args, symbolic.Work(10 ** 9)) is None


def test_a_form_whose_slices_differ_is_not_taken_from_one(monkeypatch):
    lse = gates.REGISTRY["logsumexp"]

    def mixed(args, attrs):  # each row's logsumexp plus the first row's first element: not slice by slice
        out = lse.sym(args, attrs)
        return out + args[0].reshape(args[0].shape[0], -1)[0, 0] if args[0].shape[0] > 1 else out

    node, args = _gate_node("x = randn(40, 8)\nf = logsumexp(x, axis=1)\n")
    node = dataclasses.replace(node, gate=dataclasses.replace(lse, sym=mixed))
    assert symbolic._slice_jacobian(node, args, symbolic.Work(10 ** 9)) is None


def test_the_report_says_which_gates_went_by_one_slice():
    report = check("S = randn(32, 10)\nL = mean(logsumexp(S, axis=1))\n")
    assert report.passed and report.symbolic_coverage == 1.0
    (entry,) = report.symbolic_rules
    assert entry.startswith("logsumexp(S, axis=1) (line 2): by SymPy's partials of logsumexp's own form on one 1×10 slice")
    assert "each of its 32 slices" in entry and "confirmed at 2×10" in entry
    row = {r.name: r for r in report.nodes}["S"]
    S = np.asarray(row.value)
    softmax = np.exp(S - S.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(row.symbolic, softmax / 32, rtol=1e-13)  # d mean(lse)/dS = softmax / rows, by hand

