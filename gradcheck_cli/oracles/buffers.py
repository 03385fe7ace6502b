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
    array of that shape, backed by the smallest free pooled buffer large enough (the first pooled of
    those sizes), found by bisection among the pool's buffers of that dtype, kept sorted by size."""

    def __init__(self, *, headroom: int = 0) -> None:
        """`headroom`: a new buffer is 1/headroom larger than asked (0: exactly as large), so that a
        slightly larger array later finds it: a deep chain's batched values grow by a row at every node,
        and each then reuses the buffer freed two nodes before instead of allocating one more."""
        self._headroom = headroom
        self._sorted: dict[np.dtype, list[tuple[int, int, np.ndarray]]] = {}  # dtype -> (size, order, buffer)
        self._order = 0  # buffers in the order pooled: the oldest free ones make room first
        self._ages: dict[int, tuple[np.dtype, int, np.ndarray]] = {}  # order -> (dtype, size, buffer), oldest first
        self._bytes = 0
        probe = [(1, 0, np.empty(1))]
        buf = probe[0][2]
        ages = {0: (buf.dtype, 1, buf)}  # noqa: F841 - held as a pooled buffer is, by its size and by its age
        self._free = self._references(buf)  # what a buffer only the pool holds counts, measured the same way

    @staticmethod
    def _references(array: np.ndarray) -> int:
        return sys.getrefcount(array)

    def take(self, shape: tuple, dtype=float) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = math.prod(shape)
        if n * dtype.itemsize < SMALLEST:
            return np.empty(shape, dtype)
        pooled = self._sorted.get(dtype, [])
        for i in range(bisect.bisect_left(pooled, n, key=_size), len(pooled)):
            buf = pooled[i][2]
            if self._references(buf) <= self._free:
                return buf[:n].reshape(shape)
        fresh = np.empty(n + (n // self._headroom if self._headroom else 0), dtype)
        self._keep(fresh)
        return fresh[:n].reshape(shape)

    def _keep(self, fresh: np.ndarray) -> None:
        """Pool a new buffer, making room from free ones (the oldest first) past POOL_BYTES. The pool's
        buffers are kept by age too (a dict in the order pooled), so making room walks the oldest only
        as far as it must, never sorting the pool (a deep chain pools a buffer per node)."""
        if self._bytes + fresh.nbytes > POOL_BYTES:
            evicted = []
            for order, (_, _, buf) in self._ages.items():
                if self._bytes + fresh.nbytes <= POOL_BYTES:
                    break
                if self._references(buf) <= self._free:
                    self._bytes -= buf.nbytes
                    evicted.append(order)
            for order in evicted:
                dtype, size, _ = self._ages.pop(order)
                entries = self._sorted[dtype]
                i = bisect.bisect_left(entries, size, key=_size)
                while entries[i][1] != order:
                    i += 1
                del entries[i]
        if self._bytes + fresh.nbytes <= POOL_BYTES:
            entries = self._sorted.setdefault(fresh.dtype, [])
            entries.insert(bisect.bisect_right(entries, fresh.size, key=_size), (fresh.size, self._order, fresh))
            self._ages[self._order] = (fresh.dtype, fresh.size, fresh)
            self._order += 1
            self._bytes += fresh.nbytes

    @property
    def held_bytes(self) -> int:
        """Bytes the pool keeps."""
        return self._bytes


def _size(entry: tuple) -> int:
    return entry[0]
