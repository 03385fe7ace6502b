"""A random forward (dropout, `# random: dropout keep=dropout_param.p`) graded by what can be checked,
never by bit-equality with the exercise's own sequence of random calls: the student's forward by the
rule the exercise states (each entry dropped, or kept and scaled by exactly 1/p; the kept fraction
within a binomial tolerance of p), and its backward against the derivative of the student's own
forward at the mask that same call drew (out / x, read from its output), so a right dropout whose
mask comes from any numpy calls earns its points."""

from __future__ import annotations

import math

import numpy as np

from ..core.streams import Stream, stream
from ..python.pysource import PythonError
from .diagnose_grads import diagnose

Z = 5.0          # standard deviations the kept fraction may stray from p (a false alarm: ~6 in 10 million)
EXACT = 1e-9     # a kept entry is x / p to this (relative): inverted dropout's scaling, to rounding
FORWARD = ""     # (as sealed.FORWARD) the key of the forward's own verdict


def check_random_point(pair, remote, inputs: dict, seed: int, seen: dict | None = None, *,
                       broadcast: bool = False) -> dict:
    """{input: (right, how)} of the student's backward at one point, and under FORWARD its forward's.
    (`seen` stays empty: a wrong gradient of a random forward has no fingerprint to compare;
    `broadcast` changes nothing: the mask's gradient has its input's shape.)"""
    name = pair.names[0]
    x = np.asarray(inputs[name], dtype=float)
    dout = stream(seed, Stream.GRADE_UPSTREAM).standard_normal(x.shape)
    try:
        out, grads = remote.call(dout, [x])
    except PythonError as err:
        return {name: (False, err.message), FORWARD: (False, err.message)}
    verdicts = {}
    if out is None:  # no forward of its own: the exercise's made the cache its backward read
        out = remote.exercise_out
    else:
        verdicts[FORWARD] = by_rule(out, x, pair.keep)
    mask = mask_of(out, x)
    if mask is None:
        verdicts[name] = (False, f"the forward's output is not {name} times a mask (each entry dropped or scaled "
                                 "alike), so its derivative is unknown: fix the forward first")
        return verdicts
    right = dout * mask
    theirs = grads[0]
    scale = max(float(np.max(np.abs(right), initial=0.0)), 1.0)
    if theirs is not None and theirs.shape == right.shape and bool(np.allclose(theirs, right, rtol=1e-7,
                                                                               atol=1e-12 * scale)):
        verdicts[name] = (True, None)
    else:
        how = diagnose(theirs, right, name) if theirs is not None else f"{pair.backward_name} returns None as d{name}"
        verdicts[name] = (False, f"{how or 'wrong'} (against the derivative of your own forward at the mask it drew)")
    return verdicts


def by_rule(out: np.ndarray, x: np.ndarray, keep: float) -> tuple:
    """(right, how) of a dropout forward's output: every entry 0 or x / keep, and the kept fraction
    within Z binomial standard deviations (and one entry) of keep."""
    if out.shape != x.shape:
        return False, f"the forward's output has shape {out.shape}, the input {x.shape}"
    if not np.all(np.isfinite(out)):
        return False, "the forward's output is not finite (nan or inf)"
    kept = out != 0
    scaled = x / keep
    exact = np.abs(out - scaled) <= EXACT * np.abs(scaled)
    odd = kept & ~exact
    if np.any(odd):
        ratio = out[odd] / x[odd]
        if np.allclose(ratio, ratio[0], rtol=1e-9):
            return False, (f"the kept entries are scaled by {ratio[0]:.4g}, but inverted dropout scales them by "
                           f"1/p = {1 / keep:.4g}")
        return False, "some entries of the forward's output are neither dropped (0) nor the input scaled by 1/p"
    n = x.size
    fraction = float(np.count_nonzero(kept)) / n
    tolerance = Z * math.sqrt(keep * (1 - keep) / n) + 1 / n
    if abs(fraction - keep) > tolerance:
        return False, (f"the forward keeps {fraction:.0%} of the entries, but the keep probability is p = {keep:g} "
                       f"(more than {tolerance:.0%} off: dropping with probability p?)")
    return True, None


def mask_of(out: np.ndarray | None, x: np.ndarray) -> np.ndarray | None:
    """The forward's multiplier out / x when the output is x times a mask (each entry 0, or scaled by
    one common factor), else None."""
    if out is None or out.shape != x.shape or not np.all(np.isfinite(out)) or np.any(x == 0):
        return None
    ratio = out / x
    kept = ratio != 0
    if np.any(kept) and not np.allclose(ratio[kept], np.median(ratio[kept]), rtol=1e-9, atol=0):
        return None
    return ratio
