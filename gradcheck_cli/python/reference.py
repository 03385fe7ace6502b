"""A Python layer's backprop against an exact reference (autodiff through its forward): every
element compared, and only where they disagree differenced one by one; without a reference, the
differences alone (random projections of every input at once, or element by element)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..checking import pipeline, verdict
from ..core.settings import Settings
from ..core.status import Status
from ..core.tolerances import ROW_FLOOR
from ..oracles import numeric
from .pyrunner import FunctionRunner, Subset
from .usercode import Layer, call_on_copies

POLICY = pipeline.POLICIES["python"]


def compare_inputs(runner: FunctionRunner, bp: np.ndarray, ref, settings: Settings, budget: int, rng, rerun, explain):
    """(the comparison, ByReference or None, why the reference was dropped or None). All inputs are one
    target, as for a gate alone: random projections cover every input at once, and only a failure (or
    a small layer) is differenced element by element, to name the element; with an exact reference,
    every element is compared with it and only where they disagree are the elements differenced."""
    def compare(projections: bool, policy=POLICY):
        return pipeline.compare(runner, numeric.Target("inputs", runner.x.copy(), projections=projections),
                                bp[None, :], settings, policy, rerun=rerun, explain=explain, seed=rng)
    if ref is not None:
        compared = compare(True, replace(POLICY, recheck_work=0))
        by_ref = _against_reference(runner, bp, ref, compared, settings, rng, rerun, budget)
        if isinstance(by_ref, ByReference):
            return compared, by_ref, None
        return compare(runner.x.size > budget), None, by_ref
    return compare(runner.x.size > budget), None, None


def reference_gradients(layer: Layer, u: np.ndarray, args: list) -> np.ndarray | None:
    """The reference's gradients, flat, or None where it has none (the forward is not autodiff code)."""
    try:
        grads = call_on_copies(layer.reference, u, args, calls=2)
    except Exception:  # noqa: BLE001 - no reference: the differences alone judge, as for any layer
        return None
    if grads is None or any(g is None or np.shape(g) != a.shape for g, a in zip(grads, args)):
        return None
    flat = np.concatenate([np.ravel(np.asarray(g, dtype=float)) for g in grads])
    return flat if np.all(np.isfinite(flat)) else None


@dataclass
class ByReference:
    """Backprop against an exact reference: the elements where they disagree (`index`, flat), the
    differences' evidence on those alone, and how many more disagree than were differenced."""
    index: np.ndarray
    evidence: verdict.Evidence | None
    left: int
    projections: int


def _against_reference(runner: FunctionRunner, bp: np.ndarray, ref: np.ndarray, compared, settings: Settings,
                       rng, rerun, cap: int) -> ByReference | str:
    """Every element of backprop against the reference, and the elements where they disagree
    differenced one by one (at most `cap`, the worst first); or, when the reference itself fails a
    random projection, why it is not used."""
    num = compared.num
    own = verdict.evidence(ref[None, :], num, None, None, None, settings.rtol, settings.atol)
    if Status.of_code(int(own.codes.max(initial=0))) == Status.FAIL:
        return ("autodiff through the forward disagrees with the finite differences along a random direction (a kink "
                "in the way, or a detach, .data, in-place or non-differentiable op in the forward): each element "
                "differenced instead")
    with np.errstate(all="ignore"):
        scale = max(float(np.max(np.abs(ref), initial=0.0)), float(np.max(np.abs(bp), initial=0.0)))
        tol = np.maximum(settings.atol, settings.rtol * np.maximum.reduce(
            [np.abs(bp), np.abs(ref), np.full(bp.shape, ROW_FLOOR * scale)]))
        excess = np.where(np.isfinite(bp), np.abs(bp - ref) / np.where(tol > 0, tol, 1e-300), np.inf)
    off = np.flatnonzero(excess > 1.0)
    left = max(0, off.size - cap)
    if left:
        off = np.sort(off[np.argsort(-excess[off], kind="stable")[:cap]])
    if not off.size:
        return ByReference(off, None, 0, num.projected.shape[0])
    sub = Subset(runner, off)

    def rerun_sub(delta):
        moved = rerun(delta)
        return None if moved is None else moved[:, off]
    found = pipeline.compare(sub, numeric.Target("inputs", sub.x.copy()), bp[None, off], settings,
                             replace(POLICY, recheck_work=0), rerun=rerun_sub, seed=rng)
    return ByReference(off, found.evidence, left, num.projected.shape[0])


def by_differences(ev: verdict.Evidence, whole: verdict.Judgement, num, lo: int, hi: int, shape: tuple):
    """One input's (Judgement, worst element, differences) from the differences:
    its own elements when they were differenced one by one, else the projections of every input at once."""
    if num.method == "projection":
        return whole, None, None
    j = verdict.summarize(ev, np.arange(lo, hi), kink_note=verdict.slopes_kink_note)
    worst = tuple(int(i) for i in np.unravel_index(j.worst[1] - lo, shape)) if len(shape) else None
    return j, worst, num.value[0, lo:hi].reshape(shape)


def by_reference(by_ref: ByReference, whole: verdict.Judgement, lo: int, hi: int, shape: tuple):
    """One input's (Judgement, worst element, method) from the reference and the differences
    at its elements that disagree with it: those decide; the others agree with an exact derivative."""
    cols = np.flatnonzero((by_ref.index >= lo) & (by_ref.index < hi))
    method = (f"every element against autodiff through the forward; differences along {by_ref.projections} "
              "random directions" + (f" and at the {cols.size:,} element{'s' if cols.size > 1 else ''} where they disagree"
                                       if cols.size else ""))
    if not cols.size:
        j = (replace(whole, note=None) if whole.status == "pass" else
             verdict.Judgement(Status.PASS, None, 0.0, None, 0.0, (0, 0), np.zeros((1, 0))))
        return j, None, method
    j = verdict.summarize(by_ref.evidence, cols, kink_note=verdict.slopes_kink_note)
    flat = int(by_ref.index[j.worst[1]]) - lo
    worst = tuple(int(i) for i in np.unravel_index(flat, shape)) if len(shape) else None
    if by_ref.left and j.status == "pass":
        j = verdict.Judgement(Status.WARN, f"{by_ref.left:,} more elements disagree with autodiff through the forward than "
                              "were differenced (past the element budget; --budget raises it)", j.numeric_error,
                              None, j.tolerance, j.worst, j.codes, j.numeric_rounding)
    return j, worst, method
