"""Value constructors for leaves: randn, rand, zeros, ones, eye (seeded, float64)."""

from __future__ import annotations

import math

import numpy as np

from .limits import MAX_ELEMENTS, MAX_NDIM


def _dims(name: str, args: list) -> tuple[int, ...]:
    """Sizes checked before anything is allocated: integers, at most MAX_ELEMENTS in all."""
    dims = []
    for a in args:
        if np.ndim(a) != 0 or not np.isfinite(float(a)) or not float(a).is_integer() or float(a) < 1:
            raise ValueError(f"{name}(...) takes positive integer sizes (an array with no elements has nothing to check)")
        if float(a) > MAX_ELEMENTS:
            raise ValueError(f"{name}(...): a size of {float(a):g} is too large (at most {MAX_ELEMENTS:,} elements; GRADCHECK_MAX_ELEMENTS raises it)")
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


CONSTRUCTORS = {
    "randn": (lambda args, rng: rng.standard_normal(_dims("randn", args)), "standard normal samples, seeded"),
    "rand": (lambda args, rng: rng.random(_dims("rand", args)), "uniform samples in [0, 1), seeded"),
    "zeros": (lambda args, rng: np.zeros(_dims("zeros", args)), "all zeros"),
    "ones": (lambda args, rng: np.ones(_dims("ones", args)), "all ones"),
    "eye": (_eye, "the n×n identity matrix"),
}


def construct(name: str, args: list, rng: np.random.Generator) -> np.ndarray:
    """The value `name(*args)`; raises ValueError with a message for the user."""
    if name == "eye" and len(args) != 1:
        raise ValueError("eye(n) takes one size")
    return np.asarray(CONSTRUCTORS[name][0](args, rng), dtype=float)
