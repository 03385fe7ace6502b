"""Verdicts you can trust: the policy's constants pinned, the culprit named exactly, no
misses at the tolerance edges, a second point, and the same bytes on any machine."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check
from gradcheck_cli.oracles import numeric
from gradcheck_cli.checking import verdict
from gradcheck_cli.cli import main
from gradcheck_cli.oracles.numeric import NumericResult
from conftest import EXPRESSIONS, rows


def num1(value, estimate=0.0, truncation=0.0, kink=False):
    """A one-element exhaustive NumericResult."""
    v = np.array([[value]], dtype=float)
    return NumericResult("exhaustive", estimate=np.array([[estimate]]), truncation=np.array([[truncation]]),
                         kink=np.array([kink]), value=v, at_kink=np.array([False]),
                         lower=v.copy(), upper=v.copy())


def status(bp, num, sym=None, **kw):
    return verdict.judge(np.array([[bp]]), num, None, None if sym is None else np.array([[sym]]), **kw).status


# --- each constant of the policy matters -------------------------------------------------------

def test_rtol_decides_between_pass_and_fail():
    assert status(1.0, num1(1.0 + 1e-6)) == "pass"        # 1e-6 < rtol 1e-5
    assert status(1.0, num1(1.0 + 1e-4)) == "fail"        # 1e-4 > rtol, and the difference is sure of it
    assert verdict.judge(np.array([[1.0]]), num1(1.0 + 1e-6)).tolerance == pytest.approx(1e-5)


def test_safety_factor_on_the_error_estimate():
    # the difference agrees, and could have seen an error of the tolerance: pass
    assert status(1.0, num1(1.0 + 5e-6, estimate=2e-6)) == "pass"
    # an error estimate 4× of which exceeds the tolerance cannot confirm: warn, not pass
    assert status(1.0, num1(1.0 + 5e-6, estimate=3e-6)) == "warn"
    # a difference inside 4× its error estimate cannot convict either: warn, not fail
    assert status(1.0, num1(1.0 + 2e-4, estimate=1e-4)) == "warn"
    assert status(1.0, num1(1.0 + 5e-4, estimate=1e-4)) == "fail"


def test_symbolic_rtol():
    assert status(1.0, num1(1.0), sym=1.0 + 1e-10) == "pass"
    assert status(1.0, num1(1.0), sym=1.0 + 1e-6) == "fail"   # finite differences cannot see 1e-6; SymPy can
    # held both ways: 3e-9 is within SYMBOLIC_RTOL (1e-8), 3e-8 is not (either fails at 10x or 0.1x)
    assert status(1.0, num1(1.0), sym=1.0 + 3e-9) == "pass"
    assert status(1.0, num1(1.0), sym=1.0 + 3e-8) == "fail"
    j = verdict.judge(np.array([[1.0]]), num1(1.0), None, np.array([[1.0 + 1e-6]]))
    assert "too coarse here to see it" in j.note


def test_no_absolute_floor_by_default():
    # a sign flip of a 1e-9 gradient is wrong, whatever its size
    assert verdict.judge(np.array([[-1e-9]]), num1(1e-9)).status == "fail"
    assert status(-1e-9, num1(1e-9), sym=1e-9) == "fail"
    # an explicit --atol floor hides it again
    assert status(-1e-9, num1(1e-9), atol=1e-8) == "pass"


def test_row_floor_judges_zeros_at_the_rows_scale():
    bp = np.array([[1.0, 0.0]])
    num = NumericResult("exhaustive", estimate=np.zeros((1, 2)), truncation=np.zeros((1, 2)),
                        kink=np.zeros(2, bool), value=np.array([[1.0, 5e-9]]), at_kink=np.zeros(2, bool),
                        lower=np.zeros((1, 2)), upper=np.zeros((1, 2)))
    assert verdict.judge(bp, num).status == "pass"                  # 5e-9 ≤ 1e-5 · 1e-3 · 1
    num.value = np.array([[1.0, 3e-8]])
    assert verdict.judge(bp, num).status == "fail"                  # 3e-8 > 1e-8 (it would pass at 10x ROW_FLOOR)


def test_backprop_noise_widens_the_tolerance():
    bp, sym = np.array([[3.7e-13]]), np.array([[3.7e-13 + 1e-16]])
    assert verdict.judge(bp, num1(3.7e-13), None, sym).status == "fail"
    assert verdict.judge(bp, num1(3.7e-13), np.array([[2e-16]]), sym).status == "pass"
    # NOISE (16) held both ways: a difference of 10 noises is rounding, one of 30 noises is not
    noise = np.array([[1e-15]])
    assert verdict.judge(bp, num1(3.7e-13), noise, bp + 10e-15).status == "pass"
    assert verdict.judge(bp, num1(3.7e-13), noise, bp + 30e-15).status == "fail"


def test_sympy_rounding_allowance_scales_with_the_magnitude_of_the_terms():
    bp, sym = np.array([[1e-17]]), np.array([[0.0]])
    assert verdict.judge(bp, num1(0.0, estimate=1e-9), None, sym).status == "fail"
    assert verdict.judge(bp, num1(0.0, estimate=1e-9), None, sym, np.array([[1.0]])).status == "pass"
    # SYM_ROUNDING (64) held both ways: 32 ε·m apart is SymPy's float rounding, 128 ε·m is not
    eps, m = verdict.EPS, np.array([[1.0]])
    assert verdict.judge(np.array([[32 * eps]]), num1(0.0, estimate=1e-9), None, sym, m).status == "pass"
    assert verdict.judge(np.array([[128 * eps]]), num1(0.0, estimate=1e-9), None, sym, m).status == "fail"


def test_unreliable_truncation():
    assert status(1.0, num1(1.0, truncation=2e-2), sym=1.0) == "warn"
    assert status(1.0, num1(1.0, truncation=5e-3, estimate=5e-3), sym=1.0) == "pass"


def test_a_passing_row_never_shows_an_error_above_its_tolerance():
    rng = np.random.default_rng(0)
    for _ in range(300):
        bp = rng.standard_normal((1, 5)) * 10.0 ** rng.integers(-12, 4)
        value = bp * (1 + rng.standard_normal((1, 5)) * 10.0 ** rng.integers(-12, -2))
        est = np.abs(bp) * 10.0 ** rng.integers(-14, -3)
        num = NumericResult("exhaustive", estimate=est, truncation=est / 2, kink=np.zeros(5, bool), value=value,
                            at_kink=np.zeros(5, bool), lower=value, upper=value)
        j = verdict.judge(bp, num)
        if j.status == "pass":
            assert j.numeric_error <= j.tolerance * (1 + 1e-12)


class Recorder:
    """f(x) = x³ (one input), recording every step it is asked for."""
    out_size = 1
    terms = 0.0  # a function of its own, no sum of weighted outputs: rounded at its value

    def __init__(self, x):
        self.x, self.centre, self.deltas = x, np.array([x ** 3]), []

    def width(self, _):
        return 1

    def run(self, probes, n_rows):
        xs = np.full(n_rows, self.x)
        for p in probes:
            np.add.at(xs, p.rows, p.delta)
            self.deltas.extend(np.asarray(p.delta).tolist())
        return (xs ** 3)[:, None], np.zeros(n_rows, bool)


def test_richardson_second_step_is_half_of_h():
    r = Recorder(1.0)
    h = numeric.steps(np.array([1.0]), 1e-3)[0]
    res = numeric.differentiate(r, [numeric.Target(0, np.array([1.0]))], 1e-3, 1e-5, 0.0, {0: np.array([[2.0]])})[0]
    assert sorted(set(np.round(np.abs(r.deltas) / h, 12))) == [0.5, 1.0]
    # d(h) = 3 + h², d(h/2) = 3 + h²/4: the estimate is their difference, the value exact
    assert res.truncation[0, 0] == pytest.approx(0.75 * h * h, rel=1e-6)
    assert res.value[0, 0] == pytest.approx(3.0, abs=1e-12)


# --- the culprit is exactly the faulty gate and line ------------------------------------------------

def test_fan_out_blames_only_the_wrong_gate():
    r = check("gate sq(t) = t^2\n  dt = dout * t\nx = 1.5\nf = exp(x) + sq(x)")
    x = rows(r)["x"]
    assert x.status == "fail" and "backward of 'sq(x)'" in x.note and "exp" not in x.note.split(";", 1)[1]
    assert x.culprit == (2, 3)
    failing = [(g.name, g.input) for g in r.gates if g.status == "fail"]
    assert failing == [("sq(x)", "dt")]
    assert all(g.status == "pass" for g in r.gates if g.name == "exp(x)")


RNN = """gate rnn(x, h, Wx, Wh, b) = tanh(x @ Wx + h @ Wh + b)
  dz = dout * (1 - out * out)
  dx = dz @ Wx.T
  dh = dz @ Wh.T
  dWx = x.T @ dz
  dWh = h.T @ dz
  db = sum(dz, axis=0)
gate l2(W) = 0.5 * sum(W * W)
  dW = dout * W
const x = randn(3, 4)
h0 = randn(3, 5)
Wx = 0.3 * randn(4, 5)
Wh = 0.3 * randn(5, 5)
b = 0.1 * randn(5)
h1 = rnn(x, h0, Wx, Wh, b)
L = sum(h1 * h1) + 0.01 * l2(Wh)
"""


def test_rnn_with_weight_decay_annotates_the_l2_line_not_the_rnn():
    assert check(RNN).passed
    bad = RNN.replace("  dW = dout * W", "  dW = dout * W * 2")
    r = check(bad)
    assert rows(r)["Wh"].culprit == (9, 3)
    assert {(g.name, g.input) for g in r.gates if g.status == "fail"} == {("l2(Wh)", "dW")}


def test_rnn_annotation_in_github_format(tmp_path):
    p = tmp_path / "rnn.grad"
    p.write_text(RNN.replace("  dW = dout * W", "  dW = dout * W * 2"))
    out = CliRunner().invoke(main, ["check", str(p), "--format", "github"]).stdout
    lines = [l for l in out.splitlines() if l.startswith("::error")]
    assert lines and all(",line=9," in l for l in lines)


BN = """gate bn(x, gamma, beta) = gamma * xhat + beta
  mu = mean(x, axis=0)
  xc = x - mu
  var = mean(xc * xc, axis=0)
  std = sqrt(var + 1e-5)
  xhat = xc / std
  dxhat = dout * gamma
  dstd = -sum(dxhat * xc, axis=0) / (std * std)
  dvar = 0.5 * dstd / std
  dxc = dxhat / std + 2 * xc * dvar / 4
  dmu = -sum(dxc, axis=0)
  dx = dxc + dmu / 4
  dgamma = sum(dout * xhat, axis=0)
  dbeta = sum(dout, axis=0)
x = randn(4, 3)
gamma = [1.5, 0.5, -1]
beta = [0.1, 0.2, 0.3]
const R = randn(4, 3)
L = sum(bn(x, gamma, beta) * R)
"""


def test_staged_backprop_checks_every_intermediate_line():
    r = check(BN)
    assert r.passed
    checked = {g.input for g in r.gates if g.name == "bn(x, gamma, beta)" and g.point == 1}
    assert {"dx", "dgamma", "dbeta", "dxhat", "dstd", "dvar", "dxc", "dmu"} <= checked


@pytest.mark.parametrize("old,new,line,name", [
    ("dvar = 0.5 * dstd / std", "dvar = 0.5 * dstd * std", 9, "dvar"),
    ("dxhat = dout * gamma", "dxhat = dout / gamma", 7, "dxhat"),
    ("dmu = -sum(dxc, axis=0)", "dmu = sum(dxc, axis=0)", 11, "dmu"),
])
def test_a_bug_in_a_local_line_is_reported_at_that_line(old, new, line, name):
    r = check(BN.replace(old, new))
    x = rows(r)["x"]
    assert x.status == "fail" and x.culprit == (line, 3)
    assert f"its line '{name}' (line {line}) is not the gradient of '{name[1:]}'" in x.note


SMOOTH_L1 = """gate smooth_l1(p, t) = where(abs(d) < 1, 0.5 * d * d, abs(d) - 0.5)
  d = p - t
  dd = where(abs(d) < 1, d, 2 * sign(d)) * dout
  dp = dd
  dt = -dd
p = [0.3, 2.0, -1.5]
t = [0.0, 0.5, 0.2]
f = sum(smooth_l1(p, t))
"""


@pytest.mark.parametrize("dp", ["dd", "-(-dd)", "1 * dd"])
def test_a_d_line_that_copies_a_failing_one_folds_into_it(dp):
    """`dp = dd` (the very node of `dd`), `dt = -dd`: one cause (the `2 *` in dd's line), one
    annotation, at line 3 — not a second one beside the line that only copies it."""
    from gradcheck_cli.checking.diagnosis import causes
    r = check(SMOOTH_L1.replace("dp = dd", f"dp = {dp}"))
    found = causes(r)
    assert [(c[1], c[2].input) for c in found] == [((3, 3), "dd")], [(c[1], row_name_of(c[2])) for c in found]
    folded = {getattr(row, "input", None) or row.name for row in found[0][3]}
    assert {"dp", "dt", "p", "t"} <= folded
    fixed = check(SMOOTH_L1.replace("2 * sign(d)", "sign(d)").replace("dp = dd", f"dp = {dp}"))
    assert fixed.passed


def row_name_of(row):
    return getattr(row, "input", None) or getattr(row, "name", None)


# --- no misses at the tolerance edges ---------------------------------------------------------------

@pytest.mark.parametrize("symbolic", [True, False])
def test_a_five_percent_error_under_a_huge_constant_fails(symbolic):
    r = check("gate g(t) = 1e8 + t*t\n  dt = dout*2.1*t\nx = 1.3\nf = g(x)", symbolic=symbolic)
    assert rows(r)["x"].status == "fail" and not r.passed
    assert check("gate g(t) = 1e8 + t*t\n  dt = dout*2*t\nx = 1.3\nf = g(x)", symbolic=symbolic).passed


def test_a_tensor_gate_slightly_wrong_fails_without_sympy():
    r = check("gate g(t) = t*t*t\n  dt = dout*3.0045*t*t\nx = rand(100) + 0.5\nf = sum(g(x))", symbolic=False)
    row = rows(r)["x"]
    assert row.status == "fail" and row.numeric_error > row.tolerance


def test_a_sign_flip_of_a_tiny_gradient_fails():
    for sym in (True, False):
        r = check("gate g(t) = 1e-9*t\n  dt = -1e-9*dout\nx = 0.7\nf = g(x)", symbolic=sym)
        assert rows(r)["x"].status == "fail"


def test_a_d_line_that_forgets_dout_fails_even_when_the_upstream_is_ones():
    r = check("gate g(t) = t*t\n  dt = 2*t\nx = [1.0, 2.0, 3.0]\nf = sum(g(x))")
    assert all(row.status == "pass" for row in r.nodes)  # end to end, the upstream is all ones ...
    assert not r.passed                                   # ... but the gate's own check uses a random one
    assert [(g.input, g.point) for g in r.gates if g.status == "fail"] == [("dt", 1)]


def test_a_missing_transpose_shows_at_the_second_point():
    src = ("gate mm(W, x) = W @ x\n  dW = dout @ x.T\n  dx = W @ dout\n"
           "W = [[1, 2], [2, 3]]\nx = [[0.5], [1.5]]\nf = sum(mm(W, x))")
    r = check(src)
    fails = [g for g in r.gates if g.status == "fail"]
    assert [(g.input, g.point) for g in fails] == [("dx", 2)]
    assert "second, random point" in fails[0].note
    assert check(src.replace("dx = W @ dout", "dx = W.T @ dout")).passed


def test_no_false_alarm_for_x_to_the_zero_at_zero():
    r = check("x = 0\nf = x^0 + x")
    assert r.passed and all(row.status == "pass" for row in r.nodes)


def test_a_three_way_tie_gives_the_same_number_in_every_column():
    r = check("x = [1, 1, 1]\nf = max(x) * 2")
    x = rows(r)["x"]
    assert x.status == "kink" and r.passed
    np.testing.assert_allclose(x.grad, [2 / 3] * 3)
    np.testing.assert_allclose(x.numeric, [2 / 3] * 3, rtol=1e-8)
    np.testing.assert_allclose(x.symbolic, [2 / 3] * 3)


@pytest.mark.parametrize("d_line,expected", [
    ("dx = dout * (x == max(x)) / sum(x == max(x))", "kink"),   # the even split
    ("dx = dout * (x == max(x)) * [1, 0, 0, 0]", "kink"),          # all to one tied element (argmax)
    ("dx = dout * (x == max(x))", "fail"),                        # to every tied element: the classic bug
])
def test_gradients_at_a_tie_must_sum_to_the_slope_of_the_tie(d_line, expected):
    r = check(f"gate m(x) = max(x)\n  {d_line}\nx = [2, 2, 1, 0]\nf = m(x) * 3")
    assert rows(r)["x"].status == expected


def test_near_a_kink_the_exact_derivative_decides():
    r = check("gate r(t) = max(t, 0)\n  dt = dout * 0.5\nx = 1e-7\nf = r(x) * 2")
    assert rows(r)["x"].status == "fail"


# --- the same bytes on any machine -------------------------------------------------------------------

def _json(*args):
    result = CliRunner().invoke(main, ["check", *args, "--format", "json"])
    return result.stdout


def test_json_is_byte_identical_across_runs_jobs_and_load(tmp_path):
    files = [str(EXPRESSIONS / n) for n in ("cs231n_layers.grad", "cs231n_batchnorm.grad", "cs224n_network.grad")]
    first = _json(*files)
    assert json.loads(first)["passed"]
    assert _json(*files) == first
    assert _json(*files, "-j", "2") == first
    hog = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        assert _json(*files, "-j", "2") == first
        assert _json(*files) == first
    finally:
        for p in hog:
            p.kill()


def test_the_symbolic_budget_counts_work_so_its_cut_is_deterministic():
    src = "W = randn(6, 6)\nx = randn(6)\nf = sum(tanh(W @ tanh(W @ x)))"
    a = check(src, symbolic_budget=150)
    b = check(src, symbolic_budget=150)
    assert [r.symbolic is None for r in a.nodes] == [r.symbolic is None for r in b.nodes]
    assert any(r.symbolic is None for r in a.nodes) and any(r.symbolic is not None for r in a.nodes)


def test_a_built_in_gate_past_64_inputs_is_checked_along_directions_and_its_bad_element_named(monkeypatch):
    import dataclasses
    from gradcheck_cli import gates
    right = gates.REGISTRY["matmul"].vjp

    def off_by_one_percent(g, args, out, a):
        dA, dB = right(g, args, out, a)
        dA = np.array(dA)
        dA[:, 3, 5] *= 1.01
        return dA, dB
    monkeypatch.setitem(gates.REGISTRY, "matmul", dataclasses.replace(gates.REGISTRY["matmul"], vjp=off_by_one_percent))
    report = check("A = randn(8, 10)\nB = randn(10, 6)\nf = sum(tanh(A @ B))", symbolic=False)
    own = [g for g in report.gates if g.name == "A @ B" and g.status == "fail"]
    assert own and own[0].input == "d(A)"  # the gate's own check fails, for A only
    a = next(r for r in report.nodes if r.name == "A")
    assert a.status == "fail" and a.worst_index == (3, 5)
    monkeypatch.setitem(gates.REGISTRY, "matmul", dataclasses.replace(gates.REGISTRY["matmul"], vjp=right))
    assert check("A = randn(8, 10)\nB = randn(10, 6)\nf = sum(tanh(A @ B))", symbolic=False).passed


def test_an_exact_zero_is_never_the_worst_element_when_another_is_off():
    # 0 = 0 against a zero tolerance is no excess: the element shown is one that is actually off, and of
    # the three off by the same 1% (equal within rounding) the first, whatever the CPU's rounding says
    from gradcheck_cli import check
    report = check("gate sq(t) = t * t\n  dt = dout * 2 * t * 1.01\nW = [[0, 2], [3, 4]]\nf = sum(sq(W))")
    w = next(r for r in report.nodes if r.name == "W")
    assert w.status == "fail" and w.worst_index == (0, 1), w.worst_index
    assert w.numeric_error == pytest.approx(0.01 / 1.01) and not w.numeric_error <= w.numeric_rounding


def test_a_row_whose_errors_are_all_rounding_shows_its_first_element_and_says_so():
    from gradcheck_cli import check
    from gradcheck_cli.render.common import row_error
    report = check("W = [[1, 2], [3, 4]]\nf = sum(W * [[1e6, 0], [1, 1]])", complex_step=False)
    w = next(r for r in report.nodes if r.name == "W")
    assert w.status == "pass" and w.worst_index == (0, 0)
    assert w.numeric_error <= w.numeric_rounding and row_error(w) == "≈0" and row_error(w, "symbolic") == "≈0"
    assert w.to_dict()["numeric_error_at_rounding"] is True


@pytest.mark.parametrize("codes, excess, slack, worst", [
    ([0, 0, 0], [0.0, 5.0, 3.0], [0.0, 0.1, 0.1], 1),     # clearly the largest
    ([0, 0, 0], [0.0, 4.95, 5.0], [0.0, 0.1, 0.1], 1),    # equal within rounding: the first of them
    ([0, 0, 0], [4.95, 5.0, 0.0], [0.1, 0.1, 0.0], 0),
    ([0, 0, 0], [4.0, 5.0, 0.0], [0.1, 0.1, 0.0], 1),     # apart by more than their rounding
    ([0, 3, 3], [9.0, 1.0, 1.0], [0.0, 0.0, 0.0], 1),     # the worst status first, whatever the excess
    ([0, 0, 0], [1e-3, 2e-3, 0.0], [1.0, 1.0, 1.0], 0),   # all rounding: the first element
    ([3], [7.0], [0.5], 0),                               # one element (a scalar node's row)
])
def test_the_worst_element_is_chosen_within_rounding_and_ties_go_to_the_lowest_index(codes, excess, slack, worst):
    from gradcheck_cli.checking.verdict import worst_element
    assert worst_element(np.array(codes), np.array(excess), np.array(slack)) == worst


@pytest.mark.parametrize("value", [0.0, -0.0, 2.5, -3.0, 5e-324, np.inf, -np.inf, np.nan])
def test_the_largest_magnitude_of_one_number_is_numpys(value):
    # a deep chain's scalars skip numpy's reduction: the same float as np.max(np.abs(a), initial=0.0)
    from gradcheck_cli.core.tolerances import largest_abs
    for a in (np.array(value), np.array([value]), np.array([[value]]), np.array([value, -1.0])):
        want, got = float(np.max(np.abs(a), initial=0.0)), largest_abs(a)
        assert (np.isnan(want) and np.isnan(got)) or (got == want and np.signbit(got) == np.signbit(want)), (a, got)


@pytest.mark.parametrize("factor, status_", [("1+3e-8", "fail"), ("1+3e-9", "pass")])
def test_a_backward_off_by_less_than_any_difference_can_see_is_judged_by_sympy(factor, status_):
    # end to end, without the complex step: 3e-8 of relative error is past SYMBOLIC_RTOL (a bug),
    # 3e-9 is within it (rounding)
    r = check(f"gate g(t) = t*t\n  dt = 2*dout*t*({factor})\nx = 1.3\nf = g(x)\n", complex_step=False)
    assert rows(r)["x"].status == status_ and r.gates[0].status == status_


@pytest.mark.parametrize("factor, status_", [("1+3e-9", "fail"), ("1+3e-10", "pass"), ("1+1e-14", "pass")])
def test_the_complex_step_sees_a_backward_off_by_less_than_sympy_can(factor, status_):
    # the complex step is exact to rounding: EXACT_RTOL (1e-9) is its tolerance, with SymPy or without
    for symbolic in (True, False):
        r = check(f"gate g(t) = t*t\n  dt = 2*dout*t*({factor})\nx = 1.3\nf = g(x)\n", symbolic=symbolic)
        row = rows(r)["x"]
        assert row.status == status_ and row.numeric_method == "complex step", (symbolic, row.note)
        if status_ == "fail":
            assert "by less than any finite difference resolves" in row.note


@pytest.mark.parametrize("error, rounding, shown", [
    (1.5e-7, None, "1.5e-07"),     # no rounding level known: two digits, as always
    (1.5e-7, 1e-9, "1.5e-07"),     # rounding reaches the 4th digit: two shown
    (1.6e-7, 1e-8, "~2e-07"),      # it could move the second: one shown
    (1e-16, 2e-16, "≈0"),          # at or below its rounding: equality as far as float64 can tell
    (0.0, 0.0, "≈0"),
    (0.0, None, "0"),
    (None, 1e-9, "—"),
])
def test_an_error_figure_shows_only_the_digits_rounding_leaves_it(error, rounding, shown):
    from gradcheck_cli.render.common import fmt_error
    assert fmt_error(error, rounding) == shown


@pytest.mark.parametrize("grad, index", [
    ([1 - 3e-10, 1.0, 0.5], 0),   # equal within rounding: the first
    ([1 - 3e-9, 1.0, 0.5], 1),    # apart by more: the largest
    ([-2.0, 1.0, 2.0], 0),        # magnitude, the first of a tie
])
def test_a_row_without_a_worst_element_shows_its_largest_the_first_of_a_tie(grad, index):
    from gradcheck_cli.core.report import NodeRow
    from gradcheck_cli.render.common import shown_index
    row = NodeRow(name="W", op="input", shape=(3,), line=1, col=1, value=np.zeros(3), grad=np.array(grad),
                  numeric=None, symbolic=None, numeric_error=None, symbolic_error=None, status="pass")
    assert shown_index(row) == (index,)
