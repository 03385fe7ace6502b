"""What the finite-difference engine differences: runners. A runner evaluates `n_rows` perturbed
copies of a function at once (`run(probes, n_rows)`), says per row whether a kink gate switched
branch, how wide a row is (`width`) and what differencing a target costs (`work`). The whole graph as
a function of one node, and one gate alone, are here; a user's Python function is pycheck's.
"""

from __future__ import annotations

import numpy as np

from . import plan
from .autodiff import apply_gate, batched_forward, branch_of, branch_rows, gate_forward
from .batches import Probe
from .buffers import WorkBuffers
from .numeric import Target

HEADROOM = 8  # the work buffers of a graph's batched passes are an eighth larger than asked (buffers.WorkBuffers)


def workspace(graph, node, shapes: list | None = None) -> int:
    """Elements of the largest temporary one evaluation of `node` lays out (0 unless its gate says)."""
    gate = node.gate
    if gate is None or gate.workspace is None:
        return 0
    return int(gate.workspace(shapes or [graph.nodes[i].shape for i in node.inputs], node.attrs))


class GraphRunner:
    """The graph's output (optionally contracted with `weights`) as a function of one node."""

    def __init__(self, graph, values: list, weights: np.ndarray | None = None):
        self.graph, self.values, self.weights = graph, values, weights
        out = graph.nodes[graph.output]
        with np.errstate(over="ignore", invalid="ignore"):  # past the float range: inf, judged as not finite
            self.centre = values[out.id] if weights is None else np.sum(values[out.id] * weights)
            # the size of the terms summed: a difference of the sum is rounded at it, where the sum cancels
            self.terms = 0.0 if weights is None else float(np.sum(np.abs(values[out.id] * weights)))
        self.out_size = 1 if weights is not None else out.size
        sizes = [max(n.size, workspace(graph, n)) for n in graph.nodes]  # the largest array a row holds
        self._suffix_max = np.maximum.accumulate(sizes[::-1])[::-1]
        self._branches = branch_rows(graph, values)
        self._reads: dict = {}  # the elements each gate with a `reads` rule picks, by node id (batched_forward's)
        self._buffers = WorkBuffers(headroom=HEADROOM)  # reused by every batch this runner runs

    def width(self, node_id) -> int:
        return max(int(self._suffix_max[node_id]), self.out_size)

    def work(self, target: Target) -> int:
        """What differencing `target` costs, in element evaluations (see `work`)."""
        return work(self.graph, [target])

    def run(self, probes: list[Probe], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        out, switched = batched_forward(self.graph, self.values, probes, n_rows, self._branches, self._reads,
                                        buffers=self._buffers)
        out = np.asarray(out).reshape(n_rows, -1)
        if self.weights is not None:
            out = out @ np.ravel(self.weights)[:, None]
        return out, switched


class GateRunner:
    """One gate alone, Σ weights ⊙ gate(inputs), as a function of its inputs' elements, concatenated."""

    def __init__(self, node, args: list, weights: np.ndarray, slots: list):
        self.node, self.args, self.weights, self.slots = node, [np.asarray(a, dtype=float) for a in args], weights, slots
        sizes = [self.args[k].size for k in slots]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.x = np.concatenate([self.args[k].ravel() for k in slots]) if slots else np.zeros(0)
        with np.errstate(all="ignore"):
            out = np.asarray(gate_forward(node.gate, self.args, node.attrs), dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):  # past the float range: inf, judged as not finite
            self.centre = np.sum(out * weights)
            self.terms = float(np.sum(np.abs(out * weights)))  # as GraphRunner's
        self.out_size = 1
        self._branch = self._branch_of(self.args, [False] * len(args), None)

    def _branch_of(self, args, flags, n_rows):
        if not self.node.gate.has_kinks:
            return None
        return branch_of(self.node, args, flags, n_rows)

    def width(self, target_id) -> int:
        return max(self.node.size, int(self.x.size), workspace(None, self.node, [np.shape(a) for a in self.args]))

    def work(self, target: Target) -> int:
        """The plan's rows for the target (plan.DifferencePlan.rows), each as wide as the gate's inputs
        and output."""
        return plan.PLAN.rows(target.n, target.projections) * (int(self.x.size) + self.node.size)

    def run(self, probes: list[Probe], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        args, flags = list(self.args), [False] * len(self.args)
        for pos, k in enumerate(self.slots):
            lo, hi = self.offsets[pos], self.offsets[pos + 1]
            dtype = np.result_type(self.args[k], *[p.delta for p in probes])  # complex: the complex step
            a = np.broadcast_to(self.args[k], (n_rows,) + self.args[k].shape).astype(dtype, order="C")
            flat = a.reshape(n_rows, -1)
            for p in probes:
                if p.flat is None:
                    flat[p.rows] += p.delta[:, lo:hi]
                    continue
                sel = (p.flat >= lo) & (p.flat < hi)
                if sel.any():
                    np.add.at(flat, (p.rows[sel], p.flat[sel] - lo), np.broadcast_to(p.delta, p.flat.shape)[sel])
            args[k], flags[k] = a, True
        with np.errstate(all="ignore"):
            out = apply_gate(self.node, args, flags, n_rows)
            phi = (out.reshape(n_rows, -1) * np.ravel(self.weights)).sum(axis=1, keepdims=True)
            switched = np.zeros(n_rows, dtype=bool)
            if self._branch is not None:
                switched = (self._branch_of(args, flags, n_rows) != self._branch).any(axis=1)
        return phi, switched


class Each:
    """Several runners side by side, one per target (gate calls, each its own function): the engine
    differences all their targets in one pass of each kind, each target's rows run by its own runner
    exactly as alone — the same probes, the same number of rows — and each target's centre and terms
    its own runner's (numeric._Context). Element by element only (projections draw per function).
    Rows of a target are never split between chunks: its `width` is 1, so a pass of up to
    CHUNK_ELEMENTS rows is one batch; the caller keeps a pass of all its targets within that
    (`rows_bound`), and a runner would chunk a target's rows alone only past the same bound."""

    centre = np.zeros(0)   # one per target: each(target id).centre
    terms = 0.0            # one per target: each(target id).terms

    def __init__(self, runners: dict):
        self._runners = runners

    def each(self, target_id):
        return self._runners[target_id]

    def width(self, target_id) -> int:
        return 1

    def work(self, target: Target) -> int:
        return self._runners[target.id].work(target)

    def run(self, probes: list[Probe], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        outs, flags = [], []
        end = 0
        for p in probes:  # run_rows: one probe per target, its rows consecutive, in order
            start, count = end, (int(p.rows[-1]) + 1 - end if p.rows.size else 0)
            assert p.rows.size and int(p.rows[0]) == start and count > 0
            o, sw = self._runners[p.node].run([Probe(p.node, p.rows - start, p.flat, p.delta)], count)
            outs.append(np.asarray(o).reshape(count, -1))
            flags.append(np.asarray(sw, dtype=bool))
            end += count
        assert end == n_rows
        return np.concatenate(outs), np.concatenate(flags)


def rows_bound(n: int) -> int:
    """The most rows one pass of the exhaustive differences runs for a target of n elements (±h of each,
    ±h/2 and the two escalated steps, ±TIE·h, a pair of rows per pair of kink elements, per tie)."""
    return max(4 * n, n * (n - 1) + 2, 2 * n)


NODE_COST = 24  # a node's evaluation in a batched row costs about this many elements' (measured: a chain
                # of scalars runs ~25 times slower per element than a network of matrices)


def work(graph, targets: list) -> int:
    """An upper bound on the work `differentiate` needs for `targets` of `graph`, in element
    evaluations: the plan's rows per element (or per projection: plan.DifferencePlan.rows), each holding
    a perturbed copy of its target and recomputing the nodes after it, every node counting NODE_COST
    elements more than its size."""
    return sum(works(graph, targets))


def works(graph, targets: list) -> list:
    """`work` of each target on its own (the graph's sizes summed once, not once per target)."""
    sizes = np.array([n.size for n in graph.nodes], dtype=np.int64) + NODE_COST
    after = np.concatenate([np.cumsum(sizes[::-1])[::-1][1:], [0]])  # the cost of the nodes after each id
    out = []
    for t in targets:
        rows = plan.PLAN.rows(t.n, t.projections)
        own = int(sizes[t.id] + after[t.id]) if isinstance(t.id, (int, np.integer)) else 0
        out.append(rows * own)
    return out


def allocate(sizes: dict, leaves: set, budget: int, forced: set | frozenset = frozenset()) -> set:
    """Targets differenced element by element: leaves first, then the smallest, within `budget` elements."""
    ordered = sorted(sizes, key=lambda t: (t not in leaves, sizes[t], t))
    chosen, used = set(), 0
    for t in ordered:
        if t in forced or used + sizes[t] <= budget:
            chosen.add(t)
            used += sizes[t]
    return chosen
