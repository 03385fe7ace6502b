"""The numbers the verdict policy and the difference engine share: the engine spends its extra
accuracy (refinement, larger steps) where the policy will judge, so both read them from here."""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(float).eps)
SAFETY = 4.0             # how many error estimates a finite difference may be off by
ROW_FLOOR = 1e-3         # an element is judged at no less than this fraction of its row's largest entry
NOISE_STEP = 4 * EPS     # the relative nudge of a rerun that measures backprop's own rounding
TERMS_ROUNDING = 64.0     # a float sum of terms may be off by this × ε × their magnitude (exact or backprop's)


def largest_abs(a) -> float:
    """float(np.max(np.abs(a), initial=0.0)), the same float (nan where an element is nan), without numpy's
    reduction where `a` is one float64: a deep chain's nodes ask this of thousands of scalars."""
    if type(a) is np.ndarray and a.size == 1 and a.dtype == np.float64:
        v = abs(float(a.reshape(-1)[0]))
        return v if v > 0.0 or v != v else 0.0
    return float(np.max(np.abs(a), initial=0.0))
