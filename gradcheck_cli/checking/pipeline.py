"""One check of one target, whatever the target: the whole graph as a function of one node, one gate
call, a user's Python layer (and next, a framework's backward).

A target kind hands in a `CheckTarget`: a numeric runner (it evaluates perturbed copies), backprop's
flat row, how to rerun its backward nudged (its own rounding), SymPy's values, the valid chain rules
at kinks, an explanation of kinks for code whose chain rules cannot be computed, and the complex
step (`ComplexStep`), each where the kind has one. `compare` does the rest, the same way for every
kind: the differences (or the complex step's exact columns), the comparison, the rounding measured,
a failed projection redone element by element, kinks explained by a valid chain rule, the complex
step's second opinion and cross-check. The intended differences between kinds are the rows of
POLICIES, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar, overload

import numpy as np

from ..oracles import numeric
from ..oracles.complexstep import CrossCheck
from . import verdict
from ..core.meter import active, count
from ..core.settings import Settings
from ..core.tolerances import NOISE_STEP
from ..core.status import Status

Result = TypeVar("Result")
# backprop rerun with every value scaled by (1 + delta): in kind with `bp` (an array, or a list of them), or None
Rerun = Callable[[float], np.ndarray | list | None]


@dataclass(frozen=True)
class Policy:
    """How one kind of target is checked, where kinds differ."""
    recheck_work: int        # a failed projection is redone element by element when the runner counts at most
                             # this much work for it (else the row fails unnamed: no minute-long rerun)
    noise_first: bool        # backprop's rounding measured before judging (else only where a row fails without it)
    noise_signs: tuple       # the nudges that measure it: ± (two reruns), or + alone (a user's backward is dear)
    second_scales: tuple     # the second point moves every input by ~scale·(|v| + 1); smaller ones tried in turn
    second_opinion: bool     # a row whose element-by-element differences fail is judged again with the complex
                             # step off its kinks (the differences at them), where the target has the complex step

    @property
    def second_attempts(self) -> int:
        """The forward passes the second point may take: each scale, moved each of SECOND_MOVES' ways."""
        return len(SECOND_MOVES) * len(self.second_scales)


SECOND_MOVES = (False, True)   # the second point's moves, in turn: by ~scale·(|v| + 1), then relative, by ~scale·|v|


POLICIES = {
    # a graph's rounding is one more backward for every node at once; its recheck holds the graph's rows
    "graph": Policy(recheck_work=500_000_000, noise_first=True, noise_signs=(1, -1), second_scales=(0.1, 0.02, 0.004),
                    second_opinion=True),
    "gate": Policy(recheck_work=400_000_000, noise_first=True, noise_signs=(1, -1), second_scales=(0.1, 0.02, 0.004),
                   second_opinion=False),
    # the user's own Python: each call of their backward is dear, so rounding is measured only on demand
    "python": Policy(recheck_work=200_000_000, noise_first=False, noise_signs=(1,), second_scales=(0.1, 0.02, 0.004),
                     second_opinion=False),
}


@dataclass(frozen=True, kw_only=True)
class Symbolic:
    """SymPy's exact values of a target's row and the magnitudes of the terms summed into them, (out, n)."""
    values: np.ndarray
    magnitudes: np.ndarray


class ComplexStep(Protocol):
    """The complex step for one target (oracles/complexstep.py: `OnRunner`, `ThroughForward`)."""

    def columns(self) -> numeric.NumericResult | None:
        """Its exact columns, in place of the differences; None where they are not used so."""

    def rounding(self, num: numeric.NumericResult) -> np.ndarray:
        """Its own rounding, per element of `num` (0 where `num` holds differences)."""

    def terms(self, num: numeric.NumericResult) -> np.ndarray | None:
        """The size of the terms a derivative of the target sums, per element of `num`, as far as it
        can tell without SymPy (backprop's rounding is ε of them); None where it cannot."""

    def off_kinks(self, num: numeric.NumericResult) -> numeric.NumericResult | None:
        """The element-by-element differences `num` with its exact columns off their kinks; None where it has none."""

    def cross_check(self, num: numeric.NumericResult, bp: np.ndarray,
                    noise: Callable[[], np.ndarray]) -> CrossCheck | None:
        """Backprop (flat) against it after the differences `num`, where it agrees with them; `noise()`
        backprop's rounding. None where its columns are judged by the verdict instead."""


class CheckTarget(Protocol):
    """What the check step needs of one target: a graph's node (checking/targets.GraphNode), a gate
    call (gatecheck.GateCall), a Python layer's inputs (python/reference.LayerInputs)."""

    @property
    def runner(self) -> numeric.Runner:
        """Evaluates the function at perturbed copies of the elements."""

    @property
    def elements(self) -> numeric.Target:
        """The flat elements the runner perturbs, one by one or along random projections."""

    @property
    def backprop(self) -> np.ndarray:
        """Backprop's row, (out, n)."""

    @property
    def groups(self) -> np.ndarray | None:
        """Which input each element belongs to, where the row joins several (a layer's inputs): each
        input is judged at its own scale, so one huge entry cannot loosen another's tolerance. None:
        one scale for the row."""

    @property
    def differences(self) -> numeric.NumericResult | None:
        """The differences already run (a graph runs every node's at once), else None."""

    @property
    def noise(self) -> np.ndarray | None:
        """Backprop's rounding already measured (a graph's, one backward for every node), else None."""

    @property
    def symbolic(self) -> Symbolic | None:
        """SymPy's exact row, or None."""

    @property
    def complex_step(self) -> ComplexStep | None:
        """The complex step for this target, or None."""

    @property
    def seed(self) -> int | np.random.Generator | None:
        """What draws the random projections (None: the settings' seed)."""

    def rerun(self, delta: float) -> np.ndarray | None:
        """Backprop with every value scaled by (1 + delta), or None where it cannot be rerun."""

    def references(self) -> list[tuple[str, np.ndarray]]:
        """The valid chain rules at kinks [(convention, (out, n))], asked for only when a kink element fails."""

    def explain(self, ev: verdict.Evidence) -> verdict.Evidence:
        """`ev` with failing kink elements explained where this kind can (per_output.explain), else `ev`."""


@dataclass(frozen=True, kw_only=True)
class Compared:
    """A target's finite differences and the per-element comparison with backprop."""
    num: numeric.NumericResult
    evidence: verdict.Evidence
    complex_step: CrossCheck | None = None   # backprop against the complex step after the differences, if run


def compare(target: CheckTarget, settings: Settings, policy: Policy) -> Compared:
    """Judge one target: the differences (run already, the complex step's exact columns, or run now),
    then `judged`; a row whose element-by-element differences fail is judged again with the complex
    step off its kinks where the policy says so; then the complex step's cross-check, where it has one."""
    if active():
        count("row")
        count("element", int(np.size(target.backprop)))
    step = target.complex_step
    first = first_differences(target, settings)
    compared, noise = judged(target, first, settings, policy)
    if (policy.second_opinion and step is not None and first.method == "exhaustive"
            and _worst(compared.evidence) == Status.FAIL):
        second = step.off_kinks(first)  # a difference that fails may be wrong
        if second is not None:
            compared, noise = judged(target, second, settings, policy, noise)
    if step is not None and compared.num.method == "exhaustive":
        def measured() -> np.ndarray:
            return noise if noise is not None else rounding(target.rerun, target.backprop, policy.noise_signs)
        cross = step.cross_check(compared.num, np.ravel(target.backprop), measured)
        compared = replace(compared, complex_step=cross)
    return compared


def first_differences(target: CheckTarget, settings: Settings) -> numeric.NumericResult:
    """The target's first numeric row: its differences run already, else the complex step's exact
    columns, else its differences run now."""
    first = target.differences
    if first is None and target.complex_step is not None:
        first = target.complex_step.columns()
    if first is None:
        first = _difference(target, target.elements, settings)
    return first


def compare_many(targets: list, settings: Settings, policy: Policy) -> list[Compared]:
    """`compare` of each target, the same Compared for each, with the common case done for many at once:
    a target whose differences and rounding are in hand (a graph's nodes) is compared in one `evidence`
    over the targets' rows side by side (each judged at its own scale, every comparison elementwise), and
    where nothing fails that is its whole check step. The rest (projections, ties, a failing element,
    the targets that must run their differences) go through `compare` one by one."""
    done: list[Compared | None] = [None] * len(targets)
    batches: dict = {}
    for i, target in enumerate(targets):
        num = target.differences
        if (num is None or target.noise is None or num.method == "projection" or num.groups
                or target.groups is not None or np.size(target.backprop) == 0):
            continue
        terms = _terms(target, num)
        key = (np.shape(target.backprop)[0], target.symbolic is not None, terms is not None)
        batches.setdefault(key, []).append((i, terms))
    for members in batches.values():
        found = _evidence_side_by_side([targets[i] for i, _ in members], [terms for _, terms in members], settings)
        for (i, _), ev in zip(members, found):
            if _worst(ev) == Status.FAIL:
                continue  # judged again on its own: the steps a failing row takes
            target = targets[i]
            if active():
                count("row")
                count("element", int(np.size(target.backprop)))
            compared = Compared(num=ev.num, evidence=ev)
            step = target.complex_step
            if step is not None and ev.num.method == "exhaustive":
                noise = target.noise
                cross = step.cross_check(ev.num, np.ravel(target.backprop), lambda noise=noise: noise)
                compared = replace(compared, complex_step=cross)
            done[i] = compared
    return [c if c is not None else compare(t, settings, policy) for c, t in zip(done, targets)]


def _evidence_side_by_side(targets: list, terms: list, settings: Settings) -> list[verdict.Evidence]:
    """`judged`'s first comparison of each target (its differences, its rounding, SymPy's row), made
    in one `verdict.evidence` over their rows joined along n and split back."""
    nums = [t.differences for t in targets]
    widths = [num.kink.size for num in nums]
    edges = np.cumsum([0] + widths)
    k = np.shape(targets[0].backprop)[0]

    def joined(get):
        parts = [get(num) for num in nums]
        if all(p is None for p in parts):
            return None
        return np.concatenate([np.full((k, w), np.nan) if p is None else np.asarray(p) for p, w in zip(parts, widths)],
                              axis=1)
    if all(np.ndim(num.exact) == 0 for num in nums):  # one flag per target (a deep chain's thousands): repeated
        exact = np.repeat(np.array([bool(num.exact) for num in nums], dtype=bool), widths)
    else:
        exact = np.concatenate([np.broadcast_to(np.asarray(num.exact, dtype=bool), (w,)) for num, w in zip(nums, widths)])
    together = numeric.NumericResult(
        "side by side", estimate=joined(lambda n: n.estimate), truncation=joined(lambda n: n.truncation),
        kink=np.concatenate([num.kink for num in nums]), value=joined(lambda n: n.value),
        at_kink=np.concatenate([num.at_kink for num in nums]), lower=joined(lambda n: n.lower),
        upper=joined(lambda n: n.upper), near=joined(lambda n: n.near), near_error=joined(lambda n: n.near_error),
        exact=exact if exact.any() else False)
    sym = [t.symbolic for t in targets]
    ev = verdict.evidence(
        np.concatenate([np.asarray(t.backprop, dtype=float) for t in targets], axis=1), together,
        np.concatenate([np.asarray(t.noise) for t in targets], axis=1),
        None if sym[0] is None else np.concatenate([s.values for s in sym], axis=1),
        None if terms[0] is None else np.concatenate([m if type(m) is np.ndarray and m.shape == (k, w) else np.broadcast_to(m, (k, w))
                                                      for m, w in zip(terms, widths)], axis=1),
        settings.rtol, settings.atol, groups=np.repeat(np.arange(len(targets)), widths))
    return [verdict.columns(ev, int(start), int(end), num) for start, end, num in zip(edges[:-1], edges[1:], nums)]


def judged(target: CheckTarget, num: numeric.NumericResult, settings: Settings, policy: Policy,
           noise: np.ndarray | None = None) -> tuple[Compared, np.ndarray | None]:
    """The comparison of backprop with `num`, and backprop's rounding where it was measured: the
    rounding measured first or only where a row fails (the policy's), the complex step's own where
    its exact columns fail, a failed projection redone element by element, kinks explained by a valid
    chain rule or the target's own explanation."""
    bp = target.backprop
    noise = target.noise if noise is None else noise

    def judge(num, z):
        sym = target.symbolic
        return verdict.evidence(bp, num, z, None if sym is None else sym.values, _terms(target, num),
                                settings.rtol, settings.atol, groups=target.groups)

    if noise is None and policy.noise_first:
        noise = rounding(target.rerun, bp, policy.noise_signs)
    ev = judge(num, noise)
    if noise is None and _worst(ev) != Status.PASS:
        noise = rounding(target.rerun, bp, policy.noise_signs)
        ev = judge(num, noise)
    step = target.complex_step
    if np.any(num.exact) and step is not None and _worst(ev) == Status.FAIL:  # the complex step rounds too
        noise = np.maximum(np.zeros_like(bp) if noise is None else noise, step.rounding(num))
        ev = judge(num, noise)
    # A failed projection is redone element by element, to name the element; so is one that passes only
    # by the measured rounding, which may be a branch the rerun flipped (seen as a kink element by element).
    if num.method == "projection" and (_worst(ev) == Status.FAIL or (
            noise is not None and np.any(noise) and _worst(judge(num, None)) == Status.FAIL)):
        whole = replace(target.elements, projections=False)
        if target.runner.work(whole) <= policy.recheck_work:
            num = _difference(target, whole, settings)
            ev = judge(num, noise)
    if _worst(ev) == Status.FAIL and np.any(ev.context["kink"]):
        ev = verdict.by_chain_rule(ev, target.references())
    if _worst(ev) == Status.FAIL and np.any(ev.context["kink"]):
        ev = target.explain(ev)
    return Compared(num=num, evidence=ev), noise


def _terms(target: CheckTarget, num: numeric.NumericResult) -> np.ndarray | None:
    """The size of the terms a derivative of the target sums, (out, n): SymPy's, else the complex
    step's estimate where `num` holds its exact columns (backprop rounds at ε of them), else None."""
    if target.symbolic is not None:
        return target.symbolic.magnitudes
    step = target.complex_step
    return step.terms(num) if step is not None and (num.exact is True or np.any(num.exact)) else None


def _difference(target: CheckTarget, elements: numeric.Target, settings: Settings) -> numeric.NumericResult:
    seed = settings.seed if target.seed is None else target.seed
    return numeric.differentiate(target.runner, [elements], settings.h, settings.rtol, settings.atol,
                                 {elements.id: target.backprop}, seed)[elements.id]


def _worst(ev: verdict.Evidence) -> Status:
    """The worst element's status of a comparison, without writing its notes."""
    return Status.of_code(int(ev.codes.max(initial=0)))


@overload
def rounding(rerun: Rerun, bp: np.ndarray, signs: tuple) -> np.ndarray: ...
@overload
def rounding(rerun: Rerun, bp: list, signs: tuple) -> list: ...
def rounding(rerun: Rerun, bp: np.ndarray | list, signs: tuple) -> np.ndarray | list:
    """How far backprop moves when rerun with every value nudged by NOISE_STEP·sign: its own rounding,
    per element (`bp` an array, or a list of arrays that `rerun` answers in kind)."""
    parts = bp if isinstance(bp, list) else [bp]
    noise = [np.zeros(np.shape(p)) for p in parts]
    for sign in signs:
        moved = rerun(sign * NOISE_STEP)
        if moved is None:
            continue
        moved = moved if isinstance(moved, list) else [moved]
        with np.errstate(all="ignore"):
            noise = [np.maximum(z, verdict.finite_or(np.abs(np.asarray(m, dtype=float) - p), 0.0))
                     for z, m, p in zip(noise, moved, parts)]
    return noise if isinstance(bp, list) else noise[0]


def second_point(points: list, draws: list, evaluate: Callable[[list], Result | None],
                 policy: Policy, move: Callable[..., np.ndarray | None] | None = None
                 ) -> tuple[list, Result] | None:
    """`evaluate(moved)` at the first of the policy's scales where it is defined (not None): every
    input moved by ~scale·(|v| + 1)·draw; then, where none of those is, by ~scale·|v|·draw (each
    element in proportion to itself: its sign kept and a zero left at zero, as a forward defined only
    for positive inputs needs near 0), or as `move(k, v, draw, scale, relative=...)` says (None: not at
    this scale). Returns (moved, result), or None."""
    for relative in SECOND_MOVES:
        for scale in policy.second_scales:
            candidate = [(moved(v, d, scale, relative) if move is None else move(k, v, d, scale, relative=relative))
                         for k, (v, d) in enumerate(zip(points, draws))]
            if any(m is None for m in candidate):
                continue
            result = evaluate(candidate)
            if result is not None:
                return candidate, result
    return None


def moved(v: np.ndarray, d: np.ndarray, scale: float, relative: bool) -> np.ndarray:
    """A second point's move of one input: by ~scale·(|v| + 1)·d, or, `relative`, by scale·|v|·d (each
    element keeps its sign unless its standard normal draw is past 1/scale: 10 at the largest scale), a
    zero moved to scale·|d| (no second point is the first again: a forward defined for x ≥ 0 is checked
    at positive values)."""
    if relative:
        return np.where(v == 0, scale * np.abs(d), v * (1.0 + scale * d))
    return v + scale * (np.abs(v) + 1.0) * d
