"""An input's stated structure (`--structure x=symmetric`): the input is x = c + P z, P the orthogonal
projection onto the directions the structure allows and c its offset; the engine sees z, which has
x's shape and equals x at each point. So the differences move x only along allowed directions, and the
backward's gradient G is compared as Pᵀ G (its symmetric part, or G less its mean along the last axis):
a part of G no allowed direction can see is no error. The second point is a point of the structure too.

- symmetric: x = xᵀ in its last two axes; directions E_ij + E_ji; compared (G + Gᵀ)/2.
- spd: symmetric and positive definite (Cholesky); the second point is A x Aᵀ, A near the identity.
- simplex: entries ≥ 0 summing to 1 along the last axis; directions summing to 0; compared G - mean(G).
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Callable, cast

import numpy as np

from .pysource import PythonError
from .usercode import Layer

SYMMETRY_TOL = 1e-10  # a given point's |x - xᵀ|, relative to its largest entry
SIMPLEX_TOL = 1e-6    # a given point's |Σ x - 1| along the last axis


class Structure(Enum):
    """What an input is, and so which directions its differences take."""

    SYMMETRIC = "symmetric"
    SPD = "spd"
    SIMPLEX = "simplex"

    @classmethod
    def named(cls, kind, name: str) -> "Structure":
        """`kind` (a Structure, or its name) for input `name`; a PythonError naming the kinds otherwise."""
        if isinstance(kind, Structure):
            return kind
        for member in cls:
            if isinstance(kind, str) and kind.strip().lower() == member.value:
                return member
        raise PythonError(f"unknown structure {kind!r} for input '{name}' (known: "
                          + ", ".join(m.value for m in cls) + ")")

    @property
    def said(self) -> str:
        """How the report says what the structure changed."""
        if self is Structure.SIMPLEX:
            return "a simplex: directions summing to 0 along the last axis, the gradient less its mean compared"
        return f"{self.value}: symmetric directions only, the gradient's symmetric part compared"

    def embed(self, z: np.ndarray) -> np.ndarray:
        """x = c + P z: the nearest point of the structure's affine set (leading axes are batches)."""
        if self is Structure.SIMPLEX:
            return z - np.mean(z, axis=-1, keepdims=True) + 1.0 / z.shape[-1]
        return (z + np.swapaxes(z, -1, -2)) / 2

    def pull(self, g: np.ndarray) -> np.ndarray:
        """Pᵀ g: a gradient with respect to x as one with respect to z."""
        if self is Structure.SIMPLEX:
            return g - np.mean(g, axis=-1, keepdims=True)
        return (g + np.swapaxes(g, -1, -2)) / 2

    def given(self, name: str, a: np.ndarray) -> np.ndarray:
        """The given point, checked to be of the structure (a PythonError saying how it is not), exactly so."""
        self.fits(name, a.shape)
        if self is Structure.SIMPLEX:
            sums = np.sum(a, axis=-1)
            if np.min(a) < 0 or np.max(np.abs(sums - 1)) > SIMPLEX_TOL:
                raise PythonError(f"input '{name}' is stated a simplex, but " + (
                    f"it has a negative entry ({np.min(a):.3g})" if np.min(a) < 0 else
                    f"its entries sum to {sums.flat[np.argmax(np.abs(sums - 1))]:.6g}, not 1, along the last axis"))
            return self.embed(a / sums[..., None])
        gap = float(np.max(np.abs(a - np.swapaxes(a, -1, -2))))
        if gap > SYMMETRY_TOL * float(np.max(np.abs(a))):
            raise PythonError(f"input '{name}' is stated {self.value}, but it is not symmetric (|x - xᵀ| is up to "
                              f"{gap:.3g})")
        a = self.embed(a)
        if self is Structure.SPD and not _positive_definite(a):
            raise PythonError(f"input '{name}' is stated spd, but it is not positive definite (its Cholesky "
                              "factorisation fails)")
        return a

    def fits(self, name: str, shape: tuple) -> None:
        """A PythonError unless an input of `shape` can be of the structure: a simplex's last axis holds at
        least 2 entries; a symmetric or spd one is square in its last two axes."""
        if self is Structure.SIMPLEX:
            if len(shape) < 1 or shape[-1] < 2:
                raise PythonError(f"input '{name}' is stated a simplex, so its last axis needs at least 2 entries, "
                                  f"but its shape is {tuple(shape)}")
        elif len(shape) < 2 or shape[-1] != shape[-2]:
            raise PythonError(f"input '{name}' is stated {self.value}, so it must be square in its last two axes, "
                              f"but its shape is {tuple(shape)}")

    def draw(self, a: np.ndarray, name: str = "input") -> np.ndarray:
        """A point of the structure made from a seeded normal draw `a` (--shape fills inputs so), for an input
        of a shape it fits (else the PythonError of `fits`)."""
        self.fits(name, a.shape)
        if self is Structure.SIMPLEX:
            e = np.exp(a - np.max(a, axis=-1, keepdims=True))
            return e / np.sum(e, axis=-1, keepdims=True)
        if self is Structure.SPD:
            n = a.shape[-1]
            return self.embed(a @ np.swapaxes(a, -1, -2) / n + np.eye(n))
        return self.embed(a)

    def move(self, v: np.ndarray, d: np.ndarray, scale: float) -> np.ndarray | None:
        """The second point: `v` moved by ~scale along the seeded draw `d`, still of the structure
        (None when it is not: a smaller scale is tried)."""
        if self is Structure.SIMPLEX:
            e = np.exp(d - np.max(d, axis=-1, keepdims=True))
            return (1 - scale) * v + scale * e / np.sum(e, axis=-1, keepdims=True)
        if self is Structure.SPD:  # a congruence A v Aᵀ keeps v positive definite for any invertible A
            n = v.shape[-1]
            a = np.eye(n) + scale * d / np.sqrt(n)
            moved = self.embed(a @ v @ np.swapaxes(a, -1, -2))
            return moved if _positive_definite(moved) else None
        return v + scale * (np.abs(v) + 1.0) * self.embed(d)


def _positive_definite(a: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return False
    return True


def drawn(draw, structure: "Structure | None", name: str = "input"):
    """A seeded normal draw as input `name`'s value: a point of its stated structure, if any."""
    return draw if structure is None else structure.draw(draw, name)


def structures(stated: dict | None, names: list) -> dict:
    """{input name: Structure} from what the caller stated (names to Structures or their names);
    a PythonError for a name that is not a differentiated input."""
    found = {}
    for name, kind in (stated or {}).items():
        if name not in names:
            raise PythonError(f"a structure is stated for '{name}', which is not a differentiated input "
                              f"(they are: {', '.join(names)})")
        found[name] = Structure.named(kind, name)
    return found


def structured(layer: Layer, stated: dict) -> Layer:
    """The layer as a function of z (x = c + P z per stated input): its forward and reference see x,
    its gradients come back as Pᵀ G."""
    if not stated:
        return layer
    kinds = [stated.get(n) for n in layer.names]

    def inputs(arrays):
        return [a if s is None else s.embed(np.asarray(a)) for a, s in zip(arrays, kinds)]

    def pulled(grads, arrays):
        if grads is None:  # (a gradient of the wrong shape is left as it is: the check says so)
            return None
        return [g if s is None or g is None or np.shape(g) != np.shape(a) else s.pull(np.asarray(g, dtype=float))
                for g, s, a in zip(grads, kinds, arrays)]

    forward, backward = cast(Callable, layer.forward), cast(Callable, layer.backward)
    reference = cast("Callable | None", layer.reference)
    return dataclasses.replace(
        layer, structure=dict(stated), forward=lambda arrays: forward(inputs(arrays)),
        backward=lambda dout, arrays: pulled(backward(dout, inputs(arrays)), arrays),
        reference=None if reference is None else lambda dout, arrays: pulled(reference(dout, inputs(arrays)), arrays))
