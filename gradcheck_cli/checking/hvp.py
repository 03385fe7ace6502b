"""Second order (`check --order 2`): a Hessian-vector product at every leaf, H·v for a seeded random
direction v over all the leaves, with the same rows, verdicts and culprits as first order.

- backprop's: forward-over-reverse through the backward graph, your d lines included — the forward
  and the backward run on x + i·H·v (the complex step: every gate's forward and VJP are complex-safe,
  the registry test checks both), and H·v is the imaginary part of the gradient over H;
- SymPy's: its exact first derivatives, composed as at first order, evaluated at x + i·H·v — so a
  gate whose d lines are right in value at the point but wrong in derivative fails (gradgradcheck's job);
- the finite differences of backprop's gradient along v (centred, with Richardson's second step).

Each hand-derived gate call is checked on its own: its d lines' derivative against its body's
(backprop through the body with the registry's VJPs, complex-stepped), which names the culprit, with
SymPy on or off. A branch switch within the step makes the row a kink: no second derivative there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cost, expectcheck, verdict
from ..oracles import plan, symbolic
from ..oracles.autodiff import LocalVjp, backward, body_vjp, branch_rows, forward, gate_vjp, run_graph
from ..oracles.complexstep import GRAPH_H as H  # (its reasons hold for forward-over-reverse too)
from ..core.errors import BackwardError, GradcheckError, GradValueError
from ..language.graph import Composite
from ..oracles.numeric import REFINE, NumericResult, difference_rounding, richardson
from ..core.report import GateRow, NodeRow
from ..core.streams import Stream, stream
from ..core.status import Status

NEWTON_MAX = 16  # leaf elements `explain --order 2` builds the whole Hessian for (a column per element)
METHOD = "Hessian-vector product: finite differences of backprop's gradient along v"


def fill(report, graph, settings) -> None:
    """The report's rows at second order: one per leaf the output uses, and each hand-derived gate's."""
    out = graph.nodes[graph.output]
    reach = graph.ancestors(graph.output)
    leaves = [n for n in graph.leaves() if n.id in reach]
    hand = [node for node in graph.nodes[: out.id + 1] if node.id in reach and _hand_derived(node)]
    report.work = cost.second_order(graph, hand)
    refused = report.work.refusal(f"checking '{out.name}' at second order", "split the function into smaller pieces")
    if refused:
        raise GradcheckError(refused, out.pos.line, out.pos.col)
    if settings.symbolic:  # SymPy gets what is left, as at first order
        report.work.leave_to_sympy(settings.symbolic_budget)
    values = forward(graph)
    report.output, report.value = out.name, values[out.id]
    rng = stream(settings.seed, Stream.HVP_DIRECTION)
    seed = (rng.standard_normal((1,) + out.shape) if out.size > 1 else np.ones((1,) + out.shape))
    v = {n.id: rng.standard_normal(n.shape) for n in leaves}
    errors: dict = {}
    own, moved = _product(graph, values, leaves, v, seed, errors)
    exact = _sympy(graph, moved, leaves, seed, settings, report) if settings.symbolic else {}
    num = _differences(graph, values, leaves, v, seed, settings.h)
    # without SymPy's, the forward's own H·v (every gate body differentiated, the d lines left out) still
    # sees a d line wrong in derivative at the leaves (with no hand-derived gate it is backprop's own)
    bodies = (_product(graph, values, leaves, v, seed, {}, local=_through_bodies)[0]
              if hand and not all(exact.get(n.id, (None,))[0] is not None for n in leaves) else {})
    report.gates = [row for node in hand for row in _gate_rows(graph, values, node, settings)]
    failing = [g for g in report.gates if g.status == "fail"]
    report.nodes = []
    for node in leaves:
        sym, sym_note = exact.get(node.id, (None, None))
        j = verdict.summarize(verdict.evidence(own[node.id].reshape(1, -1), num[node.id], None,
                                               None if sym is None else sym.reshape(1, -1), None, settings.rtol,
                                               settings.atol))
        status, note = j.status, _note(j, errors)
        if sym_note:
            note = f"{note}; {sym_note}" if note else sym_note
        if sym is None and node.id in bodies and status != "fail" and not errors:
            off = _relative(own[node.id], bodies[node.id])
            if off > verdict.SYMBOLIC_RTOL:
                status, note = Status.FAIL, (f"backprop's Hessian-vector product is off by {off:.1e} from the forward's own "
                                        "(every gate body differentiated, your d lines left out)")
        if np.any(num[node.id].kink) and not errors:  # a relu at 0, a tie: the Hessian is not defined there
            status, note = Status.KINK, "a branch switches within the step: no second derivative there"
        culprit = (failing[0].line, failing[0].col) if status == "fail" and failing else None
        if culprit:
            note = f"{note}; the second derivative goes wrong in gate '{failing[0].gate}' (line {failing[0].call_line}): " \
                   f"its d line '{failing[0].input}' (line {failing[0].line}) fails its own check"
        worst = tuple(int(i) for i in np.unravel_index(j.worst[1], node.shape)) if node.shape else None
        report.nodes.append(NodeRow(name=node.name, op="input", shape=node.shape, line=node.pos.line,
                                    col=node.pos.col, value=node.value,
                                    grad=own[node.id],
                                    numeric=num[node.id].value.reshape(node.shape),
                                    symbolic=sym, numeric_error=j.numeric_error,
                                    symbolic_error=j.symbolic_error, status=status,
                                    note=note, tolerance=j.tolerance,
                                    worst_index=worst, numeric_method=METHOD,
                                    culprit=culprit, node_id=node.id,
                                    numeric_rounding=j.numeric_rounding,
                                    symbolic_rounding=j.symbolic_rounding))
    if graph.expects:  # the lines state first derivatives: judged as at first order, not left out
        with symbolic.shared(settings.symbolic_budget):
            report.expects = expectcheck.rows(graph, values, backward(graph, values, {}), settings.symbolic)


def _product(graph, values, leaves, v, seed, errors, local: LocalVjp | None = None) -> tuple:
    """(H·v at every leaf, the values at x + i·H·v) by forward-over-reverse: the complex step through
    the forward and backward passes (`local` replaces gates' VJPs, as autodiff.backward takes it)."""
    moved = forward(graph, {n.id: n.value + 1j * H * v[n.id] for n in leaves})
    adjoints = backward(graph, moved, errors, seed=seed, local=local)
    return {n.id: np.imag(adjoints[n.id][0]) / H for n in leaves}, moved


def _through_bodies(node, g, args, out):
    """A gate's VJP with a hand-derived gate's d lines left out: backprop through its body instead."""
    composite = node.composite
    if composite is None or not composite.hand_derived:
        return gate_vjp(node.gate, g, args, out, node.attrs)
    return body_vjp(composite, g, args)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(b), initial=0.0)), float(np.max(np.abs(a), initial=0.0)), 1e-300)
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0)) / scale


def _sympy(graph, moved: list, leaves: list, seed, settings, report) -> dict:
    """SymPy's H·v per leaf (value or None, note): its exact first derivatives, composed as at first
    order, evaluated at the complex point x + i·H·v (their imaginary part over H)."""
    budget = report.work.parts.get("symbolic", {}).get("sympy", settings.symbolic_budget)
    with symbolic.shared(budget):
        found = symbolic.derivatives(graph, moved, [n.id for n in leaves], settings.symbolic_budget,
                                     seed=seed.reshape(1, -1))
    return {n.id: (None if found[n.id].value is None else np.imag(np.asarray(found[n.id].value)).reshape(n.shape) / H,
                   found[n.id].note) for n in leaves}


def _differences(graph, values: list, leaves, v, seed, step: float) -> dict:
    """Backprop's gradient differenced along v (±ε, then ±ε/2: Richardson), per leaf; a branch switch
    within the step marks the row a kink (its one-sided slopes bound it)."""
    scale = max([1.0] + [float(np.max(np.abs(n.value), initial=0.0)) for n in leaves])
    eps = step * scale
    centre = backward(graph, values, {}, seed=seed)
    branches = branch_rows(graph, values)
    grads: list[dict] = []  # per row of the plan (±ε, then ±ε·REFINE), backprop's gradient at each leaf
    switched = False
    for t in plan.PLAN.offsets(eps):
        try:
            vals = forward(graph, {n.id: n.value + t * v[n.id] for n in leaves})
        except GradValueError:
            vals = None
        if vals is None:
            grads.append({n.id: np.full(n.shape, np.nan) for n in leaves})
            continue
        switched |= any(b is not None and not np.array_equal(b, c) for b, c in zip(branch_rows(graph, vals), branches))
        adj = backward(graph, vals, {}, seed=seed)
        grads.append({n.id: adj[n.id][0] for n in leaves})
    results = {}
    for n in leaves:
        g0 = centre[n.id][0].ravel()
        p1, m1, p2, m2 = (g[n.id].ravel() for g in grads)
        with np.errstate(all="ignore"):
            d1, d2 = (p1 - m1) / (2 * eps), (p2 - m2) / (2 * eps * REFINE)
            value, truncation = richardson(d1, d2)
            rounding = difference_rounding(p1, m1, np.abs(g0)) / (eps * REFINE)  # (rounded at the centre's size too)
            right, left = (p1 - g0) / eps, (g0 - m1) / eps
        kink = np.full(n.size, switched)
        results[n.id] = NumericResult("exhaustive", (truncation + rounding)[None, :], truncation[None, :], kink,
                                      value=value[None, :], at_kink=kink, lower=np.minimum(right, left)[None, :],
                                      upper=np.maximum(right, left)[None, :])
    return results


def _note(j: verdict.Judgement, errors: dict) -> str | None:
    if errors:
        err = next(iter(errors.values()))
        return f"the backward raised at line {err.line}: {err.message}"
    if j.status == "fail" and j.note and "SymPy" in j.note:
        both = "both finite differences and SymPy" in j.note or "complex-step derivative and SymPy" in j.note
        return "backprop's Hessian-vector product disagrees with SymPy's" + (
            ", and with the differences of its gradient" if both else
            " (the differences of its gradient agree: they differentiate the same backward)")
    return j.note


def _hand_derived(node) -> bool:
    return node.composite is not None and node.composite.hand_derived


def _gate_rows(graph, values, node, settings) -> list:
    """A hand-derived gate call on its own: its d lines' derivative along a random direction of its
    operands (and upstream), against its body's (backprop through it with the registry's VJPs)."""
    composite = node.composite
    assert composite is not None and composite.backward is not None  # a hand-derived gate's call
    args = [values[i] for i in node.inputs]
    rng = stream(settings.seed, Stream.HVP_GATE, node.id)
    g = rng.standard_normal((1,) + node.shape)
    dirs = [rng.standard_normal(np.shape(a)) for a in args]
    moved = [a + 1j * H * d for a, d in zip(args, dirs)]
    try:
        moved_out = run_graph(composite.body, list(moved))
        wanted = composite.backward_outputs()
        results = run_graph(composite.backward, list(moved) + [moved_out, g], outputs=wanted) if wanted else []
        own = composite.gradients(results, 1)
        body = body_vjp(composite, g, moved)
    except (BackwardError, GradValueError) as exc:
        return [GateRow(name=node.name, gate=node.label, input="d lines", line=exc.line or node.pos.line,
                        col=exc.col or node.pos.col, call_line=node.pos.line, status=Status.FAIL,
                        numeric_error=None, symbolic_error=None, tolerance=None, point=1,
                        note=f"at second order: {exc.message}", node_id=node.id)]
    if _at_a_kink(composite, args, dirs, settings.h):
        return [GateRow(name=node.name, gate=node.label, input=f"d{p}", line=node.pos.line, col=node.pos.col,
                        call_line=node.pos.line, status=Status.KINK, numeric_error=None,
                        symbolic_error=None, tolerance=None, point=1,
                        note="a branch of its body switches at this point: no second derivative there",
                        node_id=node.id) for p in composite.params]
    rows = []
    for p, mine, ref in zip(composite.params, own, body):
        err = _relative(np.imag(np.asarray(mine)[0]).ravel() / H, np.imag(np.asarray(ref)[0]).ravel() / H)
        allowed = verdict.SYMBOLIC_RTOL
        status = Status.PASS if err <= allowed else Status.FAIL
        line = composite.d_lines[p].pos if p in composite.d_lines else node.pos
        note = None if status == "pass" else (f"at second order: the derivative of d{p} along a random direction is "
                                              f"off by {err:.1e} of its largest element from the derivative of the "
                                              "gate's body (right in value, wrong in derivative?)")
        rows.append(GateRow(name=node.name, gate=node.label, input=f"d{p}", line=line.line, col=line.col,
                            call_line=node.pos.line, status=status, numeric_error=err,
                            symbolic_error=None, tolerance=allowed, point=1, note=note,
                            node_id=node.id))
    return rows


def _at_a_kink(composite: Composite, args: list, dirs: list, step: float) -> bool:
    """Does a kink gate of the body switch branch within a step along the direction, either way?"""
    _, centre = run_graph(composite.body, list(args), collect_branches=True)
    for sign in (1, -1):
        moved = [a + sign * step * max(1.0, float(np.max(np.abs(a), initial=0.0))) * d for a, d in zip(args, dirs)]
        _, branches = run_graph(composite.body, moved, collect_branches=True)
        if any(not np.array_equal(b, c) for b, c in zip(branches, centre)):
            return True
    return False



# --- teaching: a Newton step (`explain --order 2`) ---------------------------------------------------

@dataclass
class NewtonStep:
    """The gradient and Hessian of a small scalar function at its point, and the Newton step."""
    names: list          # one label per leaf element: `x`, `W[0, 1]`
    x: np.ndarray
    f: float
    g: np.ndarray
    hessian: np.ndarray  # column j: forward-over-reverse along element j (your d lines included)
    step: np.ndarray | None
    f_after: float | None
    model: float | None  # the quadratic model's prediction f + g·Δ + ½ Δ·H·Δ
    why: str             # what the Hessian says about the step


def newton(graph) -> NewtonStep:
    """One Newton step, Δ = −H⁻¹·g, on a scalar function of at most NEWTON_MAX leaf elements."""
    out = graph.nodes[graph.output]
    reach = graph.ancestors(graph.output)
    leaves = [n for n in graph.leaves() if n.id in reach]
    n = sum(node.size for node in leaves)
    if out.size != 1:
        raise GradcheckError(f"explain --order 2 takes a scalar output; '{out.name}' has shape {out.shape}: "
                             "sum(...) it, or use check --order 2", out.pos.line, out.pos.col)
    if n > NEWTON_MAX:
        raise GradcheckError(f"explain --order 2 builds the whole Hessian, a column per leaf element: at most "
                             f"{NEWTON_MAX}, and this has {n}; check --order 2 checks Hessian-vector products of "
                             "any size", out.pos.line, out.pos.col)
    values = forward(graph)
    seed = np.ones((1,) + out.shape)
    g = np.concatenate([backward(graph, values, None, seed=seed)[node.id][0].ravel() for node in leaves])
    columns = []
    for j in range(n):
        unit = np.zeros(n)
        unit[j] = 1.0
        v, pos = {}, 0
        for node in leaves:
            v[node.id] = unit[pos: pos + node.size].reshape(node.shape)
            pos += node.size
        hv, _ = _product(graph, values, leaves, v, seed, None)
        columns.append(np.concatenate([hv[node.id].ravel() for node in leaves]))
    hessian = np.array(columns).T
    x = np.concatenate([np.ravel(node.value) for node in leaves])
    names = [node.name if node.size == 1 else f"{node.name}[{', '.join(map(str, idx))}]"
             for node in leaves for idx in np.ndindex(*node.shape)]
    f = float(np.ravel(values[out.id])[0])
    try:
        step = -np.linalg.solve(hessian, g)
    except np.linalg.LinAlgError:
        return NewtonStep(names, x, f, g, hessian, None, None, None,
                          "the Hessian is singular: no Newton step (the quadratic model has no single stationary point)")
    model = f + g @ step + 0.5 * step @ hessian @ step
    moved, pos = {}, 0
    for node in leaves:
        moved[node.id] = node.value + step[pos: pos + node.size].reshape(node.shape)
        pos += node.size
    try:
        f_after = float(np.ravel(forward(graph, moved)[out.id])[0])
    except GradValueError:
        f_after = None
    eig = np.linalg.eigvalsh(0.5 * (hessian + hessian.T))
    why = ("the Hessian is positive definite: the step goes to the bottom of the quadratic bowl" if eig.min() > 0 else
           "the Hessian is not positive definite: the step goes to a saddle or a maximum of the quadratic model, "
           "not downhill")
    if not np.allclose(hessian, hessian.T, rtol=1e-8, atol=1e-12 * max(1.0, float(np.abs(hessian).max()))):
        why += "; it is not symmetric, as a true Hessian is: a d line is wrong in derivative (check --order 2)"
    return NewtonStep(names, x, f, g, hessian, step, f_after, model, why)
