"""Each gate's backward on its own: its VJP, with a seeded random upstream gradient, against finite
differences and SymPy of that gate alone, at its actual inputs. For a hand-derived gate, also each
`d<local>` line (the gradient of a forward local) against the true adjoint of that local.

These checks name the culprit: a failing row upstream is explained by the gate whose own check fails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..oracles import complexstep, numeric, runners, subgradients, symbolic
from . import pipeline, targets, verdict
from ..oracles.autodiff import forward, gate_vjp, run_graph
from ..oracles import batches
from ..core.errors import BackwardError, GradValueError
from ..language.graph import Composite, Graph, Node
from ..core.settings import Settings
from ..core.status import Status
from ..core.streams import Stream, stream

POLICY = pipeline.POLICIES["gate"]
EXHAUSTIVE = 4_096             # a gate alone is differenced element by element up to this many inputs
BUILT_IN_EXHAUSTIVE = 64       # ... a registry gate (its VJP is the suite's, SymPy checks every element) up to this many


@dataclass
class GateCheck:
    """One input of one gate call (or one `d<local>` line), checked on its own at one point."""
    node: int                  # the gate's node id
    slot: int | None           # the input checked, or None for a d<local> line
    what: str                  # the parameter (`x`), the input's name, or the d<local> line's name
    status: Status
    judgement: verdict.Judgement
    point: int                 # 1: the file's point; 2: a second, random point
    line: int                  # where this backward is written: the d line, or the gate call
    col: int
    error: str | None = None   # the backward could not be computed: why


UPSTREAMS_KEPT = 4_096      # small upstreams kept between checks (a generator costs 25 µs; a copy 0.3 µs)
KEPT_SIZE = 256             # ... of at most this many elements
_upstreams: dict = {}       # (seed, point, node id, shape) -> the upstream drawn for them, read-only


def upstream(settings: Settings, point: int, node) -> np.ndarray:
    """The seeded random upstream gradient a gate is checked with (never all ones): a function of the
    seed, the point, the node's id and its shape only, so a small one is drawn once per process and
    copied after (checks of small programs draw the same few again and again)."""
    key = (settings.seed, point, node.id, tuple(node.shape))
    kept = _upstreams.get(key)
    if kept is None:
        drawn = stream(settings.seed, Stream.GATE_CHECK, point, node.id).standard_normal(node.shape)
        if drawn.size > KEPT_SIZE:
            return drawn
        if len(_upstreams) >= UPSTREAMS_KEPT:
            _upstreams.clear()
        kept = _upstreams[key] = drawn
        kept.flags.writeable = False
    return kept.copy()


def checkable_slots(graph: Graph, node) -> list:
    """Input slots whose gradient matters: not constants."""
    return [k for k, i in enumerate(node.inputs) if graph.nodes[i].kind in ("leaf", "gate")]


def check_gate(graph: Graph, values: list, node, settings: Settings, point: int = 1,
               jacobians: dict | None = None, memo: dict | None = None) -> list:
    """The GateChecks of one gate call at this point. With `memo`, calls of one gate at the same
    operands share one check (its judgement, at each call's own lines)."""
    slots = checkable_slots(graph, node)
    if not slots:
        return []
    args = [values[i] for i in node.inputs]
    key = None
    if memo is not None:
        key = _key(node, point, slots, args)
        if key in memo:
            return [_at_call(graph, node, c) for c in memo[key]]
    checks = _check_gate(graph, values, node, settings, point, jacobians, slots, args)
    if key is not None and memo is not None:  # (key is made only with a memo)
        memo[key] = checks
    return checks


def check_gates(graph: Graph, values: list, nodes: list, settings: Settings, point: int = 1,
                jacobians: dict | None = None, memo: dict | None = None) -> list:
    """`check_gate` of each node in turn, the same GateChecks in the same order, with the gate calls
    compared side by side: each call's differences (or complex-step columns) and rounding run on its
    own, then every call's comparison in one `pipeline.compare_many`; a call whose comparison fails, a
    projection, a tie take the whole check step alone, as `check_gate` does."""
    memo = {} if memo is None else memo
    order: list = []           # per node: (node, key, first) — first: it is the call whose check is made
    pending: dict = {}         # key -> the call's Prepared, for the distinct calls not in the memo
    for node in nodes:
        slots = checkable_slots(graph, node)
        if not slots:
            continue
        args = [values[i] for i in node.inputs]
        key = _key(node, point, slots, args)
        first = key not in memo and key not in pending
        if first:
            pending[key] = _prepare(graph, values, node, settings, point, jacobians, slots, args)
        order.append((node, key, first))
    prepared = list(pending.values())
    firsts = _first_differences([p.target for p in prepared], settings)
    ready = [replace(p.target, differences=first,
                     noise=pipeline.rounding(p.target.rerun, p.target.backprop, POLICY.noise_signs)
                     if POLICY.noise_first else None) for p, first in zip(prepared, firsts)]
    for key, p, compared in zip(pending, prepared, pipeline.compare_many(ready, settings, POLICY)):
        memo[key] = _finish(graph, p, compared, settings)
    checks: list = []
    for node, key, first in order:
        checks += memo[key] if first else [_at_call(graph, node, c) for c in memo[key]]
    return checks


def _first_differences(calls: list, settings: Settings) -> list:
    """`pipeline.first_differences` of each gate call, the same bits: the complex step's exact columns
    where it has them, the other calls' element-by-element differences; each kind run for many calls
    side by side (runners.Each: each call's rows by its own runner, as alone), as many calls a batch as
    keep every pass within one chunk of rows. Projections, and a call whose rows a runner would chunk
    alone, on their own."""
    firsts: list = [None] * len(calls)

    def alone(call) -> bool:
        n = call.elements.n
        return (call.elements.projections or n == 0
                or runners.rows_bound(n) * max(1, call.runner.width(call.elements.id)) > batches.CHUNK_ELEMENTS)

    steps = {i: c.complex_step for i, c in enumerate(calls)
             if isinstance(c.complex_step, complexstep.OnRunner) and c.complex_step.up_front}

    def columns(batch: list) -> None:
        found = complexstep.exact_columns(runners.Each({calls[i].elements.id: calls[i].runner for i in batch}),
                                          [calls[i].elements for i in batch],
                                          {calls[i].elements.id: steps[i].scale for i in batch})
        for i in batch:
            firsts[i] = found.get(calls[i].elements.id)

    def differences(batch: list) -> None:
        found = numeric.differentiate(runners.Each({calls[i].elements.id: calls[i].runner for i in batch}),
                                      [calls[i].elements for i in batch], settings.h, settings.rtol, settings.atol,
                                      {calls[i].elements.id: calls[i].backprop for i in batch}, settings.seed)
        for i in batch:
            firsts[i] = found[calls[i].elements.id]

    _batched([i for i in steps if not alone(calls[i])], lambda i: calls[i].elements.n, columns)
    for i, step in steps.items():
        if alone(calls[i]):
            firsts[i] = step.columns()
    rest = [i for i, first in enumerate(firsts) if first is None]
    _batched([i for i in rest if not alone(calls[i])], lambda i: runners.rows_bound(calls[i].elements.n), differences)
    for i in rest:
        if alone(calls[i]):
            firsts[i] = pipeline.first_differences(replace(calls[i], complex_step=None), settings)
    return firsts


def _batched(items: list, rows, run) -> None:
    """`run(batch)` over `items` in batches whose `rows(item)` sum to at most CHUNK_ELEMENTS."""
    batch: list = []
    total = 0
    for i in items:
        if batch and total + rows(i) > batches.CHUNK_ELEMENTS:
            run(batch)
            batch, total = [], 0
        batch.append(i)
        total += rows(i)
    if batch:
        run(batch)


def _key(node, point: int, slots: list, args: list) -> tuple:
    """Calls of one gate with one key share one check: the gate, its attributes, the point, the
    checked slots and the operands' bits."""
    return (id(node.gate), repr(sorted(node.attrs.items())), point, tuple(slots),
            tuple((np.shape(a), np.asarray(a, dtype=float).tobytes()) for a in args))


def _at_call(graph: Graph, node, c: GateCheck) -> GateCheck:
    """A shared check, for another call of the same gate: its node, and its lines where they are the call's."""
    if c.slot is None:
        return replace(c, node=node.id)
    what, line, col = _where(graph, node, c.slot)
    return replace(c, node=node.id, what=what, line=line, col=col)


@dataclass(frozen=True, kw_only=True)
class GateCall:
    """One gate call alone, as a target of the check step (pipeline.CheckTarget): Σ upstream ⊙ the
    gate's output as a function of its checkable operands (`slots`), concatenated."""
    node: Node
    args: list
    out: np.ndarray
    upstream: np.ndarray
    slots: list
    runner: numeric.Runner
    elements: numeric.Target
    backprop: np.ndarray
    symbolic: pipeline.Symbolic | None = None
    complex_step: pipeline.ComplexStep | None = None
    differences: numeric.NumericResult | None = None
    noise: np.ndarray | None = None
    seed: int | np.random.Generator | None = None
    groups: np.ndarray | None = None

    def rerun(self, delta: float) -> np.ndarray | None:
        scaled = [a * (1 + delta) for a in self.args]
        return _flat(_vjp(self.node, scaled, self.out * (1 + delta), self.upstream * (1 + delta))[0], self.slots)

    def references(self) -> list[tuple[str, np.ndarray]]:
        u, args = self.upstream[None], self.args
        return subgradients.references(lambda side, order: _flat(
            [np.broadcast_to(g, (1,) + np.shape(a))[0]
             for g, a in zip(subgradients.local_vjp(self.node, u, args, self.out, side, order), args)], self.slots))

    def explain(self, ev: verdict.Evidence) -> verdict.Evidence:
        return ev  # its chain rules are computed: references() explain its kinks


def _flat(grads: list, slots: list) -> np.ndarray:
    """The gradients of the checked operands as one (1, n) row."""
    return np.concatenate([np.ravel(grads[k]) for k in slots])[None, :]


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """One gate call ready for the check step: its target, and what its GateChecks are made of."""
    target: GateCall
    grads: list
    error: BackwardError | None
    point: int


def _check_gate(graph: Graph, values: list, node, settings: Settings, point: int, jacobians, slots, args) -> list:
    prepared = _prepare(graph, values, node, settings, point, jacobians, slots, args)
    return _finish(graph, prepared, pipeline.compare(prepared.target, settings, POLICY), settings)


def _prepare(graph: Graph, values: list, node, settings: Settings, point: int, jacobians, slots, args) -> Prepared:
    out = values[node.id]
    u = upstream(settings, point, node)
    grads, error = _vjp(node, args, out, u)
    runner = runners.GateRunner(node, args, u, slots)
    # A hand-derived gate is differenced element by element (within the budget); a registry gate past a
    # few inputs along random directions (SymPy still checks it element by element), and element by
    # element again only when a direction fails, to name the element.
    elements = numeric.Target(node.id, runner.x, projections=runner.x.size > exhaustive_limit(node, settings))
    # an analytic gate gets the complex step (exact), as a node whose way to the output is analytic does
    step = None
    if settings.complex_step is not False:
        scale = float(np.max(np.abs(u))) * float(np.max(np.abs(out)))
        step = complexstep.OnRunner(runner=runner, target=elements, scale=scale,
                                    up_front=not elements.projections and complexstep.analytic(node.gate))
    target = GateCall(node=node, args=args, out=out, upstream=u, slots=slots, runner=runner, elements=elements,
                      backprop=_flat(grads, slots), symbolic=_symbolic(node, args, u, slots, settings, jacobians),
                      complex_step=step)
    return Prepared(target=target, grads=grads, error=error, point=point)


def _finish(graph: Graph, prepared: Prepared, compared: pipeline.Compared, settings: Settings) -> list:
    """The GateChecks of a call from its comparison: one per checked input, then its `d<local>` lines."""
    target, grads, error, point = prepared.target, prepared.grads, prepared.error, prepared.point
    node, args, slots = target.node, target.args, target.slots
    ev, num = compared.evidence, compared.num
    checks = []
    offsets = np.concatenate([[0], np.cumsum([np.size(args[k]) for k in slots])]).astype(int)
    composite = node.composite
    for pos, k in enumerate(slots):
        columns = None if num.method == "projection" else np.arange(offsets[pos], offsets[pos + 1])
        j = verdict.summarize(ev, columns)
        what, line, col = _where(graph, node, k)
        slot_error = None
        if error is not None and (composite is None or composite.params[k] in composite.failures
                                  or not np.all(np.isfinite(grads[k]))):
            slot_error = error.message
            j.status = Status.FAIL
        checks.append(GateCheck(node.id, k, what, j.status, j, point, line, col, slot_error))
    if composite is not None and composite.backward is not None:
        checks += _intermediates(node, composite, args, target.out, target.upstream, settings, point)
    return checks


def exhaustive_limit(node, settings: Settings) -> int:
    """Inputs up to which a gate alone is differenced element by element (past it: projections)."""
    return max(settings.budget, EXHAUSTIVE) if node.composite is not None else BUILT_IN_EXHAUSTIVE


def _vjp(node, args, out, u):
    """The gate's VJP for upstream u, per input; NaN where it cannot be computed (with the error)."""
    try:
        with np.errstate(all="ignore"):
            grads = gate_vjp(node.gate, u[None], args, out, node.attrs)
        return [_row_of(g, a) for g, a in zip(grads, args)], None
    except BackwardError as err:
        grads = err.grads or [np.full((1,) + np.shape(a), np.nan) for a in args]
        return [_row_of(g, a) for g, a in zip(grads, args)], err


def _row_of(g, a) -> np.ndarray:
    """The one row of a VJP's gradient for operand `a` (broadcast to its shape where it is not shaped so)."""
    if type(g) is np.ndarray and g.shape == (1,) + np.shape(a):
        return g[0]
    return np.broadcast_to(g, (1,) + np.shape(a))[0]


def _symbolic(node, args, u, slots, settings: Settings, jacobians) -> pipeline.Symbolic | None:
    """SymPy's VJP of the gate alone for upstream u, with magnitudes; None when skipped."""
    if not settings.symbolic:
        return None
    jac = (jacobians or {}).get(node.id)
    if jac is None:
        try:
            jac = symbolic.local_jacobian(node, args, symbolic.Work(settings.symbolic_budget))
        except (symbolic.Exhausted, symbolic.Unsupported):
            return None
        if jacobians is not None:
            jacobians[node.id] = jac
    flat_u = u.reshape(1, -1)
    parts = [symbolic.pull_back(flat_u, np.abs(flat_u), jac[k], int(np.size(args[k]))) for k in slots]
    value = np.concatenate([p[0] for p in parts], axis=1)
    if not np.all(np.isfinite(value)):
        return None
    return pipeline.Symbolic(values=value, magnitudes=np.concatenate([p[1] for p in parts], axis=1))


def _where(graph: Graph, node, slot: int) -> tuple:
    """(what, line, col): the parameter and its d line for a user gate, else the input and the call."""
    composite = node.composite
    if composite is not None and composite.hand_derived:
        param = composite.params[slot]
        line = composite.d_lines[param]
        return "d" + param, line.pos.line, line.pos.col
    if composite is not None:
        return "d" + composite.params[slot], node.pos.line, node.pos.col
    return f"d({graph.nodes[node.inputs[slot]].name})", node.pos.line, node.pos.col


def _intermediates(node, composite: Composite, args, out, u, settings: Settings, point: int) -> list:
    """Each `d<local>` line against the true gradient of that forward local, for upstream u."""
    checks = []
    fwd = composite.body
    assert composite.backward is not None  # a hand-derived gate
    leaves = [n.id for n in fwd.leaves()]
    fvals = forward(fwd, dict(zip(leaves, args)))
    ids = [m.backward_id for m in composite.intermediates if m.backward_id is not None]
    bvals = dict(zip(ids, run_graph(composite.backward, list(args) + [out, u[None]], outputs=ids))) if ids else {}
    runner = runners.GraphRunner(fwd, fvals, weights=u)
    chain_rules = targets.ChainRules(fwd, fvals, u[None])
    for m in composite.intermediates:
        lid, bid, line, err = m.body_id, m.backward_id, m.line, m.error
        if bid is None:
            j = verdict.Judgement(Status.FAIL, None, None, None, settings.rtol, (0, 0), np.zeros((1, 0)))
            checks.append(GateCheck(node.id, None, line.name, Status.FAIL, j, point, line.pos.line, line.pos.col,
                                    err.message if err is not None else "cannot be computed"))
            continue
        bp = np.broadcast_to(np.asarray(bvals[bid], dtype=float), (1,) + fwd.nodes[lid].shape).reshape(1, -1)
        elements = numeric.Target(lid, np.ravel(fvals[lid]), projections=bp.size > max(settings.budget, EXHAUSTIVE))
        exact = None
        if settings.symbolic:
            res = symbolic.derivatives(fwd, fvals, [lid], settings.symbolic_budget, seed=u.reshape(1, -1))[lid]
            if res.value is not None:
                exact = pipeline.Symbolic(values=res.value.reshape(1, -1), magnitudes=res.magnitude.reshape(1, -1))
        target = targets.GraphNode(runner=runner, elements=elements, backprop=bp, chain_rules=chain_rules,
                                   symbolic=exact)
        compared = pipeline.compare(target, settings, POLICY)
        j = verdict.summarize(compared.evidence)
        checks.append(GateCheck(node.id, None, line.name, j.status, j, point, line.pos.line, line.pos.col))
    return checks


def second_point(graph: Graph, settings: Settings, policy: pipeline.Policy = POLICY) -> list | None:
    """The graph's values at a second, seeded random point (every leaf moved by ~10% or less),
    or None when the function is not defined near enough."""
    rng = stream(settings.seed, Stream.SECOND_POINT)
    leaves = graph.leaves()
    draws = [rng.standard_normal(n.shape) for n in leaves]

    def evaluate(moved):
        try:
            return forward(graph, {n.id: v for n, v in zip(leaves, moved)})
        except GradValueError:
            return None
    found = pipeline.second_point([n.value for n in leaves], draws, evaluate, policy)
    return None if found is None else found[1]
