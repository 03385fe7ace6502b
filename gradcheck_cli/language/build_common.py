"""What the builder's parts share: limits checked before allocating, and the subscript item type."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.errors import GradShapeError, GradValueError
from ..core.limits import MAX_ELEMENTS, MAX_NDIM, size_error

KEYWORDS = {"const", "output", "expect", "gate"}


def _finite_or_raise(value, pos, what):
    if not np.all(np.isfinite(value)):
        raise GradValueError(f"{what} is not finite ({_describe_bad(value)})", pos.line, pos.col)


def _check_shape(shape: tuple, pos, what: str | Callable[[], str]):
    """Refuse, before anything is allocated, an array past the documented limits. `what` names it in the
    message; given as a function, it is called only for a message (a gate's source text, say)."""
    if len(shape) > MAX_NDIM:
        raise GradShapeError(f"{_said(what)} would have {len(shape)} dimensions (at most {MAX_NDIM})", pos.line, pos.col)
    size = 1
    for n in shape:
        size *= int(n)
    if size == 0:
        raise GradShapeError(f"{_said(what)} would have no elements (a size is 0); nothing could be checked",
                             pos.line, pos.col)
    if size > MAX_ELEMENTS:
        raise GradShapeError(size_error(_said(what), size, MAX_ELEMENTS, name="MAX_ELEMENTS"), pos.line, pos.col)


def _said(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def _describe_bad(value) -> str:
    v = np.asarray(value)
    bad = v[~np.isfinite(v)]
    return "nan" if np.isnan(bad).any() else "overflow to infinity"


class _SliceRef:
    """A built subscript item that is no value: a slice (parts: (ref, pos) or None each) or None (parts None)."""
    __slots__ = ("parts", "pos")

    def __init__(self, parts, pos):
        self.parts, self.pos = parts, pos
