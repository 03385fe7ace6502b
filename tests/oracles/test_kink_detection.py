"""`oracles.kinks` as units: kinks and ties told from the rows the engine runs. The rows here are
evaluations of closed-form functions (|x|, max, x²) at steps chosen by the test; tests/oracles/
test_kinks.py holds the end-to-end cases on real code."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.core.tolerances import EPS
from gradcheck_cli.oracles import kinks
from gradcheck_cli.oracles.numeric import REFINE, ROUNDING, TIE
from gradcheck_cli.oracles.passes import PassState

H = 1e-3


def separable(x):
    """|x0| + |x1| + x2² + |x3|, one value per row of x (rows, 4)."""
    return np.abs(x[:, 0]) + np.abs(x[:, 1]) + x[:, 2] ** 2 + np.abs(x[:, 3])


def rows(f, x, h, factor=1.0):
    """f at x ± factor·h, one element at a time: (plus (n, 1), minus (n, 1))."""
    eye = np.eye(x.size) * (factor * h)[:, None]
    return f(x + eye)[:, None], f(x - eye)[:, None]


def state(f, x, h):
    """What the engine's first pass keeps per element (numeric._first_pass)."""
    plus, minus = rows(f, x, h)
    return PassState(h=h, plus=plus, minus=minus, d1=(plus - minus) / (2 * h[:, None]),
                     rounding=ROUNDING * EPS * np.maximum(np.abs(plus), np.abs(minus)) / h[:, None])


# x0 = 0: |x| on its kink; x1 = H/4: its kink within the step, beside the point; x2 = 1: smooth
# (x²); x3 = 3: |x| far from its kink (linear)
X = np.array([0.0, H / 4, 1.0, 3.0])
STEP = np.full(4, H)


def test_gap_is_the_jump_between_the_one_sided_slopes():
    f = separable
    centre = f(X[None])[0]
    plus, minus = rows(f, X, STEP)
    g = kinks.gap(plus, minus, centre, STEP[:, None])[:, 0]
    assert g[0] == pytest.approx(2.0)            # |x|' jumps from −1 to 1
    assert g[2] == pytest.approx(2 * H)          # smooth: f''·h, which vanishes with the step
    assert g[3] == pytest.approx(0.0, abs=1e-9)  # linear: no jump


def test_slope_jumps_flag_kinks_on_and_beside_the_point_but_not_smooth_rows():
    s = state(separable, X, STEP)
    idx = np.arange(X.size)
    centre = separable(X[None])[0]
    plus2, minus2 = rows(separable, X, STEP, REFINE)
    jumps = kinks.slope_jumps(s, idx, plus2, minus2, centre, STEP[:, None] * REFINE, None, 1e-5, 0.0, REFINE)
    np.testing.assert_array_equal(jumps, [True, True, False, False])


def test_a_curved_row_is_smooth_however_large_its_curvature():
    f = lambda x: 1e4 * x[:, 0] ** 2  # noqa: E731 - the jump at h/2 is exactly REFINE times the one at h
    x = np.array([0.5])
    s = state(f, x, np.array([H]))
    plus2, minus2 = rows(f, x, np.array([H]), REFINE)
    jumps = kinks.slope_jumps(s, np.arange(1), plus2, minus2, f(x[None])[0], np.array([[H * REFINE]]), None,
                              1e-5, 0.0, REFINE)
    assert not jumps.any()


def test_a_jump_kept_at_the_tiny_step_is_on_the_point_and_one_that_vanishes_is_beside_it():
    s = state(separable, X, STEP)
    centre = separable(X[None])[0]
    idx = np.arange(3)  # on the kink, beside it, smooth
    plus, minus = rows(separable, X, STEP * TIE)
    kept = kinks.jump_kept(s, idx, plus[idx], minus[idx], centre, STEP[idx, None] * TIE)
    np.testing.assert_array_equal(kept, [True, False, False])


def test_a_tie_moved_together_does_not_jump_but_two_separate_kinks_do():
    tie = lambda x: np.maximum(x[:, 0], x[:, 1])              # noqa: E731 - max at x0 = x1
    apart = lambda x: np.abs(x[:, 0]) + np.abs(x[:, 1])       # noqa: E731 - two kinks at 0, 0
    for f, x, joint in ((tie, np.array([2.0, 2.0]), False), (apart, np.array([0.0, 0.0]), True)):
        h = np.full(2, H)
        s = state(f, x, h)
        together = np.array([[H, H]])
        plus, minus = f(x + together)[:, None], f(x - together)[:, None]
        assert kinks.jump_joint(s, [np.array([0, 1])], plus, minus, f(x[None])[0]).tolist() == [joint]


def test_classes_group_kink_elements_with_equal_jumps():
    # max(x0, x1) + 3·max(x2, x3) at two ties: x0, x1 jump by 1, x2, x3 by 3; x4 is smooth
    f = lambda x: np.maximum(x[:, 0], x[:, 1]) + 3 * np.maximum(x[:, 2], x[:, 3]) + x[:, 4]  # noqa: E731
    x = np.array([2.0, 2.0, -1.0, -1.0, 7.0])
    s = state(f, x, np.full(5, H))
    centre = f(x[None])[0]
    right, left = (s.plus - centre) / H, (centre - s.minus) / H
    jumps = np.maximum(right, left) - np.minimum(right, left)
    np.testing.assert_allclose(jumps[:, 0], [1, 1, 3, 3, 0], atol=1e-9)
    found = kinks.classes(np.arange(4), jumps, s.rounding)
    assert [c.tolist() for c in found] == [[0, 1], [2, 3]]


def test_classes_hold_jumps_equal_to_rounding_and_drop_singletons_and_huge_classes():
    rounding = np.full((20, 1), 1e-15)
    near = np.array([[1.0], [1.0 + 1e-15], [1.0 + 1e-12], [5.0]])
    assert [c.tolist() for c in kinks.classes(np.arange(4), near, rounding[:4])] == [[0, 1]]
    assert kinks.classes(np.array([2]), near, rounding[:4]) == []
    many = np.ones((kinks.MAX_TIE_ELEMENTS + 1, 1))
    assert kinks.classes(np.arange(many.shape[0]), many, rounding[: many.shape[0]]) == []


def test_pairs_are_every_pair_of_a_small_class_only():
    assert kinks.pairs(np.array([3, 5, 9])) == [(3, 5), (3, 9), (5, 9)]
    assert kinks.pairs(np.array([4])) == []
    assert kinks.pairs(np.arange(kinks.MAX_TIE_ELEMENTS + 1)) == []


def test_union_joins_pairs_that_keep_a_tie_transitively():
    groups = kinks.union([(0, 1), (1, 2), (6, 7)], np.array([0, 1, 2, 5, 6, 7]))
    assert sorted(g.tolist() for g in groups) == [[0, 1, 2], [6, 7]]
    assert kinks.union([], np.array([0, 1])) == []
