"""Checks of the user's own Python: a numpy forward and its hand-written backward, per input.

This runs the user's code (opt-in, as pytest does); `.grad` files are never executed. The finite
differences are `numeric.differentiate` and the verdicts `verdict.judge`, as for `.grad` files.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..oracles import complexstep, numeric
from ..checking import cost, per_output, pipeline, verdict
from ..core.errors import GradcheckError
from ..core.limits import MAX_ELEMENTS, MAX_WORK, size_error
from ..core.meter import active, count
from .pyrunner import FunctionRunner, Subset
from .pysource import (PythonError, base_name, describe, exception_text, grad_lines, qualname, shared_line,
                       source_text, takes_keywords, user_position, where)
from ..core.report import CheckReport, GateRow, NodeRow
from ..core.settings import Settings
from ..gates.tensors import fmt_note
from ..core.tolerances import ROW_FLOOR

POLICY = pipeline.POLICIES["python"]
LOOP_BUDGET = 64        # elements per input differenced one by one when the forward is called row by row


@dataclass
class Layer:
    """A forward and its backward, as plain calls on a list of input arrays."""
    name: str
    forward: object        # list of arrays -> output array
    backward: object       # (dout, list of arrays) -> list of gradients, one per input
    names: list            # the inputs' names
    path: str              # the backward's file (the rows' lines are in it), or a description
    line: int              # the backward's first line
    forward_at: tuple      # the forward's (file, first line): its errors are there
    grad_lines: dict       # input name -> (line, col) where its gradient is last assigned in the backward
    batched: bool | None = None  # does the forward take a leading axis of copies? (found on first use)
    backward_name: str = "backward"  # the backward's name, as its own checks are labelled
    code: object = None    # the user's function that computes the gradients (its source is read)
    first: int = 0         # how many of its returned values come before the gradients (a loss: 1)
    output: str = "out"    # what the report calls the output
    work: object = None    # the check's predicted cost (cost.Cost), once its first point is known
    reference: object = None  # (dout, list of arrays) -> exact gradients (autodiff through the forward), or None


def check_layer(forward, backward, inputs: dict, params: dict | None = None, *, name: str | None = None,
                settings: Settings | None = None, **options) -> CheckReport:
    """Check a CS231n-style layer: `forward(*inputs, *params) -> (out, cache)` and
    `backward(dout, cache) -> (dinput, ...)` with one gradient per entry of `inputs`, in order.
    Several outputs, then the cache (`lstm_step_forward -> (next_h, next_c, cache)`), are checked as
    one: the backward then takes an upstream gradient for each (`lstm_step_backward(dnext_h, dnext_c, cache)`).

    Inputs and params are passed by keyword when their names are all the forward's parameters,
    else by position (inputs first). Params (labels, `conv_param`, ...) are not differentiated and
    are deep-copied for every call, so a forward that updates them (running means) changes nothing.
    """
    params = dict(params or {})
    names = list(inputs)
    by_keyword = takes_keywords(forward, tuple(names + list(params)))

    def call(arrays):
        fresh = copy.deepcopy(params) if params else params
        if by_keyword:
            return forward(**dict(zip(names, arrays)), **fresh)
        return forward(*arrays, *fresh.values())

    last: list = []  # the latest forward's inputs and cache: the backward at the same point reuses it
    shapes: list = []  # several outputs: their shapes (they are checked as one flat output)

    def fwd(arrays):
        result = call(arrays)
        if not isinstance(result, tuple) or len(result) < 2:
            raise PythonError(f"{qualname(forward)} must return (out, cache), or several outputs and then the "
                              f"cache, not {describe(result)}")
        last[:] = [arrays, result[-1]]  # callers pass fresh copies; one the forward changed won't match
        if len(result) == 2:
            return result[0]
        try:
            outs = [np.asarray(o, dtype=float) for o in result[:-1]]
        except (TypeError, ValueError):
            raise PythonError(f"{qualname(forward)}'s outputs must be arrays of numbers") from None
        shapes[:] = [o.shape for o in outs]
        return np.concatenate([o.ravel() for o in outs])

    def bwd(dout, arrays):
        reuse = last and all(np.array_equal(a, b) for a, b in zip(last[0], arrays))
        cache = last[1] if reuse else call(arrays)[-1]
        if not shapes:
            return _gradients(backward(dout, cache), names, backward)
        cuts = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])[:-1]
        douts = [d.reshape(s) for d, s in zip(np.split(np.ravel(dout), cuts), shapes)]
        return _gradients(backward(*douts, cache), names, backward)

    layer = _layer(name or base_name(forward), fwd, bwd, names, forward, backward)
    return check_python(layer, inputs, _settings(settings, options))


def check_loss(loss, inputs: dict, params: dict | None = None, *, name: str | None = None,
               settings: Settings | None = None, **options) -> CheckReport:
    """Check a loss that returns its own gradient, CS231n's `svm_loss(x, y) -> (loss, dx)`: one
    gradient per entry of `inputs` (a tuple when there are several); params as for check_layer."""
    params = dict(params or {})
    names = list(inputs)
    by_keyword = takes_keywords(loss, tuple(names + list(params)))

    def call(arrays):
        fresh = copy.deepcopy(params) if params else params
        result = loss(**dict(zip(names, arrays)), **fresh) if by_keyword else loss(*arrays, *fresh.values())
        if not isinstance(result, tuple) or len(result) != 2:
            raise PythonError(f"{qualname(loss)} must return (loss, gradient), not {describe(result)}")
        return result

    def bwd(dout, arrays):
        return [dout * g for g in _gradients(call(arrays)[1], names, loss)]
    layer = _layer(name or qualname(loss), lambda arrays: call(arrays)[0], bwd, names, loss, loss, first=1)
    layer.output = "loss"
    return check_python(layer, inputs, _settings(settings, options))


def check_function(f, vjp, inputs: dict, *, name: str | None = None, settings: Settings | None = None,
                   **options) -> CheckReport:
    """Check a plain function and its vector-Jacobian product: `f(*inputs) -> out` and
    `vjp(dout, *inputs) -> (dinput, ...)` (a single array when there is one input)."""
    names = list(inputs)
    layer = _layer(name or qualname(f), lambda arrays: f(*arrays),
                   lambda dout, arrays: _gradients(vjp(dout, *arrays), names, vjp), names, f, vjp)
    return check_python(layer, inputs, _settings(settings, options))


def _settings(settings: Settings | None, options: dict) -> Settings:
    base = settings or Settings()
    return Settings(**{**base.__dict__, **options, "symbolic": False})


def _layer(name, fwd, bwd, names, forward, backward, first: int = 0) -> Layer:
    path, line = where(backward)
    return Layer(name, fwd, bwd, names, path, line, where(forward), grad_lines(backward, tuple(names), first),
                 backward_name=qualname(backward), code=backward, first=first)


# --- the check -------------------------------------------------------------------------------------

def check_python(layer: Layer, inputs: dict, settings: Settings) -> CheckReport:
    """The report of one layer: a row per input at the given point, and each input again at a second
    seeded random point (gate rows; not with `settings.fast`, torch's fast_mode: the given point only,
    along random directions); never raises for the user's errors (they land in `error`)."""
    started = time.perf_counter()
    report = CheckReport(layer.name, settings=settings)
    report.path = layer.path
    report.rerun = f"rerun the Python check of {layer.name} with seed={settings.seed}"
    try:
        args = [_array(layer, k, v) for k, v in inputs.items()]
        rng = np.random.default_rng(settings.seed * 1_000_003 + 104_729)  # one stream: upstreams, directions, second point
        if settings.fast:  # along random directions (every element against a reference, where there is one)
            settings = replace(settings, budget=1)
        out, rows1 = _check_point(layer, args, settings, rng, point=1)
        report.output, report.value = layer.output, out
        rows2 = []
        if not settings.fast:
            args2, out2 = _second_point(layer, args, rng)
            _, rows2 = _check_point(layer, args2, settings, rng, point=2, first={r.name: r.status for r, _ in rows1},
                                    out=out2)
        if any(r.status != "pass" for r, _ in rows1 + rows2):
            _deterministic(layer, args, out)  # only then: a passing layer pays no extra forward call
    except GradcheckError as err:
        err = err if err.line is not None else _at(err, layer)
        report.error = err.located(layer.path, source_text(err.source or layer.path))
        report.path = err.source or layer.path
        return report
    for rows in (rows1, rows2):
        _shared_cause(layer, rows)
    report.nodes = [row for row, _ in rows1]
    report.gates = [g for _, g in rows2]  # the given point's per-input checks are the node rows
    report.work = layer.work
    report.elapsed = time.perf_counter() - started
    return report


def _check_point(layer: Layer, args: list, settings: Settings, rng: np.random.Generator, point: int,
                 first: dict | None = None, out: np.ndarray | None = None):
    out = _output(layer, args) if out is None else out
    u = rng.standard_normal(out.shape)
    grads, failures = _backward(layer, u, args)
    runner = FunctionRunner(layer.forward, args, u, out, layer.batched, layer.forward_at[0])
    layer.batched = runner.batched
    budget = settings.budget if runner.batched else LOOP_BUDGET
    ref = _reference(layer, u, args) if settings.reference and layer.reference is not None and not failures else None
    if point == 1:
        layer.work = _predict(layer, runner, out, budget, ref is not None)

    def rerun(delta):
        moved, failed = _backward(layer, u * (1 + delta), [a * (1 + delta) for a in args])
        return None if failed else np.concatenate([np.ravel(m) for m in moved])[None, :]
    def backward_of(upstream):
        moved, failed = _backward(layer, upstream.reshape(out.shape), args)
        return np.concatenate([np.ravel(m) for m in moved])

    def explain(ev):
        return per_output.explain(ev, runner.outputs, backward_of, runner.x, np.ravel(u), settings.h,
                                  settings.rtol, settings.atol)
    bp = np.concatenate([g.ravel() for g in grads])
    compared, by_ref, dropped = _differences(runner, bp, ref, settings, budget, rng, None if failures else rerun,
                                             None if failures else explain)
    num, ev = compared.num, compared.evidence
    whole = verdict.summarize(ev)
    exact = (_complex_step(layer, args, u, runner, num, bp, rerun)
             if settings.complex_step and num.method == "exhaustive" and not failures else {})
    rows = []
    for k, (name, a) in enumerate(zip(layer.names, args)):
        lo, hi = runner.offsets[k], runner.offsets[k + 1]
        if by_ref is not None:
            j, worst, method, kink_ev = _by_reference(by_ref, whole, lo, hi, a.shape)
            value = None
        else:
            j, worst, value, kink_ev = _by_differences(ev, whole, num, lo, hi, a.shape)
            method = None
        status, note = j.status, j.note
        culprit = None
        if name in failures:
            status, (note, culprit) = "fail", failures[name]
        elif status == "kink" and kink_ev is not None and note and note.startswith(verdict.KINK_NOTE):
            note = note.replace(verdict.KINK_NOTE, _kink_note(kink_ev, j.worst))
        if name in exact:
            override, extra = exact[name]
            status = override or status
            note = extra if override else (f"{note}; {extra}" if note else extra)
        if dropped:
            note = f"{note}; {dropped}" if note else dropped
        if point == 2 and status == "fail":
            special = " (right at the given point, which must be special)" if (first or {}).get(name) == "pass" else ""
            note = f"wrong at a second, random point{special}: {note}"
        rows.append(_rows(layer, name, a, grads[k], value, num, j, status, note, point, worst, culprit, method))
    return out, rows


def _differences(runner: FunctionRunner, bp: np.ndarray, ref, settings: Settings, budget: int, rng, rerun, explain):
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


def _reference(layer: Layer, u: np.ndarray, args: list) -> np.ndarray | None:
    """The reference's gradients, flat, or None where it has none (the forward is not autodiff code)."""
    if active():
        count("python", 2)
        count("element", 2 * (u.size + sum(a.size for a in args)))
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            grads = layer.reference(u.copy(), [a.copy() for a in args])
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
    if int(own.codes.max(initial=0)) == pipeline.FAIL:
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


def _by_differences(ev: verdict.Evidence, whole: verdict.Judgement, num, lo: int, hi: int, shape: tuple):
    """One input's (Judgement, worst element, differences, evidence for its kink note) from the differences:
    its own elements when they were differenced one by one, else the projections of every input at once."""
    if num.method == "projection":
        return whole, None, None, None
    j = verdict.summarize(ev, np.arange(lo, hi))
    worst = tuple(int(i) for i in np.unravel_index(j.worst[1] - lo, shape)) if len(shape) else None
    return j, worst, num.value[0, lo:hi].reshape(shape), ev


def _by_reference(by_ref: ByReference, whole: verdict.Judgement, lo: int, hi: int, shape: tuple):
    """One input's (Judgement, worst element, method, evidence) from the reference and the differences
    at its elements that disagree with it: those decide; the others agree with an exact derivative."""
    cols = np.flatnonzero((by_ref.index >= lo) & (by_ref.index < hi))
    method = (f"every element against autodiff through the forward; differences along {by_ref.projections} "
              "random directions" + (f" and at the {cols.size:,} element{'s' if cols.size > 1 else ''} where they disagree"
                                       if cols.size else ""))
    if not cols.size:
        j = (replace(whole, note=None) if whole.status == "pass" else
             verdict.Judgement("pass", None, 0.0, None, 0.0, (0, 0), np.zeros((1, 0))))
        return j, None, method, None
    j = verdict.summarize(by_ref.evidence, cols)
    flat = int(by_ref.index[j.worst[1]]) - lo
    worst = tuple(int(i) for i in np.unravel_index(flat, shape)) if len(shape) else None
    if by_ref.left and j.status == "pass":
        j = verdict.Judgement("warn", f"{by_ref.left:,} more elements disagree with autodiff through the forward than "
                              "were differenced (past the element budget; --budget raises it)", j.numeric_error,
                              None, j.tolerance, j.worst, j.codes, j.numeric_rounding)
    return j, worst, method, by_ref.evidence


def _complex_step(layer: Layer, args: list, u: np.ndarray, runner: FunctionRunner, num, bp: np.ndarray, rerun) -> dict:
    """Per input, (a status that overrides the row's, or None; a note) from the complex step: a
    backward wrong by less than any finite difference resolves fails here; code that is not
    complex-safe is said so and judged by the differences alone."""
    cs, why = complexstep.derivatives(layer.forward, args, u, runner.offsets, runner.batched)
    if cs is None:
        return {n: (None, f"complex step not used: {why}") for n in layer.names}
    kinked = np.ravel(num.kink)
    usable, failing, err = complexstep.judge(cs, num.value[0], num.estimate[0], bp, None, kinked)
    if usable and failing.size:  # backprop's own rounding, measured only now
        noise = pipeline.rounding(rerun, bp[None, :], POLICY.noise_signs)
        usable, failing, err = complexstep.judge(cs, num.value[0], num.estimate[0], bp, noise, kinked)
    if not usable:
        return {n: (None, "complex step not used: it disagrees with the finite differences (abs, a comparison or a "
                          "cast on the imaginary part: the code is not complex-safe)") for n in layer.names}
    out = {}
    for k, name in enumerate(layer.names):
        lo, hi = runner.offsets[k], runner.offsets[k + 1]
        bad = failing[(failing >= lo) & (failing < hi)]
        if bad.size:
            e = float(np.max(np.abs(bp[bad] - cs[bad]))) / max(float(np.max(np.abs(cs))), 1e-300)
            out[name] = ("fail", f"backprop disagrees with the complex-step derivative by {e:.1e} of the row's largest "
                                 f"(under what finite differences resolve; the complex step is exact to rounding)")
        else:
            out[name] = (None, f"complex step agrees to {err:.0e}")
    return out


def _deterministic(layer: Layer, args: list, out: np.ndarray) -> None:
    """A forward that answers twice differently at one point (dropout drawing a new mask) has no
    gradient to check: an input error, never a gradient verdict."""
    again = _output(layer, args)
    scale = max(float(np.max(np.abs(out))), 1e-300)
    if again.shape != out.shape or float(np.max(np.abs(again - out))) > 1e-12 * scale:
        raise PythonError("the forward is not deterministic: called twice at the same point it gave different "
                          "outputs (a random mask drawn anew?), so no gradient can be checked; seed it "
                          "(CS231n: --param dropout_param='{\"mode\": \"train\", \"p\": 0.5, \"seed\": 0}')")


def _output(layer: Layer, args: list) -> np.ndarray:
    out = _call(layer.forward_at[0], "forward", lambda: layer.forward([a.copy() for a in args]))
    if out is None:
        raise PythonError("the forward returned None as its output: is it written yet?")
    try:
        out = np.asarray(out, dtype=float)
    except (TypeError, ValueError):
        raise PythonError(f"the forward's output must be an array of numbers, not {describe(out)}") from None
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise PythonError("the forward's output is empty" if out.size == 0 else
                          "the forward's output is not finite (nan or inf) at this point")
    return out


def _predict(layer: Layer, runner: FunctionRunner, out: np.ndarray, budget: int, reference: bool) -> cost.Cost:
    """The check's predicted work (cost.python_layer), refused past MAX_WORK before the differences."""
    whole = runner.work(numeric.Target("inputs", runner.x, projections=False))
    predicted = cost.python_layer(runner.x.size, out.size, runner.batched, budget,
                                  whole if whole <= POLICY.recheck_work else 0,
                                  min(out.size, per_output.MAX_KINKED) if per_output.runs(runner.x.size, out.size) else 0,
                                  reference)
    if predicted.total > MAX_WORK:
        raise PythonError(size_error(f"checking {layer.name} ({runner.x.size:,} input elements, {out.size:,} outputs"
                                     + ("" if runner.batched else ", one forward call per row") + ")",
                                     predicted.total, MAX_WORK, "work units", "MAX_WORK")
                          + "; check it on smaller inputs")
    return predicted


def _backward(layer: Layer, u: np.ndarray, args: list):
    """The backward's gradients (NaN where it failed) and, per input it failed for, (why, the line
    to blame or None). One cause, one line: a gradient of the wrong shape fails that input alone; an
    exception fails every input at the line that raised."""
    if active():
        count("python")
        count("element", u.size + sum(a.size for a in args))
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            grads = layer.backward(u.copy(), [a.copy() for a in args])
    except PythonError as err:
        return [np.full(a.shape, np.nan) for a in args], {n: (err.message, None) for n in layer.names}
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        line, col = user_position(exc, layer.path)
        why = (f"the backward raised {exception_text(exc)}", (line, col) if line else None)
        return [np.full(a.shape, np.nan) for a in args], {n: why for n in layer.names}
    failures = {}
    for k, (name, g, a) in enumerate(zip(layer.names, grads, args)):
        if g is None:
            failures[name] = (f"the backward returned None for {name}, which is differentiable", None)
            grads[k] = np.full(a.shape, np.nan)
        elif g.shape != a.shape:
            failures[name] = (f"the backward's d{name} has shape {g.shape}, but {name} has {a.shape}", None)
            grads[k] = np.full(a.shape, np.nan)
    return grads, failures


def _second_point(layer: Layer, args: list, rng: np.random.Generator) -> tuple:
    """Every input moved by ~10% (less where the forward is not defined that far); the forward's
    error at the smallest move when it is defined at none. Returns (inputs, output)."""
    draws = [rng.standard_normal(a.shape) for a in args]
    errors: list = []

    def evaluate(moved):
        try:
            return _output(layer, moved)
        except PythonError as err:
            errors.append(err)
            return None
    found = pipeline.second_point(args, draws, evaluate, POLICY)
    if found is None:
        raise errors[-1]
    return found


def _kink_note(ev: verdict.Evidence, w: tuple) -> str:
    """What the forward's slopes say at a kink element: the one-sided slopes, or a tie's joint slope."""
    group = ev.groups.get(w[1])
    if group is not None:
        members, total, slope, _ = group
        return (f"a tie of {members.size} elements: backprop's gradients sum to {fmt_note(total[w[0]])}, the slope of "
                f"moving them together ({fmt_note(slope[w[0]])}): a valid subgradient, not a bug")
    lo, hi = ev.num.lower[w], ev.num.upper[w]
    return (f"the forward's slope changes within the step (one-sided slopes {fmt_note(lo)} and {fmt_note(hi)}); "
            f"backprop's {fmt_note(ev.a[w])} is between them: a kink, not a bug")


def _shared_cause(layer: Layer, rows: list) -> None:
    """Several inputs failing through one line they all use (and no passing one does): one cause, at it."""
    failing = {node.name for node, _ in rows if node.status == "fail" and node.culprit == node_line(layer, node.name)}
    found = shared_line(layer.code, tuple(layer.names), failing, layer.first) if len(failing) > 1 else None
    if found is None:
        return
    line, col, var = found
    why = (f"{', '.join('d' + n for n in sorted(failing))} all use '{var}' (line {line}), which no passing "
           f"gradient uses: look there first")
    for node, gate in rows:
        if node.name in failing:
            node.culprit, node.line, node.col = (line, col), line, col
            gate.line, gate.col = line, col
            node.note = gate.note = f"{node.note}; {why}"


def node_line(layer: Layer, name: str) -> tuple:
    """Where the backward last assigns the gradient it returns for this input."""
    return layer.grad_lines.get(name, (layer.line, 1))


def _rows(layer: Layer, name, a, grad, value, num, j: verdict.Judgement, status, note, point, worst, culprit=None,
          method=None):
    line, col = culprit or node_line(layer, name)
    why = ("past the element budget; --budget raises it" if layer.batched else
           f"the forward takes no batch axis, so past {LOOP_BUDGET} elements it is called once per direction")
    method = method or (num.method if num.method == "exhaustive" else
                        f"projection ({num.projected.shape[0]} random directions; {why})")
    node = NodeRow(name, "input", a.shape, line, col, a, grad, value, None, j.numeric_error, None,
                   status, note, j.tolerance, worst, method, (line, col) if status == "fail" else None,
                   numeric_rounding=j.numeric_rounding)
    gate = GateRow(layer.backward_name, "backward", name, line, col, layer.line, status, j.numeric_error, None,
                   j.tolerance, point, note, numeric_rounding=j.numeric_rounding)
    return node, gate


# --- the user's functions --------------------------------------------------------------------------

def _call(path: str, what: str, thunk):
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return thunk()
    except PythonError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        line, col = user_position(exc, path)
        raise PythonError(f"the {what} raised {exception_text(exc)}", line, col,
                          path if line else None) from None


def _gradients(result, names: list, backward) -> list:
    """The backward's result as one float array per input."""
    if isinstance(result, dict):
        missing = [n for n in names if n not in result and f"d{n}" not in result]
        if missing:
            raise PythonError(f"{qualname(backward)} returned no gradient for {', '.join(missing)}")
        result = [result[n] if n in result else result[f"d{n}"] for n in names]
    elif len(names) == 1 and not isinstance(result, (tuple, list)):
        result = [result]
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise PythonError(f"{qualname(backward)} must return {len(names)} gradient(s) "
                          f"(d{', d'.join(names)}), not {describe(result)}")
    try:
        return [None if g is None else np.asarray(g, dtype=float) for g in result]  # None: said per input
    except (TypeError, ValueError):
        raise PythonError(f"{qualname(backward)} must return arrays of numbers") from None


def _array(layer: Layer, name: str, value) -> np.ndarray:
    try:
        a = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise PythonError(f"input '{name}' must be an array of numbers, not {describe(value)}") from None
    if a.size > MAX_ELEMENTS:
        raise PythonError(size_error(f"input '{name}'", a.size, MAX_ELEMENTS, name="MAX_ELEMENTS"))
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise PythonError(f"input '{name}' must be a non-empty array of finite numbers")
    return a


def _at(err: GradcheckError, layer: Layer) -> GradcheckError:
    """An error about the layer as a whole: at the forward's first line."""
    err.source, err.line, err.col = layer.forward_at[0], layer.forward_at[1], 1
    return err


# --- targets named on the command line: FILE.py::NAME ----------------------------------------------


