"""JAX, an optional extra: `check(f, inputs)` checks a function with a `jax.custom_vjp`, `custom_jvp`
or `custom_gradient` rule (also behind `jax.jit`) against JAX's autodiff of its primal, in float64
under `jax.enable_x64`; `check_spec` is `check-py FILE.py::f`. JAX's side of the bridge
(`python/bridge.py`) is `python/jax.py`; JAX is imported only when a target uses it."""

from .python.jax import check, check_spec

__all__ = ["check", "check_spec"]
