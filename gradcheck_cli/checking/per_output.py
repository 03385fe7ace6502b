"""Kinks in code whose branches cannot be seen (a user's Python layer), output by output.

Where several kinks move at once (a convolution's weight moves many pre-activations across a ReLU's
0), the one-sided slopes of the whole function Σ dout·f are the wrong yardstick: a valid chain rule
(relu′(0) = 0 at every zero) may lie outside them. But a kink sits at outputs, and each output alone
is simple. So a backward is explained at the kinks when

1. with every kinked output's upstream gradient set to 0, it checks out against the differences of
   what remains (which has no kink within the step), and
2. for each kinked output k alone, its gradient (the backward of the one-hot upstream e_k) lies,
   element by element, between that output's one-sided slopes, and the elements whose slopes jump
   share the slope of moving them together wherever that is smooth (a tie).

The backward is linear in its upstream gradient, so (1) and (2) cover backprop's whole row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..oracles import kinks, numeric, plan
from . import verdict
from ..core.tolerances import SAFETY

MAX_WORK = 4_000_000   # rows × outputs the analysis may hold (the plan's rows of full outputs per input)
MAX_INPUTS = 4_096     # inputs differenced one by one (the forward is called for each of the plan's rows)
MAX_KINKED = 1_000     # kinked outputs (one backward call each)


def runs(n: int, m: int) -> bool:
    """Whether the analysis runs for n inputs and m outputs (else kinks are left undecided)."""
    return n <= MAX_INPUTS and plan.PLAN.rows(n, projected=False) * m <= MAX_WORK


def explain(ev: verdict.Evidence, evaluate: Callable[[np.ndarray], np.ndarray],
            backward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, u: np.ndarray, step: float, rtol: float,
            atol: float) -> verdict.Evidence:
    """`ev` with its failing kink elements marked as kinks when the backward is explained output by
    output (see the module); unchanged otherwise. `evaluate(rows (r, n)) -> (r, m)` full outputs,
    `backward(upstream (m,)) -> (n,)` the user's backward, `x` the flat inputs, `u` the flat upstream."""
    f0 = evaluate(x[None, :])[0]
    n, m = x.size, f0.size
    if not runs(n, m):
        return _undecided(ev, f"{n:,} inputs × {m:,} outputs")
    h = numeric.steps(x, step)
    eye = np.eye(n)
    with np.errstate(all="ignore"):
        rows = evaluate(np.concatenate([x + eye * offset for offset in plan.PLAN.offsets(h[:, None])]))
        p1, m1, p2, m2 = np.split(rows, plan.PLAN.rows_per_element)  # ±h, then ±h·REFINE
        H = h[:, None]
        gap1, gap2 = (p1 + m1 - 2 * f0) / H, (p2 + m2 - 2 * f0) / (H / 2)
        rounding = numeric.difference_rounding(p1, m1) / H
        slopes = np.maximum(np.abs((p1 - f0) / H), np.abs((f0 - m1) / H))
        floor = np.maximum.reduce([np.full_like(gap1, atol), rtol * slopes, kinks.JUMP_ROUNDING * rounding])
        ratio = gap2 / np.where(gap1 != 0, gap1, np.inf)
        jumps = (np.maximum(np.abs(gap1), np.abs(gap2)) > floor) & ~(np.abs(ratio - numeric.REFINE) <= kinks.SMOOTH_RATIO)
    kinked = np.flatnonzero(jumps.any(axis=0))
    if kinked.size == 0:
        return ev
    if kinked.size > MAX_KINKED:
        return _undecided(ev, f"{kinked.size:,} outputs at a kink")
    masked = u.copy()
    masked[kinked] = 0.0
    if not _smooth_part_agrees(backward(masked), masked, p1, m1, p2, m2, h, rtol, atol):
        return ev
    for k in kinked.tolist():
        if not _output_explained(backward(np.eye(1, m, k)[0]), k, jumps[:, k], x, f0, p1, m1, h, evaluate,
                                 rtol, atol):
            return ev
    return verdict.explained(ev, f"output by output, backprop lies within the one-sided slopes of the "
                                 f"{kinked.size} output(s) at a kink (a tie sharing its joint slope) and is "
                                 f"right for the rest: a valid subgradient")


def _undecided(ev: verdict.Evidence, size: str) -> verdict.Evidence:
    """Past the analysis' limits a kink element outside the whole function's one-sided slopes is
    neither a bug nor a valid choice that anything showed: `warn`, never a false alarm."""
    return verdict.explained(ev, f"at a kink, backprop is outside the one-sided slopes of the whole function, "
                                 f"which a valid choice can be when several kinks move at once; the output-by-"
                                 f"output analysis that would tell is past its limit here ({size})", code=2)


def _smooth_part_agrees(g, w, p1, m1, p2, m2, h, rtol: float, atol: float) -> bool:
    """Backprop for the masked upstream against Richardson differences of w·f (no kink within the step)."""
    with np.errstate(all="ignore"):
        d1 = ((p1 - m1) @ w) / (2 * h)
        d2 = ((p2 - m2) @ w) / h   # the second step is h/2 (numeric.REFINE)
        value, estimate = numeric.richardson(d1, d2)
        scale = np.maximum(np.abs(g), np.abs(value))
        tol = np.maximum(atol, rtol * np.maximum(scale, 1e-3 * float(np.max(scale, initial=0.0))))
        return bool(np.all(np.isfinite(g)) and np.all(np.abs(g - value) <= tol + SAFETY * estimate))


def _output_explained(g, k: int, jumped, x, f0, p1, m1, h, evaluate: Callable[[np.ndarray], np.ndarray],
                      rtol: float, atol: float) -> bool:
    """Output k's gradient between its one-sided slopes, element by element, and its jumping elements
    summing to the slope of moving them together where that is smooth (a tie)."""
    with np.errstate(all="ignore"):
        right, left = (p1[:, k] - f0[k]) / h, (f0[k] - m1[:, k]) / h
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        scale = np.maximum.reduce([np.abs(g), np.abs(lo), np.abs(hi)])
        tol = np.maximum(atol, rtol * np.maximum(scale, 1e-3 * float(np.max(scale, initial=0.0))))
        if not (np.all(np.isfinite(g)) and np.all((g >= lo - tol) & (g <= hi + tol))):
            return False
        members = np.flatnonzero(jumped)
        if members.size < 2:
            return True
        hh = float(h[members].min())
        move = np.zeros_like(x)
        move[members] = hh
        fp, fm = evaluate(np.stack([x + move, x - move]))[:, k]
        joint_gap = abs(fp + fm - 2 * f0[k]) / hh
        if joint_gap > kinks.KEPT * float(np.min(np.abs(hi - lo)[members])):
            return True  # moved together they still jump: no tie, nothing to share
        slope = (fp - fm) / (2 * hh)
        return bool(abs(g[members].sum() - slope) <= float(tol[members].sum()) + atol)
