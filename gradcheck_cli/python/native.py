"""Native precision: a framework target checked in its own dtype (float32, float16, bfloat16) — one
whose forward refuses float64, as a fused kernel's does, or any target asked to (`dtype=`,
`--dtype`) — against a reference: the user's (`reference_fn`, a plain differentiable function run in
float64), else autodiff through the forward in float64, else (a forward that refuses float64)
autodiff through the forward in the dtype itself.

The tolerance is an error model, not a measurement: every element of an input's gradient may be off
by at most

    allowed = K · ε(dtype) · √n · S          (× REFERENCE_ROUNDS when the reference runs in the dtype too)

with S the largest |element| of the reference gradient, n the number of outputs one element of that
input reaches (the terms its gradient sums: 1 for an elementwise op, d for a softmax over d, m for
X of X @ W with W k×m), found by putting a NaN, then +inf, then -inf into MAX_REACH_PROBES elements
of the input (core/limits.py) and counting the outputs that change. The inputs and the upstream are
rounded to the dtype first, so the target and its reference see the same values and only the
target's arithmetic is measured. No finite
differences: in float16 and bfloat16 they resolve nothing, in float32 at best 1e-3 of a gradient,
far coarser than this model.
"""

from __future__ import annotations

import ast
import enum
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..checking import precision
from ..core.errors import UsageError, did_you_mean
from ..core.limits import MAX_REACH_PROBES
from ..core.report import Allowance, CheckReport, GateRow, NodeRow, Precision
from ..core.settings import Settings
from ..core.status import Status
from .bridge import FLOAT64, Arguments, Framework, UserCode
from .pymodule import load_module, lookup
from .pysource import USER_ERRORS, PythonError, display, exception_text, qualname, source_text, user_position, where
from .usercode import Layer, joined

K = 8.0               # the model's constant: a right kernel's rounding stays within K·ε·√n of the gradient's largest
REFERENCE_ROUNDS = 2.0  # a reference run in the dtype errs as much as the target: the two allowances add
PROBE_VALUES = (np.nan, np.inf, -np.inf)  # put in turn into a probed element: the outputs that change are its reach
EPS = precision.EPS   # ε: the spacing of the dtype's numbers at 1 (2^-23, 2^-10, 2^-7)


class Reference(enum.Enum):
    """What the target's gradients in its dtype are compared with."""
    GIVEN = "your reference, in float64"
    FLOAT64 = "autodiff through the forward, in float64"
    NATIVE = "autodiff through the forward, in the same dtype"


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How one target is checked natively."""
    dtype: str
    refuses_float64: bool         # its forward raises in float64 (and runs in `dtype`), or computes in `dtype`
    computes_in_dtype: bool = False  # the latter: it takes float64, and its outputs come in `dtype`
    reference: Reference
    reference_fn: Callable | None = None


def round_to(dtype: str, array) -> np.ndarray:
    """`array`'s values rounded to `dtype` (to nearest, ties to even), as float64."""
    a = np.asarray(array, dtype=np.float64)
    if dtype == "float32":
        return a.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return a.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":  # the top 16 bits of the float32, rounded to nearest even
        bits = np.ascontiguousarray(a.astype(np.float32)).view(np.uint32)
        rounded = ((bits.astype(np.uint64) + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
        out = rounded.view(np.float32).astype(np.float64)
        return np.where(np.isfinite(a), out, a)
    return a


def plan(framework: Framework, code: UserCode, given: Arguments, dtype: str | None,
         reference_fn: Callable | None) -> Plan | None:
    """The native check `code` needs at `given`, or None (the float64 check alone): asked for by
    `dtype`, or forced by a forward that raises in float64 and runs in a lower dtype (the given one,
    the inputs' own, else the first of float32, float16, bfloat16 it runs in), or that takes float64 and
    computes in a lower dtype anyway (its outputs come in it)."""
    if dtype is not None and dtype not in EPS:
        raise UsageError(f"dtype must be one of {', '.join(EPS)}, not {dtype!r}")
    if reference_fn is not None and not callable(reference_fn):
        raise UsageError(f"reference_fn must be a function, not {type(reference_fn).__name__}")
    refuses = lowers = False
    raised, lower = _in_float64(framework, code, given)
    if raised is not None:
        own = [d for d in (framework.dtype_name(given.values[i]) for i in given.diff) if d in EPS]
        tried = [dtype] if dtype is not None else list(dict.fromkeys(own[:1] + list(EPS)))
        found = next((d for d in tried if _raised(framework, code, given, d) is None), None)
        if found is None and dtype is not None:
            _refuses(framework, code, given, dtype)
        if found is None:
            return None  # it raises in every dtype: the float64 check says what it raised, and where
        dtype, refuses = found, True
    elif lower is not None and dtype in (None, lower):
        # a kernel that takes float64 and computes in a lower dtype: differences of it in float64 would measure
        # its rounding, not its slope (a right kernel failed); checked in the dtype it computes in
        dtype, refuses, lowers = lower, True, True
    if dtype is None:
        if reference_fn is not None:
            raise UsageError("a reference is for a check in a native dtype: give dtype= (--dtype) too, or a "
                             "forward that refuses float64")
        return None
    if reference_fn is not None:
        reference = Reference.GIVEN
    elif not code.reference:
        raise UsageError(f"{code.name} has no forward autodiff can run without its own backward: give a reference "
                         "to check it in " + dtype + " against (reference_fn=, --reference FILE.py::fn)")
    else:
        reference = Reference.NATIVE if refuses else Reference.FLOAT64
    return Plan(dtype=dtype, refuses_float64=refuses, computes_in_dtype=lowers, reference=reference,
                reference_fn=reference_fn)


def _in_float64(framework: Framework, code: UserCode, given: Arguments) -> tuple[BaseException | None, str | None]:
    """One call of the forward in float64: what it raised (or None), and the native dtype its outputs come in
    when it computes in one anyway (or None)."""
    arrays = [framework.to_numpy(given.values[i]) for i in given.diff]
    try:
        names = framework.output_dtypes(code.call, given.values, given.diff, arrays)
    except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
        return exc, None
    return None, next((n for n in names if n in EPS), None)


def _raised(framework: Framework, code: UserCode, given: Arguments, dtype: str) -> BaseException | None:
    """What the target's forward raises on the inputs in `dtype`, or None when it runs."""
    arrays = [round_to(dtype, framework.to_numpy(given.values[i])) for i in given.diff]
    try:
        framework.evaluate(code.call, given.values, given.diff, arrays, dtype)
    except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
        return exc
    return None


def _refuses(framework: Framework, code: UserCode, given: Arguments, dtype: str) -> None:
    """Raises PythonError, at the line that raised, when the forward refuses the asked `dtype` (as it
    refuses float64) but runs in another of the native dtypes: it says which."""
    exc = _raised(framework, code, given, dtype)
    runs = next((d for d in EPS if d != dtype and _raised(framework, code, given, d) is None), None)
    if exc is None or runs is None:
        return  # it raises in every dtype: the float64 check says what it raised, and where
    path = where(code.forward)[0]
    line, col = user_position(exc, path)
    raise PythonError(f"the forward refuses {dtype}, as it refuses float64: in {dtype} it raised "
                      f"{exception_text(exc)} (it runs in {runs}: --dtype {runs}, or no --dtype, checks it "
                      f"there)", line, col if line else None, path if line else None,
                      source_text(path) if line else None)


@dataclass(frozen=True, kw_only=True)
class Judged:
    """The native check's rows: one per input, as node rows (the report's own, when there is no
    float64 check) and as gate rows (beside the float64 check's), and what the faces say of it."""
    nodes: list
    gates: list
    precision: Precision
    output: np.ndarray


def check(framework: Framework, code: UserCode, given: Arguments, chosen: Plan, layer: Layer, *,
          float64: CheckReport | None, settings: Settings) -> CheckReport:
    """The report: `float64`'s (the float64 check, when the forward accepts float64) with the native
    gate rows added, or (a forward that refuses float64) the native rows alone. Never raises for the
    user's errors."""
    report = float64
    if report is None:
        report = CheckReport(layer.name, settings=settings)
        report.path = layer.path
        report.rerun = f"rerun the {chosen.dtype} check of {layer.name}"
    if report.error is not None:
        return report
    try:
        judged = judge(framework, code, given, chosen, layer)
    except PythonError as err:
        report.error = err.located(layer.path, source_text(err.source or layer.path))
        return report
    report.precision = judged.precision
    if float64 is None:
        report.nodes = judged.nodes
        report.output, report.value = layer.output, judged.output
    else:
        report.gates += judged.gates
    return report


def judge(framework: Framework, code: UserCode, given: Arguments, chosen: Plan, layer: Layer) -> Judged:
    """The target's gradients in `chosen.dtype` against the reference's, each input allowed the
    error model's K·ε·√n·S; raises PythonError (at its line) for what the user's code raised."""
    dtype, names = chosen.dtype, [given.names[i] for i in given.diff]
    arrays = [round_to(dtype, framework.to_numpy(given.values[i])) for i in given.diff]
    try:
        pull = framework.pullback(code.call, given.values, given.diff, arrays, dtype)
        upstream = [round_to(dtype, u) for u in framework.seeded_upstream(pull.shapes)]
        own = pull.pull(upstream)
    except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
        line, col = user_position(exc, layer.path)
        raise PythonError(f"in {dtype}, the target raised {exception_text(exc)}", line, col,
                          layer.path if line else None) from None
    reference = _reference(framework, code, given, chosen, arrays, pull.shapes, upstream)
    output = joined(framework.evaluate(code.call, given.values, given.diff, arrays, dtype))
    reach = [_reach(framework, code, given, chosen, arrays, k) for k in range(len(arrays))]
    eps, rounds = EPS[dtype], REFERENCE_ROUNDS if chosen.reference is Reference.NATIVE else 1.0
    nodes, gates, allowances = [], [], []
    words = chosen.reference.value.replace("the same dtype", dtype)
    for k, name in enumerate(names):
        ref = np.asarray(reference[k], dtype=float)
        mine = np.zeros(arrays[k].shape) if own[k] is None else np.asarray(own[k], dtype=float)
        scale = max(float(np.max(np.abs(ref), initial=0.0)), 1e-300)
        gap = np.abs(mine - ref)
        gap = np.where(np.isfinite(gap), gap, np.inf)
        worst = int(np.argmax(gap)) if gap.size else 0
        err = float(gap.flat[worst]) / scale if gap.size else 0.0
        allowed = K * eps * math.sqrt(reach[k]) * rounds
        allowances.append(Allowance(name=name, n=reach[k], allowed=allowed))
        status = Status.PASS if err <= allowed else Status.FAIL
        index = tuple(int(i) for i in np.unravel_index(worst, ref.shape)) if ref.ndim else None
        at = f" at {list(index)}" if index else ""
        note = (f"in {dtype}: {name}'s gradient{at} is off by {err:.1e} of its largest element from {words}, "
                + ("within" if status is Status.PASS else "past")
                + f" the {dtype} error model's {allowed:.1e} (K·ε·√n{' · 2' if rounds > 1 else ''}: "
                  f"K = {K:g}, ε = {eps:.1e}, n = {reach[k]})")
        line, col = layer.grad_lines.get(name, (layer.line, 1))
        nodes.append(NodeRow(name=name, op="input", shape=tuple(arrays[k].shape), line=line, col=col,
                             value=arrays[k], grad=mine, numeric=ref, symbolic=None, numeric_error=err,
                             symbolic_error=None, status=status, note=note if status is Status.FAIL else None,
                             tolerance=allowed, worst_index=index,
                             numeric_method=f"{dtype}: against {words} (no finite differences)"))
        gates.append(GateRow(name=layer.backward_name, gate=dtype, input=name, line=line, col=col,
                             call_line=layer.line, status=status, numeric_error=err, symbolic_error=None,
                             tolerance=allowed, point=1, note=note))
    said = Precision(dtype=dtype, refuses_float64=chosen.refuses_float64, reference=words, k=K, eps=eps,
                     reference_rounds=rounds, inputs=tuple(allowances), computes_in_dtype=chosen.computes_in_dtype)
    return Judged(nodes=nodes, gates=gates, precision=said, output=output)


def _reference(framework: Framework, code: UserCode, given: Arguments, chosen: Plan, arrays: list,
               shapes: list, upstream: list) -> list:
    """The reference gradients for `upstream` at `arrays` (a reference's own error: positioned)."""
    if chosen.reference is Reference.GIVEN:
        fn = chosen.reference_fn
        path, line = where(fn)
        try:
            pull = framework.pullback(fn, given.values, given.diff, arrays, FLOAT64)
        except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
            at, col = user_position(exc, path)
            raise PythonError(f"the reference {qualname(fn)} raised {exception_text(exc)}", at or line,
                              col if at else 1, path) from None
        if [tuple(s) for s in pull.shapes] != [tuple(s) for s in shapes]:
            raise PythonError(f"the reference {qualname(fn)} returns output(s) of shape(s) "
                              f"{_shapes(pull.shapes)} where {code.name} gives {_shapes(shapes)}", line, 1, path)
        grads = pull.pull(upstream)
    else:
        dtype = chosen.dtype if chosen.reference is Reference.NATIVE else FLOAT64
        pull = framework.pullback(code.autodiff, given.values, given.diff, arrays, dtype)
        grads = pull.pull(upstream)
    return [np.zeros(np.shape(a)) if g is None else g for g, a in zip(grads, arrays)]


def _shapes(shapes: list) -> str:
    return ", ".join("×".join(map(str, s)) or "scalar" for s in shapes)


def _reach(framework: Framework, code: UserCode, given: Arguments, chosen: Plan, arrays: list, k: int) -> int:
    """n for input k: the most outputs one of MAX_REACH_PROBES elements spread over it reaches, at
    least 1 — the outputs that change when a NaN, +inf or -inf is put in it (an op that swallows one,
    `where(x > 0, x, 0)` a NaN or a negative infinity, lets another through); the forward run in
    float64 where it accepts it."""
    dtype = chosen.dtype if chosen.refuses_float64 else FLOAT64
    function = code.autodiff if code.reference else code.call
    base = joined(framework.evaluate(function, given.values, given.diff, arrays, dtype))
    most = 1
    for i in probed(arrays[k].size):
        changed = np.zeros(base.shape, dtype=bool)
        for value in PROBE_VALUES:
            probe = [a.copy() for a in arrays]
            probe[k].flat[i] = value
            try:
                out = joined(framework.evaluate(function, given.values, given.diff, probe, dtype))
            except USER_ERRORS:  # noqa: BLE001 - a forward that refuses a NaN or an inf tells nothing
                continue
            if out.shape == base.shape:
                changed |= ~((out == base) | (np.isnan(out) & np.isnan(base)))
        most = max(most, int(np.count_nonzero(changed)))
    return most


def probed(size: int) -> list[int]:
    """The flat indices of the elements of an input of `size` elements whose reach is measured: at most
    MAX_REACH_PROBES of them, spread evenly from the first to the last."""
    return sorted({int(round(v)) for v in np.linspace(0, size - 1, min(MAX_REACH_PROBES, size))})


def load_reference(spec: str) -> Callable:
    """The function `FILE.py::NAME` names (--reference): imports FILE (this runs its code); a missing
    file, a missing name or one that is no function is an error at its place."""
    path, sep, name = spec.rpartition("::")
    if not sep or not path or not name:
        raise PythonError(f"--reference '{spec}': expected FILE.py::NAME, e.g. kernels.py::gelu_reference")
    module = load_module(path)
    found = lookup(module, name)
    if found is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise PythonError(f"{path} has no '{name}' to be the reference" + did_you_mean(name, names), None, None,
                          display(path), source_text(path))
    if not callable(found):
        line = _assigned_line(path, name.split(".")[-1])
        raise PythonError(f"the reference {name} is not a function (it is {type(found).__name__})", line,
                          1 if line else None, display(path), source_text(path))
    return found


def _assigned_line(path: str, name: str) -> int | None:
    """The line of the module's top-level statement that binds `name`, or None."""
    try:
        tree = ast.parse(source_text(path) or "")
    except SyntaxError:
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) or getattr(node, "name", None) == name:
            return node.lineno
    return None
