"""JAX (an optional extra, imported only when a target uses it): a function with a `jax.custom_vjp`
rule checked by this project's engine, as one more Python target, in float64 (`jax.enable_x64`).
The culprit is the line of the rule's `bwd` that returns the failing cotangent; inputs in float32,
float16 or bfloat16 are checked again in their dtype against the float64 reference (precision.py).
This module is JAX's side of the bridge (bridge.py): arrays in and out, `jax.vmap` over the engine's
rows, `jax.vjp`, and a custom_vjp function's parts.

    check(f, (x, y))            # f decorated with @jax.custom_vjp, f.defvjp(f_fwd, f_bwd)
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from . import bridge
from .bridge import Pullback, UserCode, placed
from .pycheck import layer_settings
from .pysource import qualname
from ..core.report import CheckReport
from ..core.settings import Settings
from ..core.streams import Stream, stream


class Jax:
    """The `Framework` of JAX arrays: float64 inside `jax.enable_x64`, `jax.vjp`."""

    word = "array"

    def differentiable(self, values: list) -> list[int]:
        """Every floating-point array."""
        return [i for i, a in enumerate(values)
                if hasattr(a, "dtype") and jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]

    def to_numpy(self, value) -> np.ndarray:
        return np.asarray(value, dtype=float)

    def dtype_name(self, value) -> str:
        return str(jnp.asarray(value).dtype)

    def evaluate(self, function, values: list, diff: list[int], arrays: list) -> list[np.ndarray]:
        with jax.enable_x64(True):
            return [np.asarray(function(*placed(values, diff, _arrays(arrays, "float64"))), dtype=float)]

    def evaluate_rows(self, function, values: list, diff: list[int], arrays: list) -> np.ndarray:
        dims = tuple(0 if i in diff else None for i in range(len(values)))
        with jax.enable_x64(True):
            return np.asarray(jax.vmap(function, in_axes=dims)(*placed(values, diff, _arrays(arrays, "float64"))),
                              dtype=float)

    def pullback(self, function, values: list, diff: list[int], arrays: list, dtype: str) -> Pullback:
        with jax.enable_x64(True):
            out, vjp = jax.vjp(lambda *d: function(*placed(values, diff, d)), *_arrays(arrays, dtype))

        def pull(cotangents: list) -> list:
            with jax.enable_x64(True):
                grads = vjp(jnp.asarray(np.reshape(cotangents[0], np.shape(out)), dtype=out.dtype))
            return [None if g is None else np.asarray(g, dtype=float) for g in grads]
        return Pullback(shapes=[np.shape(out)], pull=pull)

    def seeded_upstream(self, shapes: list[tuple]) -> list[np.ndarray]:
        rng = stream(0, Stream.JAX_LOW_PRECISION)
        return [rng.standard_normal(s) for s in shapes]


JAX = Jax()


def _arrays(arrays: list, dtype: str) -> list:
    return [jnp.asarray(np.asarray(a), dtype=dtype) for a in arrays]


def user_code(f) -> UserCode:
    """A custom_vjp function's parts: the primal function (its forward, and JAX's autodiff of it the
    reference) and the rule's bwd (the rows' lines); a function without a rule is its own backward."""
    fun, bwd = getattr(f, "fun", f), getattr(f, "bwd", None)
    try:
        params = tuple(p.name for p in inspect.signature(fun).parameters.values()
                       if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        params = ()
    return UserCode(name=qualname(fun), call=f, batched=f, autodiff=fun, reference=bwd is not None, forward=fun,
                    backward=bwd or fun, parameters=params)


def check(f, inputs, *, name: str | None = None, settings: Settings | None = None, **options) -> CheckReport:
    """Check `f` (a jax.custom_vjp function) at `inputs` (a tuple of arguments, or a dict by name):
    every floating-point array is differentiated, other arguments pass through."""
    return bridge.check(JAX, user_code(f), inputs, name=name, settings=layer_settings(settings, options))
