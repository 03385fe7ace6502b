"""SymPy's exact derivatives at the point, two ways; expressions are built from objects, never text.

- Whole expression (the default): the output written as an expression of each node — everything
  not downstream of the node enters as a number — differentiated by SymPy. Its cost grows like
  nodes × depth, so it runs while the file's total fits WHOLE_BUDGET.
- Local chain (larger files): SymPy differentiates each gate's own expression exactly at the
  point, and a reverse pass of its own composes those local derivatives. It grows linearly and
  is still independent of the registry's hand-written VJPs and of autodiff's accumulation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from .gates import sym_number
from .graph import Graph

MAX_ELEMENTS = 64          # elements of a node given symbols of their own
MAX_DERIVATIVES = 1_024    # output elements × node elements
MAX_DEPTH = 150            # whole-expression mode: gates on the longest path (SymPy recurses)
DEFAULT_SECONDS = 20.0     # time budget for all of a file's SymPy work
WHOLE_BUDGET = 1_500       # Σ over nodes of downstream element-gates for whole-expression mode
INLINE_WORK = 100          # whole-expression work this small runs inline: a thread's GIL hand-off costs more
CHAIN_NOTE = "symbolic: SymPy's exact local derivatives, chained (the whole expression is past its budget)"


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


def _size_note(graph: Graph, nid: int) -> str | None:
    """Why a node has too many elements for SymPy, if it has."""
    node, out = graph.nodes[nid], graph.nodes[graph.output]
    if node.size > MAX_ELEMENTS or node.size * out.size > MAX_DERIVATIVES:
        return f"symbolic skipped: {node.size}×{out.size} derivatives exceed the SymPy budget"
    return None


def _whole_plan(graph: Graph, node_ids) -> dict | None:
    """Downstream nodes per node for whole-expression mode, or None when it is past its budget."""
    depths = _depths(graph)
    if any(depths[nid] > MAX_DEPTH for nid in node_ids):
        return None
    plan, total = {}, 0
    for nid in node_ids:
        plan[nid] = graph.descendants([nid])
        total += sum(graph.nodes[d].size for d in plan[nid])
        if total > WHOLE_BUDGET:
            return None
    return plan


def numbers(value) -> np.ndarray:
    """A float array as an object array of SymPy numbers."""
    return np.asarray(np.frompyfunc(sym_number, 1, 1)(np.asarray(value, dtype=float)), dtype=object)


def evaluate(graph: Graph, inputs: list) -> np.ndarray:
    """A small graph's output as SymPy expressions, for object-array inputs in leaf order."""
    leaves = [n for n in graph.nodes if n.kind == "leaf"]
    expr = {leaf.id: np.asarray(v, dtype=object) for leaf, v in zip(leaves, inputs)}
    for node in graph.nodes[: graph.output + 1]:
        if node.kind == "literal":
            expr[node.id] = numbers(node.value)
        elif node.gate is not None:
            expr[node.id] = np.asarray(node.gate.sym([expr[i] for i in node.inputs], node.attrs), dtype=object)
    return expr[graph.output]


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
        args = [expr[i] if i in expr else numbers(values[i]) for i in gate_node.inputs]
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


def local_chain(graph: Graph, values: list, node_ids, stop: threading.Event) -> dict:
    """Exact local derivatives from SymPy, composed by a reverse pass of this module's own."""
    import sympy
    out = graph.nodes[graph.output]
    wanted = set(node_ids)
    adjoint: dict = {out.id: np.eye(out.size)}  # (output elements, node elements)
    results: dict = {}
    for node in reversed(graph.nodes[: out.id + 1]):
        if stop.is_set():
            return results
        a = adjoint.get(node.id)
        if a is None:
            a = adjoint[node.id] = np.zeros((out.size, node.size))
        if node.id in wanted:
            results[node.id] = SymbolicResult(a.reshape(out.shape + node.shape).copy(), CHAIN_NOTE)
        if node.gate is None:
            continue
        slots = []
        for k, i in enumerate(node.inputs):
            sym = np.empty(graph.nodes[i].shape, dtype=object)
            for e, idx in enumerate(np.ndindex(*graph.nodes[i].shape)):
                sym[idx] = sympy.Symbol(f"a{k}_{e}", real=True)
            slots.append(sym)
        expr = np.asarray(node.gate.sym(slots, node.attrs), dtype=object).ravel()
        point = {s: sympy.Float(float(v)) for sym, i in zip(slots, node.inputs)
                 for s, v in zip(sym.ravel(), np.ravel(values[i]))}
        for sym, i in zip(slots, node.inputs):
            local = np.empty((node.size, sym.size))
            for o, oe in enumerate(expr):
                for e, s in enumerate(sym.ravel()):
                    d = sympy.diff(oe, s).xreplace(point)
                    local[o, e] = float(d if d.is_Number else sympy.N(d))
            contribution = a @ local
            adjoint[i] = adjoint[i] + contribution if i in adjoint else contribution
    for nid in wanted - set(results):
        results[nid] = SymbolicResult(np.zeros(out.shape + graph.nodes[nid].shape), CHAIN_NOTE)
    return results


def derivatives(graph: Graph, values: list, node_ids, seconds: float = DEFAULT_SECONDS) -> dict:
    """SymbolicResult per node; work past the time budget is abandoned with a note, never waited on."""
    results: dict = {}
    todo = []
    for nid in node_ids:
        note = _size_note(graph, nid)
        if note:
            results[nid] = SymbolicResult(None, note)
        else:
            todo.append(nid)
    if not todo:
        return results
    plan = _whole_plan(graph, todo)
    if plan is None:
        big = next((n for n in graph.nodes[: graph.output + 1] if n.gate is not None and any(
            n.size * graph.nodes[i].size > MAX_DERIVATIVES for i in n.inputs)), None)
        if big is not None:
            note = f"symbolic skipped: gate '{big.name}' is too large for SymPy's local derivatives"
            return {**results, **{nid: SymbolicResult(None, note) for nid in todo}}
    stop = threading.Event()
    found: dict = {}

    def work():
        try:
            if plan is None:
                found.update(local_chain(graph, values, todo, stop))
                return
            for nid in todo:
                if stop.is_set():
                    return
                found[nid] = derivative(graph, values, nid, plan[nid])
        except (RecursionError, MemoryError, OverflowError, ZeroDivisionError, ValueError,
                TypeError, AttributeError) as err:
            for nid in todo:
                found.setdefault(nid, SymbolicResult(None, f"symbolic skipped: SymPy failed ({type(err).__name__})"))

    if plan is not None and sum(graph.nodes[d].size for nid in todo for d in plan[nid]) <= INLINE_WORK:
        work()
        return {**results, **found}
    worker = threading.Thread(target=work, name="gradcheck-sympy", daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(seconds)
    stop.set()
    spent = time.perf_counter() - started
    for nid in todo:
        results[nid] = found.get(nid) or SymbolicResult(
            None, f"symbolic skipped: the SymPy time budget ({seconds:g} s) was spent after {spent:.1f} s")
    return results
