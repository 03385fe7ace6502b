"""JAX (an optional extra, imported only when a target uses it): a function with a `jax.custom_vjp`
rule checked by this project's engine, as one more Python target, in float64 (`jax.enable_x64`).
The culprit is the line of the rule's `bwd` that returns the failing cotangent; inputs in float32,
float16 or bfloat16 are checked again in their dtype against the float64 reference (precision.py).

    check(f, (x, y))            # f decorated with @jax.custom_vjp, f.defvjp(f_fwd, f_bwd)
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from ..checking import precision
from ..core.errors import GradcheckError
from .pycheck import Layer, _settings, check_python
from .pysource import PythonError, grad_lines, qualname, where
from ..core.report import CheckReport
from ..core.settings import Settings
from ..core.streams import Stream, stream

LOW = ("float32", "float16", "bfloat16")


def _parts(f):
    """(the primal function, the rule's bwd or None) of a custom_vjp function (or of a plain one)."""
    return getattr(f, "fun", f), getattr(f, "bwd", None)


def _names(f, n: int) -> list:
    fun, _ = _parts(f)
    try:
        params = [p.name for p in inspect.signature(fun).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"input{i}" for i in range(n)]


class _Bridge:
    """The function as plain calls on float64 numpy arrays (jax.vmap over the engine's rows)."""

    def __init__(self, f, args: list, diff: list):
        self.f, self.args, self.diff = f, args, diff

    def _call_args(self, arrays):
        args = list(self.args)
        for i, a in zip(self.diff, arrays):
            args[i] = jnp.asarray(np.asarray(a), dtype=jnp.float64)
        return args

    def forward(self, arrays):
        with jax.enable_x64(True):
            if all(np.ndim(a) == np.ndim(self.args[i]) + 1 for i, a in zip(self.diff, arrays)):
                dims = tuple(0 if i in self.diff else None for i in range(len(self.args)))
                return np.asarray(jax.vmap(self.f, in_axes=dims)(*self._call_args(arrays)), dtype=float)
            return np.asarray(self.f(*self._call_args(arrays)), dtype=float)

    def backward(self, dout, arrays, through=None):
        """The cotangents for `dout` through the rule (or through `through`, differentiated by JAX)."""
        with jax.enable_x64(True):
            args = self._call_args(arrays)
            f = through or self.f
            out, vjp = jax.vjp(lambda *d: f(*_with(args, self.diff, d)), *[args[i] for i in self.diff])
            grads = vjp(jnp.asarray(np.reshape(dout, np.shape(out)), dtype=out.dtype))
        return [None if g is None else np.asarray(g, dtype=float) for g in grads]

    def reference(self, dout, arrays):
        """The exact cotangents: JAX's autodiff of the primal function, the rule left out; None without a rule."""
        fun, bwd = _parts(self.f)
        return None if bwd is None else self.backward(dout, arrays, fun)


def _with(args: list, diff: list, values) -> list:
    out = list(args)
    for i, v in zip(diff, values):
        out[i] = v
    return out


def check(f, inputs, *, name: str | None = None, settings: Settings | None = None, **options) -> CheckReport:
    """Check `f` (a jax.custom_vjp function) at `inputs` (a tuple of arguments, or a dict by name):
    every floating-point array is differentiated, other arguments pass through."""
    args = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    names = list(inputs) if isinstance(inputs, dict) else _names(f, len(args))
    diff = [i for i, a in enumerate(args) if hasattr(a, "dtype") and jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
    settings = _settings(settings, options)
    if not diff:
        report = CheckReport(name or qualname(_parts(f)[0]), settings=settings)
        report.error = GradcheckError("no floating-point array among the inputs: nothing to differentiate", None, None)
        return report
    fun, bwd = _parts(f)
    code = bwd or fun
    path, line = where(code)
    lines = grad_lines(code, tuple(names))
    wanted = [names[i] for i in diff]
    bridge = _Bridge(f, args, diff)
    layer = Layer(name or qualname(fun), bridge.forward, bridge.backward, wanted, path, line, where(fun),
                  {n: lines[n] for n in wanted if n in lines}, backward_name=qualname(code), code=code,
                  reference=bridge.reference, batched=True)  # rows through jax.vmap
    report = check_python(layer, {names[i]: np.asarray(args[i], dtype=float) for i in diff}, settings)
    low = [str(jnp.asarray(args[i]).dtype) for i in diff if str(jnp.asarray(args[i]).dtype) in LOW]
    if report.error is None and low:
        report.gates += _low_precision(f, args, diff, names, low[0], layer)
    return report


def _low_precision(f, args: list, diff: list, names: list, dtype: str, layer: Layer) -> list:
    fun, _ = _parts(f)
    ref = _grads(fun, args, diff, "float64")
    own = _grads(f, args, diff, dtype)
    if ref is None or own is None:
        return []
    return precision.rows(ref, own, _grads(fun, args, diff, dtype), [names[i] for i in diff], dtype, layer)


def _grads(f, args: list, diff: list, dtype: str):
    """The cotangents for a fixed seeded upstream, in `dtype`, through `f` (the rule, or autodiff of
    the primal function), as float64 arrays; None when that fails."""
    try:
        with jax.enable_x64(True):
            moved = [jnp.asarray(np.asarray(args[i], dtype=float), dtype=dtype) for i in diff]
            out, vjp = jax.vjp(lambda *d: f(*_with(args, diff, d)), *moved)
            u = stream(0, Stream.JAX_LOW_PRECISION).standard_normal(np.shape(out))
            grads = vjp(jnp.asarray(u, dtype=out.dtype))
        return [np.asarray(g, dtype=float) for g in grads]
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything (the float64 check says what)
        if isinstance(exc, PythonError):
            raise
        return None
