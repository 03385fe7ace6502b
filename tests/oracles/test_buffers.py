"""The batched passes' work buffers: reused once free, never while something still reads them, and a
pass through them gives the same bits as a pass that allocates."""

from __future__ import annotations

import numpy as np

from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff
from gradcheck_cli.oracles.batches import Probe
from gradcheck_cli.oracles.buffers import POOL_BYTES, WorkBuffers


def test_a_dropped_array_is_reused_and_a_held_one_is_not():
    pool = WorkBuffers()
    a = pool.take((64, 64))
    address = a.__array_interface__["data"][0]
    b = pool.take((64, 64))
    assert not np.shares_memory(a, b)  # a is still held
    del a
    c = pool.take((32, 64))  # smaller fits in the freed buffer
    assert c.__array_interface__["data"][0] == address
    assert pool.held_bytes == 2 * 64 * 64 * 8


def test_a_buffer_with_headroom_is_reused_by_a_slightly_larger_array():
    # a deep chain's batched values grow by a row at each node: with headroom, a freed buffer takes
    # the next, larger one, a larger one than the room still gets a new buffer
    pool = WorkBuffers(headroom=8)
    a = pool.take((64, 64))
    address = a.__array_interface__["data"][0]
    assert a.shape == (64, 64) and pool.held_bytes == (64 + 8) * 64 * 8
    del a
    b = pool.take((72, 64))
    assert b.shape == (72, 64) and b.__array_interface__["data"][0] == address
    del b
    c = pool.take((73, 64))
    assert c.__array_interface__["data"][0] != address and pool.held_bytes == (72 * 64 + 73 * 64 + 73 * 64 // 8) * 8


def test_a_view_keeps_its_buffer_busy():
    pool = WorkBuffers()
    a = pool.take((64, 64))
    view = a.reshape(-1)[10:20]  # what a reshape or a slice gate keeps of it
    del a
    b = pool.take((64, 64))
    assert not np.shares_memory(b, view)
    del view, b
    assert len({pool.take((64, 64)).__array_interface__["data"][0] for _ in range(3)}) == 1  # each freed at once


def test_dtypes_are_kept_apart_and_the_pool_is_bounded():
    pool = WorkBuffers()
    real = pool.take((100, 100))
    del real
    assert pool.take((100, 100), complex).dtype == np.complex128
    held = [pool.take((1024, 1024)) for _ in range(POOL_BYTES // (8 << 20) + 4)]  # more than the pool keeps
    assert pool.held_bytes <= POOL_BYTES
    assert all(h.shape == (1024, 1024) for h in held)


def test_a_full_pool_makes_room_from_its_oldest_free_buffers():
    pool = WorkBuffers()
    n = POOL_BYTES // 8 // 8  # eight of these fill the pool
    held = [pool.take((n,)) for _ in range(8)]
    assert pool.held_bytes == POOL_BYTES
    addresses = [h.__array_interface__["data"][0] for h in held]
    del held[6], held[5], held[0]  # three free: the oldest two make room for a larger one, the newest stays
    larger = pool.take((n + 1,))
    assert pool.held_bytes == 6 * n * 8 + (n + 1) * 8
    assert pool.take((n,)).__array_interface__["data"][0] == addresses[6]
    place = larger.__array_interface__["data"][0]
    del larger
    assert pool.take((n + 1,)).__array_interface__["data"][0] == place  # it was pooled


NETWORK = """\
const X = randn(6, 5)
W1 = 0.3 * randn(5, 7)
b1 = 0.1 * randn(7)
W2 = 0.3 * randn(7, 3)
H = relu(X @ W1 + b1)
S = exp(H @ W2) * 0.5 - 1
L = mean(logsumexp(S, axis=1))
"""


def _probes(graph, rng, complex_step=False):
    """Rows nudging single elements of W1, b1 and W2 (several nodes in one pass, as run_rows batches)."""
    probes, row = [], 0
    for name in ("W1", "b1", "W2"):
        node = next(n for n in graph.nodes if n.name == name)
        n = 2 * node.size
        flat = rng.integers(0, node.size, n)
        delta = (1e-20j if complex_step else 1e-4) * rng.choice([-1.0, 1.0], n)
        probes.append(Probe(node.id, np.arange(row, row + n), flat, delta))
        row += n
    return probes, row


def test_a_pass_through_buffers_gives_the_same_bits_chunk_after_chunk():
    graph = load(NETWORK)
    values = autodiff.forward(graph)
    centre = autodiff.branch_rows(graph, values)
    pool = WorkBuffers(headroom=8)  # as the runners make it
    rng = np.random.default_rng(3)
    kept = []
    for complex_step in (False, True, False):
        probes, rows = _probes(graph, rng, complex_step)
        plain, kinks = autodiff.batched_forward(graph, values, probes, rows, centre)
        pooled, pooled_kinks = autodiff.batched_forward(graph, values, probes, rows, centre, buffers=pool)
        assert np.array_equal(plain, pooled) and np.array_equal(kinks, pooled_kinks)
        kept.append((pooled, plain.copy()))
    assert pool.held_bytes > 0  # the pool was used
    for pooled, plain in kept:  # a later pass wrote into its buffers, not into an earlier pass's result
        assert np.array_equal(pooled, plain)


def test_rows_joined_without_sorting_are_the_sorted_union_and_values_land_on_their_rows():
    """A deep chain nudges node after node: each node's rows follow those reaching it, and are joined
    by concatenation instead of a sort; any other arrangement takes numpy's union. Both must give what
    np.union1d and a placement by searchsorted give."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        a = np.unique(rng.integers(0, 60, rng.integers(0, 12)))
        b = np.unique(rng.integers(0, 60, rng.integers(0, 12)))
        b = np.setdiff1d(b, a)  # the rows one node adds are new rows
        if rng.random() < 0.4 and a.size:  # wholly after (or before) the rows reaching the node
            b = a[-1] + 1 + np.arange(b.size) if rng.random() < 0.5 else a[0] - 1 - np.arange(b.size)[::-1]
        rows = autodiff._union(a, b)
        assert np.array_equal(rows, np.union1d(a, b))
        if not a.size:
            continue
        value = rng.standard_normal((a.size, 3))
        got = autodiff._on_rows((a, value), rows, np.full(3, 9.0), WorkBuffers())
        want = np.full((rows.size, 3), 9.0)
        want[np.searchsorted(rows, a)] = value
        assert np.array_equal(got, want)
