"""Work buffers for the batched forward passes of the finite differences: arrays allocated once and
reused, chunk after chunk, for the perturbed copies and the gates' batched results.

A check runs hundreds of batched passes whose arrays have the same few sizes (megabytes each).
Allocated afresh each time, every one is new memory the system hands over page by page, which costs
more than the arithmetic on it; reused, it is touched once. Nothing process-wide is tuned: the
buffers belong to the runner that made them and go with it.

A buffer is free when nothing but this pool holds it: a batched value dropped after its last use
(and every view of it, a reshape or a slice another gate kept) releases it by going away, so a
buffer can never be handed out while something still reads it.
"""

from __future__ import annotations

import bisect
import math
import sys

import numpy as np

POOL_BYTES = 64 * 1024 * 1024  # at most this much is kept for reuse; past it an array is allocated as usual
SMALLEST = 4096                # bytes: smaller arrays are cheap to allocate and are not pooled


class WorkBuffers:
    """Arrays reused across batched passes: `take(shape, dtype)` gives an uninitialised C-contiguous
    array of that shape, backed by a free pooled buffer when one is large enough."""

    def __init__(self) -> None:
        self._arrays: list[np.ndarray] = []  # by size, smallest first (equal sizes in the order pooled)
        self._sizes: list[int] = []          # their sizes, for bisect: a take looks at those large enough only
        self._bytes = 0
        probe = [np.empty(1)]
        buf = probe[0]
        self._free = self._references(buf)  # what a buffer only the pool holds counts, measured the same way

    @staticmethod
    def _references(array: np.ndarray) -> int:
        return sys.getrefcount(array)

    def take(self, shape: tuple, dtype=float) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = math.prod(shape)
        if n * dtype.itemsize < SMALLEST:
            return np.empty(shape, dtype)
        for i in range(bisect.bisect_left(self._sizes, n), len(self._arrays)):  # the smallest free one that fits
            buf = self._arrays[i]
            if buf.dtype == dtype and self._references(buf) <= self._free:
                return buf[:n].reshape(shape)
        fresh = np.empty(n, dtype)
        self._keep(fresh)
        return fresh.reshape(shape)

    def _keep(self, fresh: np.ndarray) -> None:
        """Pool a new buffer, making room from free ones (smallest first) past POOL_BYTES."""
        i = 0
        while self._bytes + fresh.nbytes > POOL_BYTES and i < len(self._arrays):
            buf = self._arrays[i]
            if self._references(buf) <= self._free:
                self._bytes -= buf.nbytes
                del self._arrays[i], self._sizes[i]
            else:
                i += 1
        if self._bytes + fresh.nbytes <= POOL_BYTES:
            at = bisect.bisect_right(self._sizes, fresh.size)
            self._arrays.insert(at, fresh)
            self._sizes.insert(at, fresh.size)
            self._bytes += fresh.nbytes

    @property
    def held_bytes(self) -> int:
        """Bytes the pool keeps."""
        return self._bytes
