"""Checks of the user's own Python: a numpy forward and its hand-written backward, per input.

This runs the user's code (opt-in, as pytest does); `.grad` files are never executed. The finite
differences are `numeric.differentiate` and the verdicts `verdict.judge`, as for `.grad` files.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np

from ..oracles import complexstep, numeric
from ..checking import cost, per_output, pipeline, verdict
from ..core.errors import GradcheckError
from . import blame
from .pyrunner import FunctionRunner
from .reference import (Again, LayerInputs, by_differences, by_reference, compare_inputs, per_input,
                        reference_gradients)
from .structure import structured, structures
from .usercode import (Layer, call_backward, call_forward, check_deterministic, checked_array, gradients_of, joined,
                       node_line, placed_at_forward, ran_lines, split_outputs, traced)
from .pysource import (PythonError, base_name, branch_writes, describe, grad_lines, qualname, shared_line,
                       source_text, takes_keywords, where)
from ..core.report import CheckReport, GateRow, NodeRow
from ..core.settings import Settings
from ..core.streams import Stream, stream

POLICY = pipeline.POLICIES["python"]
LOOP_BUDGET = 64        # elements per input differenced one by one when the forward is called row by row


def check_layer(forward, backward, inputs: dict, params: dict | None = None, *, name: str | None = None,
                settings: Settings | None = None, structure: dict | None = None, **options) -> CheckReport:
    """Check a CS231n-style layer: `forward(*inputs, *params) -> (out, cache)` and
    `backward(dout, cache) -> (dinput, ...)` with one gradient per entry of `inputs`, in order.
    Several outputs, then the cache (`lstm_step_forward -> (next_h, next_c, cache)`), are checked as
    one: the backward then takes an upstream gradient for each (`lstm_step_backward(dnext_h, dnext_c, cache)`).

    Inputs and params are passed by keyword when their names are all the forward's parameters,
    else by position (inputs first). Params (labels, `conv_param`, ...) are not differentiated and
    are deep-copied for every call, so a forward that updates them (running means) changes nothing.
    `structure` states what an input is ({"x": "symmetric"}, "spd", "simplex": structure.py).
    """
    names = list(inputs)
    call = _caller(forward, names, params)
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
        return joined(outs)

    def bwd(dout, arrays):
        reuse = last and all(np.array_equal(a, b) for a, b in zip(last[0], arrays))
        cache = last[1] if reuse else call(arrays)[-1]
        if not shapes:
            return gradients_of(backward(dout, cache), names, backward)
        return gradients_of(backward(*split_outputs(dout, shapes), cache), names, backward)

    layer = _layer(name or base_name(forward), fwd, bwd, names, forward, backward)
    return check_python(layer, inputs, layer_settings(settings, options), structure)


def check_loss(loss, inputs: dict, params: dict | None = None, *, name: str | None = None,
               settings: Settings | None = None, structure: dict | None = None, **options) -> CheckReport:
    """Check a loss that returns its own gradient, CS231n's `svm_loss(x, y) -> (loss, dx)`: one
    gradient per entry of `inputs` (a tuple when there are several); params as for check_layer."""
    names = list(inputs)
    call_loss = _caller(loss, names, params)

    def call(arrays):
        result = call_loss(arrays)
        if not isinstance(result, tuple) or len(result) != 2:
            raise PythonError(f"{qualname(loss)} must return (loss, gradient), not {describe(result)}")
        return result

    def bwd(dout, arrays):
        grads = gradients_of(call(arrays)[1], names, loss)
        for name, g, a in zip(names, grads, arrays):
            if g is not None and g.shape != np.shape(a):  # before the upstream meets it: no broadcasting error
                raise PythonError(f"{qualname(loss)} is read as (loss, gradient): its gradient for {name} has "
                                  f"shape {g.shape}, but {name} has {np.shape(a)}")
        return [None if g is None else dout * g for g in grads]
    layer = _layer(name or qualname(loss), lambda arrays: call(arrays)[0], bwd, names, loss, loss, first=1)
    layer.output = "loss"
    return check_python(layer, inputs, layer_settings(settings, options), structure)


def check_function(f, vjp, inputs: dict, *, name: str | None = None, settings: Settings | None = None,
                   structure: dict | None = None, **options) -> CheckReport:
    """Check a plain function and its vector-Jacobian product: `f(*inputs) -> out` and
    `vjp(dout, *inputs) -> (dinput, ...)` (a single array when there is one input)."""
    names = list(inputs)
    layer = _layer(name or qualname(f), lambda arrays: f(*arrays),
                   lambda dout, arrays: gradients_of(vjp(dout, *arrays), names, vjp), names, f, vjp)
    return check_python(layer, inputs, layer_settings(settings, options), structure)


def _caller(fn, names: list, params: dict | None):
    """`fn` as a call on a list of input arrays: inputs and params by keyword when their names are
    all `fn`'s parameters, else by position (inputs first); params deep-copied for every call."""
    params = dict(params or {})
    by_keyword = takes_keywords(fn, tuple(names + list(params)))

    def call(arrays):
        fresh = copy.deepcopy(params) if params else params
        if by_keyword:
            return fn(**dict(zip(names, arrays)), **fresh)
        return fn(*arrays, *fresh.values())
    return call


def layer_settings(settings: Settings | None, options: dict) -> Settings:
    """The settings of a Python check: `settings` (or the defaults) with the keyword options, and no
    symbolic oracle (Python has none)."""
    base = settings or Settings()
    return Settings(**{**base.__dict__, **options, "symbolic": False})


def _layer(name, fwd, bwd, names, forward, backward, first: int = 0) -> Layer:
    path, line = where(backward)
    return Layer(name, fwd, bwd, names, path, line, where(forward), grad_lines(backward, tuple(names), first),
                 backward_name=qualname(backward), code=backward, first=first,
                 branches=branch_writes(backward, tuple(names), first))


# --- the check -------------------------------------------------------------------------------------

def check_python(layer: Layer, inputs: dict, settings: Settings, structure: dict | None = None) -> CheckReport:
    """The report of one layer: a row per input at the given point, and each input again at a second
    seeded random point (gate rows; not with `settings.fast`, torch's fast_mode: the given point only,
    along random directions); never raises for the user's errors (they land in `error`). `structure`
    ({input name: Structure or its name}) keeps those inputs, their differences and their second
    point in a structure (structure.py)."""
    started = time.perf_counter()
    report = CheckReport(layer.name, settings=settings)
    report.path = layer.path
    report.rerun = f"rerun the Python check of {layer.name} with seed={settings.seed}"
    try:
        args = [checked_array(layer, k, v) for k, v in inputs.items()]
        stated = structures(structure, list(inputs))
        args = [stated[k].given(k, a) if k in stated else a for k, a in zip(inputs, args)]
        layer = structured(layer, stated)
        rng = stream(settings.seed, Stream.PYTHON_CHECK)  # one stream: upstreams, directions, second point
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
            check_deterministic(layer, args, out)  # only then: a passing layer pays no extra forward call
    except GradcheckError as err:
        err = err if err.line is not None else placed_at_forward(err, layer)
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
    out = call_forward(layer, args) if out is None else out
    u = rng.standard_normal(out.shape)
    if layer.first and out.size == 1:  # a loss returning its own gradient takes no upstream: its rows show that
        u = np.ones_like(u)            # gradient itself (the draw still made: the stream's later draws unmoved)
    zeroed: set = set()
    if layer.branches:  # a gradient several statements write: the one that ran here is its line at this point
        (grads, failures), ran = traced(layer.code, lambda: call_backward(layer, u, args, zeroed))
        layer.grad_lines = {**layer.grad_lines, **ran_lines(layer.branches, ran)}
    else:
        grads, failures = call_backward(layer, u, args, zeroed)
    runner = FunctionRunner(layer.forward, args, u, out, layer.batched, layer.forward_at[0])
    layer.batched = runner.batched
    budget = settings.budget if runner.batched else LOOP_BUDGET
    ref = reference_gradients(layer, u, args) if settings.reference and layer.reference is not None and not failures else None
    if point == 1:
        layer.work = _predict(layer, runner, out, budget, ref is not None)

    bp = np.concatenate([g.ravel() for g in grads])
    again = Again(grads=grads)
    inputs = LayerInputs(layer=layer, forward=runner, args=args, upstream=u, backprop=bp[None, :], settings=settings,
                         seed=rng, failed=bool(failures), again=again)
    compared, by_ref, dropped = compare_inputs(inputs, ref, budget)
    own = per_input(inputs, compared, point) if by_ref is None else None  # a joint projection's failure: whose?
    failures = {**failures, **(again.drifted or {})}
    num, ev = compared.num, compared.evidence
    whole = verdict.summarize(ev)
    exact = _complex_step_notes(compared.complex_step, layer, runner, bp)
    judged, right = [], []
    for k, (name, a) in enumerate(zip(layer.names, args)):
        lo, hi = runner.offsets[k], runner.offsets[k + 1]
        if by_ref is not None:
            j, worst, method = by_reference(by_ref, whole, lo, hi, a.shape)
            value = None
            right.append(ref[lo:hi].reshape(a.shape))
        elif own is not None:  # its own directions (or elements), the other inputs held at the point
            mine = own[k]
            j, worst, value = by_differences(mine.evidence, verdict.summarize(mine.evidence), mine.num, 0, hi - lo,
                                             a.shape)
            method = ("exhaustive, this input alone (the random directions over every input failed)"
                      if mine.num.method == "exhaustive" else
                      f"projection ({mine.num.projected.shape[0]} random directions within {name} alone, after "
                      "those over every input failed)")
            right.append(value)
        else:
            j, worst, value = by_differences(ev, whole, num, lo, hi, a.shape)
            method = None
            right.append(value)
        status, note = j.status, j.note
        culprit = None
        if name in failures:
            status, (note, culprit) = "fail", failures[name]
        if name in exact:
            override, extra = exact[name]
            status = override or status
            note = extra if override else (f"{note}; {extra}" if note else extra)
        if dropped:
            note = f"{note}; {dropped}" if note else dropped
        if name in zeroed and status == "fail":
            note = (f"the backward returned None for {name} (zero, as autograd takes it), but {name}'s gradient is "
                    "not zero" + (f": {note}" if note else ""))
        judged.append((j, worst, value, method, status, note, culprit))
    found = _diagnosis(layer, args, u, grads, right, judged, failures)
    rows = []
    for (name, a, g), (j, worst, value, method, status, note, culprit) in zip(zip(layer.names, args, grads), judged):
        if name in found:
            note, culprit = f"{found[name].note}; {note}", found[name].at or culprit
        if point == 2 and status == "fail":
            special = " (right at the given point, which must be special)" if (first or {}).get(name) == "pass" else ""
            note = f"wrong at a second, random point{special}: {note}"
        rows.append(_rows(layer, name, a, g, value, num, j, status, note, point, worst, culprit, method))
    return out, rows


def _diagnosis(layer: Layer, args: list, u: np.ndarray, grads: list, right: list, judged: list,
               failures: dict) -> dict:
    """blame.diagnose for the inputs whose gradient the backward returned and the check failed."""
    failing = {name for name, (_, _, _, _, status, _, _) in zip(layer.names, judged)
               if status == "fail" and name not in failures}
    if not layer.diagnose or not failing:
        return {}
    return blame.diagnose(layer, args, u, grads, right, failing)


def _complex_step_notes(cross: complexstep.CrossCheck | None, layer: Layer, runner: FunctionRunner,
                        bp: np.ndarray) -> dict:
    """Per input, (a status that overrides the row's, or None; a note) from the complex step's
    cross-check (pipeline.compare runs it): a backward wrong by less than any finite difference
    resolves fails here; code that is not complex-safe is said so and judged by the differences alone."""
    if cross is None:
        return {}
    if cross.unused is not None or cross.values is None:
        return {n: (None, f"complex step not used: {cross.unused}") for n in layer.names}
    cs, failing = cross.values, cross.failing
    scale = float(np.max(np.abs(cs), initial=0.0))
    out = {}
    for k, name in enumerate(layer.names):
        lo, hi = runner.offsets[k], runner.offsets[k + 1]
        bad = failing[(failing >= lo) & (failing < hi)]
        if bad.size:
            gap = float(np.max(np.abs(bp[bad] - cs[bad])))
            by = f"by {gap / scale:.1e} of the row's largest" if scale > 0 else f", 0 on the whole row, by {gap:.1e}"
            out[name] = ("fail", f"backprop disagrees with the complex-step derivative{'' if scale == 0 else ' '}{by} "
                                 "(under what finite differences resolve; the complex step is exact to rounding)")
        else:  # (a row whose derivative is 0 everywhere has no relative figure to show)
            out[name] = (None, f"complex step agrees to {cross.error:.0e}" if scale > 0 else "complex step agrees")
    return out


def _predict(layer: Layer, runner: FunctionRunner, out: np.ndarray, budget: int, reference: bool) -> cost.Cost:
    """The check's predicted work (cost.python_layer), refused past MAX_WORK before the differences."""
    whole = runner.work(numeric.Target("inputs", runner.x, projections=False))
    predicted = cost.python_layer(runner.x.size, out.size, runner.batched, budget,
                                  whole if whole <= POLICY.recheck_work else 0,
                                  min(out.size, per_output.MAX_KINKED) if per_output.runs(runner.x.size, out.size) else 0,
                                  reference)
    refused = predicted.refusal(f"checking {layer.name} ({runner.x.size:,} input elements, {out.size:,} outputs"
                                + ("" if runner.batched else ", one forward call per row") + ")",
                                "check it on smaller inputs")
    if refused:
        raise PythonError(refused)
    return predicted


def _shared_cause(layer: Layer, rows: list) -> None:
    """Several inputs failing through one line they all use (and no passing one does): one cause, at it."""
    failing = {node.name for node, _ in rows if node.status == "fail" and node.culprit == node_line(layer, node.name)}
    found = shared_line(layer.code, tuple(layer.names), failing, layer.first) if len(failing) > 1 else None
    if found is None:
        return
    line, col, var = found
    why = (f"{', '.join('d' + n for n in sorted(failing))} all use '{var}' (line {line}), which no passing "
           f"gradient uses: look there first")
    for k, (node, gate) in enumerate(rows):
        if node.name in failing:
            note = f"{node.note}; {why}"
            rows[k] = (replace(node, culprit=(line, col), line=line, col=col, note=note),
                       replace(gate, line=line, col=col, note=note))


def _rows(layer: Layer, name, a, grad, value, num, j: verdict.Judgement, status, note, point, worst, culprit=None,
          method=None):
    line, col = culprit or node_line(layer, name)
    why = ("past the element budget; --budget raises it" if layer.batched else
           f"the forward takes no batch axis, so past {LOOP_BUDGET} elements it is called once per direction")
    method = method or (num.method if num.method == "exhaustive" else
                        f"projection ({num.projected.shape[0]} random directions; {why})")
    if name in layer.structure:
        method = f"{method}; {name} {layer.structure[name].said}"
    node = NodeRow(name=name, op="input", shape=a.shape, line=line, col=col, value=a, grad=grad, numeric=value,
                   symbolic=None, numeric_error=j.numeric_error, symbolic_error=None, status=status,
                   note=note, tolerance=j.tolerance, worst_index=worst, numeric_method=method,
                   culprit=(line, col) if status == "fail" else None,
                   numeric_rounding=j.numeric_rounding)
    gate = GateRow(name=layer.backward_name, gate="backward", input=name, line=line, col=col, call_line=layer.line,
                   status=status, numeric_error=j.numeric_error, symbolic_error=None,
                   tolerance=j.tolerance, point=point, note=note, numeric_rounding=j.numeric_rounding)
    return node, gate


# --- the user's functions --------------------------------------------------------------------------


# --- targets named on the command line: FILE.py::NAME ----------------------------------------------


def _second_point(layer: Layer, args: list, rng: np.random.Generator) -> tuple:
    """Every input moved by ~10% (less where the forward is not defined that far), an input of a
    stated structure within it; the forward's error at the smallest move when it is defined at none.
    Returns (inputs, output)."""
    draws = [rng.standard_normal(a.shape) for a in args]
    errors: list = []
    kinds = [layer.structure.get(n) for n in layer.names]

    def move(k, v, d, scale, relative):
        return pipeline.moved(v, d, scale, relative) if kinds[k] is None else kinds[k].move(v, d, scale)

    def evaluate(moved):
        try:
            return call_forward(layer, moved)
        except PythonError as err:
            errors.append(err)
            return None
    found = pipeline.second_point(args, draws, evaluate, POLICY, move if layer.structure else None)
    if found is None:
        if not errors:
            raise PythonError("no second point near the given one keeps the inputs' stated structure: give a "
                              "point farther from its edge")
        first = errors[-1]
        raise PythonError(f"at a second point near the given one (every input moved by {_percent(POLICY)}, also in "
                          f"proportion to itself), {first.message}; the check needs the forward defined near the "
                          "given point: give a point farther from the edge of its domain", first.line, first.col)
    return found


def _percent(policy) -> str:
    scales = sorted(policy.second_scales)
    return f"{scales[0]:.1%} to {scales[-1]:.0%}"
