"""How a student's gradient is wrong, said so a learner can act on it: the student's array against
the right one (transposed, not summed over the batch, off by a factor, the sign, the shape), and the
verdicts at every point into one reason ("right only at the exercise's point")."""

from __future__ import annotations

import numpy as np

RTOL = 1e-6  # two gradients agree to this (relative to the right one's largest element)


def _close(a, b) -> bool:
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-12)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= RTOL * scale))


def diagnose(theirs, right, name: str) -> str | None:
    """None when `theirs` is right; else one phrase saying how `d<name>` differs from `right`."""
    d = "d" + name
    if theirs is None:
        return f"{d} is missing"
    s, r = np.asarray(theirs, dtype=float), np.asarray(right, dtype=float)
    if not np.all(np.isfinite(s)):
        return f"{d} is not finite (nan or inf)"
    if s.shape != r.shape:
        return _shape_slip(s, r, d)
    if _close(s, r):
        return None
    if float(np.max(np.abs(s), initial=0.0)) <= RTOL * float(np.max(np.abs(r), initial=0.0)):
        return f"{d} is zero everywhere (or nearly), and the right answer is not"  # not "off by a factor of 0"
    if s.ndim == 2 and s.shape[0] == s.shape[1] and _close(s.T, r):
        return f"{d} is the transpose of the right answer"
    if _close(-s, r):
        return f"{d} has the wrong sign"
    rr = float(np.sum(r * r))
    if rr > 0:
        c = float(np.sum(s * r)) / rr
        if abs(c - 1) > 1e-3 and _close(s, c * r):
            hint = " (a forgotten 2?)" if abs(c - 0.5) < 1e-6 else ""
            return f"{d} is off by a factor of {c:.4g}{hint}"
    return f"{d} has the right shape but the wrong values"


def unit_axes_only(shape: tuple, target: tuple) -> bool:
    """Do two shapes differ only by axes of length 1 ((1, 5) and (5,), (5, 1) and (5,))?"""
    return shape != target and [n for n in shape if n != 1] == [n for n in target if n != 1]


def _shape_slip(s, r, d: str) -> str:
    if unit_axes_only(s.shape, r.shape) and _close(s.reshape(r.shape), r):
        return (f"{d} has shape {s.shape}, not {r.shape}: the right values with an axis of length 1 too many or "
                "too few (sum without keepdims=True, or reshape it)")
    if s.ndim == r.ndim + 1 and s.shape[0] > 1 and _close(s.sum(axis=0), r):
        return f"{d} is not summed over the batch (the first axis): it has shape {s.shape}, the input {r.shape}"
    if s.size == r.size and s.ndim == 2 and _close(s.T.reshape(r.shape), r) and s.T.shape == r.shape:
        return f"{d} is the transpose of the right answer (shape {s.shape}, the input's is {r.shape})"
    if s.size == r.size and _close(s.reshape(r.shape), r):
        return f"{d} has the right values in the wrong shape: {s.shape}, the input's is {r.shape} (reshape it)"
    return f"{d} has shape {s.shape}, but the input has shape {r.shape}"


def across_points(verdicts: list) -> tuple:
    """(right everywhere?, the reason) from [(point name, right, how wrong)], the exercise's own point
    first; the points are numbered from 1 in that order. A lone verdict without a point name is a reason
    said as it is ("missing: ...")."""
    if not verdicts:
        return False, "not checked (the exercise has no call of its gate)"
    if len(verdicts) == 1 and verdicts[0][0] is None:
        return bool(verdicts[0][1]), verdicts[0][2] or "wrong"
    wrong = [k for k, (_, right, _) in enumerate(verdicts, 1) if not right]
    if not wrong:
        return True, f"right at every point ({len(verdicts)})"
    hows = list(dict.fromkeys(how or "wrong" for _, right, how in verdicts if not right))
    if len(wrong) == len(verdicts):
        return False, f"wrong at every point: {hows[0]}" + (f" (elsewhere also: {hows[1]})" if len(hows) > 1 else "")
    at = points_said(wrong, len(verdicts))
    if verdicts[0][1]:
        return False, (f"right only at the exercise's own point (special there: symmetric, zeros or ties?), "
                       f"wrong at {at}: {hows[0]}")
    return False, f"wrong at {at}: {hows[0]}"


def first_wrong(verdicts: list) -> int | None:
    """The number (from 1) of the first point a part is wrong at, None when it is right at every one
    or its verdict is not at a point."""
    if len(verdicts) == 1 and verdicts[0][0] is None:
        return None
    return next((k for k, (_, right, _) in enumerate(verdicts, 1) if not right), None)


def points_said(numbers: list, total: int) -> str:
    """"point 2 of 4", "points 2 and 4 of 4", "points 2, 3 and 4 of 4"."""
    if len(numbers) == 1:
        return f"point {numbers[0]} of {total}"
    listed = ", ".join(str(n) for n in numbers[:-1]) + f" and {numbers[-1]}"
    return f"points {listed} of {total}"
