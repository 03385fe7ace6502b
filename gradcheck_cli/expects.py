"""`expect d<name> = expr` lines: compiled with the graph, judged against backprop (and SymPy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nodes as N
from .autodiff import run_graph
from .errors import GradNameError, GradShapeError, did_you_mean
from .nodes import walk
from . import symbolic

INTEGER_RTOL = 1e-9     # `expect dx = -4`: as exact as floats allow
FORMULA_RTOL = 1e-9
MAX_DERIVATIVES = 64    # output elements × target elements SymPy differentiates for one expectation
MAX_NODES = 200         # graphs larger than this are compared at the point only
MAX_LEAF_ELEMENTS = 2_000  # ... and graphs whose leaves hold more elements than this
RANDOM_POINTS = 3       # points at which SymPy's derivative and the formula must agree


@dataclass
class Expectation:
    target: str           # "dx"
    node: int             # the node whose gradient is expected
    formula: object       # a small Graph over the leaves, giving the expected value
    leaves: list          # main-graph ids of the named nodes the formula's leaves stand for
    pos: N.Pos
    tolerance: object        # absolute, from the digits written (per element for an array); None for formulas and integers
    is_number: bool


def literal_decimals(expr, text: str) -> int | None:
    """Decimals written in a plain (possibly negated) number literal: `-0.20` → 2; None otherwise."""
    while isinstance(expr, N.Op) and expr.op == "neg":
        expr = expr.args[0]
    if not isinstance(expr, N.Num):
        return None
    written = text[expr.pos.start:expr.pos.end].lower()
    mantissa = written.split("e")[0]
    exponent = _exponent(written.split("e")[1]) if "e" in written else 0
    if "." not in mantissa:
        decimals = None if exponent >= 0 else -exponent
    else:
        decimals = len(mantissa.split(".")[1]) - exponent
    return None if decimals is None else max(0, min(300, decimals))  # 1.5e3: ±0.5; 0.0e400 is 0 ±0.5


def written_tolerance(expr, text: str):
    """The half-unit of the last digit written, per element of a number or array literal (`[0.23, 0]`
    → [0.005, nan]: nan where an integer was written); None when `expr` is not such a literal or
    no element has decimals."""
    def walk_items(e):
        if isinstance(e, N.Array):
            parts = [walk_items(item) for item in e.items]
            return None if any(p is None for p in parts) else parts
        inner = e
        while isinstance(inner, N.Op) and inner.op == "neg":
            inner = inner.args[0]
        if not isinstance(inner, N.Num):
            return None
        decimals = literal_decimals(e, text)
        return float("nan") if decimals is None else 0.5 * 10.0 ** (-decimals)
    found = walk_items(expr)
    if found is None:
        return None
    try:
        tolerance = np.asarray(found, dtype=float)
    except ValueError:  # a ragged literal: the builder reports it
        return None
    if np.all(np.isnan(tolerance)):
        return None
    return float(tolerance) if tolerance.ndim == 0 else tolerance


def within(expected, actual, tolerance, rtol: float) -> bool:
    """Do the values agree: within the written digits' tolerance where digits were written, else within rtol."""
    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    relative = np.maximum(1e-12, rtol * np.maximum(np.abs(expected), np.abs(actual)))
    with np.errstate(all="ignore"):
        if tolerance is None:
            return bool(np.all(np.abs(expected - actual) <= relative))
        tol = np.broadcast_to(np.asarray(tolerance, dtype=float), np.broadcast_shapes(np.shape(tolerance), actual.shape))
        tol = np.where(np.isnan(tol), relative, tol + 1e-12 * np.abs(actual))
        return bool(np.all(np.abs(expected - actual) <= tol))


def _exponent(text: str) -> int:
    """A decimal exponent's value, clamped to ±1000 (its digits may be many)."""
    digits = text.lstrip("+-").lstrip("0") or "0"
    value = int(digits) if len(digits) <= 6 else 10 ** 6
    return max(-1000, min(1000, -value if text.startswith("-") else value))


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
    tolerance = written_tolerance(st.expr, builder.text)
    is_number = not list(_names(st.expr))
    return Expectation(st.target, node.id, formula, [n.id for n in leaves], pos, tolerance, is_number)


def _names(expr):
    return (e for e in walk(expr) if isinstance(e, N.Name))


def judge(exp: Expectation, graph, values: list, actual: np.ndarray, symbolic_check: bool,
          budget: int = symbolic.DEFAULT_BUDGET):
    """(expected value, status, note) for one expectation."""
    value = np.asarray(run_graph(exp.formula, [values[i] for i in exp.leaves]))
    try:
        expected = np.broadcast_to(value, actual.shape)
    except ValueError:
        raise GradShapeError(f"expect {exp.target}: the expected value has shape {value.shape}, but "
                             f"{exp.target} has shape {np.shape(actual)}", exp.pos.line, exp.pos.col) from None
    ok = within(expected, actual, exp.tolerance, INTEGER_RTOL if exp.is_number else FORMULA_RTOL)
    right, written = _fmt(actual), _fmt(expected)
    if right == written:  # apart by less than 6 digits show: show enough digits to tell them apart
        right, written = _fmt(actual, None), _fmt(expected, None)
    if not ok:
        return expected, "fail", f"{exp.target} is {right}, not {written}"
    if exp.is_number or not symbolic_check:
        return expected, "pass", None
    verdict = symbolic_verdict(exp, graph, budget)
    if verdict is None:
        return expected, "pass", "equal at the point (too large for SymPy to decide whether equal everywhere)"
    same, derivative = verdict
    if same:
        return expected, "pass", "symbolically equal"
    return expected, "fail", f"equal at this point only: {exp.target} = {derivative}"


def _fmt(a, digits: int | None = 6) -> str:
    """6 significant digits; `None`: every digit the float holds (its shortest exact form)."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return f"{float(a):.{digits}g}" if digits else repr(float(a))
    return np.array2string(a, precision=4 if digits else 17, threshold=12)


def symbolic_verdict(exp: Expectation, graph, budget: int):
    """(same everywhere?, SymPy's derivative as text), or None when past the work budget.

    SymPy differentiates the output written in the named leaves; the expected formula is then
    compared with that derivative at random points (a formula right only at this point fails)."""
    node, out = graph.nodes[exp.node], graph.nodes[graph.output]
    if node.size * out.size > MAX_DERIVATIVES or len(graph.nodes) > MAX_NODES:
        return None
    if sum(n.size for n in graph.nodes if n.kind in ("leaf", "const")) > MAX_LEAF_ELEMENTS:
        return None
    named = _named_symbols(graph)
    try:
        found = _derivative_and_expected(exp, graph, named, symbolic.Work(budget))
    except (symbolic.Exhausted, RecursionError):
        return None
    if found is None:
        return None
    derivative, expected = found
    try:
        same = _same_at_random_points(derivative, expected, [s for arr in named.values() for s in arr.ravel()])
    except (symbolic.Unsupported, KeyError):
        return None
    return same, _text(derivative)


def _named_symbols(graph) -> dict:
    """A real SymPy symbol for every element of every leaf and const, by node id (`x`, `W_0`, ...)."""
    import sympy
    named = {}
    for n in graph.nodes:
        if n.kind in ("leaf", "const"):
            arr = np.empty(n.shape, dtype=object)
            for k, idx in enumerate(np.ndindex(*n.shape)):
                arr[idx] = sympy.Symbol(n.name if not n.shape else f"{n.name}_{k}", real=True)
            named[n.id] = arr
    return named


def _derivative_and_expected(exp: Expectation, graph, named: dict, work):
    """SymPy's derivative of the output by the target and the written formula, both in the leaves'
    symbols and of the same shape; None when the target comes after the output. Raises Exhausted."""
    import sympy
    node, out = graph.nodes[exp.node], graph.nodes[graph.output]
    leaves = [named[n.id] for n in graph.leaves()]
    exprs = symbolic.expressions(graph, leaves, overrides=named, work=work)
    if any(i not in exprs for i in [node.id, *exp.leaves]):
        return None  # a node computed after the output: its gradient is 0, compared at the point only
    if node.kind in ("leaf", "const"):
        target, back = named[node.id], {}
    else:  # the output as a function of this node: a placeholder for it, substituted back after
        target = symbolic.make_symbols(node.shape, "_t")
        inner = exprs[node.id]
        exprs = symbolic.expressions(graph, leaves, overrides={**named, node.id: target}, work=work)
        back = dict(zip(target.ravel(), inner.ravel()))
    outs = np.asarray(exprs[graph.output], dtype=object).ravel()
    for o in outs:
        symbolic.count(o, work)
    derivative = np.array([[sympy.diff(o, t).xreplace(back) for t in target.ravel()] for o in outs], dtype=object)
    derivative = derivative.reshape(out.shape + node.shape)
    formula_inputs = [exprs[i] if i != exp.node or not back else np.asarray(inner, dtype=object) for i in exp.leaves]
    expected = np.asarray(symbolic.evaluate(exp.formula, formula_inputs), dtype=object)
    if back:  # named nodes downstream of the target hold its placeholder: back to the leaves
        expected = np.asarray(np.frompyfunc(lambda e: e.xreplace(back) if hasattr(e, "xreplace") else e, 1, 1)(expected),
                              dtype=object)
    return derivative, np.broadcast_to(expected, derivative.shape)


def _same_at_random_points(derivative, expected, symbols: list) -> bool:
    """Do the two agree (to 1e-9) at RANDOM_POINTS seeded random points of the symbols?"""
    rng = np.random.default_rng(0)
    for _ in range(RANDOM_POINTS):
        point = {s: float(rng.uniform(0.3, 1.7)) for s in symbols}
        for d, e in zip(derivative.ravel(), expected.ravel()):
            dv, ev = symbolic.value_at(_expr(d), point), symbolic.value_at(_expr(e), point)
            if not (abs(dv - ev) <= 1e-9 * max(1.0, abs(dv))):
                return False
    return True


def _expr(x):
    """A SymPy expression for an element that may be a plain number."""
    import sympy
    return x if isinstance(x, sympy.Basic) else sympy.Float(float(x))


def _text(derivative) -> str:
    text = str(derivative.item()) if derivative.ndim == 0 else str(derivative.tolist())
    return text if len(text) <= 200 else text[:199] + "…"
