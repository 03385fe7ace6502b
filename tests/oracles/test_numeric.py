"""The finite-difference engine (`oracles.numeric`) as a unit: every expectation is a closed-form
derivative written here, never the engine's own output. Integer points, exact zeros and ties."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.core.settings import DEFAULT_STEP
from gradcheck_cli.core.tolerances import EPS
from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff, numeric, plan, runners
from gradcheck_cli.oracles.numeric import Target, differentiate, steps
from gradcheck_cli.python.pyrunner import FunctionRunner

RTOL = 1e-5
X = np.array([-2.0, -1.0, 0.0, 1.0, 3.0])


def python_runner(f, x, u=None):
    """Σ u ⊙ f(x), as the engine sees a user's Python function (its branches unseen)."""
    x = np.asarray(x, dtype=float)
    out = f([x])
    return FunctionRunner(f, [x], np.ones_like(out) if u is None else np.asarray(u, dtype=float), out)


def graph_runner(text, leaf="x"):
    """The output of a .grad program as a function of one leaf (its kink gates' branches seen)."""
    graph = load(text, "t.grad", {}, 0, False)
    values = autodiff.forward(graph)
    nid = graph.names[leaf]
    return runners.GraphRunner(graph, values), Target(nid, np.ravel(values[nid]))


def diff(runner, target, step=DEFAULT_STEP, reference=None, seed=0):
    return differentiate(runner, [target], step, RTOL, 0.0, reference, seed)[target.id]


@pytest.mark.parametrize("f, df", [
    (lambda a: a[0] ** 3 - 2 * a[0], lambda x: 3 * x ** 2 - 2),
    (lambda a: np.exp(a[0]), np.exp),
    (lambda a: np.sin(a[0]), np.cos),
], ids=["cubic", "exp", "sin"])
def test_smooth_functions_agree_with_the_exact_derivative_within_the_estimate(f, df):
    n = diff(python_runner(f, X), Target("x", X))
    assert n.method == "exhaustive" and n.value.shape == (1, X.size)
    err = np.abs(n.value[0] - df(X))
    assert np.all(err <= n.estimate[0])
    assert np.all(n.estimate[0] < 1e-8 * np.maximum(1.0, np.abs(df(X))))
    assert not n.kink.any() and not n.left_domain


def test_step_is_relative_to_the_value_with_an_absolute_floor_of_one():
    x = np.array([0.0, 0.5, -1.0, 3.0, -250.0])
    np.testing.assert_array_equal(steps(x, 1e-3), 1e-3 * np.array([1.0, 1.0, 1.0, 3.0, 250.0]))


def test_each_element_is_evaluated_at_plus_and_minus_its_own_step():
    x = np.array([0.0, 2.0, -5.0])
    runner = python_runner(lambda a: a[0] ** 2, x)
    seen = []
    run = runner.run
    runner.run = lambda probes, n_rows: seen.append([(p.flat, p.delta) for p in probes]) or run(probes, n_rows)
    n = diff(runner, Target("x", x), step=1e-3, reference={"x": (2 * x)[None]})
    h = 1e-3 * np.array([1.0, 2.0, 5.0])
    assert len(seen) == 1 and n.refined == 0  # a reference that agrees: no second pass
    (flat, delta), = seen[0]
    np.testing.assert_array_equal(flat, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(delta, [h[0], -h[0], h[1], -h[1], h[2], -h[2]])


def test_richardson_makes_a_cubics_difference_exact():
    # the centred difference of x³ is 3x² + h² at step h, 3x² + h²/4 at h/2: extrapolated, exactly 3x²
    step = 1e-2
    n = diff(python_runner(lambda a: a[0] ** 3, X), Target("x", X), step=step)
    h = steps(X, step)
    assert n.refined == X.size
    np.testing.assert_allclose(n.truncation[0], 0.75 * h ** 2, rtol=1e-6)
    assert np.all(np.abs(n.value[0] - 3 * X ** 2) < 1e-10)  # the first difference alone is off by h² ≥ 1e-4


def test_a_tiny_gradient_of_a_huge_value_has_an_estimate_that_covers_its_rounding():
    x = np.array([0.3, -1.0, 2.0])
    runner = python_runner(lambda a: 1e12 + np.sin(a[0]), x)
    alone = diff(runner, Target("x", x))
    err = np.abs(alone.value[0] - np.cos(x))
    assert np.all(err > 1e-3)                            # ulp(1e12) ≈ 1e-4 swamps the step's change of 6e-6
    assert np.all(err <= alone.estimate[0]) and alone.escalated == 0
    escalated = diff(runner, Target("x", x), reference={"x": np.cos(x)[None]})
    err2 = np.abs(escalated.value[0] - np.cos(x))
    assert escalated.escalated == x.size                 # where a verdict needs it, larger steps
    assert np.all(err2 <= escalated.estimate[0]) and np.all(err2 < err / 10)


def test_projections_are_the_directional_derivatives_along_the_returned_directions():
    x = np.array([1.0, -2.0, 0.0, 3.0, 0.5])
    a = (np.arange(15.0).reshape(3, 5) - 7) / 10
    u = np.array([1.0, -2.0, 0.5])
    n = diff(python_runner(lambda v: np.tanh(v[0] @ a.T), x, u), Target("x", x, projections=True), seed=3)
    g = u @ ((1 - np.tanh(a @ x) ** 2)[:, None] * a)     # uᵀJ
    assert n.method == "projection" and n.value is None
    assert n.directions.shape == (plan.PLAN.projections, x.size) and set(np.unique(n.directions)) == {-1, 1}
    expected = n.directions @ g
    assert np.all(np.abs(n.projected[:, 0] - expected) <= n.estimate[:, 0])
    assert np.all(n.estimate < 1e-8)


def test_projections_of_a_vector_output_are_j_times_each_direction():
    runner, target = graph_runner("x = [1, -2, 3]\nf = x * x")
    n = diff(runner, Target(target.id, target.x, projections=True))
    expected = n.directions @ np.diag(2 * target.x).T    # (P, out): J·d for each direction d
    assert n.projected.shape == expected.shape == (plan.PLAN.projections, 3)
    assert np.all(np.abs(n.projected - expected) <= n.estimate + 1e-12)


@pytest.mark.parametrize("make", [
    lambda: graph_runner("x = [0, 2, -3]\nf = sum(abs(x))"),
    lambda: (python_runner(lambda a: np.abs(a[0]), [0, 2, -3]), Target("x", np.array([0.0, 2.0, -3.0]))),
], ids=["branches-seen", "slopes-only"])
def test_abs_at_zero_is_a_kink_on_the_point_with_one_sided_slopes_minus_one_and_one(make):
    runner, target = make()
    n = diff(runner, target)
    np.testing.assert_array_equal(n.kink, [True, False, False])
    np.testing.assert_array_equal(n.at_kink, [True, False, False])
    np.testing.assert_allclose([n.lower[0, 0], n.upper[0, 0]], [-1.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(n.value[0, 1:], [1.0, -1.0], atol=1e-9)  # smooth elements: the derivative


def max_runner(kind, x):
    if kind == "branches-seen":
        return graph_runner(f"x = {list(x)}\nf = max(x)")
    return python_runner(lambda a: a[0].max(axis=-1), x), Target("x", np.asarray(x, dtype=float))


@pytest.mark.parametrize("kind", ["branches-seen", "slopes-only"])
@pytest.mark.parametrize("x, tied", [([2, 2, 1], 2), ([2, 2, 2, 1], 3)], ids=["two-way", "three-way"])
def test_max_at_a_tie_brackets_its_subgradients_and_moving_the_tie_together_has_slope_one(kind, x, tied):
    n = diff(*max_runner(kind, x))
    on = np.arange(len(x)) < tied
    np.testing.assert_array_equal(n.kink, on)
    np.testing.assert_array_equal(n.at_kink, on)
    # each tied element's subgradients are [0, 1]; the element below the max has derivative 0
    assert np.all(n.lower[0, on] <= 1e-9) and np.all(n.upper[0, on] >= 1 - 1e-9)
    assert abs(n.value[0, -1]) < 1e-9
    (members, slope), = n.groups  # no pair of a three-way tie keeps it: all three are moved together
    np.testing.assert_array_equal(members, np.arange(tied))
    np.testing.assert_allclose(slope, [1.0], atol=1e-9)
    np.testing.assert_allclose(n.value[0, on], 1.0 / tied, atol=1e-9)  # the tie's slope, shared evenly


def test_a_kink_within_the_step_but_beside_the_point_is_flagged_off_the_point():
    x = np.array([1e-6, 5.0])  # |x| kinks at 0, within h = 6e-6 of the first element
    n = diff(python_runner(lambda a: np.abs(a[0]), x), Target("x", x))
    np.testing.assert_array_equal(n.kink, [True, False])
    np.testing.assert_array_equal(n.at_kink, [False, False])
    assert n.near[0, 0] == pytest.approx(1.0, abs=1e-6)  # the step that does not reach the kink: |x|' = 1


def test_values_leaving_the_domain_are_reported_not_raised():
    x = np.array([1e-7, 1.0])  # log: x − h < 0
    n = diff(python_runner(lambda a: np.log(a[0]), x), Target("x", x))
    assert n.left_domain and not np.isfinite(n.value[0, 0])
    assert n.value[0, 1] == pytest.approx(1.0, abs=1e-8)
    # along random directions every element moves by h: those steps leave the domain, and narrowed ones
    # (10⁻⁴·h, then smaller) do not: the projections are the derivative's, 1/x along each direction
    p = diff(python_runner(lambda a: np.log(a[0]), x), Target("x", x, projections=True))
    assert not p.left_domain
    assert np.allclose(p.projected[:, 0], p.directions @ (1 / x), rtol=1e-6)


def test_several_targets_in_one_call_give_what_each_gives_alone():
    graph = load("x = 1.5\ny = -2\nf = x * exp(y)", "t.grad", {}, 0, False)
    values = autodiff.forward(graph)
    runner = runners.GraphRunner(graph, values)
    tx, ty = (Target(graph.names[k], np.ravel(values[graph.names[k]])) for k in "xy")
    both = differentiate(runner, [tx, ty], DEFAULT_STEP, RTOL, 0.0)
    assert both[tx.id].value[0, 0] == pytest.approx(np.exp(-2.0), rel=1e-9)
    assert both[ty.id].value[0, 0] == pytest.approx(1.5 * np.exp(-2.0), rel=1e-9)
    for t in (tx, ty):
        np.testing.assert_array_equal(both[t.id].value, diff(runner, t).value)


def test_a_differences_rounding_is_at_its_two_values_or_at_the_terms_it_sums_whichever_is_larger():
    plus, minus = np.array([1.0, -4.0, 0.0]), np.array([-2.0, 1.0, 0.0])
    np.testing.assert_array_equal(numeric.difference_rounding(plus, minus), numeric.ROUNDING * EPS * np.array([2.0, 4.0, 0.0]))
    np.testing.assert_array_equal(numeric.difference_rounding(plus, minus, 3.0),
                                  numeric.ROUNDING * EPS * np.array([3.0, 4.0, 3.0]))
    np.testing.assert_array_equal(numeric.difference_rounding(plus, minus, np.array([0.0, 0.0, 5.0])),
                                  numeric.ROUNDING * EPS * np.array([2.0, 4.0, 5.0]))
