"""Forward and backward passes over a Graph. No gate-specific code: everything goes through the registry."""

from __future__ import annotations

import numpy as np

from .errors import BackwardError, GradValueError
from .graph import Graph, Node


def _gate_inputs(graph: Graph, node: Node, values: list) -> list:
    return [values[i] for i in node.inputs]


def apply_gate(node: Node, args: list, batched: list, n_rows: int | None) -> np.ndarray:
    """A gate's forward on operands of which those flagged `batched` carry a leading row axis."""
    if node.gate.elementwise and n_rows is not None:
        args = [_pad(a, node.shape, n_rows) if b else a for a, b in zip(args, batched)]
    return np.asarray(node.gate.forward(args, node.attrs), dtype=float)


def run_graph(graph: Graph, inputs: list, outputs: list | None = None, collect_branches: bool = False):
    """Evaluate a small graph (a user gate's body) on values for its leaves, in order.

    An input with more dimensions than its leaf carries a leading row axis; results that depend
    on it do too. Returns the output's value, or the values of `outputs` (node ids); with
    `collect_branches`, also the kink gates' branch arrays, one row each when batched.
    """
    leaves = [n for n in graph.nodes if n.kind == "leaf"]
    values: list = [None] * len(graph.nodes)
    rows = set()
    n_rows = None
    for leaf, value in zip(leaves, inputs):
        values[leaf.id] = value
        if np.ndim(value) > len(leaf.shape):
            rows.add(leaf.id)
            n_rows = np.shape(value)[0]
    branches = []
    with np.errstate(all="ignore"):
        for node in graph.nodes[: graph.output + 1]:
            if node.kind == "literal":
                values[node.id] = node.value
            if node.gate is None:
                continue
            args = _gate_inputs(graph, node, values)
            flags = [i in rows for i in node.inputs]
            values[node.id] = apply_gate(node, args, flags, n_rows if any(flags) else None)
            if any(flags):
                rows.add(node.id)
            if collect_branches and node.gate.branch is not None:
                b = np.asarray(node.gate.branch(_padded(node, args, flags, n_rows), node.attrs))
                if n_rows is not None:
                    b = np.broadcast_to(b, np.broadcast_shapes(b.shape, (n_rows,) + (1,) * (b.ndim - any(flags))))
                    branches.append(b.reshape(n_rows, -1))
                else:
                    branches.append(b.reshape(-1))
    wanted = [graph.output] if outputs is None else outputs
    results = [values[i] for i in wanted]
    if collect_branches:
        return results[0], branches
    return results[0] if outputs is None else results


def _padded(node, args, flags, n_rows):
    if node.gate.elementwise and n_rows is not None and any(flags):
        return [_pad(a, node.shape, n_rows) if b else a for a, b in zip(args, flags)]
    return args


def forward(graph: Graph, inputs: dict | None = None) -> list:
    """Every node's value at the given point; a non-finite value is an input error naming its node.

    `inputs` gives values for leaves by id (a user gate's parameters).
    """
    values: list = [None] * len(graph.nodes)
    inputs = inputs or {}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.gate is None:
                values[node.id] = inputs.get(node.id, node.value)
                continue
            args = _gate_inputs(graph, node, values)
            out = np.asarray(node.gate.forward(args, node.attrs), dtype=float)
            if not np.all(np.isfinite(out)):
                raise _domain_error(graph, node, args, out)
            values[node.id] = out
    return values


def _domain_error(graph: Graph, node: Node, args: list, out: np.ndarray) -> GradValueError:
    bad = "nan (undefined)" if np.isnan(out).any() else "infinite (an overflow or a pole)"
    inputs = ", ".join(f"{graph.nodes[i].name} = {_short(a)}" for i, a in zip(node.inputs, args))
    why = f"; {node.label} is defined for {node.gate.domain}" if node.gate.domain else ""
    msg = f"'{node.name}' is {bad} at this point{why}"
    if inputs:
        msg += f"; its inputs: {inputs}"
    return GradValueError(msg, node.pos.line, node.pos.col)


def _short(value) -> str:
    v = np.asarray(value)
    if v.ndim == 0:
        return f"{float(v):.6g}"
    return f"array of shape {v.shape}"


def backward(graph: Graph, values: list, errors: dict | None = None, seed: np.ndarray | None = None,
             on_edge=None, on_node=None) -> list:
    """Adjoints of every node, shaped (K, *node.shape) where K = output size (rows of the Jacobian).

    Fan-out accumulates: a node's adjoint is the sum over its consumers. `seed` replaces the
    identity at the output (a user gate's upstream gradient). A gate whose backward raises
    BackwardError is recorded in `errors` (node id -> error) and passes NaN to its inputs.
    `on_node(node, adjoint)` is called for every gate reached, before its backward runs, and
    `on_edge(node, slot, contribution, total, accumulated)` for every edge, in backward order.
    """
    out = graph.nodes[graph.output]
    if seed is None:
        seed = np.eye(out.size).reshape((out.size,) + out.shape)
    k = seed.shape[0]
    adjoints: list = [None] * len(graph.nodes)
    adjoints[out.id] = seed
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: out.id + 1]):
            g = adjoints[node.id]
            if g is None or node.gate is None:
                continue
            if on_node is not None:
                on_node(node, g)
            args = _gate_inputs(graph, node, values)
            try:
                grads = node.gate.vjp(g, args, values[node.id], node.attrs)
            except BackwardError as err:
                if errors is None:
                    raise
                errors[node.id] = err
                grads = err.grads or [np.full((k,) + np.shape(a), np.nan) for a in args]
            for slot, (i, gi) in enumerate(zip(node.inputs, grads)):
                gi = np.broadcast_to(gi, (k,) + graph.nodes[i].shape)
                accumulated = adjoints[i] is not None
                adjoints[i] = adjoints[i] + gi if accumulated else gi.copy()
                if on_edge is not None:
                    on_edge(node, slot, gi, adjoints[i], accumulated)
    for node in graph.nodes:
        if adjoints[node.id] is None:
            adjoints[node.id] = np.zeros((k,) + node.shape)
    return adjoints


def jacobian(graph: Graph, adjoint: np.ndarray, node: Node) -> np.ndarray:
    """A node's adjoint as the gradient (scalar output) or Jacobian (output.shape + node.shape)."""
    out = graph.nodes[graph.output]
    return adjoint.reshape(out.shape + node.shape)


class Probe:
    """Rows of a batched forward pass that each nudge one element of one node by `delta`."""
    __slots__ = ("node", "rows", "flat", "delta")

    def __init__(self, node: int, rows: np.ndarray, flat: np.ndarray, delta: np.ndarray):
        self.node, self.rows, self.flat, self.delta = node, rows, flat, delta


def batched_forward(graph: Graph, values: list, probes: list, n_rows: int):
    """Run the forward pass once for `n_rows` perturbed copies of the graph.

    Row r of the result is the output when the element named by row r's probe is nudged and
    everything downstream of it is recomputed; nodes upstream of every probe are shared.
    Returns (outputs shaped (n_rows, *output.shape), kink flags shaped (n_rows,)): a flag is
    set when some gate with a kink switched branch in that row.
    """
    by_node: dict[int, list] = {}
    for p in probes:
        by_node.setdefault(p.node, []).append(p)
    start = min(by_node)
    out_id = graph.output
    last_use = _last_uses(graph)
    batched: dict[int, np.ndarray] = {}
    kinks = np.zeros(n_rows, dtype=bool)
    with np.errstate(all="ignore"):
        for node in graph.nodes[start: out_id + 1]:
            nid = node.id
            in_batch = [i for i in node.inputs if i in batched]
            if node.gate is not None and in_batch:
                args = [batched[i] if i in batched else values[i] for i in node.inputs]
                flags = [i in batched for i in node.inputs]
                value = np.broadcast_to(apply_gate(node, args, flags, n_rows), (n_rows,) + node.shape)
                if node.gate.branch is not None:
                    kinks |= _switched(node, _padded(node, args, flags, n_rows), values, graph, n_rows)
            elif nid in by_node:
                value = np.broadcast_to(values[nid], (n_rows,) + node.shape)
            else:
                continue
            if nid in by_node:
                value = value.copy()
                flat = value.reshape(n_rows, -1)
                for p in by_node[nid]:
                    flat[p.rows, p.flat] += p.delta
            batched[nid] = value
            for i in set(in_batch):
                if last_use[i] <= nid and i != out_id:
                    del batched[i]
    if out_id not in batched:  # no probe reaches the output
        return np.broadcast_to(values[out_id], (n_rows,) + graph.nodes[out_id].shape), kinks
    return batched[out_id], kinks


def _pad(a: np.ndarray, shape: tuple, n_rows: int) -> np.ndarray:
    """Give a batched operand of an elementwise gate the result's rank, so broadcasting lines up."""
    extra = len(shape) - (a.ndim - 1)
    return a.reshape((n_rows,) + (1,) * extra + a.shape[1:]) if extra > 0 else a


def _switched(node: Node, args: list, values: list, graph: Graph, n_rows: int) -> np.ndarray:
    centre = np.asarray(node.gate.branch(_gate_inputs(graph, node, values), node.attrs))
    moved = np.asarray(node.gate.branch(args, node.attrs))
    moved = np.broadcast_to(moved, np.broadcast_shapes(moved.shape, (n_rows,) + (1,) * centre.ndim))
    return (moved != centre).reshape(n_rows, -1).any(axis=1)


def _last_uses(graph: Graph) -> list:
    """For each node, the id of the last node that reads it."""
    last = list(range(len(graph.nodes)))
    for node in graph.nodes:
        for i in node.inputs:
            last[i] = max(last[i], node.id)
    return last
