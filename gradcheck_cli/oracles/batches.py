"""Rows of perturbed copies, run in batches: the finite-difference engine plans its perturbations as
rows (per target: the elements each row nudges, and by how much), and a runner evaluates them many at
a time, in chunks that keep every batched array under CHUNK_ELEMENTS."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

import numpy as np

from .plan import SIDES

CHUNK_ELEMENTS = 1_000_000           # float64 elements per batched array (8 MB: stays in cache)


class Probe:
    """Rows of a batched forward pass that each nudge elements `flat` of one target by `delta`
    (`flat` None: `delta` holds a whole vector per row)."""
    __slots__ = ("node", "rows", "flat", "delta")

    def __init__(self, node: Hashable, rows: np.ndarray, flat: np.ndarray | None, delta: np.ndarray):
        self.node, self.rows, self.flat, self.delta = node, rows, flat, delta


class BatchRunner(Protocol):
    """What runs rows: how wide a row of a target is (elements), and `run(probes, n_rows)`, which
    evaluates `n_rows` perturbed copies at once: (outputs (n_rows, out), switched (n_rows,))."""

    def width(self, target_id: Hashable) -> int: ...

    def run(self, probes: list[Probe], n_rows: int) -> tuple[np.ndarray, np.ndarray]: ...


class Rows:
    """Rows for one pass: per target, elements (index arrays) and deltas for each row."""

    def __init__(self) -> None:
        # (a numeric.Target, elems per row: list of arrays, deltas per row: list of arrays)
        self.items: list[tuple[Any, list, list]] = []

    def add(self, target: Any, elems: list, deltas: list) -> None:
        """Rows of `target`: per row, element indices and their deltas (or None and a function
        giving the whole delta vector, for dense rows)."""
        if elems:
            self.items.append((target, elems, deltas))


def run_rows(runner: BatchRunner, rows: Rows) -> dict:
    """Evaluate every row; returns target id -> (outputs (rows, out), switched (rows,)).

    Rows of several targets share a batched pass (a graph's nodes downstream of all of them are
    computed once per chunk), chunked so no batched array passes CHUNK_ELEMENTS."""
    pending = [(t, e, d) for t, elems, deltas in rows.items for e, d in zip(elems, deltas)]
    pending.sort(key=lambda r: _order_key(r[0].id))  # stable: a target's rows stay in order
    outs: dict = {t.id: [] for t, _, _ in rows.items}
    flags: dict = {t.id: [] for t, _, _ in rows.items}
    pos = 0
    while pos < len(pending):
        width = max(1, runner.width(pending[pos][0].id))
        chunk = pending[pos: pos + max(1, CHUNK_ELEMENTS // width)]
        pos += len(chunk)
        probes, order = [], []
        row = 0
        for tid, group in _grouped(chunk):
            if group[0][1] is None:  # dense rows: the delta vector is made only now, one chunk at a time
                probes.append(Probe(tid, np.arange(row, row + len(group)), None, np.stack([d() for _, _, d in group])))
            else:
                counts = [len(e) for _, e, _ in group]
                probes.append(Probe(tid, np.repeat(np.arange(row, row + len(group)), counts),
                                    np.concatenate([e for _, e, _ in group]),
                                    np.concatenate([d for _, _, d in group])))
            order.append((tid, row, len(group)))
            row += len(group)
        o, sw = runner.run(probes, row)
        o = np.asarray(o)
        o = o.astype(complex if np.iscomplexobj(o) else float, copy=False).reshape(row, -1)  # complex: the complex step
        sw = np.asarray(sw, dtype=bool)
        for tid, start, n in order:
            outs[tid].append(o[start:start + n])
            flags[tid].append(sw[start:start + n])
    return {tid: (np.concatenate(outs[tid]), np.concatenate(flags[tid])) for tid in outs}


def _order_key(tid):
    return tid if isinstance(tid, (int, np.integer)) else 0


def _grouped(chunk: list) -> list:
    """Consecutive rows of one target, as (target id, rows)."""
    groups: list[tuple[Hashable, list]] = []
    for row in chunk:
        if groups and groups[-1][0] == row[0].id:
            groups[-1][1].append(row)
        else:
            groups.append((row[0].id, [row]))
    return groups


def pm(idx, h, factor):
    """Rows at factor·h on each of SIDES for each element of idx, interleaved (+, −, +, −, ...)."""
    if not len(idx):
        return [], []
    # each row's one element and its delta, as rows (views) of two arrays: side · factor · h[i], the
    # product as each row's own would be, in the rows' order
    e = np.repeat(np.asarray(idx), len(SIDES)).reshape(-1, 1)
    d = np.stack([side * factor * np.asarray(h) for side in SIDES], axis=1).reshape(-1, 1)
    return list(e), list(d)


def split(outputs, flags):
    """Interleaved ± rows → (f+, f−, switched+ | switched−)."""
    return outputs[0::2], outputs[1::2], flags[0::2] | flags[1::2]
