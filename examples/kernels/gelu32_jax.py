"""A GELU with a `jax.custom_vjp` rule that runs in float32 only, as a fused kernel does: it raises
for any other dtype. `gelu32` is right; `gelu32_slip`'s bwd is 1% off. Checked in float32 against
JAX's autodiff of the primal, with the float32 error model.

    gradcheck check-py examples/kernels/gelu32_jax.py::gelu32_slip --shape x=4,5
"""

import math

import jax
import jax.numpy as jnp

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _float32_only(x):
    if x.dtype != jnp.float32:
        raise TypeError(f"this kernel runs in float32 only, not {x.dtype}")


def _gelu(x):
    return 0.5 * x * (1 + jnp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _dgelu(x):
    t = jnp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2)


@jax.custom_vjp
def gelu32(x):
    _float32_only(x)
    return _gelu(x)


def gelu32_fwd(x):
    _float32_only(x)
    return _gelu(x), x


def gelu32_bwd(x, g):
    dx = g * _dgelu(x)
    return (dx,)


gelu32.defvjp(gelu32_fwd, gelu32_bwd)


@jax.custom_vjp
def gelu32_slip(x):
    _float32_only(x)
    return _gelu(x)


def gelu32_slip_fwd(x):
    _float32_only(x)
    return _gelu(x), x


def gelu32_slip_bwd(x, g):
    dx = 1.01 * g * _dgelu(x)
    return (dx,)


gelu32_slip.defvjp(gelu32_slip_fwd, gelu32_slip_bwd)


def gelu_reference(x):
    """The same GELU as plain JAX code (a reference, run in float64)."""
    return 0.5 * x * (1 + jnp.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
