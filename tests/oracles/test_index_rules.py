"""SymPy that scales: a large matrix product's local Jacobian by its index rule (checked by SymPy at
reduced shapes), large user gates chained through their bodies, and comprehensions over a vector
whose symbolic and batched work grows with their terms, not their square."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import sympy

from gradcheck_cli import check, gates
from gradcheck_cli.core.meter import Meter
from gradcheck_cli.gates.record import IndexRule
from gradcheck_cli.oracles import symbolic

SUBTLE = Path(__file__).resolve().parents[2] / "examples" / "subtle"
RULED = [g for g in gates.REGISTRY.values() if g.index_rule is not None]


def _sympy_partials(gate, slots, attrs) -> dict:
    """(slot, row, col) -> SymPy's partial of the gate's own form, nonzero ones only."""
    where = {s: (k, e) for k, sym in enumerate(slots) for e, s in enumerate(sym.ravel())}
    out = {}
    for o, expr in enumerate(np.asarray(gate.sym(list(slots), attrs), dtype=object).ravel()):
        for s in expr.free_symbols:
            d = sympy.diff(expr, s)
            if d != 0:
                out[(where[s][0], o, where[s][1])] = d
    return out


@pytest.mark.parametrize("gate, example", [(g, ex) for g in RULED for ex in g.examples],
                         ids=lambda v: getattr(v, "name", None) or str(getattr(v, "shapes", v)))
def test_every_index_rule_is_sympys_jacobian_at_every_registry_example(gate, example):
    _, attrs = gate.infer(list(example.shapes), dict(example.params))
    slots = [symbolic.make_symbols(s, f"t{k}_") for k, s in enumerate(example.shapes)]
    got: dict = {}
    for k, (rows, cols, values) in enumerate(gate.index_rule.jacobian(slots, attrs)):
        for r, c, v in zip(rows, cols, values):
            got[(k, int(r), int(c))] = got.get((k, int(r), int(c)), 0) + v
    assert {t: v for t, v in got.items() if v != 0} == _sympy_partials(gate, slots, attrs)
    assert symbolic.confirmed_at(gate, list(example.shapes), attrs, symbolic.Work(10 ** 6)) is not None


def test_reduced_shapes_keep_ranks_units_and_equal_axes():
    assert symbolic.reduced([(32, 64), (64, 128)]) == [(2, 3), (3, 4)]
    assert symbolic.reduced([(5, 1, 7, 7), (7,)]) == [(2, 1, 3, 3), (3,)]


def _product(n: int, m: int, k: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X, W, U = rng.standard_normal((n, m)), rng.standard_normal((m, k)), rng.standard_normal((n, k))
    rows = lambda a: "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in r) + "]" for r in a) + "]"  # noqa: E731
    return f"X = {rows(X)}\nW = {rows(W)}\nconst U = {rows(U)}\nf = sum((X @ W) * U)\n", X, W, U


def test_a_large_product_gets_sympys_column_by_its_rule_and_it_is_the_hand_derived_gradient():
    text, X, W, U = _product(30, 25, 40)  # 30,000 products: past RULE_PAST
    report = check(text, complex_step=False)
    assert report.passed and report.symbolic_coverage == 1.0
    assert len(report.symbolic_rules) == 1 and "X @ W (line 4)" in report.symbolic_rules[0]
    assert "2×3 and 3×4" in report.symbolic_rules[0]
    rows = {r.name: r for r in report.nodes}
    # f = Σ (XW)∘U: df/dW = Xᵀ U, df/dX = U Wᵀ (by hand), against the SymPy column
    np.testing.assert_allclose(rows["W"].symbolic, X.T @ U, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(rows["X"].symbolic, U @ W.T, rtol=1e-13, atol=1e-13)


def test_a_small_product_stays_with_sympys_expressions():
    text, *_ = _product(3, 4, 2)
    report = check(text)
    assert report.passed and report.symbolic_coverage == 1.0 and report.symbolic_rules == []


def test_a_rule_sympy_does_not_confirm_is_not_used(monkeypatch):
    matmul = gates.REGISTRY["matmul"]

    def swapped(args, attrs):  # a wrong rule: each operand's entries carry its own elements, not the other's
        found = matmul.index_rule.jacobian(args, attrs)
        (ra, ca, _), (rb, cb, _) = found
        return [(ra, ca, np.asarray(args[0]).ravel()[ca]), (rb, cb, np.asarray(args[1]).ravel()[cb])]

    wrong = dataclasses.replace(matmul, index_rule=IndexRule(text="wrong", jacobian=swapped))
    assert symbolic.confirmed_at(wrong, [(3, 4), (4, 2)], {"nd": (2, 2), "batch": 0}, symbolic.Work(10 ** 6)) is None
    monkeypatch.setitem(gates.REGISTRY, "matmul", wrong)
    monkeypatch.setattr(symbolic, "RULE_PAST", 10)
    text, *_ = _product(3, 4, 2)
    report = check(text)  # SymPy's own expressions instead: the same verdict, no rule named
    assert report.passed and report.symbolic_coverage == 1.0 and report.symbolic_rules == []
    monkeypatch.setitem(gates.REGISTRY, "matmul", matmul)
    assert check(text).symbolic_rules  # the right rule, past the (lowered) size: used and named


AFFINE = """gate affine(x, W, b) = x @ W + b
  dx = dout @ W.T
  dW = x.T @ dout
  db = sum(dout, axis=0)
x = randn(20, 30)
W = randn(30, 40)
b = randn(40)
const u = randn(20, 40)
f = sum(affine(x, W, b) * u)
"""  # x @ W builds 20·40·30 products in SymPy (+ 800 sums): past RULE_PAST (20,000), so its rule is used


def test_a_wrong_affine_d_line_under_any_difference_is_caught_through_the_rule():
    assert check(AFFINE, complex_step=False).passed
    wrong = AFFINE.replace("dW = x.T @ dout", "dW = x.T @ dout * 1.00000003")  # 3e-8: below what differences resolve
    assert check(wrong, complex_step=False, symbolic=False).passed  # the differences alone cannot see it
    report = check(wrong, complex_step=False)
    assert not report.passed and any("x @ W (line 1)" in r for r in report.symbolic_rules)
    (gate,) = [g for g in report.gates if g.status == "fail"]
    assert (gate.input, gate.line) == ("dW", 3) and "SymPy" in gate.note
    assert {r.name: r.status for r in report.nodes}["W"] == "fail"


@pytest.mark.parametrize("right, wrong", [("gelu.grad", "gelu_rounded.grad"), ("layernorm.grad", "layernorm_no_eps.grad")])
def test_the_bugs_only_sympy_sees_without_the_complex_step_still_fail(right, wrong):
    assert check((SUBTLE / right).read_text(), source=right, complex_step=False).passed
    bad = check((SUBTLE / wrong).read_text(), source=wrong, complex_step=False)
    assert not bad.passed and [g.input for g in bad.gates if g.status == "fail"] == ["dx"]
    assert check((SUBTLE / wrong).read_text(), source=wrong, complex_step=False, symbolic=False).passed


def _metered(n: int, **options) -> dict:
    with Meter() as meter:
        report = check(f"x = randn({n})\nf = sum(stack(sin(x[i]) for i in range({n})))\n", complex_step=False,
                       **options)
    assert report.passed and report.symbolic_coverage == 1.0
    return meter.counts


def test_a_comprehension_over_a_vector_costs_sympy_in_proportion_to_its_terms():
    small, large = _metered(150), _metered(600)
    assert large["sympy"] <= 4.5 * small["sympy"], (small, large)  # x[i] reads one of x's symbols, not all


def test_the_rows_of_a_comprehensions_terms_visit_those_terms_only():
    # x projected (past the element budget): what is left is the terms' own rows, which once walked every
    # term after theirs (quadratic), and now visit their own term, the stack and the sum
    small, large = _metered(150, budget=100), _metered(600, budget=100)
    assert large["sweep"] <= 6 * small["sweep"], (small, large)  # four times the terms (it was quadratic)
