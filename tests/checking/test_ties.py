"""Ties (`checking.ties`): one record per tie, whether it holds per output row, and the one place a
tie is put into words, valid or not."""

import numpy as np

from gradcheck_cli.checking.ties import Tie, of_row
from gradcheck_cli.oracles.numeric import NumericResult

def test_a_tie_is_put_into_words_in_one_place_valid_or_not():
    tie = Tie(members=np.array([0, 2]), total=np.array([1.0, 2.0]), slope=np.array([1.0, 0.5]),
              holds=np.array([True, False]))
    assert tie.note(0) == ("a tie of 2 elements: backprop's gradients sum to 1, the slope of moving them together (1): "
                           "a valid subgradient, not a bug")
    assert tie.note(1) == "at a tie of 2 elements, backprop's gradients sum to 2 but moving them together gives 0.5"


def test_a_rows_ties_hold_where_backprops_sum_is_the_joint_slope_within_the_summed_tolerances():
    zero = np.zeros((1, 3))
    num = NumericResult("exhaustive", zero, zero, np.ones(3, dtype=bool), value=zero,
                        groups=[(np.array([0, 1]), np.array([1.0]))])
    tol = np.full((1, 3), 1e-6)
    ok, ties = of_row(np.array([[0.5, 0.5, 7.0]]), tol, zero, num)
    assert ok.tolist() == [[True, True, True]] and set(ties) == {0, 1} and ties[0] is ties[1]
    ok, ties = of_row(np.array([[1.0, 1.0, 7.0]]), tol, zero, num)  # each takes the whole gradient: sums to 2
    assert ok.tolist() == [[False, False, True]] and not ties[0].holds[0]
