"""Small helpers every gate module shares: shapes as text, gradients summed back to a shape, SymPy sums."""

from __future__ import annotations

import numpy as np


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def fmt_note(x) -> str:
    """A number as a note writes it: 6 significant digits, and -0 as 0 (a sign on nothing says nothing)."""
    return f"{float(x) + 0.0:.6g}"


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient of shape (K, *broadcast) back to (K, *shape)."""
    extra = g.ndim - 1 - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i + 1 for i, n in enumerate(shape) if n == 1 and g.shape[i + 1] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def sym_sum(items):
    """Σ of SymPy terms, built in one Add."""
    import sympy
    return sympy.Add(*items)


def integer(value, what: str) -> int:
    """A whole number given as a float (the language's numbers are floats), or ValueError."""
    if np.ndim(value) != 0:
        raise ValueError(f"{what} must be one integer, not an array of shape {fmt_shape(np.shape(value))}")
    v = float(np.asarray(value, dtype=float))
    if not np.isfinite(v) or not v.is_integer():
        raise ValueError(f"{what} must be an integer, not {v:g}")
    return int(v)


def axis_of(value, nd: int, what: str = "axis") -> int:
    """A (possibly negative) axis of an nd-dimensional operand, as a negative axis."""
    ax = integer(value, what)
    if not -nd <= ax < nd:
        raise ValueError(f"{what} {ax} is out of range for {nd} dimension{'s' if nd != 1 else ''}")
    return ax - nd if ax >= 0 else ax


def lead(x, nd: int) -> tuple:
    """Full slices over the leading (batch) axes an operand of rank `nd` carries."""
    return (slice(None),) * (np.ndim(x) - nd)


def by_real_max(x, axes, keepdims=False):
    """The largest element by its real part, its complex value kept (a tie averaged: the even split)."""
    re = np.real(x)
    hit = (re == re.max(axis=axes, keepdims=True)).astype(float)
    return (x * hit).sum(axis=axes, keepdims=keepdims) / hit.sum(axis=axes, keepdims=keepdims)
