"""Builder, subscripts: numpy-style indices of constants, checked against the shape."""

from __future__ import annotations

import numpy as np

from .. import gates
from . import nodes
from .build_common import _SliceRef
from ..core.errors import GradShapeError, GradValueError


class IndexMixin:
    """Part of builder.Builder."""

    def _index(self, expr: nodes.Index, refs, name):
        key = self._key(refs[1:], expr.items, expr.bracket_pos)
        return self._gate(gates.REGISTRY["index"], [refs[0]], {"key": key}, {}, expr, name, expr.bracket_pos)

    def _key(self, refs, items, where) -> tuple:
        """A numpy index from subscript items: ints, slices, None, integer arrays (all constants)."""
        key = []
        for ref, item in zip(refs, items):
            pos = getattr(item, "pos", where)
            if isinstance(ref, _SliceRef):
                if ref.parts is None:
                    key.append(None)
                    continue
                parts = [None if p is None else self._integer(p[0], p[1], "a slice bound") for p in ref.parts]
                if parts[2] == 0:
                    raise GradValueError("a slice step must not be 0", ref.parts[2][1].line, ref.parts[2][1].col)
                key.append(slice(*parts))
                continue
            value = self._constant(ref, pos, "an index")
            if value.size == 0:
                raise GradShapeError("an empty index array", pos.line, pos.col)
            if not np.all(np.isfinite(value)) or not np.all(value == np.round(value)):
                bad = value.ravel()[~(np.isfinite(value.ravel()) & (value.ravel() == np.round(value.ravel())))][0]
                raise GradValueError(f"an index must be an integer, not {bad:g}", pos.line, pos.col)
            key.append(int(value) if value.ndim == 0 else value.astype(np.int64))
        return tuple(key)

    def _integer(self, ref, pos, what) -> int:
        value = self._constant(ref, pos, what)
        if value.ndim != 0 or not np.isfinite(value) or float(value) != round(float(value)):
            raise GradValueError(f"{what} must be an integer, not {np.asarray(value).tolist()}", pos.line, pos.col)
        return int(value)
