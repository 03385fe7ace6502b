"""`expect d<name> = expr` lines: compiled with the graph, judged against backprop (and SymPy)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import nodes as N
from .autodiff import run_graph
from .errors import GradNameError, GradShapeError, did_you_mean
from .nodes import walk
from .symbolic import MAX_ELEMENTS, evaluate, numbers

INTEGER_RTOL = 1e-9     # `expect dx = -4`: as exact as floats allow
FORMULA_RTOL = 1e-9
SYMPY_SECONDS = 5.0


@dataclass
class Expectation:
    target: str           # "dx"
    node: int             # the node whose gradient is expected
    formula: object       # a small Graph over the leaves, giving the expected value
    leaves: list          # main-graph ids of the named nodes the formula's leaves stand for
    pos: N.Pos
    tolerance: float | None  # absolute, from the digits written; None for formulas and integers
    is_number: bool


def literal_decimals(expr, text: str) -> int | None:
    """Decimals written in a plain (possibly negated) number literal: `-0.20` → 2; None otherwise."""
    while isinstance(expr, N.Op) and expr.op == "neg":
        expr = expr.args[0]
    if not isinstance(expr, N.Num):
        return None
    written = text[expr.pos.start:expr.pos.end].lower()
    mantissa = written.split("e")[0]
    exponent = int(written.split("e")[1]) if "e" in written else 0
    if "." not in mantissa:
        return None if exponent >= 0 else -exponent
    return len(mantissa.split(".")[1]) - exponent


def compile_expect(st: N.Expect, builder, graph_nodes, names: dict, output_shape: tuple) -> Expectation:
    """Check an expect line against the built graph; bad targets and formulas are input errors.

    `builder` is the graph's builder.Builder: it builds the formula as a small Graph.
    """
    pos = st.pos
    if not st.target.startswith("d") or st.target[1:] not in names:
        wanted = ["d" + n for n in names]
        hint = did_you_mean(st.target, wanted) or (" (write expect d<name> = ..., e.g. expect dx = 2)"
                                                   if not st.target.startswith("d") else "")
        raise GradNameError(f"'{st.target}' is not the gradient of a named node" + hint, pos.line, pos.col)
    node = graph_nodes[names[st.target[1:]]]
    if node.kind == "const":
        raise GradNameError(f"'{node.name}' is a const: it has no gradient to expect", pos.line, pos.col)
    bound = sorted({names[n] for n in names})  # every named node, leaves and computed ones
    for e in _names(st.expr):
        if e.id not in names:
            raise GradNameError(f"unknown name '{e.id}' in the expectation" + did_you_mean(e.id, names),
                                e.pos.line, e.pos.col)
    leaves = [graph_nodes[i] for i in bound]
    formula = builder.subgraph([(n.name, n.shape, n.pos) for n in leaves], (), st.expr)
    want = output_shape + node.shape
    got = formula.nodes[formula.output].shape
    try:
        np.broadcast_shapes(got, want)
        if len(got) > len(want):
            raise ValueError
    except ValueError:
        raise GradShapeError(f"expected a gradient of shape {want}, but this has shape {got}",
                             st.expr.pos.line, st.expr.pos.col) from None
    decimals = literal_decimals(st.expr, builder.text)
    tolerance = 0.5 * 10.0 ** (-decimals) if decimals is not None else None
    is_number = isinstance(st.expr, N.Num) or (isinstance(st.expr, N.Op) and st.expr.op == "neg"
                                                 and decimals is not None) or not list(_names(st.expr))
    return Expectation(st.target, node.id, formula, [n.id for n in leaves], pos, tolerance, is_number)


def _names(expr):
    return (e for e in walk(expr) if isinstance(e, N.Name))


def judge(exp: Expectation, graph, values: list, actual: np.ndarray, symbolic_check: bool):
    """(expected value, status, note) for one expectation."""
    expected = np.broadcast_to(run_graph(exp.formula, [values[i] for i in exp.leaves]), actual.shape)
    with np.errstate(all="ignore"):
        if exp.tolerance is not None:
            ok = np.all(np.abs(expected - actual) <= exp.tolerance + 1e-12 * np.abs(actual))
        else:
            rtol = INTEGER_RTOL if exp.is_number else FORMULA_RTOL
            ok = np.all(np.abs(expected - actual) <= np.maximum(1e-12, rtol * np.maximum(np.abs(expected), np.abs(actual))))
    right = _fmt(actual)
    if not ok:
        return expected, "fail", f"{exp.target} is {right}, not {_fmt(expected)}"
    if exp.is_number or not symbolic_check:
        return expected, "pass", None
    verdict = _symbolic_verdict(exp, graph, values)
    if verdict is None:
        return expected, "pass", "equal at the point (SymPy could not decide in time whether equal everywhere)"
    same, derivative = verdict
    if same:
        return expected, "pass", "symbolically equal"
    return expected, "fail", f"equal at this point only: {exp.target} = {derivative}"


def _fmt(a) -> str:
    a = np.asarray(a, dtype=float)
    return f"{float(a):.6g}" if a.ndim == 0 else np.array2string(a, precision=4, threshold=12)


def _symbolic_verdict(exp: Expectation, graph, values: list):
    """(same everywhere?, SymPy's derivative as text), or None when SymPy ran out of time or budget."""
    out = {}

    def work():
        try:
            out["v"] = _symbolic(exp, graph, values)
        except Exception:  # SymPy failing on a hard expression means "undecided", never a crash
            out["v"] = None

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(SYMPY_SECONDS)
    return out.get("v")


def _symbolic(exp: Expectation, graph, values: list):
    import sympy
    node = graph.nodes[exp.node]
    if node.size * graph.nodes[graph.output].size > MAX_ELEMENTS or len(graph.nodes) > 200:
        return None
    leaf_syms = {}
    expr = {}
    for n in graph.nodes[: max([graph.output] + exp.leaves) + 1]:
        if n.kind in ("leaf", "const"):
            arr = np.empty(n.shape, dtype=object)
            for k, idx in enumerate(np.ndindex(*n.shape)):
                arr[idx] = sympy.Symbol(n.name if not n.shape else f"{n.name}_{k}", real=True)
            leaf_syms[n.id] = arr
            expr[n.id] = arr
        elif n.kind == "literal":
            expr[n.id] = numbers(n.value)
        else:
            expr[n.id] = np.asarray(n.gate.sym([expr[i] for i in n.inputs], n.attrs), dtype=object)
        if n.id == exp.node and n.kind not in ("leaf", "const"):
            # the output as a function of this node: a fresh symbol for it, substituted back after
            inner = expr[n.id]
            target = np.empty(n.shape, dtype=object)
            for k, idx in enumerate(np.ndindex(*n.shape)):
                target[idx] = sympy.Symbol(f"_t{k}", real=True)
            expr[n.id] = target
    target = expr[exp.node] if node.kind not in ("leaf", "const") else leaf_syms[exp.node]
    back = {} if node.kind in ("leaf", "const") else dict(zip(target.ravel(), inner.ravel()))
    outs = np.asarray(expr[graph.output], dtype=object).ravel()
    derivative = np.array([[sympy.diff(o, t).xreplace(back) for t in target.ravel()] for o in outs], dtype=object)
    derivative = derivative.reshape(graph.nodes[graph.output].shape + node.shape)
    named = [inner if i == exp.node and node.kind not in ("leaf", "const") else expr[i] for i in exp.leaves]
    expected = np.asarray(evaluate(exp.formula, named), dtype=object)
    if back:  # named nodes downstream of the target hold its placeholder: back to the leaves
        expected = np.asarray(np.frompyfunc(lambda e: e.xreplace(back), 1, 1)(expected), dtype=object)
    expected = np.broadcast_to(expected, derivative.shape)
    rng = np.random.default_rng(0)
    symbols = [s for arr in leaf_syms.values() for s in arr.ravel()]
    same = True
    for d, e in zip(derivative.ravel(), expected.ravel()):
        diff = sympy.simplify(d - e)
        if diff == 0:
            continue
        for _ in range(3):  # simplify may miss an identity: random points decide
            point = {s: sympy.Float(rng.uniform(0.3, 1.7)) for s in symbols}
            val = complex(sympy.N(diff.xreplace(point)))
            if abs(val) > 1e-9 * max(1.0, abs(complex(sympy.N(d.xreplace(point))))):
                same = False
                break
        if not same:
            break
    text = str(derivative.item()) if derivative.ndim == 0 else str(derivative.tolist())
    return same, text
