"""A step that reaches a pole is not a kink: where the forward changes fast at the scale of the step h
(1/x at x = 1e-8 with h = 6e-6, the inverse of a nearly singular matrix), the slopes at ±h, ±h/2 and
±10⁻⁴·h jump as a kink's do, yet the function is smooth at the point. Code whose branches cannot be
seen (a user's Python) is differenced at narrowed steps there, and held to the derivative like any
element: a right backward passes, a wrong one fails, and a true kink stays a kink. The expected
gradients are the closed forms −dout/x² and −Yᵀ·dout·Yᵀ (Y = X⁻¹), computed here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck_cli import check_layer
from gradcheck_cli.oracles import numeric
from gradcheck_cli.python.pyrunner import FunctionRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "examples" / "python"))
from poles import (log_backward, log_eps_backward, log_forward, reciprocal_backward,  # noqa: E402
                   reciprocal_forward, reciprocal_slip_backward)


def inv_forward(x):
    y = np.linalg.inv(x)
    return y, y


def inv_backward(dout, cache):
    y = cache
    return -y.T @ dout @ y.T


def inv_slip_backward(dout, cache):
    y = cache
    return -y @ dout @ y  # the transposes dropped: right only for a symmetric X


def _row(report):
    assert report.error is None, report.error
    (row,) = report.nodes
    return row


def _differences_are_backprops(row, rtol: float = 1e-6) -> None:
    """The row's differences equal backprop's (a right closed form) to `rtol` of the row's largest."""
    grad, num = np.asarray(row.grad), np.asarray(row.numeric)
    assert np.allclose(num, grad, rtol=rtol, atol=rtol * np.abs(grad).max()), (num, grad)


def _passes_as_its_closed_form(forward, backward, inputs: dict, rtol: float = 1e-6):
    """The row of a right layer (its backward a closed form): it passes, its differences backprop's to `rtol`."""
    row = _row(check_layer(forward, backward, inputs))
    assert row.status == "pass", row.note
    _differences_are_backprops(row, rtol)
    return row


@pytest.mark.parametrize("x", [[1e-8, 1.0], [1e-10], [-1e-9, 2e-9], [1e-12, -3.0]])
def test_a_right_reciprocal_passes_beside_its_pole_and_a_slip_fails(x):
    x = np.array(x)
    # the differences are backprop's closed form −dout/x², not the secants across the pole (the other
    # elements are judged at the row's scale: a sum rounded at 1e8 leaves them 1e-3 off)
    _passes_as_its_closed_form(reciprocal_forward, reciprocal_backward, {"x": x})
    slip = _row(check_layer(reciprocal_forward, reciprocal_slip_backward, {"x": x}))
    assert slip.status == "fail" and "kink" not in slip.note, slip.note


@pytest.mark.parametrize("x, statuses", [
    ([[1.0, 0.0], [0.0, 1e-8]], {"pass"}),  # cond 1e8: the pole at x₂₂ = 0 is within h
    # cond 5e6: the change is beyond 10⁻⁴·h, whose difference is the derivative (a kink within the step
    # but not at the point, as for opaque code a pole and a kink look alike there)
    ([[1.0, 2.0], [1.0, 2.000002]], {"kink"}),
    # cond 1e9: inv itself is rounded at cond·ε of its values: no step resolves 1e-5 of the gradient
    ([[1.0, 2.0], [1.0, 2.0 + 1e-8]], {"warn"}),
])
def test_the_inverse_of_a_nearly_singular_matrix_never_fails_when_right(x, statuses):
    x = np.array(x)
    right = check_layer(inv_forward, inv_backward, {"x": x})
    row = _row(right)
    assert right.passed and row.status in statuses, row.note
    if row.status == "pass":
        _differences_are_backprops(row, rtol=1e-5)
    if row.status == "kink":  # the note says what decided: the small step's derivative, which backprop's is
        assert "not at the point" in row.note and "is the derivative there" in row.note
    if not np.allclose(x, x.T):
        slip = _row(check_layer(inv_forward, inv_slip_backward, {"x": x}))
        assert slip.status == "fail", slip.note


def _conditioned(cond: float, seed: int) -> np.ndarray:
    """A 4×4 matrix of condition number `cond`: U·diag(1 … 1/cond)·Vᵀ, U and V random orthogonal."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    v, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    return u @ np.diag(np.logspace(0, -np.log10(cond), 4)) @ v.T


@pytest.mark.parametrize("cond", [1e3, 1e4, 1e5])
@pytest.mark.parametrize("seed", [0, 1])
def test_an_ill_conditioned_inverse_passes_when_right_at_smaller_steps(cond, seed):
    # a covariance-like matrix: at h the difference is bound by truncation past the tolerance (a `warn` before,
    # "finite differences cannot resolve the tolerance"): at a smaller step it is the closed form; transposes
    # dropped fail
    x = _conditioned(cond, seed)
    _passes_as_its_closed_form(inv_forward, inv_backward, {"x": x}, rtol=1e-5)
    assert _row(check_layer(inv_forward, inv_slip_backward, {"x": x})).status == "fail"


def relu_forward(x):
    return np.maximum(x, 0.0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def test_a_kink_beside_the_point_stays_a_kink_judged_at_the_small_step():
    # relu's switch 1e-7 and 2e-7 from the point, within h = 6e-6: a kink beside the point, judged at 10⁻⁴·h
    x = np.array([1e-7, -2e-7, 0.5])
    row = _row(check_layer(relu_forward, relu_backward, {"x": x}))
    assert row.status == "kink" and "not at the point" in row.note and "is the derivative there" in row.note, row.note
    wrong = _row(check_layer(relu_forward, lambda dout, cache: dout * (cache >= 0) * 0.5, {"x": x}))
    assert wrong.status == "fail", wrong.note
    # curved branches (relu(x) + 10·x²): still a kink, its truncation-bound neighbours not shrunk across it
    curved = _row(check_layer(lambda x: (np.maximum(x, 0.0) + 10 * x * x, x),
                              lambda dout, cache: dout * ((cache > 0) + 20 * cache), {"x": x}))
    assert curved.status == "kink", curved.note


def test_past_the_narrowed_steps_it_is_a_warning_never_a_verdict():
    # a pole 1e-13 from x = 1, not at 0: steps relative to x do not help, and the narrowest (10⁻¹¹·h) are a
    # few ulps of 1, rounded past any tolerance: undecided
    c = 1 - 1e-13
    row = _row(check_layer(lambda x: (1 / (x - c), x), lambda dout, x: -dout / (x - c) ** 2, {"x": np.array([1.0, 0.5])}))
    assert row.status == "warn", row.note


def _differences(f, x0, reference):
    x = np.array([x0])
    runner = FunctionRunner(f, [x], np.ones(1), f([x]))
    return numeric.differentiate(runner, [numeric.Target("x", x.copy())], 6e-6, 1e-5, 0.0,
                                 {"x": np.full((1, 1), reference)}, 0)["x"]


@pytest.mark.parametrize("offset", [0.0, 1e-12, -1e-11])
def test_a_kink_on_the_point_stays_a_kink(offset):
    # |x − c| with c within 10⁻⁴·h of the point: the jump stays as the step shrinks, at every narrowed step
    res = _differences(lambda a: np.abs(a[0] - offset), 0.0, 5.0)
    assert res.kink[0] and res.at_kink[0] and res.narrowed == 0


def test_a_kink_within_the_small_step_is_not_narrowed_past():
    # |x − 3e-10| at 0: ±10⁻⁴·h (6e-10) reaches the kink, a step ten times smaller would not. A kink
    # within 10⁻⁴·h counts as on the point (test_kinks: any subgradient is valid there, as in .grad);
    # its slopes do not grow steeper as the step shrinks, as a pole's do, so no smaller step is taken
    res = _differences(lambda a: np.abs(a[0] - 3e-10), 0.0, 5.0)
    assert res.kink[0] and res.narrowed == 0


@pytest.mark.parametrize("x0", [1e-9, -1e-10, 1e-12])
def test_the_engine_finds_the_derivative_beside_a_pole(x0):
    res = _differences(lambda a: 1.0 / a[0], x0, 5.0)  # a reference far off: every element in doubt
    assert not res.kink[0]
    assert res.value[0, 0] == pytest.approx(-1.0 / x0 ** 2, rel=1e-6)


def test_a_kink_whose_slopes_steepen_less_than_a_pole_is_not_narrowed_past():
    # near 0, 5·|x − 3e-10| (slopes ±5); beyond ~1e-9, |x| + 4e-9 (slopes ±1): the small step's slopes
    # are 5 times the large step's. A pole's grow without bound (POLE: ten times); this is a kink's
    res = _differences(lambda a: np.minimum(5 * np.abs(a[0] - 3e-10), np.abs(a[0]) + 4e-9), 0.0, 50.0)
    assert res.kink[0] and res.narrowed == 0


def sqrt_forward(x):
    y = np.sqrt(x)
    return y, y


def sqrt_backward(dout, cache):
    return dout * 0.5 / cache


@pytest.mark.parametrize("p", [[1e-12, 0.5], [1e-7, 0.5], [1e-5, 0.5], [3e-6, 0.5]])
def test_a_step_past_the_domains_edge_is_narrowed_to_the_derivative(p):
    # h = 6e-6 takes log's input below 0 (nan), or to where its differences are far from the derivative;
    # the second point moves each input in proportion to itself where the usual move leaves the domain
    p = np.array(p)
    _passes_as_its_closed_form(log_forward, log_backward, {"p": p})
    root = _row(check_layer(sqrt_forward, sqrt_backward, {"x": p}))
    assert root.status == "pass", root.note


def test_an_epsilon_that_matters_only_near_zero_fails_there():
    slip = _row(check_layer(log_forward, log_eps_backward, {"p": np.array([1e-10, 0.5])}))
    assert slip.status == "fail" and slip.numeric_error == pytest.approx(0.0099, rel=0.01), slip.note


def _elementwise(f, g, x):
    """The row of an elementwise layer f whose backward is dout·g(x)."""
    return _row(check_layer(lambda x: (f(x), x), lambda dout, x: dout * g(x), {"x": np.array(x, dtype=float)}))


def _safe(g):
    """A backward that gives 0 below |x| = 1e-10, 'for safety': wrong wherever f′ is not 0 there."""
    return lambda x: np.where(np.abs(x) > 1e-10, g(x), 0.0)


# singularities milder than a pole (slopes growing ~3 to 1,000 times per tenfold smaller step) and a steep
# smooth ramp: each right backward passes at 1e-12, and one that zeroes the gradient near 0 fails, where
# a kink whose one-sided slopes were secants across the singularity held both (the closed forms, here)
MILD = {
    "log|x|": (lambda x: np.log(np.abs(x)), lambda x: 1 / x),
    "cbrt": (np.cbrt, lambda x: 1 / (3 * np.cbrt(x) ** 2)),
    "sqrt|x|": (lambda x: np.sqrt(np.abs(x)), lambda x: np.sign(x) / (2 * np.sqrt(np.abs(x)))),
    "tanh(x/1e-12)": (lambda x: np.tanh(x / 1e-12), lambda x: 1e12 / np.cosh(x / 1e-12) ** 2),
}


@pytest.mark.parametrize("name", sorted(MILD))
def test_a_singularity_milder_than_a_pole_is_narrowed_past_too(name):
    f, g = MILD[name]
    right = _elementwise(f, g, [1e-12, 0.5])
    assert right.status == "pass", right.note
    _differences_are_backprops(right)
    assert _elementwise(f, _safe(g), [1e-12, 0.5]).status == "fail"


def test_steps_relative_to_a_tiny_element_reach_its_derivative_where_eight_levels_would_not():
    # log|x| at 1e-15 and 1e-300: 10⁻¹¹·h is still past 0; a step of 1% of the element is not (RELATIVE)
    for v in (1e-15, 1e-300):
        row = _elementwise(lambda x: np.log(np.abs(x)), lambda x: 1 / x, [v, 0.5])
        assert row.status == "pass", row.note
        half = _elementwise(lambda x: np.log(np.abs(x)), lambda x, v=v: 1 / (x + v), [v, 0.5])  # 1/(2v) at v
        assert half.status == "fail", half.note


def test_a_jump_in_value_beside_the_point_is_no_scale_for_the_tolerance():
    # 2x + 10·(x > 1e-9) at 0: ±h crosses the jump (a difference of J/2h = 8e5), ±10⁻⁴·h does not: the
    # derivative at 0 is 2. Judged at the jump's scale, −5 passed (within 0.83 J); at the derivative's it fails
    f = lambda x: 2 * x + 10.0 * (x > 1e-9)  # noqa: E731
    wrong = _elementwise(f, lambda x: np.where(x == 0, -5.0, 2.0), [0.0, 0.5])
    assert wrong.status == "fail" and "its derivative is" in wrong.note, wrong.note
    right = _elementwise(f, lambda x: np.full_like(x, 2.0), [0.0, 0.5])
    assert right.status == "kink" and right.numeric_error < 1e-6, (right.note, right.numeric_error)


def test_a_fast_oscillation_is_no_kink_on_the_point():
    # sin(1/x) at 1e-3: the jumps at h and 10⁻⁴·h agree within KEPT by chance ("on the point"); between
    # ±10⁻⁴·h and half of it the function is smooth. The right backward was failed "at a kink"
    row = _elementwise(lambda x: np.sin(1 / x), lambda x: -np.cos(1 / x) / x ** 2, [0.001, 0.01])
    assert row.status != "fail" and "kink" not in (row.note or ""), row.note


def test_relu_at_many_exact_zeros_stays_a_kink_where_a_small_upstream_hides_its_jump_in_rounding():
    # 2,000 integer inputs, ~400 exact zeros: where the seeded upstream is small, the kink's jump at 10⁻⁴·h
    # is below the rounding of the whole sum, and "smooth" there would be noise: it stays a kink (was `warn`)
    x = np.random.default_rng(0).integers(-2, 3, size=(40, 50)).astype(float)
    right = _elementwise(lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0, x)
    assert right.status == "kink", right.note
    # relu′(0) = 2 fails (on 500 of them: the output-by-output analysis' limits hold 2,000 × 2,000 undecided)
    wrong = _elementwise(lambda x: np.maximum(x, 0), lambda x: np.where(x == 0, 2.0, (x > 0) * 1.0), x[:10])
    assert wrong.status == "fail", wrong.note
