"""SymPy's exact derivative of the output, written as an expression of each node, at the point.

Expressions are built from SymPy objects by each gate's `sym` form; no text is ever parsed.
Everything not downstream of the node enters as an exact number, so the expression holds only
the part of the circuit the node influences.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .graph import Graph

MAX_ELEMENTS = 64          # elements of a node given symbols of their own
MAX_DERIVATIVES = 1_024    # output elements × node elements
MAX_TERMS = 20_000         # element-gates in the expression to differentiate
MAX_DEPTH = 150            # gates on the longest path to the output (SymPy recurses)
DEFAULT_SECONDS = 20.0     # time budget for all of a file's SymPy work


@dataclass
class SymbolicResult:
    value: np.ndarray | None   # gradient/Jacobian (output.shape + node.shape), or None when skipped
    note: str | None = None


def _depths(graph: Graph) -> list:
    """Longest path (in gates) from each node to the output."""
    depth = [-1] * len(graph.nodes)
    depth[graph.output] = 0
    for node in reversed(graph.nodes[: graph.output + 1]):
        if depth[node.id] < 0:
            continue
        for i in node.inputs:
            depth[i] = max(depth[i], depth[node.id] + 1)
    return depth


def _budget_note(graph: Graph, nid: int, depth: int) -> tuple[str | None, list]:
    """Why SymPy should not try this node (cheapest tests first), and its downstream nodes."""
    node, out = graph.nodes[nid], graph.nodes[graph.output]
    if node.size > MAX_ELEMENTS or node.size * out.size > MAX_DERIVATIVES:
        return f"symbolic skipped: {node.size}×{out.size} derivatives exceed the SymPy budget", []
    if depth > MAX_DEPTH:
        return f"symbolic skipped: the expression is {depth} gates deep (SymPy budget {MAX_DEPTH})", []
    downstream = graph.descendants([nid])
    terms = sum(graph.nodes[d].size for d in downstream)
    if terms > MAX_TERMS:
        return f"symbolic skipped: the expression ({terms} element-gates) exceeds the SymPy budget", []
    return None, downstream


def _numbers(value) -> np.ndarray:
    from .gates import _num
    return np.asarray(np.frompyfunc(_num, 1, 1)(np.asarray(value, dtype=float)), dtype=object)


def derivative(graph: Graph, values: list, nid: int, downstream: list) -> SymbolicResult:
    """SymPy's d(output)/d(node) at the point, or a note saying why it is not available."""
    import sympy
    node, out = graph.nodes[nid], graph.nodes[graph.output]
    jac_shape = out.shape + node.shape
    if nid != graph.output and graph.output not in downstream:
        return SymbolicResult(np.zeros(jac_shape))
    symbols = np.empty(node.shape, dtype=object)
    for k, idx in enumerate(np.ndindex(*node.shape)):
        symbols[idx] = sympy.Symbol(f"v{k}", real=True)
    expr = {nid: symbols}
    for d in downstream:
        gate_node = graph.nodes[d]
        args = [expr[i] if i in expr else _numbers(values[i]) for i in gate_node.inputs]
        expr[d] = np.asarray(gate_node.gate.sym(args, gate_node.attrs), dtype=object)
        if d == graph.output:
            break
    point = {s: sympy.Float(float(v)) for s, v in zip(symbols.ravel(), np.ravel(values[nid]))}
    result = np.empty((out.size, node.size))
    out_exprs = np.asarray(expr[graph.output], dtype=object).ravel()
    for i, oe in enumerate(out_exprs):
        for j, s in enumerate(symbols.ravel()):
            d = sympy.diff(oe, s).xreplace(point)
            try:
                result[i, j] = float(d if d.is_Number else sympy.N(d))
            except (TypeError, ValueError):
                return SymbolicResult(None, "symbolic derivative is not finite at this point")
    if not np.all(np.isfinite(result)):
        return SymbolicResult(None, "symbolic derivative is not finite at this point")
    return SymbolicResult(result.reshape(jac_shape))


def derivatives(graph: Graph, values: list, node_ids, seconds: float = DEFAULT_SECONDS) -> dict:
    """SymbolicResult per node; work past the time budget is abandoned with a note, never waited on."""
    results: dict = {}
    depths = _depths(graph)
    todo = []
    for nid in node_ids:
        note, downstream = _budget_note(graph, nid, depths[nid])
        if note:
            results[nid] = SymbolicResult(None, note)
        else:
            todo.append((nid, downstream))
    if not todo:
        return results
    stop = threading.Event()
    found: dict = {}

    def work():
        for nid, downstream in todo:
            if stop.is_set():
                return
            try:
                found[nid] = derivative(graph, values, nid, downstream)
            except (RecursionError, MemoryError, OverflowError, ZeroDivisionError, ValueError,
                    TypeError, AttributeError) as err:
                found[nid] = SymbolicResult(None, f"symbolic skipped: SymPy failed ({type(err).__name__})")

    worker = threading.Thread(target=work, name="gradcheck-sympy", daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(seconds)
    stop.set()
    spent = time.perf_counter() - started
    for nid, _ in todo:
        results[nid] = found.get(nid) or SymbolicResult(
            None, f"symbolic skipped: the SymPy time budget ({seconds:g} s) was spent after {spent:.1f} s")
    return results
