"""`expect d<name> = expr` lines, compiled with the graph (expectcheck.py judges them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nodes
from .graph import Graph
from ..core.errors import GradNameError, GradShapeError, did_you_mean
from .nodes import walk


@dataclass
class Expectation:
    target: str           # "dx"
    node: int             # the node whose gradient is expected
    formula: Graph        # a small graph over the leaves, giving the expected value
    leaves: list          # main-graph ids of the named nodes the formula's leaves stand for
    pos: nodes.Pos
    tolerance: float | np.ndarray | None  # absolute, from the digits written (per element for an array); None for formulas and integers
    is_number: bool


def literal_decimals(expr, text: str) -> int | None:
    """Decimals written in a plain (possibly negated) number literal: `-0.20` → 2; None otherwise."""
    while isinstance(expr, nodes.Op) and expr.op == "neg":
        expr = expr.args[0]
    if not isinstance(expr, nodes.Num):
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
        if isinstance(e, nodes.Array):
            parts = [walk_items(item) for item in e.items]
            return None if any(p is None for p in parts) else parts
        inner = e
        while isinstance(inner, nodes.Op) and inner.op == "neg":
            inner = inner.args[0]
        if not isinstance(inner, nodes.Num):
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


def compile_expect(st: nodes.Expect, builder, graph_nodes, names: dict, output_shape: tuple) -> Expectation:
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
    return (e for e in walk(expr) if isinstance(e, nodes.Name))
