"""Centered finite differences at every node, batched: many perturbed forward passes in one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .autodiff import Probe, batched_forward
from .graph import Graph

EPS = np.finfo(float).eps
DEFAULT_STEP = float(np.cbrt(EPS))   # h = step * max(1, |v|)
DEFAULT_BUDGET = 10_000              # elements per file differenced one by one (leaves first)
PROJECTIONS = 4                      # random directions for a node past the budget
CHUNK_ELEMENTS = 1_000_000           # float64 elements per batched array (8 MB: stays in cache)
FIRST = (1.0, -1.0)                  # every element: ±h
REFINE = (0.5, -0.5)                 # elements still in doubt: ±h/2, for Richardson and an error estimate
REFINE_RTOL = 0.1                    # "in doubt": off from the reference by more than this × rtol
TIE = (1e-4, -1e-4)                  # kink elements: does the branch still switch this close? then the kink is *at* v


@dataclass
class NumericResult:
    """Finite differences for one node.

    Exhaustive: `value` is the gradient/Jacobian (output.shape + node.shape), `estimate` its
    error estimate, `kink` where a branch switched within the step.
    Projection: `directions` (P, *node.shape) and `projected` (P, *output.shape) are J·u for
    random u, with `estimate` and `kink` shaped like `projected`.
    """
    method: str
    estimate: np.ndarray            # truncation + rounding
    kink: np.ndarray
    value: np.ndarray | None = None
    directions: np.ndarray | None = None
    projected: np.ndarray | None = None
    left_domain: bool = False
    truncation: np.ndarray | None = None  # |D(h) − D(h/2)|: large means curvature the step can't resolve
    refined: int = 0                      # elements that needed the second step
    one_sided: tuple | None = None        # (lower, upper) of the one-sided slopes: the subgradients at a kink
    at_kink: np.ndarray | None = None     # kink elements whose branch switches within 1e-4·h: v sits on the kink


class _Plan:
    """Probes of one node: each nudges one element (or, for projections, a direction) by factor·h."""

    def __init__(self, node, steps, factors, directions=None, flat=None):
        self.node = node
        self.steps = steps            # h per probe
        self.factors = factors        # multiples of h, one row each
        self.directions = directions  # (P, size) for projections, else None
        self.flat = np.arange(len(steps)) if flat is None else flat  # element per probe

    @property
    def n_probes(self) -> int:
        return len(self.steps)


def allocate(graph: Graph, node_ids, budget: int, exhaustive: set) -> set:
    """Nodes differenced element by element: leaves first, then the smallest, within `budget` elements."""
    ordered = sorted(node_ids, key=lambda nid: (graph.nodes[nid].kind != "leaf", graph.nodes[nid].size, nid))
    chosen, used = set(), 0
    for nid in ordered:
        size = graph.nodes[nid].size
        if nid in exhaustive or used + size <= budget:
            chosen.add(nid)
            used += size
    return chosen


def finite_differences(graph: Graph, values: list, node_ids, step: float | None = None,
                       budget: int = DEFAULT_BUDGET, seed: int = 0, exhaustive: set | None = None,
                       reference: dict | None = None, rtol: float = 1e-5, atol: float = 1e-8) -> dict:
    """NumericResult for every node in `node_ids`.

    `exhaustive` forces nodes past the budget. `reference` (node id -> backprop Jacobian) only
    decides which elements get the second, smaller step; without it every element gets both.
    """
    step = DEFAULT_STEP if step is None else step
    rng = np.random.default_rng(seed + 7919)
    element_wise = allocate(graph, node_ids, budget, exhaustive or set())
    plans = {}
    for nid in sorted(node_ids):
        node = graph.nodes[nid]
        v = np.asarray(values[nid]).ravel()
        if nid in element_wise:
            plans[nid] = _Plan(node, step * np.maximum(1.0, np.abs(v)), FIRST)
        else:
            u = rng.choice([-1.0, 1.0], size=(PROJECTIONS, node.size))
            h = step * max(1.0, float(np.abs(v).max()))
            plans[nid] = _Plan(node, np.full(PROJECTIONS, h), FIRST + REFINE, directions=u)
    first = _run(graph, values, list(plans.values()))
    results, second_plans = {}, []
    with np.errstate(all="ignore"):
        for nid, plan in plans.items():
            if plan.directions is not None:
                results[nid] = _projection(graph, plan, *first[nid])
                continue
            d1, rounding, kink, sides = _first_step(graph, plan, *first[nid], values[graph.output])
            doubt = _in_doubt(d1, None if reference is None else reference.get(nid), rtol, atol)
            results[nid] = (d1, rounding, kink, doubt, sides)
            if doubt.any():
                idx = np.flatnonzero(doubt)
                second_plans.append(_Plan(plan.node, plan.steps[idx], REFINE, flat=idx))
        second = _run(graph, values, second_plans) if second_plans else {}
        tie_plans = [_Plan(p.node, p.steps[np.flatnonzero(results[n][2])], TIE, flat=np.flatnonzero(results[n][2]))
                     for n, p in plans.items() if p.directions is None and results[n][2].any()]
        ties = _run(graph, values, tie_plans) if tie_plans else {}
        for nid, plan in plans.items():
            if plan.directions is None:
                at = np.zeros(plan.n_probes, dtype=bool)
                if nid in ties:
                    idx = np.flatnonzero(results[nid][2])
                    at[idx] = ties[nid][1].reshape(idx.size, -1).any(axis=1)
                results[nid] = _exhaustive(graph, plan, *results[nid], second.get(nid), at)
    return results


def _run(graph: Graph, values: list, plans: list) -> dict:
    """Evaluate every plan's rows in chunks; returns node id -> (outputs, kinks), one row per probe × factor."""
    sizes = [n.size for n in graph.nodes]
    suffix_max = np.maximum.accumulate(sizes[::-1])[::-1]
    results = {p.node.id: ([], []) for p in plans}
    pending = [(p, i) for p in plans for i in range(p.n_probes)]
    pos = 0
    while pos < len(pending):
        first_plan = pending[pos][0]
        width = max(int(suffix_max[first_plan.node.id]), graph.nodes[graph.output].size)
        probes_per_chunk = max(1, CHUNK_ELEMENTS // (len(first_plan.factors) * width))
        chunk = pending[pos: pos + probes_per_chunk]
        pos += len(chunk)
        probes, row = [], 0
        for plan, group in _group(chunk):
            probes.extend(_probes(plan, group, row))
            row += len(plan.factors) * len(group)
        outputs, kinks = batched_forward(graph, values, probes, row)
        row = 0
        for plan, group in _group(chunk):
            n = len(plan.factors) * len(group)
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
    """Rows row0.. nudge by factor·h, one row per (probe, factor)."""
    idx = np.asarray(group)
    h = plan.steps[idx]
    k = len(plan.factors)
    if plan.directions is None:
        rows = row0 + k * np.arange(len(idx))
        return [Probe(plan.node.id, rows + j, plan.flat[idx], f * h) for j, f in enumerate(plan.factors)]
    probes = []
    size = plan.node.size
    for j, i in enumerate(idx):
        for m, f in enumerate(plan.factors):
            rows = np.full(size, row0 + k * j + m)
            probes.append(Probe(plan.node.id, rows, np.arange(size), f * h[j] * plan.directions[i]))
    return probes


def _pairs(plan: _Plan, outputs: np.ndarray, out_shape: tuple):
    """(f(+), f(−)) per probe for a plan whose factors come in ± pairs; shapes (n, pairs, *out)."""
    n, k = plan.n_probes, len(plan.factors)
    f = outputs.reshape((n, k // 2, 2) + out_shape)
    return f[:, :, 0], f[:, :, 1]


def _first_step(graph: Graph, plan: _Plan, outputs, kinks, centre):
    out_shape = graph.nodes[graph.output].shape
    plus, minus = _pairs(plan, outputs, out_shape)
    h = plan.steps.reshape((-1,) + (1,) * len(out_shape))
    d1 = (plus[:, 0] - minus[:, 0]) / (2 * h)
    rounding = 8 * EPS * np.maximum(np.abs(plus[:, 0]), np.abs(minus[:, 0])) / h
    kink = kinks.reshape(plan.n_probes, -1).any(axis=1)
    right, left = (plus[:, 0] - centre) / h, (centre - minus[:, 0]) / h
    return d1, rounding, kink, (np.minimum(left, right), np.maximum(left, right))


def _in_doubt(d1: np.ndarray, ref, rtol: float, atol: float) -> np.ndarray:
    """Per probe: True unless the first step already agrees well inside the tolerance."""
    if ref is None:
        return np.ones(d1.shape[0], dtype=bool)
    ref = np.moveaxis(np.asarray(ref).reshape(d1.shape[1:] + (-1,)), -1, 0)  # probes first
    scale = np.maximum(np.abs(d1), np.abs(ref))
    ok = np.isfinite(d1) & (np.abs(d1 - ref) <= np.maximum(atol, REFINE_RTOL * rtol * scale))
    return ~ok.reshape(d1.shape[0], -1).all(axis=1)


def _exhaustive(graph, plan, d1, rounding, kink, doubt, sides, second, at) -> NumericResult:
    out_shape = graph.nodes[graph.output].shape
    value, truncation = d1.copy(), np.zeros_like(d1)
    refined = np.flatnonzero(doubt)
    if second is not None and refined.size:
        sub = _Plan(plan.node, plan.steps[refined], REFINE, flat=refined)
        plus, minus = _pairs(sub, second[0], out_shape)
        h = sub.steps.reshape((-1,) + (1,) * len(out_shape))
        d2 = (plus[:, 0] - minus[:, 0]) / h
        value[refined] = d2 + (d2 - d1[refined]) / 3.0      # Richardson: the h² error terms cancel
        truncation[refined] = np.abs(d2 - d1[refined])
        rounding[refined] *= 2.0                            # the half step doubles the rounding error
        kink[refined] |= second[1].reshape(refined.size, -1).any(axis=1)
    node_shape = plan.node.shape
    to_jac = lambda a: np.moveaxis(a, 0, -1).reshape(out_shape + node_shape)  # noqa: E731
    jac = to_jac(value)
    kink_j = np.broadcast_to(kink.reshape((1,) * len(out_shape) + node_shape), jac.shape)
    return NumericResult("exhaustive", to_jac(truncation + rounding), kink_j, value=jac,
                         left_domain=not np.all(np.isfinite(jac)), truncation=to_jac(truncation),
                         refined=int(refined.size), one_sided=(to_jac(sides[0]), to_jac(sides[1])),
                         at_kink=np.broadcast_to(at.reshape((1,) * len(out_shape) + node_shape), jac.shape))


def _projection(graph, plan, outputs, kinks) -> NumericResult:
    out_shape = graph.nodes[graph.output].shape
    plus, minus = _pairs(plan, outputs, out_shape)
    h = plan.steps.reshape((-1,) + (1,) * len(out_shape))
    d1 = (plus[:, 0] - minus[:, 0]) / (2 * h)
    d2 = (plus[:, 1] - minus[:, 1]) / h
    value = d2 + (d2 - d1) / 3.0
    truncation = np.abs(d2 - d1)
    rounding = 16 * EPS * np.abs(plus).max(axis=1) / h
    kink = kinks.reshape(plan.n_probes, -1).any(axis=1)
    kink_b = np.broadcast_to(kink.reshape((-1,) + (1,) * len(out_shape)), value.shape)
    return NumericResult("projection", truncation + rounding, kink_b,
                         directions=plan.directions.reshape((plan.n_probes,) + plan.node.shape),
                         projected=value, left_domain=not np.all(np.isfinite(value)), truncation=truncation)
