"""A gradient that is exactly zero because two equal terms cancel: backprop's sum rounds at ε of the
terms (about -2.3e-17 here), the complex step's imaginary parts cancel exactly (0). That is rounding,
never a failure (found by tests/test_properties.py); a d line wrong by 1e-9 still fails, even where
the true derivative is such a cancellation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import gradcheck_in_process

from gradcheck_cli import check, check_function
from gradcheck_cli.checking import verdict
from gradcheck_cli.core.tolerances import EPS, TERMS_ROUNDING
from gradcheck_cli.oracles import complexstep
from gradcheck_cli.oracles.numeric import NumericResult

CANCELLING = "x = 1.0\ny = 2.0\nz = 0.03125\nf = (z)/(3+(z)^2) - (z)/(3+(z)^2) + 0*(x+y+z)\n"
WRONG_BY_1E9 = ("gate g(t) = t / (3 + t^2)\n"
                "  dt = dout * (3 - t^2) / (3 + t^2)^2 * (1 + 1e-9)\n"
                "z = 0.03125\n")


def rows(report):
    return {r.name: r for r in report.nodes}


@pytest.mark.parametrize("symbolic", [True, False])
def test_a_gradient_zero_by_cancellation_never_fails_against_the_complex_step(symbolic):
    report = check(CANCELLING, symbolic=symbolic)
    z = rows(report)["z"]
    assert z.numeric_method == "complex step"
    assert float(z.grad) != 0.0 and abs(float(z.grad)) < 1e-16  # the rounding the false alarm was made of
    assert float(z.numeric) == 0.0
    assert report.passed
    # SymPy confirms it; without SymPy the complex step cannot resolve backprop's rounding: a warning
    assert z.status == ("pass" if symbolic else "warn"), z.note


def test_the_cancellation_passes_on_the_command_line_in_every_format(tmp_path):
    src = tmp_path / "cancel.grad"
    src.write_text(CANCELLING, encoding="utf-8")
    table = gradcheck_in_process("check", str(src))
    assert table.returncode == 0, table.stdout
    assert "1 passed, 0 failed" in table.stdout and "nodes: 14 pass ·" in table.stdout
    out = gradcheck_in_process("check", str(src), "--format", "json")
    assert out.returncode == 0
    z = next(n for n in json.loads(out.stdout)["results"][0]["nodes"] if n["name"] == "z")
    assert z["status"] == "pass"
    assert z["numeric_error_at_rounding"] is True
    assert z["numeric_error"] <= z["tolerance"]  # a passing row never shows an error above its tolerance


@pytest.mark.parametrize("symbolic", [True, False])
@pytest.mark.parametrize("output", ["f = g(z)", "f = g(z) - z / (3 + z^2)"])
def test_a_d_line_wrong_by_1e9_still_fails_with_the_complex_step(symbolic, output):
    """1e-9 relative is below SymPy's tolerance and any finite difference: only the complex step sees it,
    also where the true derivative is a cancellation (0 = g'(z) - g'(z))."""
    report = check(WRONG_BY_1E9 + output + "\n", symbolic=symbolic)
    assert not report.passed
    assert rows(report)["z"].status == "fail"
    assert "complex-step" in rows(report)["z"].note
    right = check(WRONG_BY_1E9.replace(" * (1 + 1e-9)", "") + output + "\n", symbolic=symbolic)
    assert right.passed


def _exact(value: float, floor: float) -> NumericResult:
    """One exact element of the complex step, its own rounding counted at `floor` (the function's scale)."""
    estimate = np.array([[2 * EPS * (abs(value) + floor)]])
    zero = np.zeros(1, dtype=bool)
    return NumericResult("complex step", estimate, np.zeros((1, 1)), zero, value=np.array([[value]]), at_kink=zero,
                         lower=np.array([[value]]), upper=np.array([[value]]), exact=True)


def test_the_verdict_counts_backprops_rounding_at_its_terms_against_an_exact_column():
    num = _exact(0.0, 0.01)
    magnitude = np.array([[0.667]])  # the two terms of about 1/3 that cancel
    rounded = verdict.evidence(np.array([[-2.3e-17]]), num, None, None, magnitude)
    assert rounded.codes.max() < 3
    assert rounded.num_round[0, 0] >= rounded.num_rel[0, 0]  # shown as rounding (≈0), not as an error
    # without the magnitude, nothing says that -2.3e-17 is rounding: the old false alarm
    assert verdict.evidence(np.array([[-2.3e-17]]), num).codes.max() == 3
    # an error above ε of the terms is a bug, however large the terms
    assert verdict.evidence(np.array([[1e3 * TERMS_ROUNDING * EPS]]), num, None, None, magnitude).codes.max() == 3
    # and a bug past EXACT_RTOL (1e-9) relative on an element of its terms' own size still fails
    assert verdict.evidence(np.array([[0.5 * (1 + 1e-8)]]), _exact(0.5, 0.5), None, None,
                            np.array([[0.5]])).codes.max() == 3


def test_the_complex_step_tells_the_size_of_the_terms_from_the_functions_scale():
    step = complexstep.OnRunner(runner=None, target=_Target(np.array([0.03125, -4.0])), scale=2.0)  # type: ignore[arg-type]
    num = _exact(0.0, 0.0)
    assert np.array_equal(step.terms(num), np.full((1, 1), 0.5))  # the scale over the largest input, 4
    small = complexstep.OnRunner(runner=None, target=_Target(np.array([0.03125])), scale=2.0)  # type: ignore[arg-type]
    assert np.array_equal(small.terms(num), np.full((1, 1), 2.0))  # never over less than 1
    assert complexstep.ThroughForward(forward=lambda a: a[0], args=[np.zeros(1)], upstream=np.ones(1),
                                      offsets=[0, 1], batched=False).terms(num) is None


class _Target:
    def __init__(self, x):
        self.x = x


def _f(x):
    return x / (3 + x ** 2) - x / (3 + x ** 2) + 0.5


def _cancelling_vjp(dout, x):
    d, e = 1 / (3 + x ** 2), -2 * x * x / (3 + x ** 2) ** 2
    return dout * ((d + e + d) - d - d - e)  # 0 in exact arithmetic, about -3e-17 in floats


def test_a_python_function_whose_gradient_cancels_does_not_fail_the_complex_step_cross_check():
    x = np.array([0.03125])
    assert _cancelling_vjp(np.ones(1), x)[0] != 0.0
    report = check_function(_f, _cancelling_vjp, {"x": x}, complex_step=True)
    assert report.passed, [(r.status, r.note) for r in report.nodes]


def test_a_python_function_wrong_by_1e9_fails_the_complex_step_cross_check():
    def wrong(dout, x):
        return dout * (3 - x ** 2) / (3 + x ** 2) ** 2 * (1 + 1e-9)
    report = check_function(lambda x: x / (3 + x ** 2), wrong, {"x": np.array([0.03125, 0.7])}, complex_step=True)
    assert not report.passed
