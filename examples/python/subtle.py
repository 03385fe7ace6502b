"""Backwards wrong by less than any finite difference resolves (about 1e-7 of their value): right,
and with the slip. `check_function(..., complex_step=True)` (or `check-py --complex-step`) sees them;
without it they pass."""

import math

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def gelu(x):
    return 0.5 * x * (1 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def gelu_vjp(g, x):
    t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
    dx = g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2))
    return dx


def gelu_rounded_vjp(g, x):
    t = np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
    dx = g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978846 * (1 + 3 * 0.044715 * x ** 2))
    return dx


def layernorm(x, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)


def layernorm_vjp(g, x, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    inv = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) * inv
    dx = inv * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx


def layernorm_no_eps_vjp(g, x, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    inv = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True))
    dx = inv * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def softmax_vjp(g, x):
    y = softmax(x)
    dx = y * (g - (g * y).sum(-1, keepdims=True))
    return dx


def softmax_float32_vjp(g, x):
    y, g32 = softmax(x).astype(np.float32), g.astype(np.float32)
    dx = (y * (g32 - (g32 * y).sum(-1, keepdims=True))).astype(np.float64)
    return dx
