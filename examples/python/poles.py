"""Layers checked beside a pole or a domain's edge, where the step of the finite differences (6e-6 here)
reaches it: right, and each with a one-slip twin (docs/python.md, tests/oracles/test_narrowed_steps.py)."""

import numpy as np


def reciprocal_forward(x):
    y = 1.0 / x
    return y, y


def reciprocal_backward(dout, cache):
    y = cache
    return -dout * y * y


def reciprocal_slip_forward(x):
    y = 1.0 / x
    return y, y


def reciprocal_slip_backward(dout, cache):
    y = cache
    return dout * y * y  # the sign dropped


def log_forward(p):
    return np.log(p), p


def log_backward(dout, cache):
    p = cache
    return dout / p


def log_eps_forward(p):
    return np.log(p), p


def log_eps_backward(dout, cache):
    p = cache
    return dout / (p + 1e-12)  # "for safety": wrong where p is near 1e-12
