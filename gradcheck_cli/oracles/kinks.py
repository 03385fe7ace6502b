"""Kinks and ties, told from the rows the engine runs: a slope that jumps (and keeps jumping as the
step shrinks), whether it is on the point, and which kink elements are one tie (moved together,
they do not jump). For code whose branches the runner cannot see, the slopes are all there is."""

from __future__ import annotations

import numpy as np

from .passes import PassState

MAX_TIE_ELEMENTS = 16                # at most this many kink elements of one class (equal jumps) are grouped pairwise
# Kinks in code whose branches cannot be seen (a user's Python), told from the slopes alone:
SMOOTH_RATIO = 0.1                   # smooth: the slope jump at h/2 is numeric.REFINE ± this of the jump at h
JUMP_ROUNDING = 16.0                 # a jump must stand this many rounding errors above noise
GAP_NOISE = 2.0                      # a slope jump's own rounding: this many of its step's rounding errors
KEPT = 0.25                          # a jump within this fraction of itself at ±TIE·h stays: on the point
CLEAR = 1e-2                         # a jump under this fraction of itself at ±TIE·h: that step missed the kink
POLE = 10.0                          # a slopes' jump this many times larger at TIE·h than at h: a pole, which a kink's is not


def gap(plus, minus, centre, h):
    """(f(v+h) + f(v−h) − 2f(v))/h: the jump between the one-sided slopes (≈ f''·h where f is smooth)."""
    return (plus + minus - 2 * centre) / h


def slope_jumps(s: PassState, idx, plus2, minus2, centre, h2, ref, rtol: float, atol: float, refine: float) -> np.ndarray:
    """For code whose branches cannot be seen: elements whose one-sided slopes jump. Where f is smooth
    the jump shrinks with the step (it halves from h to h/2: `refine`); at a kink it stays. It must also be
    large enough to matter to the verdict and to stand above rounding."""
    h1 = s.h[idx, None]
    g1 = gap(s.plus[idx], s.minus[idx], centre, h1)
    g2 = gap(plus2, minus2, centre, h2)
    scale = np.maximum(np.abs(s.d1[idx]), 0.0 if ref is None else np.abs(np.asarray(ref, dtype=float).T[idx]))
    floor = np.maximum.reduce([np.full_like(g1, atol), rtol * scale, JUMP_ROUNDING * s.rounding[idx]])
    big = np.maximum(np.abs(g1), np.abs(g2))
    return np.any((big > floor) & ~_smooth(g1, g2, s.rounding[idx], refine), axis=1)


def rough(s: PassState, idx, plus2, minus2, centre, h2, refine: float) -> np.ndarray:
    """Elements whose slopes' jump does not shrink with the step as a smooth function's does, however
    small it is: the steps are not yet where the function looks smooth."""
    g1 = gap(s.plus[idx], s.minus[idx], centre, s.h[idx, None])
    g2 = gap(plus2, minus2, centre, h2)
    return ~np.all(_smooth(g1, g2, s.rounding[idx], refine), axis=1)


def _smooth(g1, g2, rounding, refine: float) -> np.ndarray:
    """The jump g2 at refine·h is refine times g1 at h, as f''·h scales, to SMOOTH_RATIO of g1 and the
    gaps' own rounding (each a difference of rounded values: up to ~GAP_NOISE of its step's rounding
    errors), per element and output."""
    noise = GAP_NOISE * rounding * (1 + 1 / refine)
    return np.abs(g2 - refine * g1) <= SMOOTH_RATIO * np.abs(g1) + noise


def smooth_at(plus1, minus1, plus2, minus2, centre, h1, refine: float, rounding) -> np.ndarray:
    """Per element: at steps h1 and refine·h1 the function looks smooth (`_smooth` for every output, the
    gaps finite)."""
    g1 = gap(plus1, minus1, centre, h1)
    g2 = gap(plus2, minus2, centre, refine * h1)
    return np.all(_smooth(g1, g2, rounding, refine) & np.isfinite(g1) & np.isfinite(g2), axis=1)


def jump_kept(s: PassState, idx, plus, minus, centre, h) -> np.ndarray:
    """At ±TIE·h the jump is still there: the kink is on the point, not merely within the step."""
    g = gap(plus, minus, centre, h)
    g1 = gap(s.plus[idx], s.minus[idx], centre, s.h[idx, None])
    return np.any(np.abs(g - g1) <= KEPT * np.abs(g1), axis=1) & np.any(np.abs(g1) > 0, axis=1)


def jump_joint(s: PassState, groups: list, plus, minus, centre) -> np.ndarray:
    """Moved together, do the members still jump? (A tie moved together stays a tie: no jump.)"""
    out = []
    for k, members in enumerate(groups):
        members = np.asarray(members)
        hh = s.h[members].min()
        joint = np.abs(gap(plus[k], minus[k], centre, hh))
        alone = np.abs(gap(s.plus[members], s.minus[members], centre, s.h[members, None])).max(axis=1).min()
        out.append(bool(np.any(joint > KEPT * alone)))
    return np.array(out, dtype=bool)


def classes(at: np.ndarray, jumps: np.ndarray, rounding: np.ndarray) -> list:
    """Kink elements whose one-sided slopes jump by the same amount, in classes of 2 to MAX_TIE_ELEMENTS:
    the members of a tie all jump by the tie's slope, so only they are tested against each other
    (a max-pool's windows, each with its own upstream gradient, are told apart without pairing them all)."""
    if at.size < 2:
        return []
    j = jumps[at]
    key = j @ np.cos(np.arange(j.shape[1]) + 1.0)  # a fixed projection: equal jump vectors, equal keys
    order = np.argsort(key, kind="stable")
    tol = JUMP_ROUNDING * rounding[at].max(axis=1)  # a tie's members jump by the same slope, to rounding
    classes, current = [], [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        if np.all(np.abs(j[a] - j[b]) <= max(tol[a], tol[b])):
            current.append(b)
        else:
            classes.append(current)
            current = [b]
    classes.append(current)
    return [np.sort(at[c]) for c in classes if 2 <= len(c) <= MAX_TIE_ELEMENTS]


def pairs(at: np.ndarray) -> list:
    """Pairs of kink elements to test for a tie (only when there are few)."""
    if not 2 <= at.size <= MAX_TIE_ELEMENTS:
        return []
    return [(int(at[a]), int(at[b])) for a in range(at.size) for b in range(a + 1, at.size)]


def union(pairs: list, members: np.ndarray) -> list:
    """Groups (arrays of ≥ 2 elements) joined by the pairs that keep a tie."""
    parent = {int(m): int(m) for m in members}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict = {}
    for m in members:
        groups.setdefault(root(int(m)), []).append(int(m))
    return [np.array(sorted(g)) for g in groups.values() if len(g) > 1]


