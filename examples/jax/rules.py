"""jax.custom_vjp rules, right and wrong (check them with `gradcheck_cli.jax.check`)."""

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
