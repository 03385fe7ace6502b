"""SymPy's exact derivatives at the point. Expressions are built from objects, never from text.

Each gate's output elements are SymPy expressions of symbols for its input elements (the registry's
`sym` forms). Their partial derivatives come from SymPy's own rules: for an elementwise gate,
`sympy.diff` of its one-element expression (cached per gate); otherwise a reverse pass over the
expression tree that takes each function's derivative from SymPy (`F(d).diff(d)`) and applies the
chain rule. The partials are evaluated exactly at the point (the floats substituted as they are),
then composed in reverse over the graph — linear in its size, independent of the registry's
hand-written VJPs, of users' d lines and of autodiff's accumulation. Along with each derivative
comes the magnitude of the terms summed into it, which bounds the rounding any float computation
of it can have.

Work is counted, not timed: past `budget` expression nodes the rest is skipped with a note, so
the same input gives the same result on any machine, loaded or not.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ..gates import sym_number
from ..gates.record import Gate
from ..language.graph import Composite, Graph
from .symvalues import Exhausted, Unsupported, Work, array_value, shared, count, partials, value_at  # noqa: F401 - part of the module's API
from ..core.settings import DEFAULT_SYMBOLIC_BUDGET as DEFAULT_BUDGET

SYMBOL_COST = 4  # work units per SymPy symbol made for a gate's input element


@dataclass
class SymbolicResult:
    value: np.ndarray | None      # gradient/Jacobian (output.shape + node.shape), or None when skipped
    magnitude: np.ndarray | None = None  # Σ |terms| summed into each entry (bounds float rounding)
    note: str | None = None


# --- building expressions ---------------------------------------------------------------------

def make_symbols(shape: tuple, prefix: str) -> np.ndarray:
    """An object array of fresh real SymPy symbols `prefix0`, `prefix1`, ..."""
    import sympy
    out = np.empty(shape, dtype=object)
    for k, idx in enumerate(np.ndindex(*shape)):
        out[idx] = sympy.Symbol(f"{prefix}{k}", real=True)
    return out


def numbers(value) -> np.ndarray:
    """A float array as an object array of SymPy numbers."""
    return np.asarray(np.frompyfunc(sym_number, 1, 1)(np.asarray(value, dtype=float)), dtype=object)


def build_cost(node, shapes: list) -> int:
    """Expression nodes a gate's SymPy form builds: one per output element, more where its registry
    entry says so (argmax compares every pair). Charged before anything is built."""
    extra = node.gate.sym_cost(shapes, node.attrs) if node.gate.sym_cost is not None else 0
    return node.size + extra


def expressions(graph: Graph, inputs: list, overrides: dict | None = None, upto: int | None = None,
                work: "Work | None" = None) -> dict:
    """SymPy expressions of every node up to the output (or `upto`), from object arrays for the
    leaves in order. `overrides` (node id -> object array) replaces a node's expression. With
    `work`, each gate's build cost is charged before it is built (Exhausted past the budget)."""
    overrides = overrides or {}
    expr = {leaf.id: np.asarray(v, dtype=object) for leaf, v in zip(graph.leaves(), inputs)}
    last = graph.output if upto is None else upto
    for node in graph.nodes[: last + 1]:
        if node.id in overrides:
            expr[node.id] = overrides[node.id]
        elif node.kind in ("literal", "const") or (node.kind == "leaf" and node.id not in expr):
            expr[node.id] = numbers(node.value)
        elif node.gate is not None:
            if work is not None:
                work.spend(build_cost(node, [np.shape(expr[i]) for i in node.inputs]))
            expr[node.id] = np.asarray(gate_sym(node.gate, [expr[i] for i in node.inputs], node.attrs), dtype=object)
    return expr


def evaluate(graph: Graph, inputs: list) -> np.ndarray:
    """A small graph's output as SymPy expressions, for object-array inputs in leaf order."""
    return expressions(graph, inputs)[graph.output]


# --- a gate's local Jacobian --------------------------------------------------------------------

def gate_sym(gate: Gate | Composite, args: list, attrs: dict):
    """A gate's SymPy form on these operands: the registry's, or a composite's body evaluated."""
    if isinstance(gate, Composite):
        return evaluate(gate.body, list(args))
    assert gate.sym is not None  # every registry gate has its SymPy form
    return gate.sym(args, attrs)


_elementwise: dict = {}
_built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gate node -> (symbols, where, expressions)


def _elementwise_partials(gate, attrs: dict, arity: int):
    """For an elementwise gate: its one-element expression and SymPy's partial w.r.t. each input."""
    key = (gate.name, repr(sorted(attrs.items())), arity)
    if key not in _elementwise:
        import sympy
        d = [sympy.Symbol(f"d{k}", real=True) for k in range(arity)]
        expr = np.asarray(gate_sym(gate, [np.asarray(s, dtype=object) for s in d], attrs), dtype=object).item()
        _elementwise[key] = (d, [expr.diff(s) for s in d])
    return _elementwise[key]


def local_jacobian(node, args: list, work: Work) -> list:
    """Per input slot, the gate's exact local Jacobian at the point as (rows, cols, values):
    ∂out[row]/∂input[col] (flat indices), zero entries left out."""
    gate, attrs = node.gate, node.attrs
    if gate.elementwise:
        return _elementwise_jacobian(node, args, work)
    # before any symbol is made: a symbol costs about as much as visiting SYMBOL_COST expression nodes
    work.spend(build_cost(node, [np.shape(a) for a in args]) + SYMBOL_COST * sum(int(np.size(a)) for a in args))
    if node not in _built:  # the expressions depend on the shapes only: a second point reuses them
        slots = [make_symbols(np.shape(a), f"a{k}_") for k, a in enumerate(args)]
        where = {s: (k, e) for k, sym in enumerate(slots) for e, s in enumerate(sym.ravel())}
        _built[node] = (slots, where, np.asarray(gate_sym(gate, slots, attrs), dtype=object).ravel())
    slots, where, out = _built[node]
    point = {s: _number(v) for sym, a in zip(slots, args) for s, v in zip(sym.ravel(), np.ravel(a))}
    entries: list[tuple[list, list, list]] = [([], [], []) for _ in args]  # per slot: rows, cols, values
    for o, expr in enumerate(out):
        if not hasattr(expr, "free_symbols"):
            continue  # a plain number: no dependence
        for s, d in partials(expr, point, work).items():
            if s in where and d != 0:
                k, e = where[s]
                entries[k][0].append(o)
                entries[k][1].append(e)
                entries[k][2].append(d)
    return [(np.asarray(r, dtype=int), np.asarray(c, dtype=int),
             np.asarray(v, dtype=complex if any(isinstance(x, complex) for x in v) else float)) for r, c, v in entries]


def _number(v):
    """A point's value: a float, or a complex one on second order's complex step."""
    return complex(v) if np.iscomplexobj(v) else float(v)


def _elementwise_jacobian(node, args, work: Work) -> list:
    d, derivs = _elementwise_partials(node.gate, node.attrs, len(args))
    shape = node.shape
    work.spend(node.size)  # vectorised: an element costs about one expression node
    point = [np.broadcast_to(np.asarray(a, dtype=complex if np.iscomplexobj(a) else float), shape).ravel() for a in args]
    rows = np.arange(node.size)
    result = []
    for a, deriv in zip(args, derivs):
        values = np.broadcast_to(array_value(deriv, dict(zip(d, point))), (node.size,))
        cols = np.broadcast_to(np.arange(np.size(a)).reshape(np.shape(a)), shape).ravel()
        keep = values != 0
        result.append((rows[keep], cols[keep], values[keep]))
    return result


def pull_back(adjoint: np.ndarray, magnitude: np.ndarray, jac: tuple, size: int) -> tuple:
    """adjoint (K, out) through a local Jacobian (rows, cols, values) to (K, size), with magnitudes."""
    rows, cols, vals = jac
    k = adjoint.shape[0]
    grad = np.zeros((k, size), dtype=np.result_type(adjoint, vals))
    mag = np.zeros((k, size))
    if rows.size:
        # numpy's stubs take only integer arrays as ufunc.at's indices; numpy takes any index (a slice here).
        # unused-ignore: stubs that accept it make the ignore unused, and that is no error
        np.add.at(grad, (slice(None), cols), adjoint[:, rows] * vals)  # type: ignore[arg-type, unused-ignore]
        np.add.at(mag, (slice(None), cols), magnitude[:, rows] * np.abs(vals))  # type: ignore[arg-type, unused-ignore]
    return grad, mag


# --- derivatives of the output with respect to every node -------------------------------------------

def derivatives(graph: Graph, values: list, node_ids, budget: int = DEFAULT_BUDGET,
                seed: np.ndarray | None = None, jacobians: dict | None = None) -> dict:
    """SymbolicResult per node: SymPy's exact d(output)/d(node), composed in reverse.

    `seed` (K, output.size) replaces the identity at the output. Local Jacobians are kept in
    `jacobians` (node id -> per slot) for reuse. Past the work budget, or at a function SymPy's
    rules here cannot evaluate, the nodes not yet complete get a note instead of a value.
    """
    out = graph.nodes[graph.output]
    adj = {out.id: np.eye(out.size) if seed is None else np.asarray(seed, dtype=float).reshape(-1, out.size)}
    k = adj[out.id].shape[0]
    mag = {out.id: np.abs(adj[out.id])}
    jacobians = {} if jacobians is None else jacobians
    work = Work(budget)
    stopped_at, note = None, None
    for node in reversed(graph.nodes[: out.id + 1]):
        if node.gate is None or node.id not in adj:
            continue
        try:
            if node.id not in jacobians:
                jacobians[node.id] = local_jacobian(node, [values[i] for i in node.inputs], work)
        except Exhausted:
            stopped_at, note = node.id, f"symbolic skipped: past the SymPy work budget ({work.limit:,} expression nodes)"
            break
        except Unsupported as err:
            stopped_at, note = node.id, f"symbolic skipped: SymPy's rules here do not cover {err} (gate '{node.name}')"
            break
        for i, jac in zip(node.inputs, jacobians[node.id]):
            g, m = pull_back(adj[node.id], mag[node.id], jac, graph.nodes[i].size)
            if i in adj:
                adj[i] = adj[i] + g  # (complex at second order, where a real one may come first)
                mag[i] += m
            else:
                adj[i], mag[i] = g, m
    results = {}
    complete = _complete(graph, stopped_at)
    for nid in node_ids:
        node = graph.nodes[nid]
        shape = (out.shape if seed is None else (k,) if k > 1 else ()) + node.shape
        if not complete(nid):
            results[nid] = SymbolicResult(None, None, note)
            continue
        value = adj.get(nid, np.zeros((k, node.size)))
        magnitude = mag.get(nid, np.zeros((k, node.size)))
        if not np.all(np.isfinite(value)):
            results[nid] = SymbolicResult(None, None, "symbolic derivative is not finite at this point")
            continue
        results[nid] = SymbolicResult(value.reshape(shape), magnitude.reshape(shape))
    return results


def _complete(graph: Graph, stopped_at):
    """Whether a node's derivative was fully accumulated before the reverse pass stopped."""
    if stopped_at is None:
        return lambda nid: True
    return lambda nid: nid >= stopped_at or all(c > stopped_at for c in graph.consumers[nid])
