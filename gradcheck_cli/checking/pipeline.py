"""One check of one target, whatever the target: the whole graph as a function of one node, one gate
call, a user's Python layer (and next, a framework's backward).

A target kind hands in a numeric runner (it evaluates perturbed copies), backprop's flat row and,
optionally, how to rerun its backward nudged (its own rounding), SymPy's values and the valid chain
rules at kinks. `compare` does the rest, the same way for every kind: the differences, the
comparison, the rounding measured, a failed projection redone element by element, kinks explained
by a valid chain rule. The intended differences between kinds are the rows of POLICIES, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar, overload

import numpy as np

from ..oracles import numeric
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


POLICIES = {
    # a graph's rounding is one more backward for every node at once; its recheck holds the graph's rows
    "graph": Policy(recheck_work=500_000_000, noise_first=True, noise_signs=(1, -1), second_scales=(0.1, 0.02, 0.004)),
    "gate": Policy(recheck_work=400_000_000, noise_first=True, noise_signs=(1, -1), second_scales=(0.1, 0.02, 0.004)),
    # the user's own Python: each call of their backward is dear, so rounding is measured only on demand
    "python": Policy(recheck_work=200_000_000, noise_first=False, noise_signs=(1,), second_scales=(0.1, 0.02, 0.004)),
}


@dataclass
class Compared:
    """A target's finite differences and the per-element comparison with backprop."""
    num: numeric.NumericResult
    evidence: verdict.Evidence


def compare(runner: numeric.Runner, target: numeric.Target, bp: np.ndarray, settings: Settings, policy: Policy, *,
            num: numeric.NumericResult | None = None, noise: np.ndarray | None = None, rerun: Rerun | None = None,
            sym: np.ndarray | None = None, mag: np.ndarray | None = None,
            references: Callable[[], list[tuple[str, np.ndarray]]] | None = None,
            explain: Callable[[verdict.Evidence], verdict.Evidence] | None = None,
            seed: int | np.random.Generator | None = None,
            exact_noise: Callable[[numeric.NumericResult], np.ndarray] | None = None) -> Compared:
    """Judge one target: `bp` is backprop's (out, n) row; `num` differences already run (a graph runs
    every node's at once); `noise` backprop's rounding if measured, else `rerun(delta)` gives backprop
    with every value scaled by (1 + delta), None when it fails; `references()` the valid chain rules
    at kinks [(convention, (out, n))], asked for only when a kink element fails; `explain(evidence)`
    the same for code whose chain rules cannot be computed (per_output.explain); `exact_noise(num)`
    the complex step's own rounding, measured only where a row fails against it (complexstep.rounding)."""
    seed = settings.seed if seed is None else seed
    if active():
        count("row")
        count("element", int(np.size(bp)))

    def difference(t):
        return numeric.differentiate(runner, [t], settings.h, settings.rtol, settings.atol, {t.id: bp}, seed)[t.id]

    def judge(num, z):
        return verdict.evidence(bp, num, z, sym, mag, settings.rtol, settings.atol)

    num = difference(target) if num is None else num
    if noise is None and rerun is not None and policy.noise_first:
        noise = rounding(rerun, bp, policy.noise_signs)
    ev = judge(num, noise)
    if noise is None and rerun is not None and _worst(ev) != Status.PASS:
        noise = rounding(rerun, bp, policy.noise_signs)
        ev = judge(num, noise)
    if np.any(num.exact) and exact_noise is not None and _worst(ev) == Status.FAIL:  # the complex step rounds too
        noise = np.maximum(np.zeros_like(bp) if noise is None else noise, exact_noise(num))
        ev = judge(num, noise)
    # A failed projection is redone element by element, to name the element; so is one that passes only
    # by the measured rounding, which may be a branch the rerun flipped (seen as a kink element by element).
    if num.method == "projection" and (_worst(ev) == Status.FAIL or (
            noise is not None and np.any(noise) and _worst(judge(num, None)) == Status.FAIL)):
        whole = replace(target, projections=False)
        if runner.work(whole) <= policy.recheck_work:
            num = difference(whole)
            ev = judge(num, noise)
    if references is not None and _worst(ev) == Status.FAIL and np.any(ev.context["kink"]):
        ev = verdict.by_chain_rule(ev, references())
    if explain is not None and _worst(ev) == Status.FAIL and np.any(ev.context["kink"]):
        ev = explain(ev)
    return Compared(num, ev)


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
                 policy: Policy) -> tuple[list, Result] | None:
    """`evaluate(moved)` at the first of the policy's scales where it is defined (not None): every
    input moved by ~scale·(|v| + 1)·draw. Returns (moved, result), or None."""
    for scale in policy.second_scales:
        moved = [v + scale * (np.abs(v) + 1.0) * d for v, d in zip(points, draws)]
        result = evaluate(moved)
        if result is not None:
            return moved, result
    return None
