"""A Python layer's backprop against an exact reference (autodiff through its forward): every
element compared, and only where they disagree differenced one by one; without a reference, the
differences alone (random projections of every input at once, or element by element)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..checking import per_output, pipeline, verdict
from ..core.settings import Settings
from ..core.status import Status
from ..core.tolerances import ROW_FLOOR
from ..core.streams import Stream, stream
from ..oracles import complexstep, numeric
from .layouts import ROUNDING
from .pyrunner import FunctionRunner, Subset
from .pysource import USER_ERRORS
from .usercode import Layer, call_backward, call_on_copies, node_line

POLICY = pipeline.POLICIES["python"]


@dataclass(kw_only=True)
class Again:
    """The backward called again at the point itself, once, before its rounding is first measured by a rerun
    at a nudged point: a backward that keeps state between its calls (a buffer never zeroed, a count, a table
    filled on first use, unseeded noise) would have its drift taken for rounding, and its tolerance loosened as
    far (a wrong gradient passed so). Shared by a target's copies (LayerInputs.again)."""
    grads: list                  # the backward's gradients at the point, per input (its first call's)
    drifted: dict | None = None  # None until asked; then {input: (why, the line that sets it)}


def drifted(layer: Layer, upstream: np.ndarray, args: list, grads: list) -> dict:
    """Per input whose gradient the backward gives otherwise when called again at the same point, past
    rounding (layouts.ROUNDING of its largest element, as torch's runs at one point are held): (why, line)."""
    again, failed = call_backward(layer, upstream, args)
    if failed:
        return {name: (f"the backward raised when called again at the same point ({why}): a gradient must be a "
                       "function of the point", None) for name, (why, _) in failed.items()}
    found = {}
    with np.errstate(all="ignore"):
        for name, first, second in zip(layer.names, grads, again):
            if np.array_equal(first, second, equal_nan=True):
                continue
            scale = float(np.max(np.abs(first), initial=0.0))
            off = float(np.max(np.abs(second - first), initial=0.0))
            if np.isfinite(off) and off <= ROUNDING * scale:
                continue
            found[name] = (f"the backward gave another d{name} when called again at the same point (by up to "
                           f"{off:.3g}): it keeps state between its calls (a buffer never zeroed, a count, unseeded "
                           "noise?), and a gradient must be a function of the point", node_line(layer, name))
    return found


@dataclass(frozen=True, kw_only=True)
class LayerInputs:
    """A Python layer's inputs as one target of the check step (pipeline.CheckTarget), as a gate's
    operands are: Σ upstream ⊙ forward as a function of every input element, concatenated; or, with
    `index`, of those elements alone (the rest held at the point). A backward that failed for some
    input is not rerun, and gets neither the kink analysis nor the complex step."""
    layer: Layer
    forward: FunctionRunner              # the runner over every input element
    args: list
    upstream: np.ndarray
    backprop: np.ndarray                 # (1, n): every element's, or those of `index`
    settings: Settings
    seed: np.random.Generator
    failed: bool = False
    projections: bool = False
    index: np.ndarray | None = None      # the flat elements checked alone, or None for all
    differences: numeric.NumericResult | None = None
    noise: np.ndarray | None = None
    symbolic: pipeline.Symbolic | None = None
    again: Again | None = None           # the backward called again at the point, before its rounding is measured

    @cached_property
    def runner(self) -> FunctionRunner | Subset:
        return self.forward if self.index is None else Subset(self.forward, self.index)

    @property
    def elements(self) -> numeric.Target:
        return numeric.Target("inputs", self.runner.x.copy(), projections=self.projections)

    @property
    def groups(self) -> np.ndarray:
        """Each element's input (tolerances are per input)."""
        sizes = np.diff(self.forward.offsets)
        groups = np.repeat(np.arange(len(sizes)), sizes)
        return groups if self.index is None else groups[self.index]

    @property
    def complex_step(self) -> complexstep.ThroughForward | None:
        if not self.settings.complex_step or self.failed or self.index is not None:
            return None
        return complexstep.ThroughForward(forward=self.layer.forward, args=self.args, upstream=self.upstream,
                                          offsets=self.forward.offsets, batched=bool(self.forward.batched))

    def rerun(self, delta: float) -> np.ndarray | None:
        if self.failed or not self.layer.rerun:
            return None
        if self.again is not None:
            if self.again.drifted is None:
                self.again.drifted = drifted(self.layer, self.upstream, self.args, self.again.grads)
            if self.again.drifted:  # its drift is not its rounding: none measured (the caller fails those inputs)
                return None
        moved, failed = call_backward(self.layer, self.upstream * (1 + delta), [a * (1 + delta) for a in self.args])
        if failed:
            return None
        row = np.concatenate([np.ravel(m) for m in moved])[None, :]
        return row if self.index is None else row[:, self.index]

    def references(self) -> list[tuple[str, np.ndarray]]:
        return []  # the user's code: its branches cannot be seen, so explain() tells its kinks

    def explain(self, ev: verdict.Evidence) -> verdict.Evidence:
        if self.failed or self.index is not None:
            return ev
        s = self.settings
        return per_output.explain(ev, self.forward.outputs, self._backward, self.forward.x, np.ravel(self.upstream),
                                  s.h, s.rtol, s.atol)

    def _backward(self, upstream: np.ndarray) -> np.ndarray:
        moved, _ = call_backward(self.layer, upstream.reshape(np.shape(self.upstream)), self.args)
        return np.concatenate([np.ravel(m) for m in moved])


def compare_inputs(inputs: LayerInputs, ref: np.ndarray | None, budget: int
                   ) -> tuple[pipeline.Compared, ByReference | None, str | None]:
    """(the comparison, ByReference or None, why the reference was dropped or None). All inputs are one
    target, as for a gate alone: random projections cover every input at once, and only a failure (or
    a small layer) is differenced element by element, to name the element; with an exact reference,
    every element is compared with it and only where they disagree are the elements differenced."""
    whole = replace(inputs, projections=inputs.forward.x.size > budget)
    if ref is not None:
        compared = pipeline.compare(replace(inputs, projections=True), inputs.settings, replace(POLICY, recheck_work=0))
        by_ref = _against_reference(inputs, ref, compared, budget)
        if isinstance(by_ref, ByReference):
            return compared, by_ref, None
        return pipeline.compare(whole, inputs.settings, POLICY), None, by_ref
    return pipeline.compare(whole, inputs.settings, POLICY), None, None


def per_input(inputs: LayerInputs, compared: pipeline.Compared, point: int) -> list | None:
    """Each input's own comparison, where the projections over every input at once fail and were not
    redone element by element (too many calls): along random directions within that input alone, the
    others held at the point, so a failure is that input's and never its neighbours' (along directions
    only: a forward that takes no batch axis is called once per direction). None otherwise, and when no
    input fails alone (then the joint failure stands for every input: no false pass)."""
    offsets = inputs.forward.offsets
    if (compared.num.method != "projection" or len(offsets) <= 2
            or verdict.summarize(compared.evidence).status != Status.FAIL):
        return None
    bp = np.ravel(inputs.backprop)
    own = []
    for k, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        alone = replace(inputs, index=np.arange(lo, hi), backprop=bp[None, lo:hi], projections=True, differences=None,
                        noise=None, seed=stream(inputs.settings.seed, Stream.PYTHON_PER_INPUT, point, k))
        own.append(pipeline.compare(alone, inputs.settings, replace(POLICY, recheck_work=0)))  # directions only
    if all(verdict.summarize(c.evidence).status != Status.FAIL for c in own):
        return None  # no input fails alone: the joint failure stands for all (an error spread thin over several)
    return own


def reference_gradients(layer: Layer, u: np.ndarray, args: list) -> np.ndarray | None:
    """The reference's gradients, flat, or None where it has none (the forward is not autodiff code)."""
    try:
        grads = call_on_copies(layer.reference, u, args, calls=2)
    except USER_ERRORS:  # noqa: BLE001 - no reference: the differences alone judge, as for any layer
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


def _against_reference(inputs: LayerInputs, ref: np.ndarray, compared: pipeline.Compared,
                       cap: int) -> ByReference | str:
    """Every element of backprop against the reference, and the elements where they disagree
    differenced one by one (at most `cap`, the worst first); or, when the reference itself fails a
    random projection, why it is not used."""
    num, settings, bp = compared.num, inputs.settings, np.ravel(inputs.backprop)
    own = verdict.evidence(ref[None, :], num, None, None, None, settings.rtol, settings.atol)
    if Status.of_code(int(own.codes.max(initial=0))) == Status.FAIL:
        return ("autodiff through the forward disagrees with the finite differences along a random direction (a kink "
                "in the way, or a detach, .data, in-place or non-differentiable op in the forward): each element "
                "differenced instead")
    with np.errstate(all="ignore"):
        magnitude = np.maximum(np.where(np.isfinite(ref), np.abs(ref), 0.0), np.where(np.isfinite(bp), np.abs(bp), 0.0))
        per_input = np.zeros(int(np.max(inputs.groups, initial=0)) + 1)
        np.maximum.at(per_input, inputs.groups, magnitude)
        scale = per_input[inputs.groups]  # each input at its own scale: one huge entry loosens no other input
        tol = np.maximum(settings.atol, settings.rtol * np.maximum.reduce(
            [np.abs(bp), np.abs(ref), np.full(bp.shape, ROW_FLOOR * scale)]))
        excess = np.where(np.isfinite(bp), np.abs(bp - ref) / np.where(tol > 0, tol, 1e-300), np.inf)
    off = np.flatnonzero(excess > 1.0)
    left = max(0, off.size - cap)
    if left:
        off = np.sort(off[np.argsort(-excess[off], kind="stable")[:cap]])
    if not off.size:
        return ByReference(off, None, 0, num.projected.shape[0])
    alone = replace(inputs, index=off, backprop=bp[None, off], projections=False)
    found = pipeline.compare(alone, settings, replace(POLICY, recheck_work=0))
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
