"""Value constructors for leaves: randn, rand, zeros, ones, eye (seeded, float64)."""

from __future__ import annotations

import numpy as np

MAX_ELEMENTS = 5_000_000


def _dims(name: str, args: list) -> tuple[int, ...]:
    dims = []
    for a in args:
        if np.ndim(a) != 0 or not float(a).is_integer() or float(a) < 0:
            raise ValueError(f"{name}(...) takes non-negative integer sizes")
        dims.append(int(a))
    if int(np.prod(dims, dtype=float)) > MAX_ELEMENTS:
        raise ValueError(f"{name}{tuple(dims)} is too large (at most {MAX_ELEMENTS:,} elements)")
    return tuple(dims)


def _eye(args, rng):
    (n,) = _dims("eye", args)
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
