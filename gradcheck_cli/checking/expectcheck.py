"""`expect` lines judged: the written value against backprop at the point, and a formula against
SymPy's derivative everywhere (at random points), so a formula right only at this point fails."""

from __future__ import annotations

import numpy as np

from ..oracles import jacobian_cache, symbolic
from ..oracles.autodiff import jacobian, run_graph
from ..core.errors import GradShapeError
from ..core.report import ExpectRow
from ..language.expects import Expectation, within
from ..core.streams import Stream, stream

INTEGER_RTOL = 1e-9     # `expect dx = -4`: as exact as floats allow
FORMULA_RTOL = 1e-9
MAX_DERIVATIVES = 64    # output elements × target elements SymPy differentiates for one expectation
MAX_NODES = 200         # graphs larger than this are compared at the point only
MAX_LEAF_ELEMENTS = 2_000  # ... and graphs whose leaves hold more elements than this
RANDOM_POINTS = 3       # points at which SymPy's derivative and the formula must agree


def rows(graph, values: list, adjoints: list, symbolic_check: bool) -> list:
    """The report's row of each `expect` line, at first order and at second alike: its target's gradient
    (backprop's, from `adjoints`) judged against what the line says."""
    found = []
    for e in graph.expects:
        actual = jacobian(graph, adjoints[e.node], graph.nodes[e.node])
        expected, status, note = judge(e, graph, values, actual, symbolic_check)
        found.append(ExpectRow(e.target, expected, actual, status, e.pos.line, e.pos.col, note))
    return found


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
    compared with that derivative at random points (a formula right only at this point fails). Kept
    between runs (`jacobian_cache.Store.get_answer`): a later run of the same file need not import SymPy."""
    node, out = graph.nodes[exp.node], graph.nodes[graph.output]
    if node.size * out.size > MAX_DERIVATIVES or len(graph.nodes) > MAX_NODES:
        return None
    if sum(n.size for n in graph.nodes if n.kind in ("leaf", "const")) > MAX_LEAF_ELEMENTS:
        return None
    key = _verdict_key(exp, graph, budget)
    kept = jacobian_cache.store() if key is not None else None
    answer = kept.get_answer(key) if kept is not None and key is not None else None
    work = symbolic.Work(budget)
    found = _kept_verdict(answer)
    if found is not None:  # as SymPy gave it in an earlier run (no SymPy import), its work spent again:
        verdict, spent = found  # the file's shared budget runs out here exactly where SymPy's run would have
        try:
            symbolic.replay(work, spent)
        except symbolic.Exhausted:
            return None
        return verdict
    recorded = symbolic.Recorded(work)
    verdict, keep = _fresh_verdict(exp, graph, recorded)
    if kept is not None and key is not None and keep and len(recorded.spent) <= jacobian_cache.MAX_VALUES:
        kept.put_answer(key, {"verdict": None if verdict is None else list(verdict), "spent": recorded.spent})
    return verdict


def _kept_verdict(answer: dict | None) -> tuple | None:
    """(the verdict, the work it spent in order) of a kept answer, or None where it does not hold."""
    if answer is None or set(answer) != {"verdict", "spent"}:
        return None
    verdict, spent = answer["verdict"], answer["spent"]
    if not symbolic.valid_spent(spent):
        return None
    if verdict is None:
        return None, spent
    if isinstance(verdict, list) and len(verdict) == 2 and isinstance(verdict[0], bool) and isinstance(verdict[1], str):
        return (verdict[0], verdict[1]), spent
    return None


def _verdict_key(exp: Expectation, graph, budget: int) -> str | None:
    """What an expectation's verdict is made from, as a `jacobian_cache` key: the whole graph (names
    included: the derivative's text reads them), the formula, the leaves it reads, the target and the
    budget; None where some part is not plain data."""
    main, formula = symbolic.graph_structure(graph), symbolic.graph_structure(exp.formula)
    if main is None or formula is None:
        return None
    return jacobian_cache.key_of(("expect verdict", main, formula, tuple(exp.leaves), exp.node, budget), [])


def _fresh_verdict(exp: Expectation, graph, work) -> tuple:
    """`symbolic_verdict` as SymPy gives it now, spending from `work`, and whether to keep it: not where
    a budget (its own, or the file's shared one, which earlier lines and settings drew on) or Python's
    stack decided, rather than the question."""
    named = _named_symbols(graph)
    try:
        found = _derivative_and_expected(exp, graph, named, work)
    except symbolic.Exhausted:
        return None, False
    except RecursionError:
        return None, False
    if found is None:
        return None, True
    derivative, expected = found
    try:
        same = _same_at_random_points(derivative, expected, [s for arr in named.values() for s in arr.ravel()])
    except (symbolic.Unsupported, KeyError):
        return None, True
    return (same, _text(derivative)), True


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
    rng = stream(0, Stream.EXPECT_FORMULA)
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
