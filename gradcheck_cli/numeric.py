"""Centered finite differences at every node, batched: many perturbed forward passes in one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autodiff import Probe, batched_forward
from .graph import Graph

EPS = np.finfo(float).eps
DEFAULT_STEP = float(np.cbrt(EPS))   # h = step * max(1, |v|)
DEFAULT_BUDGET = 20_000              # elements per node checked one by one; past it, projections
PROJECTIONS = 4                      # random directions for a node past the budget
CHUNK_ELEMENTS = 2_000_000           # float64 elements per batched array (about 16 MB)
ROWS = 4                             # +h, -h, +h/2, -h/2


@dataclass
class NumericResult:
    """Finite differences for one node.

    Exhaustive: `value` is the gradient/Jacobian (output.shape + node.shape), `estimate` its
    error estimate, `kink` where a branch switched within the step.
    Projection: `directions` (P, *node.shape) and `projected` (P, *output.shape) are J·u for
    random u, with `estimate` and `kink` shaped like `projected`'s rows.
    """
    method: str
    estimate: np.ndarray            # truncation + rounding
    kink: np.ndarray
    value: np.ndarray | None = None
    directions: np.ndarray | None = None
    projected: np.ndarray | None = None
    left_domain: bool = False
    truncation: np.ndarray | None = None  # |D(h) − D(h/2)|: large means curvature the step can't resolve


class _Plan:
    """One node's probes: which rows nudge which elements by how much."""

    def __init__(self, node, directions, steps):
        self.node = node            # Node
        self.directions = directions  # None (one element per probe) or (P, size) dense directions
        self.steps = steps          # h per probe, shape (n_probes,)

    @property
    def n_probes(self) -> int:
        return len(self.steps)


def finite_differences(graph: Graph, values: list, node_ids, step: float | None = None,
                       budget: int = DEFAULT_BUDGET, seed: int = 0,
                       exhaustive: set | None = None) -> dict:
    """NumericResult for every node in `node_ids`; `exhaustive` forces nodes past the budget."""
    step = DEFAULT_STEP if step is None else step
    rng = np.random.default_rng(seed + 7919)
    exhaustive = exhaustive or set()
    plans = []
    for nid in sorted(node_ids):
        node = graph.nodes[nid]
        v = np.asarray(values[nid]).ravel()
        if node.size <= budget or nid in exhaustive:
            plans.append(_Plan(node, None, step * np.maximum(1.0, np.abs(v))))
        else:
            u = rng.choice([-1.0, 1.0], size=(PROJECTIONS, node.size))
            h = step * max(1.0, float(np.abs(v).max()))
            plans.append(_Plan(node, u, np.full(PROJECTIONS, h)))
    raw = _run(graph, values, plans)
    return {plan.node.id: _result(graph, plan, *raw[plan.node.id]) for plan in plans}


def _run(graph: Graph, values: list, plans: list) -> dict:
    """Evaluate every plan's rows in chunks; returns node id -> (outputs, kinks) per probe row."""
    sizes = [n.size for n in graph.nodes]
    suffix_max = np.maximum.accumulate(sizes[::-1])[::-1]
    results = {p.node.id: ([], []) for p in plans}
    pending = [(p, i) for p in plans for i in range(p.n_probes)]
    pos = 0
    while pos < len(pending):
        first = pending[pos][0].node.id
        width = max(int(suffix_max[first]), graph.nodes[graph.output].size)
        probes_per_chunk = max(1, CHUNK_ELEMENTS // (ROWS * width))
        chunk = pending[pos: pos + probes_per_chunk]
        pos += len(chunk)
        probes = []
        row = 0
        for plan, group in _group(chunk):
            probes.extend(_probes(plan, group, row))
            row += ROWS * len(group)
        outputs, kinks = batched_forward(graph, values, probes, row)
        row = 0
        for plan, group in _group(chunk):
            n = ROWS * len(group)
            results[plan.node.id][0].append(outputs[row: row + n])
            results[plan.node.id][1].append(kinks[row: row + n])
            row += n
    return {nid: (np.concatenate(o), np.concatenate(k)) for nid, (o, k) in results.items()}


def _group(chunk):
    """Consecutive (plan, probe index) pairs of one plan, as (plan, [indices])."""
    groups = []
    for plan, i in chunk:
        if groups and groups[-1][0] is plan:
            groups[-1][1].append(i)
        else:
            groups.append((plan, [i]))
    return groups


def _probes(plan: _Plan, group: list, row0: int) -> list:
    """Rows row0.. nudge by +h, -h, +h/2, -h/2 for each probe index in `group`."""
    idx = np.asarray(group)
    h = plan.steps[idx]
    factors = (1.0, -1.0, 0.5, -0.5)
    if plan.directions is None:
        rows = row0 + ROWS * np.arange(len(idx))
        return [Probe(plan.node.id, rows + k, idx, f * h) for k, f in enumerate(factors)]
    probes = []
    size = plan.node.size
    for j, i in enumerate(idx):
        for k, f in enumerate(factors):
            rows = np.full(size, row0 + ROWS * j + k)
            probes.append(Probe(plan.node.id, rows, np.arange(size), f * h[j] * plan.directions[i]))
    return probes


def _result(graph: Graph, plan: _Plan, outputs: np.ndarray, kinks: np.ndarray) -> NumericResult:
    with np.errstate(all="ignore"):
        return _differences(graph, plan, outputs, kinks)


def _differences(graph: Graph, plan: _Plan, outputs: np.ndarray, kinks: np.ndarray) -> NumericResult:
    out_shape = graph.nodes[graph.output].shape
    n = plan.n_probes
    f = outputs.reshape((n, ROWS) + out_shape)
    h = plan.steps.reshape((n,) + (1,) * len(out_shape))
    d1 = (f[:, 0] - f[:, 1]) / (2 * h)
    d2 = (f[:, 2] - f[:, 3]) / h
    value = d2 + (d2 - d1) / 3.0          # Richardson: the h² error terms cancel
    scale = np.abs(f).max(axis=1)
    truncation = np.abs(d2 - d1)
    estimate = truncation + 8 * EPS * scale / h
    kink = kinks.reshape(n, ROWS).any(axis=1)
    left_domain = not np.all(np.isfinite(value))
    if plan.directions is not None:
        kink_b = np.broadcast_to(kink.reshape((n,) + (1,) * len(out_shape)), value.shape)
        return NumericResult("projection", estimate, kink_b, directions=plan.directions.reshape(
            (n,) + plan.node.shape), projected=value, left_domain=left_domain, truncation=truncation)
    # probes × output → output.shape + node.shape
    jac = np.moveaxis(value, 0, -1).reshape(out_shape + plan.node.shape)
    est = np.moveaxis(estimate, 0, -1).reshape(out_shape + plan.node.shape)
    trunc = np.moveaxis(truncation, 0, -1).reshape(out_shape + plan.node.shape)
    kink_j = np.broadcast_to(kink.reshape((1,) * len(out_shape) + plan.node.shape), jac.shape)
    return NumericResult("exhaustive", est, kink_j, value=jac, left_domain=left_domain, truncation=trunc)
