"""The library entry point `check`: build the graph, run the three oracles, judge every node and gate."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..oracles import autodiff, complexstep, numeric, runners, symbolic
from . import cost, diagnosis, expectcheck, gatecheck, hvp, pipeline, targets, verdict
from ..core.errors import GradcheckError
from ..language.frontend import load
from ..language.graph import Graph
from ..core.limits import MAX_JACOBIAN, size_error
from ..core.meter import PRICES
from ..core.report import CheckReport, GateRow, NodeRow
from ..core.settings import Settings
from ..core.streams import Stream, stream
from ..core.status import Status
from ..core.tolerances import largest_abs

ALL_GATES = 1_000        # up to this many gates every built-in gate is also checked on its own
LOCAL_CHECKS = 2_000     # past this many gate calls (not below a failing row), a seeded sample this size is checked
POLICY = pipeline.POLICIES["graph"]


def check(text: str, *, source: str = "<expr>", at: dict | None = None, free_names: bool = False,
          settings: Settings | None = None, **overrides) -> CheckReport:
    """Check the gradient at every node of the function written in `text`.

    `settings` (default: `Settings()`) with `overrides` applied (`seed=1`, `symbolic=False`, ...).
    Never raises for bad input: the report's `error` holds the GradcheckError instead.
    """
    started = time.perf_counter()
    at_text = {k: v for k, v in (at or {}).items() if isinstance(v, str)}
    report = CheckReport(source=source, inline=text if free_names else None, at=at_text, text=text)
    try:
        settings = (settings or Settings()).with_flags(**overrides)
        report.settings = settings
        graph = load(text, source, at, settings.seed, free_names)
        _fill(report, graph, settings)
    except GradcheckError as err:
        report.error = err.located(source, text)
    except RecursionError:
        report.error = GradcheckError("the input is nested too deeply", 1, 1).located(source, text)
    report.elapsed = time.perf_counter() - started
    return report


def check_graph(graph: Graph, settings: Settings | None = None) -> CheckReport:
    """Check a Graph already loaded (as the teaching commands hold it); errors land in `error`."""
    settings = settings or Settings()
    report = CheckReport(source=graph.source, settings=settings, text=graph.text)
    try:
        _fill(report, graph, settings)
    except GradcheckError as err:
        report.error = err.located(graph.source, graph.text)
    return report


def backprop_noise(graph: Graph, values: list, adjoints: list) -> list:
    """Per node, how much backprop moves when every value is nudged by a few ulps: its own rounding."""
    out = graph.nodes[graph.output]

    def rerun(delta):
        scaled = [None if v is None else v * (1 + delta) for v in values]
        seed = np.eye(out.size).reshape((out.size,) + out.shape) * (1 + delta)
        return autodiff.backward(graph, scaled, {}, seed)
    return pipeline.rounding(rerun, adjoints, POLICY.noise_signs)


def _unreached_row(node, value) -> NodeRow:
    zero = np.zeros(node.shape)
    return NodeRow(name=node.name, op=node.label, shape=node.shape, line=node.pos.line, col=node.pos.col,
                   value=value, grad=zero, numeric=zero, symbolic=zero, numeric_error=0.0,
                   symbolic_error=0.0, status=Status.PASS,
                   note="does not reach the output: its gradient is 0", tolerance=0.0, worst_index=None,
                   numeric_method="none", node_id=node.id)


def _fill(report: CheckReport, graph: Graph, settings: Settings):
    if settings.order == 2:
        return hvp.fill(report, graph, settings)
    out = graph.nodes[graph.output]
    _refuse_large_jacobians(graph, out)
    reach = graph.ancestors(graph.output)
    checked = [n for n in graph.checked() if n.kind != "const" and n.id in reach]
    exhaustive = runners.allocate({n.id: n.size for n in checked}, {n.id for n in checked if n.kind == "leaf"},
                                  settings.budget)
    work, units = _predict(graph, checked, exhaustive, reach, settings)
    report.work = work
    values = autodiff.forward(graph)
    adjoints = autodiff.backward(graph, values, {})
    noise = backprop_noise(graph, values, adjoints)
    report.output, report.value = out.name, values[out.id]
    report.warnings = list(graph.warnings) + _unused_warning(graph, reach, out)
    rows = {n.id: _unreached_row(n, values[n.id]) for n in graph.checked() if n.kind != "const" and n.id not in reach}
    with symbolic.shared(work.parts.get("symbolic", {}).get("sympy", 0)) as sympy:
        rules: dict = {}  # a gate's name and line -> how SymPy's column had its local Jacobian, where by an index rule
        jacobians = _judge_nodes(graph, checked, exhaustive, values, adjoints, noise, settings, rows, reach, rules)
        report.symbolic_rules = [f"{where}: {how}" for where, how in reversed(rules.items())]
        room = cost.MAX_WORK - work.total + (sympy.budget - sympy.used) * PRICES["sympy"]
        checks = _gate_checks(graph, values, settings, jacobians, rows, reach, report, lambda calls: _within(calls, units, room))
        report.expects = expectcheck.rows(graph, values, adjoints, settings.symbolic)
    report.gates = [_gate_row(graph, c, checks) for c in checks]
    diagnosis.name_culprits(graph, rows, checks)
    for node in graph.checked():
        if node.kind == "const":
            rows[node.id] = NodeRow(name=node.name, op=node.label, shape=node.shape, line=node.pos.line,
                                    col=node.pos.col, value=values[node.id], grad=None,
                                    numeric=None, symbolic=None, numeric_error=None,
                                    symbolic_error=None, status=Status.SKIP,
                                    note="const: frozen, no gradient is checked",
                                    node_id=node.id)
    report.nodes = [rows[n.id] for n in graph.checked()]


def _refuse_large_jacobians(graph: Graph, out) -> None:
    """The backward holds one (output × node) adjoint per node, constants and the output's own seed too."""
    entries = out.size * sum(n.size for n in graph.nodes[: out.id + 1])
    if entries > MAX_JACOBIAN:
        raise GradcheckError(size_error(f"the Jacobians of the output '{out.name}' ({out.size:,} elements)",
                                        entries, MAX_JACOBIAN, "entries", "MAX_JACOBIAN")
                             + "; reduce the output, e.g. sum(...)",
                             out.pos.line, out.pos.col)


def _unused_warning(graph: Graph, reach: set, out) -> list:
    """One warning for every leaf the output does not use: 100,000 stray leaves get one line, not 100,000."""
    unused = [n for n in graph.checked() if n.kind == "leaf" and n.id not in reach]
    if not unused:
        return []
    names = ", ".join(n.name for n in unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
    return [(f"not used by the output '{out.name}': {names} (their gradient is 0; nothing is differenced for them)",
             unused[0].pos.line, unused[0].pos.col)]


def _predict(graph: Graph, checked: list, exhaustive: set, reach: set,
             settings: Settings) -> tuple[cost.Cost, cost.Calls]:
    """The check's cost before any of it runs, and what each gate call's own check costs; refused past
    MAX_WORK at the output. SymPy gets what is left (its budget shrinks, never the numeric checks)."""
    out = graph.nodes[graph.output]
    calls, _ = _gate_calls(graph, reach, set(), settings.seed)
    units = cost.Calls(graph, lambda n: gatecheck.exhaustive_limit(n, settings),
                       lambda n: n.composite is not None and n.composite.hand_derived,
                       planned=cost.CheckPlan.of(POLICY, gatecheck.POLICY))
    # a projection that fails is differenced again element by element when that is cheap enough (pipeline)
    projected = [n for n in checked if n.id not in exhaustive]
    whole = runners.works(graph, [numeric.Target(n.id, np.zeros(n.size), projections=False) for n in projected])
    recheckable = [n for n, w in zip(projected, whole) if w <= POLICY.recheck_work]
    exact = complexstep.analytic_nodes(graph, reach) & exhaustive if settings.complex_step is not False else None
    predicted = cost.predict(graph, checked, exhaustive, calls, units, graph.built, recheckable, exact)
    refused = predicted.refusal(f"checking '{out.name}' ({len(checked):,} nodes to difference, {len(calls):,} gate "
                                "calls to check)", f"most of it is {predicted.largest()}: split the function into smaller pieces")
    if refused:
        raise GradcheckError(refused, out.pos.line, out.pos.col)
    if settings.symbolic:
        predicted.leave_to_sympy(settings.symbolic_budget)
    return predicted, units


def _within(extra: list, units: cost.Calls, room: int) -> list:
    """The gate calls of `extra` (below failing rows, beyond the predicted ones) that fit in `room`
    work units, the nearest the output first (where backprop's error enters): a failing file never
    takes more than MAX_WORK."""
    kept = []
    for node in reversed(extra):
        room -= units.units(node)
        if room < 0:
            break
        kept.append(node)
    return kept


def _judge_nodes(graph: Graph, checked: list, exhaustive: set, values: list, adjoints: list, noise: list,
                 settings: Settings, rows: dict, reach: set, rules: dict | None = None) -> dict:
    """Every checked node's row: all differences in one batched run, SymPy, then the check step per node.
    Returns SymPy's local Jacobians by gate node (the gates' own checks reuse them); `rules` records
    the gates whose local Jacobian came from their index rule."""
    out = graph.nodes[graph.output]
    k = out.size
    flat = {n.id: adjoints[n.id].reshape(k, n.size) for n in checked}
    runner = runners.GraphRunner(graph, values)
    every = [numeric.Target(n.id, np.ravel(values[n.id]), projections=n.id not in exhaustive) for n in checked]
    # a node whose way to the output is complex-analytic gets the complex step (exact); the rest the differences
    analytic = complexstep.analytic_nodes(graph, reach) if settings.complex_step is not False else set()
    exact = [t for t in every if not t.projections and t.id in analytic]
    scale = max(largest_abs(adjoints[n.id]) * largest_abs(values[n.id])
                for n in graph.nodes[: graph.output + 1] if adjoints[n.id] is not None and values[n.id] is not None)
    confirmed = complexstep.exact_columns(runner, exact, scale)
    num = numeric.differentiate(runner, [t for t in every if t.id not in confirmed], settings.h, settings.rtol,
                                settings.atol, flat, settings.seed)
    num.update(confirmed)
    jacobians: dict = {}
    sym = (symbolic.derivatives(graph, values, [n.id for n in checked], settings.symbolic_budget, jacobians=jacobians,
                                   rules=rules)
           if settings.symbolic else {})
    chain_rules = targets.ChainRules(graph, values, np.eye(k).reshape((k,) + out.shape))
    every_target = []
    for node in checked:
        nid = node.id
        elements = numeric.Target(nid, np.ravel(values[nid]), num[nid].method == "projection")
        step = (complexstep.OnRunner(runner=runner, target=elements, scale=scale)
                if settings.complex_step is not False else None)
        every_target.append(targets.GraphNode(runner=runner, elements=elements, backprop=flat[nid],
                                              chain_rules=chain_rules, differences=num[nid],
                                              noise=noise[nid].reshape(k, elements.n),
                                              symbolic=_symbolic_row(sym.get(nid), k, node.size), complex_step=step))
    for node, compared in zip(checked, pipeline.compare_many(every_target, settings, POLICY)):
        nid, s = node.id, sym.get(node.id)

        def kink_note(ev, w, nid=nid):
            return _kink_note(graph, nid, reach)
        j = verdict.summarize(compared.evidence, kink_note=kink_note)
        rows[nid] = _row(graph, node, values[nid], adjoints[nid], compared.num, s, j)
    return jacobians


def _symbolic_row(found, k: int, size: int) -> pipeline.Symbolic | None:
    """SymPy's (out, n) row of one node, where it has a value."""
    if found is None or found.value is None:
        return None
    return pipeline.Symbolic(values=found.value.reshape(k, size), magnitudes=found.magnitude.reshape(k, size))


def _kink_note(graph: Graph, nid: int, reach: set) -> str:
    """`a kink of relu (line 3) lies within the step`: the gates with kinks on the way to the output, nearest first."""
    kinked = [graph.nodes[g] for g in ([nid] + graph.descendants([nid]))
              if g in reach and graph.nodes[g].gate is not None and graph.nodes[g].gate.has_kinks]
    if not kinked:
        return verdict.KINK_NOTE
    named = list(dict.fromkeys(f"{g.label} (line {g.pos.line})" for g in kinked))
    shown = " or ".join(named[:3]) + (f" or {len(named) - 3} more" if len(named) > 3 else "")
    return f"a kink of {shown} lies within the step"


def _row(graph, node, value, adjoint, num, sym, j: verdict.Judgement) -> NodeRow:
    out = graph.nodes[graph.output]
    jac = lambda a: None if a is None else np.asarray(a).reshape(out.shape + node.shape)  # noqa: E731
    method = num.method if num.method != "projection" else f"projection ({num.projected.shape[0]} random directions)"
    note = j.note
    if sym is not None and sym.note:
        note = f"{note}; {sym.note}" if note else sym.note
    worst = None
    if num.method != "projection" and (out.shape or node.shape):
        worst = tuple(int(i) for i in np.unravel_index(j.worst[0], out.shape or (1,))[: len(out.shape)]) + \
            tuple(int(i) for i in np.unravel_index(j.worst[1], node.shape or (1,))[: len(node.shape)])
    return NodeRow(name=node.name, op=node.label, shape=node.shape, line=node.pos.line, col=node.pos.col,
                   value=value, grad=jac(adjoint), numeric=jac(num.value if num.method != "projection" else None),
                   symbolic=jac(sym.value if sym is not None else None),
                   numeric_error=j.numeric_error, symbolic_error=j.symbolic_error, status=j.status, note=note,
                   tolerance=j.tolerance, worst_index=worst, numeric_method=method, node_id=node.id,
                   numeric_rounding=j.numeric_rounding, symbolic_rounding=j.symbolic_rounding)


def _gate_checks(graph: Graph, values: list, settings: Settings, jacobians: dict, rows: dict, reach: set,
                 report: CheckReport, within: Callable[[list], list]) -> list:
    """Every gate call's own check (hand-derived gates also at a second point). Call sites of one gate
    at the same operands share one check; past LOCAL_CHECKS call sites, a seeded sample is checked
    (every call below a failing row still is), and the report says so."""
    failing = [nid for nid, r in rows.items() if r.status == "fail"]
    below = set(graph.descendants(failing)) | {c for f in failing for c in graph.consumers[f]}
    gates, warning = _gate_calls(graph, reach, below, settings.seed)
    if below:  # calls the prediction did not count are checked while MAX_WORK allows
        predicted = {n.id for n in _gate_calls(graph, reach, set(), settings.seed)[0]}
        extra = [n for n in gates if n.id not in predicted]
        kept = {n.id for n in within(extra)}
        if len(kept) < len(extra):
            warning = (f"{len(extra) - len(kept):,} gate calls below a failing row were not checked on their own: "
                       f"past the work limit (GRADCHECK_MAX_WORK raises it)") + (f"; {warning}" if warning else "")
        gates = [n for n in gates if n.id in predicted or n.id in kept]
    if warning:
        report.warnings.append((warning, graph.nodes[graph.output].pos.line, graph.nodes[graph.output].pos.col))
    memo: dict = {}
    checks = gatecheck.check_gates(graph, values, gates, settings, 1, jacobians, memo)
    failed = {c.node for c in checks if c.status == "fail"}
    hand_derived = [n for n in gates if n.composite is not None and n.composite.hand_derived and n.id not in failed]
    if hand_derived:
        second = gatecheck.second_point(graph, settings, POLICY)
        if second is not None:
            checks += gatecheck.check_gates(graph, second, hand_derived, settings, 2, None, memo)
    return checks


def _gate_calls(graph: Graph, reach: set, below: set, seed: int) -> tuple:
    """The gate calls checked on their own, and a warning when they are a sample: past ALL_GATES
    gates, built-in ones only below a failing row; past LOCAL_CHECKS calls, a seeded sample of
    those not below a failing row, and every one below one (the checker bounds those by MAX_WORK)."""
    gates = [n for n in graph.nodes[: graph.output + 1] if n.gate is not None and n.id in reach]
    if len(gates) > ALL_GATES:
        gates = [n for n in gates if n.composite is not None or n.id in below]
    others = [n for n in gates if n.id not in below]
    under = [n for n in gates if n.id in below]
    if len(others) <= LOCAL_CHECKS:
        return gates, None
    rng = stream(seed, Stream.LOCAL_SAMPLE)
    keep = {others[i].id for i in rng.choice(len(others), LOCAL_CHECKS, replace=False)} | {n.id for n in under}
    return ([n for n in gates if n.id in keep],
            f"{len(keep):,} of {len(gates):,} gate calls checked on their own: a seeded sample of {LOCAL_CHECKS:,}"
            + (" and every call below a failing row" if under else "") + " (--seed draws another sample)")


def _gate_row(graph: Graph, c: gatecheck.GateCheck, checks: list) -> GateRow:
    node = graph.nodes[c.node]
    j = c.judgement
    note = c.error or j.note
    if c.point == 2 and c.status == "fail":
        note = f"fails at a second, random point (every leaf moved by up to ~10%): {note}"
    culprit = None
    composite = node.composite
    if c.status == "fail" and composite is not None and composite.backward is not None:
        if c.slot is not None:
            line, col, why = diagnosis.culprit_line(node, c.slot, checks)
        else:  # a d<local> line: does it fail only through another failing d<local> line it uses?
            uses = diagnosis.d_local_uses(composite, c.what)
            line, col, why = diagnosis.deepest_failing(node, uses, checks) or (c.line, c.col, None)
        if (line, col) != (c.line, c.col):  # it uses a d<local> line that fails on its own: that line is the cause
            culprit, note = (line, col), f"{note}; {why}"
    return GateRow(name=node.name, gate=node.label, input=c.what, line=c.line, col=c.col, call_line=node.pos.line,
                   status=c.status, numeric_error=j.numeric_error, symbolic_error=j.symbolic_error,
                   tolerance=j.tolerance, point=c.point, note=note, node_id=node.id, slot=c.slot,
                   culprit=culprit, numeric_rounding=j.numeric_rounding,
                   symbolic_rounding=j.symbolic_rounding)
