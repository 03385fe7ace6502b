"""Layers whose backward is right only for inputs of a structure (check them with --structure):
log det of a positive definite matrix (--structure x=spd) and the entropy of distributions
(--structure p=simplex), each with a one-slip wrong twin (tests/python/test_torch_real_functions.py)."""

import numpy as np


def logdet_forward(x):
    """log det of a positive definite matrix."""
    _, out = np.linalg.slogdet(x)
    return out, x


def logdet_backward(dout, cache):
    x = cache
    dx = dout * np.linalg.inv(x)  # X⁻ᵀ in general: the transpose is dropped, which only a symmetric X allows
    return dx


def logdet_slip_forward(x):
    _, out = np.linalg.slogdet(x)
    return out, x


def logdet_slip_backward(dout, cache):
    x = cache
    dx = -dout * np.linalg.inv(x)
    return dx


def entropy_forward(p):
    """The entropy of distributions along the last axis."""
    out = -np.sum(p * np.log(p), axis=-1)
    return out, p


def entropy_backward(dout, cache):
    p = cache
    dp = -dout[..., None] * np.log(p)  # the constant -1 dropped: no direction inside the simplex sees it
    return dp


def entropy_slip_forward(p):
    out = -np.sum(p * np.log(p), axis=-1)
    return out, p


def entropy_slip_backward(dout, cache):
    p = cache
    dp = dout[..., None] * np.log(p)
    return dp
