"""A torch target's backward in the memory layouts real graphs give it, and run again at the same
point (layouts.py names them and holds the constants).

torch.autograd.gradcheck feeds contiguous tensors only; a graph gives a backward transposed views
(behind `y.t()`), stride-0 ones (behind `y.sum()`), views at a storage offset (a slice), rows of a
wider tensor (behind `torch.cat`) and channels-last ones. A layout must not change a gradient's value,
so each is a comparison, exact up to rounding (of the larger of the value's largest element and the
point's own scale), of the backward's result in that layout with its result in the contiguous layout
at the same values, the contiguous result being checked by the main check as before:

- one call per group of layouts with grad_output (all outputs') and every differentiated input in it
  at once — TRANSPOSED and OFFSET as one group (a permuted view at a storage offset), each other
  layout alone — its outputs compared too, and for the TRANSPOSED group one more with the inputs in
  it and grad_output contiguous (a kernel that takes its tensors to share one layout); only when one
  differs, each layout of the group alone, then each part alone (grad_output; each input), to name
  the culprit; an input given in a layout of its own is tried in it too (`as_given`);
- a backward that writes into a tensor the caller holds (the forward's output, an input) fails, at the
  line of its first in-place call;
- the contiguous call made RUNS times, the first being the main check's own call of the backward at
  the point (bridge.Call): a spread within rounding is a warning (a nondeterministic backward, atomic
  adds), past it a failure; the layouts' comparison allows SPREAD_FACTOR × the spread.

Everything runs in float64 on the inputs' devices, with the main check's seeded grad_output.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import textwrap
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.report import GateRow
from ..core.status import Status
from .bridge import Arguments, Call, UserCode, placed
from .layouts import RUNS, ROUNDING, SPREAD_FACTOR, Layout
from .pysource import USER_ERRORS, branch_writes, exception_text, grad_lines, qualname, user_position, where
from .torch_bridge import computed, floating_outputs
from .usercode import quiet, ran_lines, traced

OFFSET = 3  # the storage offset of the OFFSET layout's views
GAP = 2  # elements between the rows of the GAPPED layout's views (PADDING there)
PADDING = 1234.5  # what a storage holds outside a layout's view (OFFSET's around it, EXPANDED's past it)
# Reading these in a backward is reading memory, not values: a layout failure is placed at such a line.
STORAGE_CALLS = ("set_", "untyped_storage", "storage", "as_strided", "data_ptr", "storage_offset")


@dataclass(kw_only=True)
class Findings:
    """What the layouts and the repeated runs found: rows for the report's gates, and warnings."""
    rows: list[GateRow] = field(default_factory=list)
    warnings: list[tuple[str, int, int]] = field(default_factory=list)  # (message, line, col)


@dataclass(frozen=True, kw_only=True)
class _Result:
    outputs: list[np.ndarray]
    grads: list[np.ndarray]
    wrote: str | None = None  # what the backward wrote into that the caller holds ("its output", "its input x")
    ran: list | None = None   # the backward's lines that ran, in order (traced where it has branches)


class _Stage(enum.Enum):
    FORWARD = "forward"
    BACKWARD = "backward"


class _Raised(Exception):
    """The user's code raised in a layout's call: in its forward or its backward, at `position` in its file
    (line, column), where the traceback reaches it."""

    def __init__(self, exc: BaseException, stage: _Stage, fn):
        super().__init__(exception_text(exc))
        self.text = exception_text(exc)
        self.stage = stage
        self.contiguous = False  # raised for the layout's values contiguous too (the expanded layout's reference)
        path, line = where(fn)
        found = user_position(exc, path)
        self.position = found if found[0] is not None else (line, 1)


def check(code: UserCode, given: Arguments, chosen: tuple[Layout, ...], seed: int,
          first: Call | None = None) -> Findings:
    """The layouts in `chosen` (CONTIGUOUS: the repeated runs only) checked at the given point: one
    call per group of layouts with grad_output and every input in it at once — TRANSPOSED and OFFSET
    together, a permuted view at a storage offset (plus, for EXPANDED, one at the same values
    contiguous); only when that call differs, a third run at the same point (is it the runs' own
    spread?), then each layout of the group alone, then one call per part to name the culprit.
    `first`: the main check's own call of the backward at the point, the first contiguous run (else
    one is made, for a seeded grad_output)."""
    if not chosen:
        return Findings()
    session = _Session(code, given, seed)
    try:
        session.start(first)
    except _Raised:
        return Findings()  # the main check says what it raised
    for group in groups(chosen):
        session.group(group)
    session.as_given()
    return session.findings()


def groups(chosen: tuple[Layout, ...]) -> list[tuple[Layout, ...]]:
    """The calls the layouts in `chosen` take, as groups of layouts one tensor is put in at once:
    TRANSPOSED and OFFSET in one (a permuted view at a storage offset), every other alone."""
    wanted = [layout for layout in chosen if layout is not Layout.CONTIGUOUS]
    if Layout.TRANSPOSED in wanted and Layout.OFFSET in wanted:
        wanted.remove(Layout.OFFSET)
        return [(Layout.TRANSPOSED, Layout.OFFSET) if layout is Layout.TRANSPOSED else (layout,) for layout in wanted]
    return [(layout,) for layout in wanted]


class _Session:
    """One target at one point: its contiguous runs, the tolerance they set, what failed so far."""

    def __init__(self, code: UserCode, given: Arguments, seed: int):
        self.code, self.given = code, given
        self.inputs = [given.values[i].detach().to(torch.float64).contiguous() for i in given.diff]
        self.names = [given.names[i] for i in given.diff]
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self.upstream: list = []
        self.runs: list[_Result] = []
        self.tolerance = ROUNDING
        self.floor = 0.0  # the scale a difference is measured against at least (set by start)
        self.failed: dict[str, str] = {}
        self.warnings: list[tuple[str, int, int]] = []
        # (input, what the forward raised, where) -> the layouts it raised for: the backward was not run
        # (and whether it raised for the layout's values contiguous too: the values, not the layout, are outside
        # the forward's domain, as a square matrix's repeated rows are for an inverse)
        self.forward_raised: dict[tuple[str, str, tuple[int, int], bool], list[str]] = {}
        lines = grad_lines(code.backward, tuple(given.names))  # (the backward returns one per argument)
        self.lines = {n: lines[n] for n in self.names if n in lines}
        every = branch_writes(code.backward, tuple(given.names))  # a gradient several statements write:
        self.branches = {n: every[n] for n in self.names if n in every}  # blamed where one ran (`ran_lines`)
        self.def_line = where(code.backward)[1]
        reading = _storage_line(code.backward)
        self.place = {n: reading or self.lines.get(n, (self.def_line, 1)) for n in self.names}
        self.backward = qualname(code.backward)

    def start(self, first: Call | None) -> None:
        def seeded(outs: list) -> list:
            self.upstream[:] = [torch.randn(tuple(o.shape), generator=self.generator, dtype=torch.float64).to(o.device)
                                for o in outs]
            return _fresh(self.upstream)
        if first is not None and first.outputs and len(first.grads) == len(self.inputs):
            device = self.inputs[0].device
            self.upstream[:] = [torch.from_numpy(np.array(u, dtype=np.float64)).to(device) for u in first.upstream]
            self.runs = [_Result(outputs=list(first.outputs), grads=[
                np.zeros(tuple(t.shape)) if g is None else g for g, t in zip(first.grads, self.inputs)])]
        else:
            self.runs = [_run(self.code, self.given, _fresh(self.inputs), seeded)]
        for _ in range(RUNS - 1):
            self.again()
        self.wrote(self.runs[-1])
        # a value that is 0 at this point (a centred gradient for a constant grad_output, x - mean(x) for a
        # constant x) differs between layouts by rounding alone: measured against its own largest element,
        # that rounding was an error of ~1 and a right kernel failed; it is measured against the point's
        # own scale too (its inputs, outputs and gradients)
        self.floor = max((_largest(a) for a in [*self.runs[0].outputs, *self.runs[0].grads,
                                                *(t.detach().cpu().numpy() for t in self.inputs)]), default=0.0)

    def again(self) -> None:
        """One more contiguous run at the same point; the tolerance allows for the runs' spread."""
        self.runs.append(_run(self.code, self.given, _fresh(self.inputs), _fresh(self.upstream)))
        self.tolerance = max(ROUNDING, SPREAD_FACTOR * _spread(self.runs)[0])

    def trial(self, group: tuple[Layout, ...], ins: list, ups: list) -> tuple[_Result, _Result]:
        """(the reference, the call) with the inputs and grad_output given where not None (in `group`)."""
        moved = [t.clone() if m is None else m for t, m in zip(self.inputs, ins)]
        views = [u.clone() if m is None else m for u, m in zip(self.upstream, ups)]
        try:  # the expanded layout repeats values: its reference is those values, contiguous
            reference = self.runs[0] if Layout.EXPANDED not in group else _run(
                self.code, self.given, [m.contiguous().clone() for m in moved], [v.contiguous().clone() for v in views])
        except _Raised as raised:
            raised.contiguous = True
            raise
        got = _run(self.code, self.given, moved, views, trace=bool(self.branches))
        self.wrote(got)
        return reference, got

    def wrote(self, result: _Result) -> None:
        """Every gradient failed when the backward wrote into a tensor the caller holds."""
        if result.wrote is None:
            return
        for name in self.names:
            self.failed.setdefault(name, (
                f"the backward writes into {result.wrote}, a tensor the caller holds (and autograd may have saved): "
                "after the backward its value has changed, so the caller reads a wrong value and a second backward "
                "through the graph is wrong (torch raises 'modified by an inplace operation'); compute the "
                "gradient in a new tensor"))
            self.place[name] = _in_place_line(self.code.backward) or self.place[name]

    def differs(self, reference: _Result, got: _Result) -> bool:
        return any(_differs(a, b, self.tolerance, self.floor) is not None
                   for a, b in zip(got.outputs + got.grads, reference.outputs + reference.grads))

    def group(self, group: tuple[Layout, ...]) -> None:
        """One call with grad_output and the inputs in `group`'s layouts; on a difference, each layout
        of the group alone, then (when none alone tells it) each part in the group's."""
        ups = [_made(group, u, upstream=True) for u in self.upstream]
        ins = [_made(group, t, upstream=False) for t in self.inputs]
        if all(m is None for m in ups + ins):
            return
        mixed = Layout.TRANSPOSED in group and any(m is not None for m in ups) and any(m is not None for m in ins)

        def differ() -> bool:  # and, for a dense layout other than the contiguous one, the inputs in it with
            # grad_output contiguous: a kernel that walks its tensors' storages in step, taking them all to share
            # one layout, is right when they do (DenseMul.apply(a.t(), w) is not)
            return self.differs(*self.trial(group, ins, ups)) or (
                mixed and self.differs(*self.trial(group, ins, [None] * len(self.upstream))))
        try:
            if not differ():
                return
            if len(self.runs) == RUNS:  # one more run at the same point: is the difference the runs' own spread?
                self.again()
                if not differ():
                    return
        except _Raised:
            pass
        if len(group) > 1:  # which layout of the group: each alone, as if called alone
            said = self.said()
            for layout in group:
                self.group((layout,))
            if self.said() != said:
                return
        if any(m is not None for m in ups):  # the one call differs or raised: each part alone says which
            self.upstream_alone(group, next(u for u, m in zip(self.upstream, ups) if m is not None))
        for k, made in enumerate(ins):
            if made is not None:
                self.input_alone(group, k)

    def said(self) -> tuple[int, int, int]:
        """How much has been found so far: failed gradients, warnings, layouts a forward raised for."""
        return len(self.failed), len(self.warnings), sum(len(v) for v in self.forward_raised.values())

    def as_given(self) -> None:
        """The inputs in the layouts the caller gave them in (`torch.check(F, (a.t(),))`), when one is not
        contiguous: the same values contiguous must give the same gradients."""
        given = [self.given.values[i].detach().to(torch.float64) for i in self.given.diff]
        moved = [None if t.is_contiguous() else t.clone() for t in given]  # (clone keeps a dense layout's strides)
        for k, made in enumerate(moved):
            if made is None:
                continue
            said = f"{self.names[k]} is in the layout it was given in (strides {tuple(made.stride())})"
            alone: list = [None] * len(self.inputs)
            alone[k] = made
            try:
                reference, got = self.trial((), alone, [None] * len(self.upstream))
            except _Raised as raised:
                self.failed.setdefault(self.names[k], f"when {said}, the Function raised {raised.text}")
                continue
            self.blame_gradients(said, got, reference, f"{self.names[k]} contiguous at the same values")

    def upstream_alone(self, group: tuple[Layout, ...], sample: torch.Tensor) -> None:
        """grad_output alone in `group` (`sample`: one of them, as given), the inputs contiguous."""
        said = _said(group, sample, "grad_output")
        try:
            reference, got = self.trial(group, [None] * len(self.inputs),
                                        [_made(group, u, upstream=True) for u in self.upstream])
        except _Raised as raised:
            for name in self.names:
                self.failed.setdefault(name, f"when {said}, the backward raised {raised.text}")
            return
        self.blame_gradients(said, got, reference, "a contiguous grad_output of the same values")

    def input_alone(self, group: tuple[Layout, ...], k: int) -> None:
        input_name = self.names[k]
        said = _said(group, self.inputs[k], input_name)
        alone: list = [None] * len(self.inputs)
        alone[k] = _made(group, self.inputs[k], upstream=False)
        try:
            reference, got = self.trial(group, alone, [None] * len(self.upstream))
        except _Raised as raised:
            applied = _applied(group, self.inputs[k], upstream=False)
            named = " and ".join(str(layout) for layout in applied)
            if raised.stage is _Stage.FORWARD:  # the forward's own limit: one warning at its line, layouts listed
                listed = self.forward_raised.setdefault((input_name, raised.text, raised.position, raised.contiguous), [])
                listed.extend(str(layout) for layout in applied if str(layout) not in listed)
                return
            self.warnings.append((f"{self.backward}: not checked with {input_name} in the {named} layout: when "
                                  f"{said}, it raised {raised.text}", *raised.position))
            return
        out_bad = [b for b in (_differs(a, b, self.tolerance, self.floor) for a, b in zip(got.outputs, reference.outputs))
                   if b is not None]
        if out_bad and input_name not in self.failed:
            self.failed[input_name] = (f"the forward's output is wrong when {said} (error {out_bad[0][0]:.1e} of its "
                                       "largest): it reads the input's memory as if it were contiguous")
            self.place[input_name] = where(self.code.forward)[1], 1
            return
        self.blame_gradients(said, got, reference, f"{input_name} contiguous at the same values")

    def blame_gradients(self, said: str, got, reference, against: str) -> None:
        """Each gradient that differs under a layout from the contiguous run (`against` says which),
        failed with its element, unless it has failed already."""
        for name, a, b in zip(self.names, got.grads, reference.grads):
            bad = _differs(a, b, self.tolerance, self.floor)
            if bad is not None and name not in self.failed and name in (ran := ran_lines(self.branches, got.ran)) \
                    and self.place[name] == self.lines.get(name):  # (a storage-reading line is the one to blame)
                self.place[name] = ran[name]
            if bad is not None and name not in self.failed:
                err, at = bad
                self.failed[name] = (f"wrong when {said}: {_element(name, at)} is {a[at]:.6g} there, {b[at]:.6g} "
                                     f"with {against} (error {err:.1e} of its largest)")

    def row(self, name: str, kind: str, err: float | None, tol: float, note: str, line_col=None) -> GateRow:
        line, col = line_col or self.place[name]
        return GateRow(name=self.backward, gate=kind, input=name, line=line, col=col, call_line=self.def_line,
                       status=Status.FAIL, numeric_error=err, symbolic_error=None, tolerance=tol, point=1, note=note)

    def findings(self) -> Findings:
        """A failing row per gradient whose runs spread past rounding, else per gradient a layout changed; a
        warning for a spread within rounding."""
        forward = qualname(self.code.forward)
        found = Findings(warnings=list(self.warnings) + [
            (f"{forward} raised at the values {name} has in the expanded layout (its first row repeated), laid out "
             f"contiguously too: those values are outside its domain, so {self.backward} was not checked with {name} "
             f"expanded: {text}" if contiguous else
             f"{forward} raised when {name} was {_listed(layouts)}, so {self.backward} was not checked with it "
             f"there: {text}", *position)
            for (name, text, position, contiguous), layouts in self.forward_raised.items()])
        spread, spreads = _spread(self.runs)
        runs = len(self.runs)
        if spread > ROUNDING:
            for name, s, (lo, hi, at) in zip(self.names, spreads, _ranges(self.runs)):
                if s > ROUNDING:
                    found.rows.append(self.row(name, "runs", s, ROUNDING, (
                        f"nondeterministic: {runs} runs at the same point differ by {s:.1e} of its largest element, "
                        f"past rounding ({ROUNDING:.1e}): {_element(name, at)} varies by {hi - lo:.1e} around "
                        f"{lo:.6g}"), self.lines.get(name, (self.def_line, 1))))
        elif spread > 0:
            found.warnings.append((f"{self.backward} is a nondeterministic backward: run-to-run spread {spread:.0e}, "
                                   f"within rounding ({runs} runs at the same point; the layouts' comparison allows "
                                   "for it)", self.def_line, 1))
        for name in self.names:  # a layout that changes nothing adds no row: the rows stay those of the main check
            if name in self.failed and name not in {r.input for r in found.rows}:
                found.rows.append(self.row(name, "layouts", None, self.tolerance, self.failed[name]))
        return found


def _listed(layouts: list) -> str:
    """'in the transposed layout', 'in the transposed, expanded and gapped layouts'."""
    if len(layouts) == 1:
        return f"in the {layouts[0]} layout"
    return f"in the {', '.join(layouts[:-1])} and {layouts[-1]} layouts"


def _fresh(tensors: list) -> list:
    """Copies: a forward or backward that writes into its arguments changes no other call's."""
    return [t.clone() for t in tensors]


def _run(code: UserCode, given: Arguments, inputs: list, upstream, trace: bool = False) -> _Result:
    """One forward and one backward: the inputs as leaves keeping their layout (the Function given
    copies of them in the same layout, torch_bridge.computed), `upstream` as given (or made from the
    outputs, when it is a function)."""
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    given_inputs = [computed(t) for t in leaves]
    with torch.enable_grad(), quiet():
        try:
            outs = floating_outputs(code.call(*placed(given.values, given.diff, given_inputs)))
        except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
            raise _Raised(exc, _Stage.FORWARD, code.forward) from None
        # what the caller holds after the forward (its outputs, its inputs as the forward left them): a
        # backward must not write into them (torch raises "modified by an inplace operation" at a second
        # backward through the graph; the caller's own value is wrong meanwhile)
        held = [t.detach().clone() for t in outs + given_inputs]
        try:
            given_upstream = upstream(outs) if callable(upstream) else upstream
            grads, ran = traced(code.backward if trace else None, lambda: torch.autograd.grad(
                outs, leaves, grad_outputs=given_upstream, allow_unused=True))
        except USER_ERRORS as exc:  # noqa: BLE001
            raise _Raised(exc, _Stage.BACKWARD, code.backward) from None
    names = [f"its output{'' if len(outs) == 1 else f' {k + 1}'}" for k in range(len(outs))] + \
            [f"its input {given.names[i]}" for i in given.diff]
    wrote = next((name for name, before, now in zip(names, held, outs + given_inputs) if not _same(before, now.detach())),
                 None)
    as_numpy = [o.detach().to(torch.float64).cpu().numpy() for o in outs]
    return _Result(outputs=as_numpy, grads=[np.zeros(tuple(t.shape)) if g is None else
                                            g.detach().to(torch.float64).cpu().numpy() for g, t in zip(grads, leaves)],
                   wrote=wrote, ran=ran)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same shape and values (nan where both are nan)."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def _made(group: tuple[Layout, ...], t: torch.Tensor, *, upstream: bool) -> torch.Tensor | None:
    """`t` in each layout of `group` that applies to it, in turn (a permuted view at a storage
    offset), or None where none applies."""
    made = None
    for layout in group:
        moved = _one(layout, t if made is None else made, upstream=upstream)
        made = made if moved is None else moved
    return made


def _applied(group: tuple[Layout, ...], t: torch.Tensor, *, upstream: bool) -> list[Layout]:
    """The layouts of `group` that apply to `t`."""
    return [layout for layout in group if _one(layout, t, upstream=upstream) is not None]


def _one(layout: Layout, t: torch.Tensor, *, upstream: bool) -> torch.Tensor | None:
    """`t` in `layout` with the same values (EXPANDED: a scalar expanded for an upstream, as behind
    `y.sum()`; the first row expanded for an input; OFFSET: `t`'s own strides at a storage offset),
    or None where the layout does not apply."""
    if layout is Layout.TRANSPOSED:
        if t.dim() < 2 or sum(d > 1 for d in t.shape) < 2:
            return None
        order = tuple(reversed(range(t.dim())))
        return t.permute(order).contiguous().permute(order)
    if layout is Layout.EXPANDED:
        if t.numel() < 2 or t.dim() == 0:
            return None
        if upstream:
            return _padded(t.reshape(-1)[:1], t.numel()).reshape(()).expand(t.shape)
        if t.shape[0] < 2:
            return None
        return _padded(t[:1].reshape(-1), t.numel()).view(t[:1].shape).expand(t.shape)
    if layout is Layout.OFFSET:
        if t.numel() == 0 or 0 in t.stride():
            return None
        # what a read outside the view finds: never a gradient's value
        extent = 1 + sum((n - 1) * stride for n, stride in zip(t.shape, t.stride()))  # (t's strides kept)
        moved = t.new_full((extent + 2 * OFFSET,), PADDING).as_strided(t.shape, t.stride(), OFFSET)
        moved.copy_(t)
        return moved
    if layout is Layout.CHANNELS_LAST:
        if t.dim() != 4 or t.shape[1] < 2 or t.shape[2] * t.shape[3] < 2:
            return None
        return t.contiguous(memory_format=torch.channels_last)
    if layout is Layout.GAPPED:  # a view into a wider tensor: its fastest axis stride 1, GAP more between its
        # rows, in `t`'s own order of axes in memory (a 1-d tensor: every other element); what a kernel that takes
        # a row's stride to be its length misreads
        if t.numel() < 2 or t.dim() == 0 or 0 in t.stride():
            return None
        if t.dim() == 1:
            moved = t.new_full((2 * t.shape[0],), PADDING)[::2]
        else:
            order = sorted(range(t.dim()), key=lambda d: (-t.stride(d), d))  # slowest axis first
            shape = [t.shape[d] for d in order]
            wide = t.new_full((*shape[:-1], shape[-1] + GAP), PADDING)[..., :shape[-1]]  # (at offset 0: OFFSET's)
            moved = wide.permute(tuple(order.index(d) for d in range(t.dim())))
        moved.copy_(t)
        return moved
    return None


def _padded(values: torch.Tensor, whole: int) -> torch.Tensor:
    """`values` (flat) at the start of a storage of `whole` elements (what the expanded tensor would
    need if it were contiguous), the rest PADDING: a backward that reads a stride-0 view's storage as
    if contiguous reads PADDING there, the same on every run — never memory past the storage's end."""
    storage = values.new_full((max(whole, values.numel()),), PADDING)
    storage[: values.numel()] = values
    return storage[: values.numel()]


def _said(group: tuple[Layout, ...], t: torch.Tensor, who: str) -> str:
    """`grad_output is a transposed, non-contiguous view` and the like (`t`: as it was given)."""
    applied = _applied(group, t, upstream=who == "grad_output")
    what = {Layout.TRANSPOSED: ("a transposed" if t.dim() == 2 else "a permuted") + ", non-contiguous view",
            Layout.EXPANDED: ("a stride-0 expanded view (as behind y.sum())" if who == "grad_output"
                              else "a stride-0 expanded view (one row broadcast)"),
            Layout.OFFSET: f"a view at storage offset {OFFSET}",
            Layout.CHANNELS_LAST: "channels-last (4-d)",
            Layout.GAPPED: ("a view into a wider tensor (gaps between its rows, as behind y[:, :n])" if t.dim() > 1
                            else "a strided view (every other element)")}
    if len(applied) > 1 and applied[-1] is Layout.OFFSET:
        return f"{who} is " + " ".join(what[layout] for layout in applied[:-1]) + f" at storage offset {OFFSET}"
    return f"{who} is " + ", ".join(what[layout] for layout in applied)


def _largest(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.max(np.abs(np.where(np.isfinite(a), a, 0.0)), initial=0.0))


def _differs(a: np.ndarray, b: np.ndarray, tolerance: float, floor: float = 0.0):
    """(the relative difference, the worst element's index) when `a` and `b` differ past `tolerance`
    of the larger's largest element, or of `floor` when that is larger (nan and inf are equal only where
    both are), else None."""
    if a.shape != b.shape:
        return float("inf"), (0,) * a.ndim
    if a.size == 0 or np.array_equal(a, b):
        return None
    same_nonfinite = ~np.isfinite(a) & ~np.isfinite(b) & ((a == b) | (np.isnan(a) & np.isnan(b)))
    finite = np.isfinite(a) & np.isfinite(b)
    with np.errstate(all="ignore"):
        gap = np.where(finite, np.abs(a - b), np.where(same_nonfinite, 0.0, np.inf))
    scale = max(_largest(a), _largest(b), floor, 1e-300)
    worst = np.unravel_index(int(np.argmax(gap)), a.shape)
    err = float(gap[worst]) / scale
    return (err, worst) if err > tolerance else None


def _spread(runs: list[_Result]) -> tuple[float, list[float]]:
    """The runs' largest relative difference from the first, overall and per gradient."""
    per = []
    for k, first in enumerate(runs[0].grads):
        scale = max(float(np.max(np.abs(first), initial=0.0)), 1e-300)
        per.append(max((float(np.max(np.abs(r.grads[k] - first), initial=0.0)) / scale for r in runs[1:]), default=0.0))
    return max(per, default=0.0), per


def _ranges(runs: list[_Result]) -> list[tuple[float, float, tuple]]:
    """Per gradient: the smallest and largest value of its most varying element over the runs, and its index."""
    out = []
    for k in range(len(runs[0].grads)):
        stack = np.stack([r.grads[k] for r in runs])
        if stack[0].size == 0:
            out.append((0.0, 0.0, ()))
            continue
        at = np.unravel_index(int(np.argmax(np.ptp(stack, axis=0))), stack[0].shape)
        column = stack[(slice(None),) + tuple(at)]
        out.append((float(column.min()), float(column.max()), tuple(int(i) for i in at)))
    return out


def _element(name: str, at) -> str:
    index = tuple(int(i) for i in at)
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


@functools.lru_cache(maxsize=256)
def _in_place_line(backward) -> tuple[int, int] | None:
    """(line, col) of the backward's first in-place method call (`y.mul_(...)`, `x.copy_(...)`), or None."""
    return _first_call(backward, lambda name: name.endswith("_") and not name.startswith("_"))


def _storage_line(backward) -> tuple[int, int] | None:
    """(line, col) of the backward's first call that reads memory rather than values (`set_`,
    `untyped_storage`, `as_strided`, ...), or None."""
    return _first_call(backward, lambda name: name in STORAGE_CALLS)


def _first_call(backward, chosen) -> tuple[int, int] | None:
    """(line, col) of the backward's first method call whose name is `chosen`, or None."""
    try:
        lines, start = inspect.getsourcelines(inspect.unwrap(backward))
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    indent = len(lines[0]) - len(lines[0].lstrip())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and chosen(n.func.attr)]
    if not calls:
        return None
    first = min(calls, key=lambda n: (n.lineno, n.col_offset))
    return start + first.lineno - 1, first.col_offset + indent + 1
