"""The complex step for .grad files: a node whose every gate on the way to
the output is complex-analytic gets its numeric column from the complex step, exact to rounding, so
backwards wrong by less than any finite difference resolves fail; nodes behind a kink gate keep the
centered differences; right programs pass at integer-valued inputs and with SymPy off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import gradcheck_in_process
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gradcheck_cli import check

SUBTLE = Path(__file__).resolve().parent.parent.parent / "examples" / "subtle"


def rows(report):
    return {r.name: r for r in report.nodes}


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


@pytest.mark.parametrize("right, wrong", [("gelu.grad", "gelu_rounded.grad"), ("layernorm.grad", "layernorm_no_eps.grad")])
def test_bugs_under_any_finite_difference_fail_with_the_complex_step_and_name_their_d_line(right, wrong):
    for options in ({}, {"symbolic": False}, {"complex_step": False}, {"complex_step": False, "symbolic": False}):
        assert check((SUBTLE / right).read_text(), source=right, **options).passed, options
    bad = check((SUBTLE / wrong).read_text(), source=wrong, symbolic=False)
    assert not bad.passed
    (gate,) = [g for g in bad.gates if g.status == "fail"]
    assert (gate.input, gate.line) == ("dx", line_of(SUBTLE / wrong, "  dx = "))
    assert "by less than any finite difference resolves" in gate.note
    x = rows(bad)["x"]
    assert x.status == "fail" and x.numeric_method == "complex step"
    # the differences alone cannot see it: that is why the complex step is there
    assert check((SUBTLE / wrong).read_text(), source=wrong, symbolic=False, complex_step=False).passed


def test_nodes_behind_a_kink_keep_the_differences_and_the_rest_get_the_complex_step():
    r = rows(check("x = [1.5, -2, 0.5]\nW = [[1, 2], [0, -1], [3, 1]]\nh = relu(x @ W)\nf = sum(tanh(h))\n"))
    assert {n: r[n].numeric_method for n in ("x", "W", "x @ W")} == dict.fromkeys(("x", "W", "x @ W"), "exhaustive")
    assert r["h"].numeric_method == "complex step" and r["tanh(h)"].numeric_method == "complex step"
    assert all(row.status == "pass" for row in r.values())


def test_a_kink_on_the_point_is_still_a_kink():
    r = rows(check("x = [0, 1]\nf = sum(relu(x) * [2, 3])\n"))
    assert r["x"].status == "kink" and r["x"].numeric_method == "exhaustive"
    assert r["relu(x)"].numeric_method == "complex step" and r["relu(x)"].status == "pass"


ANALYTIC = ["tanh({})", "sigmoid({})", "exp(0.2 * {})", "log(1 + ({})^2)", "sin({})", "softmax({}, axis=1)",
            "({}) * ({})", "({})^2", "1 / (2 + ({})^2)", "sqrt(1 + ({})^2)"]


@st.composite
def networks(draw):
    """A random analytic network: x @ W through a few analytic gates, then a loss (logsumexp or mean)."""
    n, d, h = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    integers = draw(st.booleans())  # what real tests use: integer values, exact zeros, ties

    def value(shape):
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
        a = rng.integers(-3, 4, shape) if integers else rng.standard_normal(shape)
        return np.array2string(np.asarray(a, dtype=float), separator=", ", precision=17, threshold=10 ** 6).replace("\n", "")
    body = "x @ W"
    for _ in range(draw(st.integers(1, 4))):
        form = draw(st.sampled_from(ANALYTIC))
        body = form.format(body, body) if form.count("{}") == 2 else form.format(body)
    loss = draw(st.sampled_from(["mean(logsumexp({}, axis=1))", "sum(({}) * ({}))", "mean({})"]))
    loss = loss.format(body, body) if loss.count("{}") == 2 else loss.format(body)
    return f"x = {value((n, d))}\nW = {value((d, h))}\nf = {loss}\n"


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(networks())
def test_right_analytic_networks_pass_with_the_complex_step(text):
    # no false alarm at a tolerance of 1e-9: backprop's own rounding is measured, the complex step's is ε-small
    report = check(text, symbolic=False)
    if report.error is not None:  # an overflow at the drawn point is the input's error, said as one
        assert "overflows" in report.error.message, report.error.format()
        return
    failing = [(r.name, r.status, r.note) for r in report.nodes if r.status in ("fail", "kink")]
    assert not failing, (text, failing)
    # where no intermediate leaves the complex step's linear regime, the leaves get it
    assert {r.numeric_method for r in report.nodes if r.name in ("x", "W")} <= {"complex step", "exhaustive"}


def test_check_takes_no_complex_step(tmp_path):
    run = ["check", str(SUBTLE / "gelu_rounded.grad"), "--no-symbolic"]
    assert gradcheck_in_process(*run).returncode == 1
    done = gradcheck_in_process(*run, "--no-complex-step")
    assert done.returncode == 0, done.stdout


SATURATED = ("x = [[-2., -3., -3.]]\nW = [[2., 1., 0., -2.], [-1., -3., -3., -3.], [-2., 2., 1., 3.]]\n"
             "const V = [[-1., 2., -1., -3.], [3., -1., -1., -3.], [0., -1., -3., -3.], [3., 3., 3., 2.]]\n"
             "f = sum(tanh(relu(x @ W) @ V))\n")


def test_a_row_the_differences_fail_behind_a_kink_gets_the_complex_step_off_its_kinks():
    # tanh saturated at integer inputs: gradients of 1e-8 under a function of 4, where the differences'
    # error estimate falls short (a false alarm, found by fuzzing); the complex step through relu
    # (which follows the real part) is exact wherever no branch switches within the step
    r = rows(check(SATURATED, symbolic=False))
    assert not [n for n, row in r.items() if row.status == "fail"], {n: row.note for n, row in r.items()}
    assert r["W"].numeric_method == "complex step (differences at kinks)"
    assert r["relu(x @ W)"].numeric_method == "complex step"
    # a real bug there still fails, named at its gate (the second opinion is exact, not lenient)
    wrong = SATURATED.replace("relu(x @ W)", "r(x @ W)").replace("x = ", "gate r(t) = relu(t)\n  dt = 1.01 * dout * (t > 0)\nx = ")
    bad = check(wrong, symbolic=False)
    assert [g.input for g in bad.gates if g.status == "fail"] == ["dt"]


def test_the_complex_step_measures_its_own_rounding_where_a_row_fails():
    # a softmax of tied rows: the derivative is 0 and the complex step's is its rounding over H; the
    # step scaled by VARY (not a power of 2) measures it, so this is not called a bug
    text = ("x = [[2., 1.]]\nW = [[-3., -1., 2., 0.], [3., 3., -2., 3.]]\n"
            "f = mean(logsumexp(softmax(((x @ W) * (x @ W)) * ((x @ W) * (x @ W)), axis=1), axis=1))\n")
    assert not [r.name for r in check(text, symbolic=False).nodes if r.status == "fail"]


def test_huge_intermediate_derivatives_stay_in_the_linear_regime_or_fall_back():
    # exp(exp(x)): derivatives of 1e87 — H = 1e-100 keeps H times them far below 1 ...
    r = rows(check("x = 1.5\nf = exp(0.5 * exp(x + 4.5))\n", symbolic=False))
    assert r["x"].numeric_method == "complex step" and r["x"].status == "pass"
    # ... and past that (1e116) an intermediate's imaginary part leaves it: poisoned, the differences decide
    r = rows(check("x = [[-3.]]\nW = [[2., -2.]]\nf = mean(logsumexp(exp(0.2 * exp(0.2 * (x @ W) * (x @ W))), axis=1))\n",
                   symbolic=False))
    assert r["W"].numeric_method == "exhaustive" and r["W"].status != "fail"


def test_an_imaginary_part_past_the_limit_is_poisoned():
    from gradcheck_cli.oracles.autodiff import IMAG_LIMIT, _numbers
    kept, poisoned = _numbers(np.array([1 + 0.1j * IMAG_LIMIT])), _numbers(np.array([1 + 10j * IMAG_LIMIT]))
    assert np.isfinite(kept).all() and np.isnan(poisoned.imag).all() and np.isnan(poisoned.real).all()
    assert 1e-8 <= IMAG_LIMIT <= 1e-4


def test_derivatives_far_below_what_floats_resolve_are_zero_to_the_complex_step():
    # bp says 0 (the values underflow); the complex step leaks H·curvature (1e-200): EXACT_ATOL says 0
    text = "x = 0.0170\nf = log(1 + (log(1 + (log(1 + (log(1 + (0.1257 * x)^2))^2))^2))^2)\n"
    assert rows(check(text, symbolic=False))["x"].status != "fail"
    # while a bug in a derivative of 1e-78 is still one
    wrong = "gate g(t) = 1e-78 * t^2\n  dt = 1e-78 * dout * t\nx = 1.5\nf = g(x)\n"
    assert rows(check(wrong, symbolic=False))["x"].status == "fail"
