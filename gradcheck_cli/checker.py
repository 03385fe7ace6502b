"""The library entry point `check`: build the graph, run the three oracles, judge every node."""

from __future__ import annotations

from . import autodiff, numeric, symbolic, verdict
from .errors import GradcheckError
from .expects import judge as judge_expect
from .frontend import load
from .graph import Graph
from .report import CheckReport, ExpectRow, NodeRow
from .settings import Settings


def check(text: str, *, source: str = "<expr>", at: dict | None = None, free_names: bool = False,
          settings: Settings | None = None, **overrides) -> CheckReport:
    """Check the gradient at every node of the function written in `text`.

    `settings` (default: `Settings()`) with `overrides` applied (`seed=1`, `symbolic=False`, ...).
    Never raises for bad input: the report's `error` holds the GradcheckError instead.
    """
    at_text = {k: v for k, v in (at or {}).items() if isinstance(v, str)}
    report = CheckReport(source=source, inline=text if free_names else None, at=at_text)
    try:
        settings = (settings or Settings()).with_flags(**overrides)
        report.settings = settings
        graph = load(text, source, at, settings.seed, free_names)
        _fill(report, graph, settings)
    except GradcheckError as err:
        report.error = err.located(source, text)
    except RecursionError:
        report.error = GradcheckError("the input is nested too deeply", 1, 1).located(source, text)
    return report


def _fill(report: CheckReport, graph: Graph, settings: Settings):
    values = autodiff.forward(graph)
    backward_errors: dict = {}
    adjoints = autodiff.backward(graph, values, backward_errors)
    out = graph.nodes[graph.output]
    report.output, report.value = out.name, values[out.id]
    checked = [n for n in graph.checked() if n.kind != "const"]
    ids = [n.id for n in checked]
    backprop = {n.id: autodiff.jacobian(graph, adjoints[n.id], n) for n in checked}
    differences = dict(step=settings.step, budget=settings.budget, seed=settings.seed, reference=backprop,
                       rtol=settings.rtol, atol=settings.atol)
    num = numeric.finite_differences(graph, values, ids, **differences)
    sym = symbolic.derivatives(graph, values, ids) if settings.symbolic else {}
    rows = {}
    for node in checked:
        bp = backprop[node.id]
        j = verdict.judge(bp, node.shape, num[node.id], sym.get(node.id), settings.rtol, settings.atol)
        if j.status == "fail" and num[node.id].method == "projection":
            # A random projection failed: recheck every element so the report names the bad one.
            num[node.id] = numeric.finite_differences(graph, values, [node.id], exhaustive={node.id},
                                                      **differences)[node.id]
            j = verdict.judge(bp, node.shape, num[node.id], sym.get(node.id), settings.rtol, settings.atol)
        rows[node.id] = _row(node, values[node.id], bp, num[node.id], sym.get(node.id), j)
    _diagnose(graph, rows, backward_errors)
    for node in graph.checked():
        if node.kind == "const":
            rows[node.id] = NodeRow(node.name, node.label, node.shape, node.pos.line, node.pos.col,
                                    values[node.id], None, None, None, None, None, "skip",
                                    "const: frozen, no gradient is checked")
    report.nodes = [rows[n.id] for n in graph.checked()]
    report.expects = []
    for e in graph.expects:
        node = graph.nodes[e.node]
        actual = backprop.get(e.node, autodiff.jacobian(graph, adjoints[e.node], node))
        expected, status, note = judge_expect(e, graph, values, actual, settings.symbolic)
        report.expects.append(ExpectRow(e.target, expected, actual, status, e.pos.line, e.pos.col, note))


def _row(node, value, bp, num, sym, j: verdict.Judgement) -> NodeRow:
    method = num.method if num.method == "exhaustive" else f"projection ({num.projected.shape[0]} random directions)"
    return NodeRow(name=node.name, op=node.label, shape=node.shape, line=node.pos.line, col=node.pos.col,
                   value=value, grad=bp, numeric=num.value, symbolic=sym.value if sym is not None else None,
                   numeric_error=j.numeric_error, symbolic_error=j.symbolic_error, status=j.status, note=j.note,
                   tolerance=j.tolerance, worst_index=j.worst_index, numeric_method=method)


def _diagnose(graph: Graph, rows: dict, backward_errors: dict):
    """Add the cause to every failing row's note (and the culprit's position)."""
    gates = {n.id: (n.name, n.label, n.pos.line, n.pos.col, n.gate.backward_source, n.inputs)
             for n in graph.nodes if n.gate is not None and n.id in rows}
    statuses = {nid: row.status for nid, row in rows.items()}
    consumers = {nid: graph.consumers[nid] for nid in rows}
    for nid, cause in verdict.diagnose(consumers, statuses, gates, backward_errors).items():
        row = rows[nid]
        row.note = cause.note if cause.inherited else f"{row.note}; {cause.note}"
        row.culprit = cause.culprit
