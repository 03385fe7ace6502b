"""JAX rules, right and wrong: custom_vjp and custom_jvp (check them with `gradcheck_cli.jax.check`, or
`gradcheck check-py examples/jax/rules.py::NAME --shape x=3,2`)."""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def softplus_fwd(x):
    return softplus(x), x


def softplus_bwd(x, g):
    dx = g * jax.nn.sigmoid(x)
    return (dx,)


softplus.defvjp(softplus_fwd, softplus_bwd)


@jax.custom_vjp
def softplus_wrong(x):
    return jnp.logaddexp(x, 0.0)


def softplus_wrong_fwd(x):
    return softplus_wrong(x), x


def softplus_wrong_bwd(x, g):
    dx = g * jax.nn.sigmoid(-x)
    return (dx,)


softplus_wrong.defvjp(softplus_wrong_fwd, softplus_wrong_bwd)


@jax.custom_vjp
def scaled_dot(w, x, scale):
    return scale * jnp.dot(w, x)


def scaled_dot_fwd(w, x, scale):
    return scaled_dot(w, x, scale), (w, x, scale)


def scaled_dot_bwd(res, g):
    w, x, scale = res
    dw = scale * jnp.outer(g, x)
    dx = scale * w.T @ g
    dscale = jnp.sum(g * jnp.dot(w, x))
    return dw, dx, dscale


scaled_dot.defvjp(scaled_dot_fwd, scaled_dot_bwd)


@jax.custom_vjp
def scaled_dot_wrong(w, x, scale):
    return scale * jnp.dot(w, x)


def scaled_dot_wrong_fwd(w, x, scale):
    return scaled_dot_wrong(w, x, scale), (w, x, scale)


def scaled_dot_wrong_bwd(res, g):
    w, x, scale = res
    dw = scale * jnp.outer(g, x)
    dx = w.T @ g
    dscale = jnp.sum(g * jnp.dot(w, x))
    return dw, dx, dscale


scaled_dot_wrong.defvjp(scaled_dot_wrong_fwd, scaled_dot_wrong_bwd)


@jax.custom_jvp
def logcosh(x):
    return jnp.logaddexp(x, -x) - jnp.log(2.0)


@logcosh.defjvp
def logcosh_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y_dot = jnp.tanh(x) * x_dot
    return logcosh(x), y_dot


@jax.custom_jvp
def logcosh_wrong(x):
    return jnp.logaddexp(x, -x) - jnp.log(2.0)


@logcosh_wrong.defjvp
def logcosh_wrong_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y_dot = jnp.tanh(-x) * x_dot
    return logcosh_wrong(x), y_dot
