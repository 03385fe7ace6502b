"""Centered finite differences, batched: many perturbed evaluations of a function in one call.

One engine serves every oracle that differences something: the whole graph as a function of one
node, a single gate as a function of its inputs, a user's Python function. What it differences is
a *runner*: `run(probes, n_rows)` evaluates `n_rows` perturbed copies at once and says, per row,
whether a kink gate switched branch. A *target* is one flat vector of inputs the runner perturbs.

Per element: a centered difference at ±h; elements in doubt get a second pair at ±h·REFINE for
Richardson extrapolation and an error estimate; elements whose error is rounding-dominated are
re-done with a larger step; elements at a kink are probed at ±TIE·h (is the kink *at* the point?)
and tied elements are grouped (nudged together, a tie is kept, so the function is smooth there).
The rows each element and each projection direction take are the plan's (`plan`), which the cost
model multiplies out.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import kinks, plan
from .passes import PassState
from .plan import REFINE, SIDES, STEPS
from .batches import CHUNK_ELEMENTS, BatchRunner, Probe, Rows, pm, run_rows, split
from ..core.tolerances import EPS, ROW_FLOOR, SAFETY
from ..core.streams import Stream, stream


ROUNDING = 2.0                       # a centred difference's rounding error: ROUNDING·ε·|f|/h (|f|: see difference_rounding)
REFINE_RTOL = 0.1                    # "in doubt": off from the reference by more than this × rtol
TIE = 1e-4                           # kink elements: does the branch still switch at ±TIE·h? then v sits on it
NARROW = 0.1                         # a narrowed step still too coarse for the tolerance: the next is this × it
NARROW_LEVELS = 8                    # ... at most this many narrowed pairs of steps (down to TIE·NARROW⁷·h)
NARROW_SHARE = 1.5                   # ... and at most this share of a target's planned rows in all (narrow_rows)
NARROW_FLOOR = 16                    # ... or, if more, as many rows as this many elements take through every level
RELATIVE = 1e-2                      # ... each, after the first, at most this fraction of the element's own size
ESCALATE_MAX = 4096.0                # a rounding-bound element is re-done with a step up to this × h
SHRINK_MAX = 1024.0                  # ... and a truncation-bound one with a step down to h / this


@dataclass
class Target:
    """One flat vector a runner perturbs: `x` are its values (the point)."""
    id: Hashable  # a graph node's id, or a name (a Python layer's inputs)
    x: np.ndarray
    projections: bool = False

    @property
    def n(self) -> int:
        return self.x.size


@dataclass
class NumericResult:
    """Finite differences for one target, flat: arrays are (out, n), or (P, out) for projections.

    `value` is the Jacobian, `estimate` its error estimate (truncation + rounding), `kink` the
    elements whose perturbation switched a branch, `at_kink` those on the kink itself, `lower`/
    `upper` the one-sided slopes there, `groups` tied elements as (members, joint slope (out,)).
    """
    method: str
    estimate: np.ndarray
    truncation: np.ndarray
    kink: np.ndarray
    value: np.ndarray | None = None
    at_kink: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    groups: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    near: np.ndarray | None = None         # off a kink within the step: the difference at ±TIE·h, which
    near_error: np.ndarray | None = None   # does not reach it (nan elsewhere), and its rounding error
    directions: np.ndarray | None = None   # (P, n) for projections
    exact: bool | np.ndarray = False       # values exact to rounding (the complex step), not differences: all
                                           # (True), or a mask of the elements (those off a kink)
    projected: np.ndarray | None = None    # (P, out)
    left_domain: bool = False
    refined: int = 0
    escalated: int = 0
    narrowed: int = 0                      # elements differenced at ±TIE·h: the forward changes fast at the scale of h


class Runner(BatchRunner, Protocol):
    """What the engine differences (the module's docstring): a BatchRunner, with the function's value
    at the point and what differencing a target costs (element evaluations)."""

    @property
    def centre(self) -> float | np.ndarray: ...

    @property
    def terms(self) -> float:
        """The size of the terms the function sums (Σ|weights ⊙ outputs|), or 0 where it sums none:
        a difference of a sum that cancels is rounded at its terms, not at the sum."""

    def work(self, target: Target) -> int: ...


def richardson(d1, d2) -> tuple:
    """(the extrapolated derivative, its truncation estimate) from centred differences at h (`d1`) and
    at REFINE·h (`d2`): the h² terms cancel, and their difference estimates the error."""
    return d2 + (d2 - d1) / (1.0 / REFINE ** 2 - 1.0), np.abs(d2 - d1)


def difference_rounding(plus, minus, terms: float | np.ndarray = 0.0) -> np.ndarray:
    """ROUNDING·ε times what a centred difference's two values are rounded at: their size, or, for a
    function that sums many terms (a runner's Σ weights ⊙ outputs), the size of those terms, which
    rounding follows where the sum cancels. Over the step, it is the difference's rounding error."""
    return ROUNDING * EPS * np.maximum(np.maximum(np.abs(plus), np.abs(minus)), terms)


def steps(x: np.ndarray, step: float) -> np.ndarray:
    """The step per element: h = step·max(1, |v|)."""
    return step * np.maximum(1.0, np.abs(x))


def differentiate(runner: Runner, targets: list[Target], step: float, rtol: float, atol: float,
                  reference: dict | None = None, seed: int | np.random.Generator = 0) -> dict[Hashable, NumericResult]:
    """NumericResult for every target. `reference` (target id -> (out, n) backprop) only decides
    where extra accuracy is spent (refinement, larger steps), never a verdict. `seed` draws the
    projections' directions (a caller's own generator may be handed in: making one costs more than
    a small layer's whole difference)."""
    reference = reference or {}
    rng = seed if isinstance(seed, np.random.Generator) else stream(seed, Stream.DIFFERENCES)
    centre = np.asarray(runner.centre, dtype=float).ravel()
    exhaustive = [t for t in targets if not t.projections]
    projected = [t for t in targets if t.projections]
    assert not projected or getattr(runner, "each", None) is None  # runners.Each: element by element only
    results: dict[Hashable, NumericResult] = {}
    if exhaustive:
        results.update(_exhaustive(runner, exhaustive, centre, step, rtol, atol, reference))
    directions = plan.PLAN.projections  # the plan the cost model predicted from, read as the work starts
    for t in projected:
        results[t.id] = _projection(runner, t, centre, step, rng, reference.get(t.id), rtol, atol, directions)
    return results


# --- exhaustive ------------------------------------------------------------------------------------

@dataclass
class _Context:
    """What every pass of one exhaustive differencing shares."""
    runner: Runner
    centre: np.ndarray
    sees: bool          # the runner reports branch switches (else kinks are told from the slopes alone)
    reference: dict
    rtol: float
    atol: float

    def centre_of(self, t: Target) -> np.ndarray:
        """The function's value at the point for target `t`: its own runner's where the runner holds one
        per target (runners.Each), else the one function's."""
        each = getattr(self.runner, "each", None)
        return self.centre if each is None else np.asarray(each(t.id).centre, dtype=float).ravel()

    def terms_of(self, t: Target) -> float:
        """The size of the terms the function of target `t` sums (Runner.terms)."""
        each = getattr(self.runner, "each", None)
        return self.runner.terms if each is None else each(t.id).terms

    def side_by_side(self, targets, width: int) -> tuple:
        """(centre, terms) for every target's elements side by side, (N, out) and (N, 1), where each target
        has its own; else the one function's (broadcast alike: the same values, elementwise)."""
        if getattr(self.runner, "each", None) is None:
            return self.centre, self.runner.terms
        return (np.concatenate([np.broadcast_to(self.centre_of(t), (t.n, width)) for t in targets]),
                np.concatenate([np.full((t.n, 1), self.terms_of(t)) for t in targets]))


def _exhaustive(runner: Runner, targets: list[Target], centre: np.ndarray, step: float, rtol: float, atol: float,
                reference: dict) -> dict[Hashable, NumericResult]:
    """Every element of every target, in passes that each run one batch of rows for all targets:
    ±h; ±h/2 where in doubt (Richardson); larger steps where rounding-bound; ±TIE·h at kinks (on the
    point?); pairs of kink elements (ties?); each tie moved together (its slope)."""
    ctx = _Context(runner, centre, getattr(runner, "sees_branches", True), reference, rtol, atol)
    state = {t.id: PassState(h=steps(t.x, step)) for t in targets}
    with np.errstate(all="ignore"):
        for stage in (_first_pass, _refine_pass, _escalate_pass, _kink_pass, _pair_pass, _tie_pass):
            stage(ctx, targets, state)
    return {t.id: _result(state[t.id]) for t in targets}


def _first_pass(ctx: _Context, targets, state) -> None:
    rows = Rows()
    for t in targets:
        rows.add(t, *pm(np.arange(t.n), state[t.id].h, STEPS[0]))
    out = run_rows(ctx.runner, rows)
    # every target's elements side by side, (N, out): each operation below is elementwise (or per element,
    # along the output), so each target's slice is what computing it alone gives
    edges = np.cumsum([0] + [t.n for t in targets])
    plus, minus, switched = split(np.concatenate([out[t.id][0] for t in targets]),
                                  np.concatenate([out[t.id][1] for t in targets]))
    h = np.concatenate([state[t.id].h for t in targets])[:, None]
    d1 = (plus - minus) / (2 * h)
    centre, terms = ctx.side_by_side(targets, d1.shape[1])
    right, left = (plus - centre) / h, (centre - minus) / h
    value, truncation = d1.copy(), np.zeros_like(d1)
    rounding = difference_rounding(plus, minus, terms) / h
    kink = switched.copy()
    upper, lower = np.maximum(right, left), np.minimum(right, left)
    doubt = _in_doubt(d1, _references(ctx, targets, d1.shape[1]), ctx.rtol, ctx.atol)  # a missing one: nan, in doubt
    for t, a, b in zip(targets, edges[:-1], edges[1:]):
        s = state[t.id]
        s.value, s.d1, s.truncation, s.rounding = value[a:b], d1[a:b], truncation[a:b], rounding[a:b]
        s.kink, s.plus, s.minus = kink[a:b], plus[a:b], minus[a:b]
        s.upper, s.lower = upper[a:b], lower[a:b]
        s.doubt = np.flatnonzero(doubt[a:b])


def _references(ctx: _Context, targets, width: int) -> np.ndarray:
    """Every target's reference side by side, (out, N); nan for a target without one."""
    return np.concatenate([np.full((width, t.n), np.nan) if ctx.reference.get(t.id) is None
                           else np.broadcast_to(np.asarray(ctx.reference[t.id], dtype=float).T, (t.n, width)).T
                           for t in targets],
                          axis=1)


def _refine_pass(ctx: _Context, targets, state) -> None:
    rows = Rows()
    for t in targets:
        s = state[t.id]
        rows.add(t, *pm(s.doubt, s.h[s.doubt], STEPS[1]))
    out = run_rows(ctx.runner, rows)
    for t in targets:
        s, idx = state[t.id], state[t.id].doubt
        if not idx.size:
            continue
        plus, minus, switched = split(*out[t.id])
        h = s.h[idx, None] * REFINE
        d2 = (plus - minus) / (2 * h)
        d1 = s.d1[idx]
        s.value[idx], s.truncation[idx] = richardson(d1, d2)
        s.rounding[idx] = difference_rounding(plus, minus, ctx.terms_of(t)) / h
        s.kink[idx] |= switched
        # beyond a kink within h/2 of v, the slopes between ±h/2 and ±h are its one-sided limits
        # (the secants from v itself are biased by the kink's offset): they widen the bounds
        outer = np.stack([(s.plus[idx] - plus) / ((1 - REFINE) * s.h[idx, None]),
                          (minus - s.minus[idx]) / ((1 - REFINE) * s.h[idx, None])])
        s.upper[idx] = np.maximum(s.upper[idx], outer.max(axis=0))
        s.lower[idx] = np.minimum(s.lower[idx], outer.min(axis=0))
        if not ctx.sees:
            s.kink[idx] |= kinks.slope_jumps(s, idx, plus, minus, ctx.centre_of(t), h, ctx.reference.get(t.id),
                                                 ctx.rtol, ctx.atol, REFINE)
            # still off the reference, and the step too coarse for where the point is: not smooth at ±h and
            # ±h/2 (a pole within the step, a domain's edge, too small a jump to count as a kink), or smooth
            # but bound by truncation past what the tolerance allows: the narrowed pass, which keeps a
            # smooth element's difference unless it does better
            rough = kinks.rough(s, idx, plus, minus, ctx.centre_of(t), h, REFINE)
            ref = ctx.reference.get(t.id)
            coarse = _coarse(s.value[idx], s.truncation[idx], s.rounding[idx], ctx.rtol, ctx.atol, _largest(s, ref)) & \
                np.all(s.truncation[idx] > s.rounding[idx], axis=1)
            if ref is not None and (rough | coarse).any():
                off = _in_doubt(s.value[idx], np.asarray(ref, dtype=float)[:, idx], ctx.rtol / REFINE_RTOL, ctx.atol)
                pick = (rough | coarse) & off & ~s.kink[idx]
                s.rough = idx[pick]
                s.rough_best = np.where(rough[pick], np.inf, (s.truncation[idx] + s.rounding[idx]).max(axis=1)[pick])


def _escalate_pass(ctx: _Context, targets, state) -> None:
    """Rounding-bound elements (the step is too small for |f|): larger steps, Richardson again; elements
    bound by truncation (the step too large for how fast f′ changes): smaller steps."""
    rows = Rows()
    for t, factor in zip(targets, _escalations(ctx, targets, state)):
        s = state[t.id]
        s.esc = np.flatnonzero(factor != 1)
        if s.esc.size:
            s.big = s.h[s.esc] * factor[s.esc]
            e1, d1 = pm(s.esc, s.big, STEPS[0])
            e2, d2 = pm(s.esc, s.big, STEPS[1])
            rows.add(t, e1 + e2, d1 + d2)
    out = run_rows(ctx.runner, rows)
    for t in targets:
        s, idx = state[t.id], state[t.id].esc
        if not idx.size:
            continue
        outs, flags = out[t.id]
        n = idx.size
        p1, m1, sw1 = split(outs[: 2 * n], flags[: 2 * n])
        p2, m2, sw2 = split(outs[2 * n:], flags[2 * n:])
        H = s.big[:, None]
        D1, D2 = (p1 - m1) / (2 * H), (p2 - m2) / (2 * H * REFINE)
        value, trunc = richardson(D1, D2)
        rounding = difference_rounding(p2, m2, ctx.terms_of(t)) / (H * REFINE)
        old = (s.truncation[idx] + s.rounding[idx]).max(axis=1)
        better = ~(sw1 | sw2) & ((trunc + rounding).max(axis=1) < old) & np.all(np.isfinite(value), axis=1)
        take = idx[better]
        s.value[take], s.truncation[take], s.rounding[take] = value[better], trunc[better], rounding[better]
        s.escalated = int(better.sum())


def _kink_pass(ctx: _Context, targets, state) -> None:
    """At ±TIE·h: is each kink on the point, or beside it (then that small step is the derivative)?"""
    rows = Rows()
    for t in targets:
        s = state[t.id]
        s.kinked = np.flatnonzero(s.kink)
        both = np.concatenate([s.kinked, s.rough])
        rows.add(t, *pm(both, s.h[both], TIE))
    out = run_rows(ctx.runner, rows)
    for t in targets:
        s, kinked = state[t.id], state[t.id].kinked
        none = (np.zeros((0, s.value.shape[1])), np.zeros(0, dtype=bool))  # a target with neither: no rows
        plus, minus, switched = split(*out.get(t.id, none))
        k, centre = kinked.size, ctx.centre_of(t)
        s.at = np.zeros(t.n, dtype=bool)
        s.near = np.full(s.value.shape, np.nan)
        s.near_error = np.full(s.value.shape, np.inf)
        narrow = np.zeros(k, dtype=bool)
        if k:
            small = s.h[kinked, None] * TIE
            kp, km = plus[:k], minus[:k]
            s.at[kinked] = switched[:k] if ctx.sees else kinks.jump_kept(s, kinked, kp, km, centre, small)
            # off the kink, a step of TIE·h does not reach it: that difference is the derivative at v
            near = (kp - km) / (2 * small)
            if not ctx.sees:  # opaque code: only where the small step shows no jump did it stay off the kink
                big = kinks.gap(s.plus[kinked], s.minus[kinked], centre, s.h[kinked, None])
                clear = np.all(np.abs(kinks.gap(kp, km, centre, small)) <= kinks.CLEAR * np.abs(big), axis=1)
                near = np.where(clear[:, None], near, np.nan)
                # not clear: a kink within TIE·h, or a forward that changes fast at the scale of h (a pole,
                # a near-singular matrix, a domain's edge the step reaches): the narrowed pass tells them apart
                # (a jump kept at ±TIE·h is a kink on the point, unless the function is smooth between ±TIE·h
                # and ±REFINE·TIE·h: a fast oscillation whose jumps at h and TIE·h agree by chance)
                narrow = ~clear
            s.near[kinked] = near
            s.near_error[kinked] = difference_rounding(kp, km, ctx.terms_of(t)) / small
        # the narrowed pass's elements, sorted: the kinks off the point not cleared, and the rough elements
        idx = np.concatenate([kinked[narrow], s.rough])
        pick = np.concatenate([np.flatnonzero(narrow), k + np.arange(s.rough.size)])
        order = np.argsort(idx, kind="stable")
        idx, pick = idx[order], pick[order]
        small = s.h[idx, None] * TIE
        s.narrow, s.narrow_small = idx, (plus[pick], minus[pick], small)
        # a pole (or a domain's edge, or a jump in value): the slopes' jump grows as the step shrinks, where
        # a kink's stays as it is (at most the jump between its branches)
        big = kinks.gap(s.plus[idx], s.minus[idx], centre, s.h[idx, None])
        little = kinks.gap(plus[pick], minus[pick], centre, small)
        with np.errstate(invalid="ignore"):
            s.narrow_pole = ~np.all(np.isfinite(big) & np.isfinite(little), axis=1) | \
                np.any(np.abs(little) > kinks.POLE * np.abs(big), axis=1)
    _narrowed_pass(ctx, targets, state)
    for t in targets:
        s = state[t.id]
        s.classes = kinks.classes(np.flatnonzero(s.at), s.upper - s.lower, s.rounding)
        s.pairs = [p for members in s.classes for p in kinks.pairs(members)]


def _narrowed_pass(ctx: _Context, targets, state) -> None:
    """For code whose branches cannot be seen: the kink elements off the point whose slopes still jump at
    ±TIE·h, and the rough elements (`_refine_pass`), at ±REFINE·TIE·h too; then, for a pole (its slopes'
    jump grows as the step shrinks, a kink's does not: a kink within TIE·h is on the point), at pairs of
    steps NARROW times smaller, up to NARROW_LEVELS pairs. Where the jump shrinks with the step (as f''·h
    does), the forward is smooth at v on that scale: the element is differenced there instead
    (Richardson, as any element), and is no kink; one still too coarse for the tolerance goes on to the
    next pair. A pole, or a rough element, smooth at no pair has no difference to trust: unreliable (its
    truncation infinite), never a kink whose slopes are secants across a pole."""
    todo = {t.id: (state[t.id].narrow, *state[t.id].narrow_small) for t in targets if state[t.id].narrow.size}
    best = {t.id: _narrow_best(state[t.id]) for t in targets}  # per narrow element: its estimate so far
    left = {t.id: narrow_rows(t.n, projected=False) for t in targets}  # the rows each may still run
    for level in range(NARROW_LEVELS):
        rows = Rows()
        for t in targets:
            if t.id in todo:
                idx, _, _, small = todo[t.id]
                need = len(SIDES) * idx.size * (2 if level else 1)
                if need > left[t.id]:  # past its share: what is left undecided stays so
                    del todo[t.id]
                    continue
                left[t.id] -= need
                if level:  # a new pair of steps, NARROW times the last: both are new rows
                    rows.add(t, *pm(idx, small[:, 0], 1.0))
                rows.add(t, *pm(idx, small[:, 0], REFINE))
        if not rows.items:
            break
        out = run_rows(ctx.runner, rows)
        nxt = {}
        for t in targets:
            if t.id not in todo:
                continue
            s, (idx, plus1, minus1, small) = state[t.id], todo[t.id]
            plus, minus, _ = split(*out[t.id])
            if level:  # this level's first step's rows, then its REFINE step's
                plus1, minus1, plus, minus = plus[:idx.size], minus[:idx.size], plus[idx.size:], minus[idx.size:]
            centre, terms = ctx.centre_of(t), ctx.terms_of(t)
            where = np.searchsorted(s.narrow, idx)  # each element's place in s.narrow (sorted: _kink_pass)
            noise = difference_rounding(plus1, minus1, terms) / small
            smooth = kinks.smooth_at(plus1, minus1, plus, minus, centre, small, REFINE, noise)
            # a jump kept at ±TIE·h (on the point) is smooth only where its jump stands above rounding: one
            # lost in the noise of a large sum is no evidence against the kink
            kept = s.at[idx]
            smooth &= ~kept | np.all(np.abs(kinks.gap(plus1, minus1, centre, small)) > kinks.JUMP_ROUNDING * noise, axis=1)
            value, truncation = richardson((plus1 - minus1) / (2 * small), (plus - minus) / (2 * REFINE * small))
            rounding = difference_rounding(plus, minus, terms) / (REFINE * small)
            estimate = (truncation + rounding).max(axis=1)
            better = smooth & (estimate < best[t.id][where])
            take = idx[better]
            best[t.id][where[better]] = estimate[better]
            s.value[take], s.truncation[take], s.rounding[take] = value[better], truncation[better], rounding[better]
            s.kink[take], s.at[take], s.near[take], s.near_error[take] = False, False, np.nan, np.inf
            # on to the next pair: smooth, too coarse for the tolerance and bound by truncation (a smaller
            # step rounds more, truncates less); or, for a pole, smooth at none yet
            coarse = _coarse(value, truncation, rounding, ctx.rtol, ctx.atol, _largest(s, ctx.reference.get(t.id)))
            again = np.where(np.isfinite(best[t.id][where]), better & coarse & (truncation.max(axis=1) > rounding.max(axis=1)),
                             ~smooth & s.narrow_pole[where])
            if again.any():
                # NARROW times smaller, or straight to RELATIVE of the element's own size where that is
                # smaller still (a value near a domain's edge at 0: log, sqrt at 1e-12 need no eight levels)
                size = np.abs(t.x[idx[again]])[:, None]
                nxt[t.id] = (idx[again], None, None,
                             np.minimum(small[again] * NARROW, np.where(size > 0, RELATIVE * size, np.inf)))
        todo = nxt
    for t in targets:
        s = state[t.id]
        s.narrowed = int(np.count_nonzero(best[t.id] < _narrow_best(s)))
        rough = np.zeros(s.narrow.size, dtype=bool)
        rough[np.searchsorted(s.narrow, s.rough)] = True
        lost = s.narrow[~np.isfinite(best[t.id]) & (s.narrow_pole | rough)]
        s.kink[lost], s.near[lost], s.near_error[lost], s.truncation[lost] = False, np.nan, np.inf, np.inf


def narrow_rows(n: int, projected: bool) -> int:
    """The most rows the narrowed steps may run for a target of n elements (the cost model adds them):
    NARROW_SHARE of its planned rows, element by element; along projections, every level for every
    direction (a few directions, each a whole row)."""
    every_level = 2 * len(SIDES) * NARROW_LEVELS  # one element (or direction) through every level
    if projected:
        return every_level * plan.PLAN.projections
    return max(int(NARROW_SHARE * plan.PLAN.rows(n, projected=False)), every_level * NARROW_FLOOR)


def _narrow_best(s: PassState) -> np.ndarray:
    """Per element of s.narrow (sorted): the estimate a narrowed difference must beat to replace its
    value — a rough element's smooth difference's own; inf for the rest (kinks, not smooth, off the domain)."""
    best = np.full(s.narrow.size, np.inf)
    if s.rough.size:
        best[np.searchsorted(s.narrow, s.rough)] = s.rough_best
    return best


def _coarse(value, truncation, rounding, rtol: float, atol: float, row: float) -> np.ndarray:
    """Per element (or direction): its error estimate (SAFETY times) is past half the tolerance it will be
    judged at (at least ROW_FLOOR of `row`, its target's largest value: `_largest`): too coarse to decide."""
    scale = np.maximum(np.abs(value), ROW_FLOOR * row)
    with np.errstate(invalid="ignore"):
        return ~np.all(SAFETY * (truncation + rounding) <= np.maximum(atol, rtol * scale) / 2, axis=1)


def _largest(s: PassState, ref) -> float:
    """A target's largest finite difference or reference value (what the verdict's ROW_FLOOR scales)."""
    parts = [s.value] + ([] if ref is None else [np.asarray(ref, dtype=float)])
    return max(float(np.max(np.abs(np.where(np.isfinite(p), p, 0.0)), initial=0.0)) for p in parts)

def _pair_pass(ctx: _Context, targets, state) -> None:
    """Pairs of kink elements on the point moved together: a pair that keeps its tie is one group."""
    rows = Rows()
    for t in targets:
        e, d = [], []
        for i, j in state[t.id].pairs:
            hh = min(state[t.id].h[i], state[t.id].h[j])
            e += [np.array([i, j]), np.array([i, j])]
            d += [np.array([hh, hh]), np.array([-hh, -hh])]
        rows.add(t, e, d)
    out = run_rows(ctx.runner, rows)
    for t in targets:
        s = state[t.id]
        s.groups = []
        if s.pairs:
            plus, minus, switched = split(*out[t.id])
            if not ctx.sees:
                switched = kinks.jump_joint(s, s.pairs, plus, minus, ctx.centre_of(t))
            s.groups = kinks.union([p for p, sw in zip(s.pairs, switched) if not sw], np.flatnonzero(s.at))
        grouped: np.ndarray | list = np.concatenate(s.groups) if s.groups else []
        for members in s.classes:
            alone = np.setdiff1d(members, grouped)
            if alone.size >= 3:
                s.groups.append(alone)  # no pair keeps a tie, but all of them together may (a k-way tie)


def _tie_pass(ctx: _Context, targets, state) -> None:
    """Each group moved together: if it keeps its tie, the tie's slope, shared evenly."""
    rows = Rows()
    for t in targets:
        e, d = [], []
        for members in state[t.id].groups:
            hh = state[t.id].h[members].min()
            e += [members, members]
            d += [np.full(members.size, hh), np.full(members.size, -hh)]
        rows.add(t, e, d)
    out = run_rows(ctx.runner, rows)
    for t in targets:
        s = state[t.id]
        s.ties = []
        if not s.groups:
            continue
        plus, minus, switched = split(*out[t.id])
        if not ctx.sees:
            switched = kinks.jump_joint(s, s.groups, plus, minus, ctx.centre_of(t))
        for k, members in enumerate(s.groups):
            if switched[k]:
                continue  # moving them together still switches: not a tie, judge one by one
            slope = (plus[k] - minus[k]) / (2 * s.h[members].min())
            s.ties.append((members, slope))
            s.value[members] = slope / members.size


def _result(s: PassState) -> NumericResult:
    return NumericResult(
        "exhaustive", estimate=(s.truncation + s.rounding).T, truncation=s.truncation.T,
        kink=s.kink, value=s.value.T, at_kink=s.at, lower=s.lower.T, upper=s.upper.T,
        near=s.near.T, near_error=s.near_error.T, groups=s.ties,
        left_domain=not np.all(np.isfinite(s.value)), refined=int(s.doubt.size),
        escalated=s.escalated, narrowed=s.narrowed)


def _in_doubt(d1: np.ndarray, ref, rtol: float, atol: float) -> np.ndarray:
    """Per element: True unless the first step already agrees well inside the tolerance."""
    if ref is None:
        return np.ones(d1.shape[0], dtype=bool)
    ref = np.asarray(ref, dtype=float).T  # (n, out)
    scale = np.maximum(np.abs(d1), np.abs(ref))
    ok = np.isfinite(d1) & (np.abs(d1 - ref) <= np.maximum(atol, REFINE_RTOL * rtol * scale))
    return ~ok.all(axis=1)


def _escalations(ctx: _Context, targets, state) -> list:
    """Per target, per element, how many times larger a step should be (1 = none): for elements whose
    error estimate is too large to judge at `rtol`, larger where rounding dominates it, smaller where
    truncation does (none without a reference).
    Every target side by side, (N, out): elementwise, but for each target's largest scale."""
    if not targets:
        return []
    edges = np.cumsum([0] + [t.n for t in targets])
    states = [state[t.id] for t in targets]
    value = np.concatenate([s.value for s in states])
    ref = _references(ctx, targets, value.shape[1]).T
    scale = np.maximum(np.abs(ref), np.abs(value))
    finite = np.where(np.isfinite(scale), scale, 0.0).max(axis=1, initial=0.0)
    row = np.repeat(np.maximum.reduceat(finite, edges[:-1]), np.diff(edges))[:, None]  # each target's largest
    need = np.maximum(ctx.atol, ctx.rtol * np.maximum(scale, ROW_FLOOR * row))
    truncation = np.concatenate([s.truncation for s in states])
    rounding = np.concatenate([s.rounding for s in states])
    kink = np.concatenate([s.kink for s in states])
    est = truncation + rounding
    ratio = np.where(need > 0, SAFETY * est / np.where(need > 0, need, 1.0), np.inf)
    judged = (ratio > 1) & np.isfinite(value) & ~kink[:, None]
    bound = judged & (rounding >= truncation)
    larger = np.where(bound, ratio, 0.0).max(axis=1)
    # bound by truncation (∝ h²) instead, in no output by rounding: a smaller step (an ill-conditioned
    # forward, a matrix near singular: its h³ term large), at most SHRINK_MAX times smaller
    smaller = np.where(judged & ~bound, ratio, 0.0).max(axis=1)
    factor = np.where(larger > 1, np.clip(4.0 * larger, 8.0, ESCALATE_MAX),
                      np.where(smaller > 1, np.clip(0.5 / np.sqrt(np.maximum(smaller, 1.0)), 1 / SHRINK_MAX, 1 / 8), 1.0))
    return [np.ones(t.n) if ctx.reference.get(t.id) is None else factor[a:b]
            for t, a, b in zip(targets, edges[:-1], edges[1:])]


# --- projections -------------------------------------------------------------------------------

def _projection(runner: Runner, t: Target, centre, step, rng, reference, rtol: float, atol: float,
                directions: int) -> NumericResult:
    """vᵀJ along `directions` random ±1 directions (the plan's projections); as for single elements, a
    direction whose first difference is already well within the tolerance of backprop's projection
    gets no second step."""
    u = rng.integers(0, 2, size=(directions, t.n), dtype=np.int8) * np.int8(2) - np.int8(1)
    h = step * max(1.0, float(np.abs(t.x).max(initial=0.0)))
    plus, minus, kink = _along(runner, t, u, h)
    with np.errstate(all="ignore"):
        d1 = (plus - minus) / (2 * h)
        value, truncation = d1.copy(), np.zeros_like(d1)
        rounding = difference_rounding(plus, minus, runner.terms) / h
        ref = None if reference is None else (u.astype(float) @ np.asarray(reference, dtype=float).T)
        doubt = np.flatnonzero(_in_doubt(d1, None if ref is None else ref.T, rtol, atol))
        if doubt.size:
            p2, m2, k2 = _along(runner, t, u[doubt], h * STEPS[1])
            d2 = (p2 - m2) / (2 * h * REFINE)
            value[doubt], truncation[doubt] = richardson(d1[doubt], d2)
            rounding[doubt] = difference_rounding(p2, m2, runner.terms) / (h * REFINE)
            kink[doubt] |= k2
            off = ~np.all(np.isfinite(value[doubt]), axis=1)
            if off.any() and not getattr(runner, "sees_branches", True):
                # code whose branches cannot be seen, whose steps along these directions left its domain (every
                # element moves by h: past 0 for values below it): narrowed (not where the function is merely
                # not smooth along them: a direction crosses every kink on the point at once)
                centre_row = np.broadcast_to(np.asarray(centre, dtype=float).ravel(), plus.shape[1:])
                _narrowed_directions(runner, t, u, doubt[off], h, centre_row, value, truncation, rounding, rtol, atol)
    return NumericResult("projection", estimate=truncation + rounding, truncation=truncation,
                         kink=kink, directions=u, projected=value, refined=int(doubt.size),
                         left_domain=not np.all(np.isfinite(value)))


def _narrowed_directions(runner: Runner, t: Target, u: np.ndarray, which: np.ndarray, h: float, centre,
                         value, truncation, rounding, rtol: float, atol: float) -> None:
    """The projections `which` whose steps ±h, ±h/2 leave the function's domain (a direction moves every
    element by h: past 0 for values below it), differenced at pairs of steps
    TIE·h, then NARROW times smaller, up to NARROW_LEVELS pairs: a pair where the function is smooth and
    finite gives the direction's value (in place), as the narrowed pass does for elements, and one still
    too coarse for the tolerance, bound by truncation, goes on to the next."""
    small = h * TIE
    todo = which
    best = np.full(value.shape[0], np.inf)
    left = narrow_rows(t.n, projected=True)  # the rows it may run, in all
    for _ in range(NARROW_LEVELS):
        need = 2 * len(SIDES) * todo.size
        if not todo.size or need > left:
            return
        left -= need
        p1, m1, _ = _along(runner, t, u[todo], small)
        p2, m2, _ = _along(runner, t, u[todo], small * REFINE)
        noise = difference_rounding(p1, m1, runner.terms) / small
        with np.errstate(all="ignore"):
            smooth = kinks.smooth_at(p1, m1, p2, m2, centre, np.full((todo.size, 1), small), REFINE, noise)
            v, tr = richardson((p1 - m1) / (2 * small), (p2 - m2) / (2 * small * REFINE))
            ro = difference_rounding(p2, m2, runner.terms) / (small * REFINE)
            estimate = (tr + ro).max(axis=1)
            better = smooth & np.all(np.isfinite(v), axis=1) & (estimate < best[todo])
            coarse = _coarse(v, tr, ro, rtol, atol, float(np.max(np.abs(np.where(np.isfinite(v), v, 0.0)), initial=0.0)))
        take = todo[better]
        value[take], truncation[take], rounding[take], best[take] = v[better], tr[better], ro[better], estimate[better]
        found = np.isfinite(best[todo])
        again = np.where(found, better & coarse & (tr.max(axis=1) > ro.max(axis=1)), True)
        todo, small = todo[again], small * NARROW


def _along(runner: Runner, t: Target, u: np.ndarray, h: float):
    """f at x ± h·u for each direction u: (f+ (P, out), f− (P, out), switched (P,))."""
    n_rows = 2 * u.shape[0]
    if max(1, runner.width(t.id)) * n_rows <= CHUNK_ELEMENTS:  # one batch: no chunking to plan
        signs = np.tile(np.array(SIDES) * h, u.shape[0])[:, None]
        probe = Probe(t.id, np.arange(n_rows), None, np.repeat(u, 2, axis=0) * signs)
        outs, flags = runner.run([probe], n_rows)
        return split(np.asarray(outs, dtype=float).reshape(n_rows, -1), np.asarray(flags, dtype=bool))
    rows = Rows()
    e: list[None] = []
    d: list[Callable[..., np.ndarray]] = []  # dense rows: each makes its delta vector when its chunk runs
    for k in range(u.shape[0]):
        for f in SIDES:
            e.append(None)
            d.append(lambda k=k, f=f: (f * h) * u[k])
    rows.add(t, e, d)
    return split(*run_rows(runner, rows)[t.id])
