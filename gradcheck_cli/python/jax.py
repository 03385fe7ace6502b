"""JAX (an optional extra, imported only when a target uses it): a function with a `jax.custom_vjp`,
`jax.custom_jvp` or `jax.custom_gradient` rule (also behind `jax.jit`) checked by this project's
engine, as one more Python target. The whole check runs inside `jax.enable_x64` (restored after):
the inputs keep their dtype (numpy float64 stays float64), and only inputs in float32, float16 or
bfloat16 (or a dtype asked for) are checked again in that dtype. The rule's primal output under
differentiation (its `fwd`, its `jvp`) is compared with the function's own. The rows' culprits are in
the user's rule: the line of `bwd` that returns the failing cotangent, of the `jvp` that carries the
failing input's tangent, of the rule a `custom_gradient` function returns.
This module is JAX's side of the bridge (bridge.py): arrays in and out, `jax.vmap` over the engine's
rows, `jax.vjp`, and a rule's parts.

    check(f, (x, y))            # f decorated with @jax.custom_vjp, f.defvjp(f_fwd, f_bwd)
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field, replace
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import bridge, forward_mode, native
from ..checking import precision
from ..core.errors import GradcheckError, UsageError
from ..core.report import CheckReport, GateRow
from ..core.settings import Settings
from ..core.status import Status
from ..core.streams import Stream, stream
from .bridge import FLOAT64, LOW_PRECISION, Arguments, Bridge, Pullback, UserCode, placed
from .pycheck import check_python, layer_settings
from .pymodule import rerun_command
from .jax_source import (gradient_rule, own, primal_position, result_position, returned_lines, tangent_lines,
                         vjp_lines)
from .structure import drawn, structures
from .pysource import USER_ERRORS, PythonError, exception_text, no_parameter, qualname, source_text, user_position, where
from .usercode import Layer, quiet


class Jax:
    """The `Framework` of JAX arrays: float64 inside `jax.enable_x64`, `jax.vjp`; a function's
    floating-point outputs are the leaves of what it returns (one array, or a tuple of them)."""

    word = "array"

    def differentiable(self, values: list) -> list[int]:
        """Every floating-point array."""
        return [i for i, a in enumerate(values) if hasattr(a, "dtype") and jnp.issubdtype(_dtype(a), jnp.floating)]

    def to_numpy(self, value) -> np.ndarray:
        return np.asarray(value, dtype=float)

    def dtype_name(self, value) -> str:
        return str(_dtype(value))

    def output_dtypes(self, function, values: list, diff: list[int], arrays: list) -> list[str]:
        with jax.enable_x64(True):
            return [str(o.dtype) for o in _floating(function(*placed(values, diff, _arrays(arrays, FLOAT64))))]

    def evaluate(self, function, values: list, diff: list[int], arrays: list, dtype: str = FLOAT64) -> list[np.ndarray]:
        with jax.enable_x64(True):
            return [np.asarray(o, dtype=float)
                    for o in _floating(function(*placed(values, diff, _arrays(arrays, dtype))))]

    def evaluate_rows(self, function, values: list, diff: list[int], arrays: list) -> np.ndarray:
        dims = tuple(0 if i in diff else None for i in range(len(values)))

        def outputs(*args):
            return tuple(_floating(function(*args)))
        with jax.enable_x64(True):
            rows = [np.asarray(o, dtype=float)
                    for o in jax.vmap(outputs, in_axes=dims)(*placed(values, diff, _arrays(arrays, FLOAT64)))]
        # flattened and joined in numpy (exact copies): in JAX, one more operation compiled for each number of rows
        return np.concatenate([o.reshape(o.shape[:1] + (int(np.prod(o.shape[1:])),)) for o in rows], axis=1)

    def pullback(self, function, values: list, diff: list[int], arrays: list, dtype: str) -> Pullback:
        with jax.enable_x64(True):
            out, vjp = jax.vjp(lambda *d: function(*placed(values, diff, d)), *_arrays(arrays, dtype))
        leaves, tree = jax.tree_util.tree_flatten(out)
        floating = [leaf for leaf in leaves if _is_floating(leaf)]

        def pull(cotangents: list) -> list:
            given = iter(cotangents)
            with jax.enable_x64(True):
                cts = [jnp.asarray(np.reshape(next(given), np.shape(leaf)), dtype=leaf.dtype) if _is_floating(leaf)
                       else np.zeros(np.shape(leaf), dtype=jax.dtypes.float0) for leaf in leaves]
                grads = vjp(jax.tree_util.tree_unflatten(tree, cts))
            return [None if g is None else np.asarray(g, dtype=float) for g in grads]
        return Pullback(shapes=[tuple(np.shape(o)) for o in floating], pull=pull)

    def seeded_upstream(self, shapes: list[tuple]) -> list[np.ndarray]:
        rng = stream(0, Stream.JAX_LOW_PRECISION)
        return [rng.standard_normal(s) for s in shapes]


JAX = Jax()


def _dtype(value) -> np.dtype:
    """An argument's own dtype (a numpy float64 array's is float64, whatever JAX's x64 flag says)."""
    dtype = getattr(value, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(value).dtype


def _is_floating(value) -> bool:
    return hasattr(value, "dtype") and jnp.issubdtype(value.dtype, jnp.floating)


def _floating(result) -> list:
    """A call's floating-point outputs, in order: the leaves of what it returned."""
    return [leaf for leaf in jax.tree_util.tree_leaves(result) if _is_floating(leaf)]


def _arrays(arrays: list, dtype: str) -> list:
    return [jnp.asarray(np.asarray(a), dtype=dtype) for a in arrays]


# --- a rule's parts --------------------------------------------------------------------------------

class Kind(enum.Enum):
    """Which of JAX's ways of writing a derivative rule a target uses."""
    VJP = "custom_vjp"
    JVP = "custom_jvp"
    GRADIENT = "custom_gradient"
    NONE = "none"   # a function of arrays without a rule (its backward is JAX's autodiff)


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A target's parts: what is called (jit included), the function without its rule, and where the
    rule is written (its file, first line, and each differentiated input's line)."""
    kind: Kind
    code: UserCode
    nondiff: tuple[int, ...]        # nondiff_argnums: arguments the rule takes no derivative for
    path: str                       # the rule's file, as displayed (the rows' lines are in it)
    line: int                       # the rule's first line
    name: str                       # the rule's name, as its checks are labelled
    lines: Callable[[list[str]], dict] = field(repr=False)  # the inputs' names -> {name: (line, col)}
    primal_rule: Callable | None    # the function that returns the primal under differentiation (fwd, jvp)
    parsed: object = None           # the vjp rule whose returned tuple pysource reads (a shared cause), or None


def rule_object(f):
    """The custom_vjp or custom_jvp object `f` is, or wraps (`jax.jit`, `functools.wraps`), or None."""
    seen = 0
    while f is not None and seen < 32:
        if isinstance(f, (jax.custom_vjp, jax.custom_jvp)):
            return f
        f, seen = getattr(f, "__wrapped__", None), seen + 1
    return None


def parts(f) -> Rule:
    """`f`'s rule and its parts; raises PythonError when it declares a rule it never defined."""
    obj = rule_object(f)
    if isinstance(obj, jax.custom_vjp):
        user = _custom_gradient_function(obj)
        if user is not None:
            return _gradient_rule(f, user)
        if obj.fwd is None or obj.bwd is None:
            raise PythonError(f"{qualname(obj.fun)} is a jax.custom_vjp with no rule: call "
                              f"{qualname(obj.fun)}.defvjp(fwd, bwd)", where(own(obj.fun))[1], 1)
        nondiff = tuple(getattr(obj, "nondiff_argnums", ()) or ())
        path, line = where(own(obj.bwd))

        def cotangents(names: list[str]) -> dict:
            return vjp_lines(obj.bwd, [n for i, n in enumerate(names) if i not in nondiff])
        return Rule(kind=Kind.VJP, code=_code(f, obj.fun, obj.fun, obj.bwd), nondiff=nondiff, path=path, line=line,
                    name=qualname(own(obj.bwd)), lines=cotangents, primal_rule=obj.fwd,
                    parsed=None if nondiff else own(obj.bwd))
    if isinstance(obj, jax.custom_jvp):
        if obj.jvp is None:
            raise PythonError(f"{qualname(obj.fun)} is a jax.custom_jvp with no rule: define it with "
                              f"@{qualname(obj.fun)}.defjvp", where(own(obj.fun))[1], 1)
        nondiff = tuple(getattr(obj, "nondiff_argnums", ()) or ())
        per_input = _defjvps(obj.jvp)
        written = next((j for j in per_input if j is not None), None) if per_input else obj.jvp
        path, line = where(own(written)) if written is not None else where(own(obj.fun))

        def tangents(names: list[str]) -> dict:
            wrt = [n for i, n in enumerate(names) if i not in nondiff]
            if per_input is not None:
                found = {n: result_position(j) for n, j in zip(wrt, per_input) if j is not None}
                return {n: at for n, at in found.items() if at is not None}
            return tangent_lines(obj.jvp, wrt, len(nondiff))
        return Rule(kind=Kind.JVP, code=_code(f, obj.fun, obj.fun, written or obj.fun), nondiff=nondiff, path=path,
                    line=line, name=qualname(own(written or obj.fun)), lines=tangents,
                    primal_rule=obj.jvp if per_input is None else None)  # (defjvps: JAX calls the function)
    path, line = where(own(f))
    return Rule(kind=Kind.NONE, code=replace(_code(f, f, f, f), reference=False), nondiff=(), path=path, line=line,
                name=qualname(own(f)), lines=lambda names: {}, primal_rule=None)


def _code(f, primal, function, backward) -> UserCode:
    """The bridge's view: `f` called as given, autodiff through `primal` the reference."""
    try:
        params = tuple(p.name for p in inspect.signature(function).parameters.values()
                       if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        params = ()
    return UserCode(name=qualname(own(function)), call=f, batched=f, autodiff=primal, reference=True,
                    forward=own(function), backward=own(backward), parameters=params)


def _custom_gradient_function(obj):
    """The user's function behind `jax.custom_gradient` (a custom_vjp JAX writes around it), or None."""
    inner = getattr(obj, "fun", None)
    code = getattr(inner, "__code__", None)
    if code is None or not getattr(inner, "__qualname__", "").startswith("custom_gradient.") \
            or "fun" not in code.co_freevars:
        return None
    closure = getattr(inner, "__closure__", None) or ()
    return closure[code.co_freevars.index("fun")].cell_contents if len(closure) == len(code.co_freevars) else None


def _gradient_rule(f, user) -> Rule:
    """`jax.custom_gradient`: `user(*args) -> (out, rule)`; the reference is autodiff through `out`."""
    rule = gradient_rule(user)
    path, line = where(own(user))
    name = getattr(rule.node, "name", None) if rule is not None else None

    def lines(names: list[str]) -> dict:
        return returned_lines(rule, names) if rule is not None else {}
    return Rule(kind=Kind.GRADIENT, code=_code(f, lambda *a: user(*a)[0], user, user), nondiff=(), path=path,
                line=getattr(rule.node, "lineno", line) if rule is not None else line,
                name=name or qualname(own(user)), lines=lines, primal_rule=None)


def _defjvps(jvp) -> list | None:
    """The per-input rules of `f.defjvps(...)` (JAX wraps them in a jvp of its own), or None."""
    code = getattr(jvp, "__code__", None)
    if code is None or "jvps" not in code.co_freevars:
        return None
    rules = jvp.__closure__[code.co_freevars.index("jvps")].cell_contents
    return list(rules) if isinstance(rules, (tuple, list)) else None


# --- the check -------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class RuleBridge(Bridge):
    """The bridge, its rows' lines in the user's rule, and the points its backward was called at."""
    rule: Rule
    points: list = field(default_factory=list)

    def backward(self, dout: np.ndarray, arrays: list) -> list:
        if len(self.points) < 4 and not any(all(np.array_equal(a, b) for a, b in zip(p, arrays)) for p in self.points):
            self.points.append([np.array(a, dtype=float) for a in arrays])
        try:
            return super().backward(dout, arrays)
        except USER_ERRORS as exc:  # noqa: BLE001 - the user's code, or JAX turning the user's rule into a VJP
            if self.rule.kind is not Kind.JVP or user_position(exc, self.rule.path)[0] is not None:
                raise
            raise PythonError("JAX could not transpose the jvp rule into a VJP (is the tangent it returns linear "
                              f"in the tangents?): {exception_text(exc)}") from None

    def layer(self, name: str | None) -> Layer:
        rule, names = self.rule, self.given.names
        wanted = [names[i] for i in self.given.diff]
        try:
            lines = rule.lines(list(names))
        except (RecursionError, ValueError, TypeError, AttributeError):  # an odd source: the rule's first line
            lines = {}
        return Layer(name or self.code.name, self.forward, self.backward, wanted, rule.path, rule.line,
                     where(self.code.forward), {n: lines[n] for n in wanted if n in lines}, backward_name=rule.name,
                     code=rule.parsed, reference=self.reference, batched=True)


def check(f, inputs, *, name: str | None = None, settings: Settings | None = None, dtype: str | None = None,
          structure: dict | None = None, reference_fn=None, **options) -> CheckReport:
    """Check `f` (a function with a jax.custom_vjp, custom_jvp or custom_gradient rule, jitted or not)
    at `inputs` (a tuple of arguments, or a dict by name): every floating-point array is
    differentiated (but nondiff_argnums), other arguments pass through. `dtype` ("float32",
    "float16", "bfloat16") also checks the rule in that dtype, with its error model, against
    `reference_fn` (a plain differentiable function of the same arguments, run in float64) or JAX's
    autodiff of the primal (native.py); a function that refuses float64 is checked so anyway; inputs
    in a low dtype without `dtype` get its low-precision rows. `structure`: {input name: "symmetric", "spd" or "simplex"} (structure.py), as for torch."""
    settings = layer_settings(settings, options)
    if dtype is not None and dtype not in LOW_PRECISION:
        raise UsageError(f"dtype must be one of {', '.join(LOW_PRECISION)}, not {dtype!r}")
    with jax.enable_x64(True):
        try:
            rule = parts(f)
        except GradcheckError as err:  # a rule declared and never defined: the report says so
            report = CheckReport(name or qualname(own(f)), settings=settings)
            report.path = where(own(f))[0]
            report.error = err.located(report.path, source_text(report.path))
            return report
        given = bridge.arguments(JAX, rule.code, inputs)
        given = replace(given, diff=[i for i in given.diff if i not in rule.nondiff])
        if not given.diff:
            return bridge.nothing_to_differentiate(JAX, rule.code, name, settings)
        stated = structures(structure, [given.names[i] for i in given.diff])
        return check_native(rule, given, name=name, settings=settings, dtype=dtype, structure=stated,
                            reference_fn=reference_fn)


def check_native(rule: Rule, given: Arguments, *, name: str | None, settings: Settings, dtype: str | None,
                 structure: dict | None, reference_fn=None) -> CheckReport:
    """check_rule, and the native check of `dtype` or of a function that refuses float64 (native.py)."""
    with jax.enable_x64(True), quiet():
        try:
            plan = native.plan(JAX, rule.code, given, dtype, reference_fn)
        except GradcheckError as err:
            report = CheckReport(name or rule.code.name, settings=settings)
            report.error = err
            return report
        if plan is None:
            return check_rule(rule, given, name=name, settings=settings, dtype=dtype, structure=structure)
        layer = RuleBridge(framework=JAX, code=rule.code, given=given, rule=rule).layer(name)
        float64 = None if plan.refuses_float64 else check_rule(rule, given, name=name, settings=settings,
                                                               structure=structure, low_rows=False)
        return native.check(JAX, rule.code, given, plan, layer, float64=float64, settings=settings)


def check_rule(rule: Rule, given: Arguments, *, name: str | None, settings: Settings,
               dtype: str | None = None, structure: dict | None = None, low_rows: bool = True) -> CheckReport:
    """The Python-layer check in float64; then, when it found no error, the rule's primal output
    against the function's, and, when nothing failed, the low-precision rows (of `dtype`, or of the
    first differentiated argument's dtype that is one)."""
    with jax.enable_x64(True), quiet():
        rows = RuleBridge(framework=JAX, code=rule.code, given=given, rule=rule)
        layer = rows.layer(name)
        report = check_python(layer, {given.names[i]: JAX.to_numpy(given.values[i]) for i in given.diff}, settings,
                              structure)
        if report.error is not None:
            return report
        report.gates += primal_rows(rule, given, rows.points, layer, settings)
        if rule.kind is Kind.JVP and not structure:  # the jvp in forward mode too, as written (forward_mode.py;
            # its tangents are free: an input held in a structure would leave it)
            report.gates += jvp_rows(rule, given, layer, settings)
        wrong = any(r.status == "fail" for r in report.nodes + report.gates)
        low = [d for d in [dtype] + [JAX.dtype_name(given.values[i]) for i in given.diff] if d in LOW_PRECISION]
        if low and not wrong and low_rows:  # (a rule wrong in float64 has nothing to add in float32)
            report.gates += low_precision_rows(rule.code, given, low[0], layer)
    return report


def primal_rows(rule: Rule, given: Arguments, points: list, layer: Layer, settings: Settings) -> list[GateRow]:
    """One GateRow: the primal output the rule gives under differentiation (a custom_vjp's fwd, a
    custom_jvp's jvp) against the function's own, at each point the backward was checked at (as
    jax.test_util.check_grads compares them); none for a rule that cannot differ (custom_gradient)."""
    at = primal_position(rule.primal_rule) if rule.primal_rule is not None else None
    if at is None or not points:
        return []
    (line, col), file = at, where(own(rule.primal_rule))[0]
    worst: tuple[float, int, str] = (0.0, 1, "")
    for point, arrays in enumerate(points, 1):
        try:
            direct = JAX.evaluate(rule.code.call, given.values, given.diff, arrays)
            with jax.enable_x64(True):
                out, _ = jax.vjp(lambda *d: rule.code.call(*placed(given.values, given.diff, d)),
                                 *_arrays(arrays, FLOAT64))
            ruled = [np.asarray(o, dtype=float) for o in _floating(out)]
        except USER_ERRORS:  # noqa: BLE001 - the check itself has said what the user's code raised
            continue
        error, said = _primal_gap(direct, ruled, settings)
        if error > 0:  # the first point it differs at (the given one first)
            worst = (error, min(point, 2), said)
            break
    err, point, said = worst
    failed = err > 0
    note = (f"the forward rule's output differs from the function's: {qualname(own(rule.primal_rule))} gives "
            f"{said} (under jax.grad, jax.vjp and jax.jvp the rule's value is the one returned)" if failed else None)
    return [GateRow(name=qualname(own(rule.primal_rule)), gate="forward rule", input=layer.output, line=line,
                    col=col, call_line=line, status=Status.FAIL if failed else Status.PASS, numeric_error=err if failed else 0.0,
                    symbolic_error=None, tolerance=settings.rtol, point=point, note=note,
                    file=None if file == layer.path else file)]


def jvp_rows(rule: Rule, given: Arguments, layer: Layer, settings: Settings) -> list[GateRow]:
    """A custom_jvp's rule in forward mode: `jax.jvp` along seeded tangents on each input against the
    function's directional derivative (forward_mode.py), one row per input, at the rule's lines."""
    names = [given.names[i] for i in given.diff]

    def call(arrays: list) -> list:
        dtype = "complex128" if any(np.iscomplexobj(a) for a in arrays) else FLOAT64
        with jax.enable_x64(True):
            out = rule.code.call(*placed(given.values, given.diff, _arrays(arrays, dtype)))
            return [np.asarray(o) for o in jax.tree_util.tree_leaves(out)
                    if hasattr(o, "dtype") and jnp.issubdtype(o.dtype, jnp.inexact)]

    def jvp(arrays: list, tangents: list) -> list:
        with jax.enable_x64(True):
            out, tangent = jax.jvp(lambda *d: rule.code.call(*placed(given.values, given.diff, d)),
                                   tuple(_arrays(arrays, FLOAT64)), tuple(_arrays(tangents, FLOAT64)))
            pairs = zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(tangent))
            return [np.asarray(t, dtype=float) for o, t in pairs if _is_floating(o)]
    try:
        lines = rule.lines(list(given.names))
    except (RecursionError, ValueError, TypeError, AttributeError):  # an odd source: the rule's first line
        lines = {}
    said = forward_mode.Rule(name=forward_mode.named(rule.name), file=None if rule.path == layer.path else rule.path,
                             line=rule.line, lines={n: lines.get(n, (rule.line, 1)) for n in names})
    arrays = [JAX.to_numpy(given.values[i]) for i in given.diff]
    return forward_mode.rows(forward_mode.functions(call, jvp), arrays, names, said, settings)


def _primal_gap(direct: list, ruled: list, settings: Settings) -> tuple[float, str]:
    """(0, "") when the rule's primal outputs match the function's within rtol of their scale (a NaN
    matched by a NaN), else (the relative gap, a sentence)."""
    if len(direct) != len(ruled) or any(a.shape != b.shape for a, b in zip(direct, ruled)):
        return float("inf"), (f"{len(ruled)} output(s) of shape(s) {[b.shape for b in ruled]} where the function "
                              f"gives {[a.shape for a in direct]}")
    for k, (a, b) in enumerate(zip(direct, ruled)):
        scale = max(float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)), 1e-300)
        gap = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
        gap = np.where(np.isnan(gap), np.inf, gap)
        worst = int(np.argmax(gap)) if gap.size else 0
        if gap.size and gap.flat[worst] > settings.rtol * scale + settings.atol:
            index = [int(i) for i in np.unravel_index(worst, a.shape)] if a.ndim else []
            which = f" of output {k}" if len(direct) > 1 else ""
            return float(gap.flat[worst] / scale), (f"{b.flat[worst]:.6g} where the function gives "
                                                     f"{a.flat[worst]:.6g}{which}" + (f" at {index}" if index else ""))
    return 0.0, ""


def low_precision_rows(code: UserCode, given: Arguments, dtype: str, layer: Layer) -> list[GateRow]:
    """GateRows, one per differentiated argument: the rule in `dtype` against itself in float64 (the
    float64 check has judged it; autodiff of the primal is not a derivative at a tie, a `where` branch
    or a domain edge), allowed K× the error JAX's autodiff of the primal makes in `dtype` against its
    own float64 gradient."""
    reference = bridge.seeded_gradients(JAX, code.call, given, FLOAT64)
    lowered = bridge.seeded_gradients(JAX, code.call, given, dtype)
    if reference is None or lowered is None:
        return []
    auto64 = bridge.seeded_gradients(JAX, code.autodiff, given, FLOAT64) if code.reference else None
    auto = bridge.seeded_gradients(JAX, code.autodiff, given, dtype) if auto64 is not None else None
    # precision.rows measures autodiff's error against `reference`: give it autodiff's own error, placed there
    baseline = None
    if auto is not None and auto64 is not None:
        baseline = [r + (a - a64) for r, a, a64 in zip(reference, auto, auto64)]
    return precision.rows(reference, lowered, baseline, [given.names[i] for i in given.diff], dtype, layer)


# --- FILE.py::NAME on the command line --------------------------------------------------------------

def check_spec(spec: str, f, shapes: dict, values: dict, params: dict, settings: Settings,
               structure: dict | None = None, dtype: str | None = None, reference: tuple | None = None) -> CheckReport:
    """`check-py FILE.py::f --shape x=4,5 [--at y=...] [--param k=...]`: float64 arrays of the given
    shapes (seeded normal values) or values, differentiated; params passed as JAX arrays (their
    integer dtypes kept) or as the JSON values they are; in the function's parameter order."""
    settings = layer_settings(settings, {})
    with jax.enable_x64(True):
        rule = parts(f)
        names = bridge.argument_names(rule.code.parameters, 64)
        given = list(shapes) + [n for n in values if n not in shapes]
        for n in given + list(params):
            if n not in names:
                raise no_parameter(rule.code.forward, n, names, rule.code.name)
        if not given:
            raise PythonError("give each differentiated input's shape with --shape NAME=D1,D2 (or a value with --at)")
        held = [n for n in given if names.index(n) in rule.nondiff]
        if held:
            raise PythonError(f"{rule.code.name}'s '{held[0]}' is in its nondiff_argnums: give it with --param")
        rng = stream(settings.seed, Stream.PYTHON_MODULE)
        stated = structures(structure, given)
        defaults = _defaults(rule.code.forward)
        missing = [n for n in names if n not in defaults and n not in given and n not in params
                   and not n.startswith("input")]
        if missing:
            raise PythonError(f"{rule.code.name}'s parameter '{missing[0]}' has no default: give it too "
                              "(--shape, --at or --param)")
        last = max(names.index(n) for n in given + list(params))
        args, diff = [], []
        for i, n in enumerate(names[: last + 1]):
            if n in given:
                draw = values[n] if n in values else drawn(rng.standard_normal(shapes[n]), stated.get(n), n)
                args.append(np.asarray(draw, dtype=float))
                diff.append(i)
            else:  # a param, or a parameter left to its default
                args.append(_param(params[n]) if n in params else defaults[n])
        given_args = Arguments(values=args, names=names[: last + 1], diff=diff)
        report = check_native(rule, given_args, name=spec, settings=settings, dtype=dtype, structure=stated,
                              reference_fn=reference[1] if reference else None)
    report.source = spec
    report.rerun = (rerun_command(spec, shapes, values, params, settings, stated) + (f" --dtype={dtype}" if dtype else "")
                    + (f" --reference={reference[0]}" if reference else ""))
    return report


def _defaults(fn) -> dict:
    """The positional parameters that have a default, and it."""
    try:
        return {p.name: p.default for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty}
    except (TypeError, ValueError):
        return {}


def _param(value):
    """A --param value: a JSON array as a JAX array of its own dtype (integers stay integers, for
    indices and labels), anything else as it is."""
    if isinstance(value, np.ndarray):
        return jnp.asarray(value)
    return value


