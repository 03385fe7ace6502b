"""Value constructors for leaves: randn, rand, zeros, ones, eye, arange (seeded, float64)."""

from __future__ import annotations

import math

import numpy as np

from ..core.limits import MAX_ELEMENTS, MAX_NDIM


def _dims(name: str, args: list) -> tuple[int, ...]:
    """Sizes checked before anything is allocated: integers, at most MAX_ELEMENTS in all."""
    dims = []
    for a in args:
        if np.ndim(a) != 0 or not np.isfinite(float(a)) or not float(a).is_integer() or float(a) < 1:
            raise ValueError(f"{name}(...) takes positive integer sizes (an array with no elements has nothing to check)")
        if float(a) > MAX_ELEMENTS:
            size = f"{int(float(a)):,}" if float(a) < 1e18 else f"{float(a):g}"  # 2,000,001, not 2e+06
            raise ValueError(f"{name}(...): a size of {size} is too large (at most {MAX_ELEMENTS:,} elements; "
                             "GRADCHECK_MAX_ELEMENTS raises it)")
        dims.append(int(a))
    if len(dims) > MAX_NDIM:
        raise ValueError(f"{name}(...) takes at most {MAX_NDIM} sizes")
    if math.prod(dims) > MAX_ELEMENTS:
        raise ValueError(f"{name}{tuple(dims)} is too large: {math.prod(dims):,} elements (at most {MAX_ELEMENTS:,}; GRADCHECK_MAX_ELEMENTS raises it)")
    return tuple(dims)


def _eye(args, rng):
    (n,) = _dims("eye", args)
    _dims("eye", [n, n])
    return np.eye(n)


def _arange(args, rng):
    """arange(n), arange(start, stop) or arange(start, stop, step): integers, as numpy's."""
    if not 1 <= len(args) <= 3:
        raise ValueError("arange takes 1 to 3 numbers: arange(n), arange(start, stop), arange(start, stop, step)")
    if any(np.ndim(a) != 0 or not np.isfinite(float(a)) or not float(a).is_integer() for a in args):
        raise ValueError("arange(...) takes integers")
    start, stop, step = (0, int(args[0]), 1) if len(args) == 1 else (int(args[0]), int(args[1]),
                                                                     int(args[2]) if len(args) == 3 else 1)
    if step == 0:
        raise ValueError("arange(...): a step of 0")
    n = max(0, -(-(stop - start) // step))
    if n == 0:
        raise ValueError(f"arange{tuple(int(a) for a in args)} is empty: nothing could be checked")
    if n > MAX_ELEMENTS:
        raise ValueError(f"arange(...) would have {n:,} elements (at most {MAX_ELEMENTS:,}; GRADCHECK_MAX_ELEMENTS raises it)")
    return np.arange(start, stop, step, dtype=float)


CONSTRUCTORS = {
    "randn": (lambda args, rng: rng.standard_normal(_dims("randn", args)), "standard normal samples, seeded"),
    "rand": (lambda args, rng: rng.random(_dims("rand", args)), "uniform samples in [0, 1), seeded"),
    "zeros": (lambda args, rng: np.zeros(_dims("zeros", args)), "all zeros"),
    "ones": (lambda args, rng: np.ones(_dims("ones", args)), "all ones"),
    "eye": (_eye, "the n×n identity matrix"),
    "arange": (_arange, "the integers start, start+step, ... below stop (as numpy's; for indices)"),
}


def construct(name: str, args: list, rng: np.random.Generator) -> np.ndarray:
    """The value `name(*args)`; raises ValueError with a message for the user."""
    if name == "eye" and len(args) != 1:
        raise ValueError("eye(n) takes one size")
    return np.asarray(CONSTRUCTORS[name][0](args, rng), dtype=float)
