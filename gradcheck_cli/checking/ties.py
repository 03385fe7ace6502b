"""Ties: elements of a row at a kink that are one tie (moved together, they do not jump; numeric's
tie pass finds them). Backprop's gradients at them must sum to the slope of moving them together;
`Tie.note` is the one place a tie is put into words, valid or not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.tolerances import SAFETY
from ..gates.tensors import fmt_note
from ..oracles.numeric import NumericResult


@dataclass(frozen=True, kw_only=True)
class Tie:
    """Tied elements of a row: backprop's gradients at them must sum to the slope of moving them together."""
    members: np.ndarray   # the tied elements' indices along n
    total: np.ndarray     # backprop's sum over them, per output row
    slope: np.ndarray     # the slope of moving them together, per output row
    holds: np.ndarray     # per output row: the sum is that slope, within the summed tolerances

    def note(self, row: int) -> str:
        """What the tie says at one output row: a valid subgradient, or the sum that is wrong."""
        n, total, slope = self.members.size, fmt_note(self.total[row]), fmt_note(self.slope[row])
        if self.holds[row]:
            return (f"a tie of {n} elements: backprop's gradients sum to {total}, the slope of moving them together "
                    f"({slope}): a valid subgradient, not a bug")
        return f"at a tie of {n} elements, backprop's gradients sum to {total} but moving them together gives {slope}"


def of_row(a, tol, est, num: NumericResult) -> tuple[np.ndarray, dict[int, Tie]]:
    """Per element of a row (out, n), whether its tie holds (True where it is in none), and each tied
    element's Tie: `tol` and `est` are the elements' tolerances and the differences' error estimates."""
    ok = np.ones(a.shape, dtype=bool)
    detail = {}
    for members, slope in num.groups:
        total = a[:, members].sum(axis=1)
        gtol = tol[:, members].sum(axis=1) + SAFETY * est[:, members].max(axis=1)
        good = np.abs(total - slope) <= gtol
        ok[:, members] &= good[:, None]
        tie = Tie(members=members, total=total, slope=slope, holds=good)
        for mem in members:
            detail[int(mem)] = tie
    return ok, detail
