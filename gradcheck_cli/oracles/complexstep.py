"""The complex step as an oracle: φ'(x)·e_j = Im φ(x + i·H·e_j) / H has no subtractive cancellation,
so it is exact to rounding with H = 1e-20 (Squire & Trapp 1998; Martins, Sturdza & Alonso 2003) and
sees a backward wrong by 1e-7 of its value, which no finite difference can.

- `.grad` files: a node whose every gate on the way to the output is complex-analytic (the registry's
  `analytic`) gets its numeric column from the complex step (`columns`); the others keep the centered
  differences, which tell kinks from bugs.
- A user's Python (opt-in: `complex_step=True`, `--complex-step`): code that is not complex-safe (it
  raises, drops the imaginary part, or takes abs of it) is told by comparing with the finite
  differences: then the complex step is not used for it, and the report says so — never a wrong verdict."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..language.graph import Composite
from .batches import BatchRunner, Rows, run_rows
from .numeric import ROUNDING, NumericResult, Target
from ..core.tolerances import EPS, TERMS_ROUNDING, largest_abs

H = 1e-20          # the complex step (any tiny step will do: nothing cancels)
VARY = 1.3         # the step scaled by this (not a power of 2, which would round alike) measures its own rounding
GRAPH_H = 1e-100   # .grad files: smaller, so H times an intermediate's derivative stays far below 1 even
                   # where it is huge (exp(exp(x)): 1e116), and far above underflow where it is tiny
RTOL = 1e-11       # backprop must agree with the complex step to this, relative to the row's largest
AGREE = 10.0       # the complex step must agree with the finite differences within this many of their error estimates


def derivatives(forward: Callable[[list], Any], args: list, upstream: np.ndarray, offsets: list,
                batched: bool) -> tuple[np.ndarray, None] | tuple[None, str]:
    """Im Σ upstream ⊙ forward(x + iH·e_j) / H for every input element j: (n,) and None, or None and
    why the code is not complex-safe."""
    x = np.concatenate([np.ravel(a) for a in args]).astype(complex)
    n = x.size
    u = np.ravel(upstream)

    def call(rows):  # rows (r, n) complex -> (r,) directional derivatives
        parts = [rows[:, lo:hi].reshape((rows.shape[0],) + np.shape(a)) for a, lo, hi in zip(args, offsets[:-1], offsets[1:])]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            if batched:
                out = np.asarray(forward([np.ascontiguousarray(p) for p in parts]))
                return _imag(out, rows.shape[0]) @ u / H
            return np.array([(_imag(np.asarray(forward([p[r].copy() for p in parts])), 1) @ u)[0]
                             for r in range(rows.shape[0])]) / H
    try:
        values = np.concatenate([call(x[None, :] + 1j * H * np.eye(n)[lo:hi]) for lo, hi in _chunks(n)])
    except _NotComplex as err:
        return None, str(err)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything on complex inputs
        return None, f"it raised {type(exc).__name__} on complex inputs"
    return values, None


@dataclass(frozen=True, kw_only=True)
class CrossCheck:
    """Backprop against the complex step of a user's forward: where it is not used, why; else the
    elements where backprop disagrees with it (flat) and the largest error off the kinks, relative to
    the row's largest."""
    unused: str | None                  # why the complex step was not used (the code is not complex-safe)
    failing: np.ndarray                 # flat indices of the elements where backprop disagrees with it
    error: float                        # the largest error off the kinks, relative to the row's largest
    values: np.ndarray | None = None    # its derivatives, flat (None where it was not used)


NOT_COMPLEX_SAFE = ("it disagrees with the finite differences (abs, a comparison or a cast on the imaginary part: "
                    "the code is not complex-safe)")


@dataclass(frozen=True, kw_only=True)
class ThroughForward:
    """The complex step through a user's forward (opt-in): a cross-check of backprop after the
    differences, used only where it agrees with them. It never stands in for the differences."""
    forward: Callable[[list], Any]
    args: list
    upstream: np.ndarray
    offsets: list
    batched: bool

    def columns(self) -> NumericResult | None:
        return None

    def rounding(self, num: NumericResult) -> np.ndarray:
        return np.zeros_like(num.estimate)  # (no column of `num` is its own)

    def terms(self, num: NumericResult) -> np.ndarray | None:
        return None  # its columns are never the verdict's (cross_check weighs backprop's rounding itself)

    def off_kinks(self, num: NumericResult) -> NumericResult | None:
        return None

    def cross_check(self, num: NumericResult, bp: np.ndarray, noise: Callable[[], np.ndarray]) -> CrossCheck:
        """Backprop (flat) against the complex step; `noise()` backprop's own rounding, asked for only
        where some element disagrees."""
        cs, why = derivatives(self.forward, self.args, self.upstream, self.offsets, self.batched)
        nothing = np.zeros(0, dtype=int)
        if cs is None:
            return CrossCheck(unused=why, failing=nothing, error=0.0)
        assert num.value is not None  # exhaustive differences
        kinked = np.ravel(num.kink)
        usable, failing, err = judge(cs, num.value[0], num.estimate[0], bp, None, kinked)
        if usable and failing.size:  # backprop's rounding: as measured, and at least ε of the terms it sums
            rounded = np.maximum(np.ravel(noise()), TERMS_ROUNDING * EPS * self.terms_size())
            usable, failing, err = judge(cs, num.value[0], num.estimate[0], bp, rounded, kinked)
        if not usable:
            return CrossCheck(unused=NOT_COMPLEX_SAFE, failing=nothing, error=0.0)
        return CrossCheck(unused=None, failing=failing, error=err, values=cs)

    def terms_size(self) -> float:
        """The size of the terms a derivative of Σ upstream ⊙ forward sums, as the graph's `scale` is:
        Σ |upstream ⊙ output| over the inputs' size (no less than 1); 0 where the forward cannot be run."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                out = (np.asarray(self.forward([np.asarray(a)[None] for a in self.args]))[0] if self.batched
                       else np.asarray(self.forward([np.array(a, copy=True) for a in self.args])))
                total = float(np.sum(np.abs(np.ravel(self.upstream)) * np.abs(np.ravel(out).astype(float))))
            except Exception:  # noqa: BLE001 - the user's code may raise anything; then no floor
                return 0.0
        return _per_input(total if np.isfinite(total) else 0.0, self.args)


class _NotComplex(Exception):
    pass


def _imag(out: np.ndarray, rows: int) -> np.ndarray:
    if not np.iscomplexobj(out):
        raise _NotComplex("its output is real: the imaginary part was dropped on the way (a cast to float?)")
    return np.imag(out).reshape(rows, -1)


def _chunks(n: int, size: int = 256) -> list:
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def judge(cs: np.ndarray, fd: np.ndarray, fd_error: np.ndarray, bp: np.ndarray, noise: np.ndarray | None,
          kinked: np.ndarray):
    """(usable, failing elements, worst error): the complex step is usable where it agrees with the
    finite differences within AGREE× their error estimate (a wrong backward does not enter this);
    then backprop must agree with it to RTOL of the row's scale, plus backprop's own rounding.
    Elements at a kink are left to the differences' verdict (no derivative to be exact about)."""
    smooth = ~np.asarray(kinked, dtype=bool)
    scale = max(float(np.max(np.abs(cs[smooth]), initial=0.0)), 1e-300)
    usable = np.abs(cs - fd) <= AGREE * fd_error  # (the estimate is never 0: it counts the differences' rounding)
    if not np.all(usable[smooth]):
        return False, np.zeros(0, dtype=int), 0.0
    allowed = RTOL * scale + (0.0 if noise is None else np.ravel(noise))
    err = np.where(smooth, np.abs(bp - cs), 0.0)
    return True, np.flatnonzero(err > allowed), float(np.max(err, initial=0.0)) / scale


# --- .grad files ------------------------------------------------------------------------------------

def analytic_nodes(graph, reach: set) -> set:
    """The nodes whose every gate on the way to the output is complex-analytic (a user gate when
    every gate of its body is): the complex step differentiates them exactly."""
    ok: dict = {}
    gates: dict = {}  # a user gate's body is walked once, however many calls (gates calling gates: 2^k)
    for node in reversed(graph.nodes[: graph.output + 1]):
        users = [c for c in graph.consumers[node.id] if c in reach]
        ok[node.id] = all(analytic(graph.nodes[c].gate, gates) and ok.get(c, False) for c in users)
    return {nid for nid, good in ok.items() if good and nid in reach}


def analytic(gate, memo: dict | None = None) -> bool:
    """A registry gate's declaration; a user gate is analytic when every gate of its body is."""
    if not isinstance(gate, Composite):
        return gate.analytic
    memo = {} if memo is None else memo
    if id(gate) not in memo:
        memo[id(gate)] = all(analytic(n.gate, memo) for n in gate.body.nodes if n.gate is not None)
    return memo[id(gate)]


@dataclass(frozen=True, kw_only=True)
class OnRunner:
    """The complex step through the engine's runner (a graph's node, a gate call): its exact columns
    up front where the way to the output is analytic, its own rounding, and a second opinion off the
    kinks where the differences fail. `scale` is the function's own (see exact_columns)."""
    runner: BatchRunner
    target: Target
    scale: float
    up_front: bool = False   # its columns stand in for the differences (else they were run already, or not at all)

    def columns(self) -> NumericResult | None:
        return exact_columns(self.runner, [self.target], self.scale).get(self.target.id) if self.up_front else None

    def rounding(self, num: NumericResult) -> np.ndarray:
        return rounding(self.runner, self.target, num)

    def terms(self, num: NumericResult) -> np.ndarray | None:
        """The function's own scale over the target's size, per element of `num`: the size of the terms
        a derivative that cancels sums (as the complex step's own rounding is counted, `columns`)."""
        return np.full(np.shape(num.estimate), _per_input(self.scale, [self.target.x]))

    def off_kinks(self, num: NumericResult) -> NumericResult | None:
        return off_kinks(self.runner, self.target, num, self.scale)

    def cross_check(self, num: NumericResult, bp: np.ndarray, noise: Callable[[], np.ndarray]) -> CrossCheck | None:
        return None  # its columns are judged by the verdict, as any numeric column


def exact_columns(runner: BatchRunner, targets: list[Target], scale: float | dict) -> dict:
    """The complex step for each target it differentiates, NumericResults by target id: not those where
    some intermediate's imaginary part left the linear regime (autodiff.IMAG_LIMIT), poisoning their
    rows with nan — the caller differences those instead: never a wrong verdict.
    `scale` is the function's own (the largest |adjoint|·|value| of its nodes): a derivative that is a
    cancellation of terms that large rounds at ε of it (softmax's rows summing to 1); a dict of them
    by target id where each target is its own function (runners.Each)."""
    exact = columns(runner, targets, scale=scale)
    return {t.id: exact[t.id] for t in targets if np.isfinite(exact[t.id].value).all()}


def rounding(runner: BatchRunner, target: Target, num: NumericResult) -> np.ndarray:
    """The complex step's own error, per element (0 where its elements are differences): how far it
    moves with the step scaled by VARY, scaled up to the whole error. Intermediates round at ε of
    their imaginary parts, which are H times their derivatives: where those are large and cancel (a
    softmax's tied rows), what is left is that rounding over H, and it moves with H."""
    moved = columns(runner, [target], GRAPH_H * VARY)[target.id].value
    with np.errstate(all="ignore"):
        err = np.abs(moved - num.value) * VARY / (VARY - 1)
    return np.where(np.asarray(num.exact, dtype=bool) & np.isfinite(err), err, 0.0)


def off_kinks(runner: BatchRunner, target: Target, num: NumericResult, scale: float) -> NumericResult | None:
    """A second opinion where the differences fail a node behind a kink gate: the complex step at
    every element where they saw no branch switch (the kink gates follow the real part, which it
    never moves, so it differentiates the branch the point is on, exactly), the differences at the
    kinks. None where an intermediate leaves its linear regime."""
    exact = columns(runner, [target], scale=scale)[target.id]
    if not np.all(np.isfinite(exact.value)):
        return None
    off = ~np.asarray(num.kink, dtype=bool)
    assert exact.value is not None and num.value is not None  # the complex step's columns; exhaustive differences
    return NumericResult("complex step (differences at kinks)", np.where(off, exact.estimate, num.estimate),
                         np.where(off, 0.0, num.truncation), num.kink, value=np.where(off, exact.value, num.value),
                         at_kink=num.at_kink, lower=num.lower, upper=num.upper, groups=num.groups, near=num.near,
                         near_error=num.near_error, exact=off)


def columns(runner: BatchRunner, targets: list[Target], h: float = GRAPH_H, scale: float | dict = 0.0) -> dict:
    """The complex step for every element of each target (a node of the graph), one complex row per
    element run in the engine's batches: target id -> NumericResult, exact to rounding: ε of the
    value and of the function's `scale` over the target's (as a difference's rounding is ε·|f|/h)."""
    rows = Rows()
    for t in targets:
        rows.add(t, [np.array([j]) for j in range(t.n)], [np.array([1j * h])] * t.n)
    out = run_rows(runner, rows)
    results = {}
    for t in targets:
        value = (np.imag(out[t.id][0]) / h).T  # (out, n)
        zero = np.zeros(t.n, dtype=bool)
        floor = _per_input(scale[t.id] if isinstance(scale, dict) else scale, [t.x])
        results[t.id] = NumericResult("complex step", ROUNDING * EPS * (np.abs(value) + floor), np.zeros_like(value), zero,
                                      value=value, at_kink=zero, lower=value, upper=value, exact=True)
    return results


def _per_input(scale: float, inputs: list) -> float:
    """A function's scale (Σ or max of |adjoint|·|value|) over its inputs' largest size, no less than 1:
    the size of the terms a derivative with respect to them sums, where they cancel."""
    largest = max((largest_abs(np.asarray(x, dtype=float)) for x in inputs), default=0.0)
    return scale / max(1.0, largest)
