"""JAX, an optional extra: `check(f, inputs)` checks a function with a `jax.custom_vjp` (or
`custom_jvp`) rule against JAX's autodiff of its primal. JAX's side of the bridge
(`python/bridge.py`) is `python/jax.py`; JAX is imported only when a target uses it."""

from .python.jax import check

__all__ = ["check"]
