"""The cost model: what checking a graph will cost, predicted from its shape before any of the work
runs, as counts of the meter's kinds (gate calls, elements, nodes walked, rows judged, nodes built,
SymPy nodes) priced in work units by meter.PRICES. One figure, its parts named, held against MAX_WORK.

A node evaluated for `rows` copies costs its calls and `rows ×` its elements (a user gate: its
body's). Every count of passes and rows is read from the plan the engine runs (`CheckPlan`: the
differences' `plan.DifferencePlan`, the policies whose reruns and attempts the checker makes, the
chain rules tried at kinks), never copied as a number. The finite differences are batched as the
engine batches them (rows sorted by node, chunks of CHUNK_ELEMENTS, each visiting the nodes
downstream of its rows' targets, on the rows that reach them); the gates' own checks are the calls the checker will check; SymPy
gets what is left of MAX_WORK.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..language.graph import Node
from ..oracles import plan, subgradients
from ..oracles.batches import CHUNK_ELEMENTS
from ..oracles.numeric import narrow_rows
from ..oracles.plan import STEPS, DifferencePlan
from ..core.limits import MAX_WORK, size_error
from ..core.meter import PRICES, gate_units
from ..oracles.runners import workspace
from .pipeline import POLICIES, Policy

# The model's allowance for the engine's rarer passes, which run only where the data asks (larger
# steps where rounding-bound, ±TIE·h at kinks, pairs and ties): a share of the plan's rows.
RARER_PASSES = 0.5
COMPLEX_PASS = 2     # a pass in complex numbers costs about two real ones


@dataclass(frozen=True, kw_only=True)
class CheckPlan:
    """What a graph's check runs, as the engine runs it: the differences' rows (`differences`), the
    graph's policy (its rounding reruns, its second point's attempts), each gate call's policy (its
    rounding reruns), and the chain rules tried at kinks (one backward pass each)."""
    differences: DifferencePlan
    graph: Policy
    gate: Policy
    conventions: int

    @classmethod
    def of(cls, graph: Policy | None = None, gate: Policy | None = None) -> CheckPlan:
        """The plan the engine runs now: plan.PLAN, the policies given (else the defaults), and
        subgradients.CONVENTIONS."""
        return cls(differences=plan.PLAN, graph=graph or POLICIES["graph"], gate=gate or POLICIES["gate"],
                   conventions=len(subgradients.CONVENTIONS))

    @property
    def forward_passes(self) -> int:
        """The point's forward pass, then one for each attempt at the second point."""
        return 1 + self.graph.second_attempts

    @property
    def backward_passes(self) -> int:
        """Backprop, its rounding reruns, and the chain rules at kinks (computed once a kink row fails)."""
        return 1 + len(self.graph.noise_signs) + self.conventions

    @property
    def gate_vjps(self) -> int:
        """A gate call's VJP, then its rounding reruns."""
        return 1 + len(self.gate.noise_signs)

    @property
    def hand_derived_points(self) -> int:
        """A hand-derived gate is checked at the file's point and at the second point."""
        return 2


def units(counts: dict) -> int:
    """Counts priced in work units."""
    return int(sum(PRICES[k] * n for k, n in counts.items()))


def _add(a: dict, b: dict, times: float = 1) -> dict:
    for k, n in b.items():
        a[k] = a.get(k, 0) + int(n * times)
    return a


@dataclass
class Cost:
    """Predicted counts, by part (build, forward, backward, differences, rows, gate checks, symbolic)."""
    parts: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(units(c) for c in self.parts.values())

    def largest(self) -> str:
        return max(self.parts, key=lambda p: units(self.parts[p])) if self.parts else "work"

    def refusal(self, what: str, advice: str) -> str | None:
        """Why checking `what` is refused before any of the work (past MAX_WORK), or None within it:
        one message for every kind of check, each raising it at its own position."""
        if self.total <= MAX_WORK:
            return None
        return size_error(what, self.total, MAX_WORK, "work units", "MAX_WORK") + f"; {advice}"

    def leave_to_sympy(self, budget: int) -> None:
        """SymPy gets what the numeric checks leave of MAX_WORK (its budget shrinks, never theirs)."""
        self.parts["symbolic"] = {"sympy": min(budget, (MAX_WORK - self.total) // PRICES["sympy"])}


class Shape:
    """Per node of a graph: the gate calls, and the elements and window elements per row, one
    evaluation of it takes."""

    def __init__(self, graph, memo: dict):
        self.graph = graph
        self._down: dict = {}
        self.calls, self.elements, self.windows = (np.zeros(len(graph.nodes), dtype=np.int64) for _ in range(3))
        for node in graph.nodes:
            if node.gate is not None:
                self.calls[node.id], self.elements[node.id], self.windows[node.id] = node_shape(graph, node, memo)

    def downstream(self, output: int) -> dict:
        """Per node, a bound on what a row nudging it recomputes (the node and those computed from
        it, up to `output`), as batched_forward runs it: per kind (calls, elements, windows, and the
        nodes it visits: sweep), the sum over its consumers' own bounds plus its own share, capped by
        everything after it (shared descendants are counted once per way to them, so a graph that
        fans out and joins again is held to what walking it whole costs)."""
        if output in self._down:
            return self._down[output]
        n = output + 1
        own = {"call": self.calls[:n], "element": self.elements[:n], "window": self.windows[:n],
               "sweep": np.ones(n, dtype=np.int64)}
        out = {}
        consumers = self.graph.consumers
        for kind, a in own.items():
            after = np.cumsum(a[::-1])[::-1].tolist()  # (Python ints: indexed once per node and consumer)
            mine = a.tolist()
            bound = [0] * n
            for i in range(n - 1, -1, -1):
                reach = mine[i]
                for c in consumers[i]:
                    if c < n:
                        reach += bound[c]
                bound[i] = min(after[i], reach)
            out[kind] = np.array(bound, dtype=np.int64)
        self._down[output] = out
        return out

    def after(self, output: int) -> dict:
        """Per kind, per node up to `output` (and one past it: 0), what every node from it to `output`
        costs together: a chunk starting at that node visits no more (kept: each recheckable node's
        differences ask for it)."""
        key = ("after", output)
        if key not in self._down:
            def suffix(a):
                return np.concatenate([np.cumsum(a[: output + 1][::-1])[::-1], [0]])
            self._down[key] = {"call": suffix(self.calls), "element": suffix(self.elements),
                               "window": suffix(self.windows), "sweep": np.arange(output + 1, -1, -1)}
        return self._down[key]

    def one_element(self, output: int) -> dict:
        """Per node, a bound on what a row nudging one of its elements recomputes: `downstream`'s, but
        a consumer that reads a few of its elements (a gate's `reads` rule: x[i]) counted only for the
        elements it reads, the largest such sum over its elements taken (a thousand x[i] over x: a row
        nudging x[j] recomputes the terms of x[j], not the comprehension)."""
        key = ("one", output)
        if key in self._down:
            return self._down[key]
        down = self.downstream(output)
        out = {kind: bound.copy() for kind, bound in down.items()}
        own = {"call": self.calls, "element": self.elements, "window": self.windows}
        graph = self.graph
        for node in graph.nodes[: output + 1]:
            readers = [c for c in graph.consumers[node.id] if c <= output and _reads(graph.nodes[c]) is not None]
            if not readers:
                continue
            others = [c for c in graph.consumers[node.id] if c <= output and c not in readers]
            for kind, bound in down.items():
                acc = np.zeros(node.size, dtype=np.int64)
                for c in readers:
                    acc[_read_elements(graph, graph.nodes[c])] += bound[c]
                mine = 1 if kind == "sweep" else int(own[kind][node.id])
                worst = mine + sum(int(bound[c]) for c in others) + int(acc.max(initial=0))
                out[kind][node.id] = min(int(bound[node.id]), worst)
        self._down[key] = out
        return out

    def bounds(self, output: int) -> tuple:
        """(after, downstream, one_element) of `output`, as lists of Python ints (kept): `differences`
        reads them once per target and chunk, many thousand times in a deep graph."""
        key = ("lists", output)
        if key not in self._down:
            self._down[key] = tuple({kind: a.tolist() for kind, a in found.items()}
                                    for found in (self.after(output), self.downstream(output), self.one_element(output)))
        return self._down[key]

    def counts(self, rows: int = 1) -> dict:
        return {"call": int(self.calls.sum()), "element": rows * int(self.elements.sum()),
                "window": rows * int(self.windows.sum())}


def _reads(node):
    """A gate's rule for the elements of its one operand it reads (x[i]), or None."""
    gate = node.gate
    return gate.reads if len(node.inputs) == 1 and gate is not None and getattr(gate, "reads", None) is not None else None


def _read_elements(graph, node) -> np.ndarray:
    return np.asarray(node.gate.reads([graph.nodes[node.inputs[0]].shape], node.attrs), dtype=np.int64)


def node_shape(graph, node, memo: dict) -> tuple:
    """(gate calls, elements, window elements) per row of one evaluation of a gate node (a user
    gate: its whole body, and a call of its own)."""
    composite = node.composite
    if composite is None:
        return (1,) + gate_units(node.gate, [graph.nodes[i].shape for i in node.inputs], node.attrs, node.size)
    if id(composite) not in memo:
        body = shape_of(composite.body, memo)
        memo[id(composite)] = (1 + int(body.calls.sum()), int(body.elements.sum()), int(body.windows.sum()))
    return memo[id(composite)]


def shape_of(graph, memo: dict) -> Shape:
    key = ("shape", id(graph))
    if key not in memo:
        memo[key] = Shape(graph, memo)
    return memo[key]


def backward(graph, k: int, memo: dict, outer: bool = True) -> dict:
    """One backward pass with k rows: every gate's VJP."""
    total: dict = {}
    for node in graph.nodes[: graph.output + 1]:
        if node.gate is not None:
            _add(total, vjp(graph, node, k, memo, outer))
    return total


def vjp(graph, node, k: int, memo: dict, outer: bool = True) -> dict:
    """One gate's VJP with k rows: the registry's, a user gate's d lines, or backprop through its
    body (whose values the outermost such VJP computes once, nested bodies included: autodiff.BodyValues)."""
    composite = node.composite
    if composite is None:
        _, windows = gate_units(node.gate, [graph.nodes[i].shape for i in node.inputs], node.attrs, node.size, k)
        return {"call": 1, "element": k * node.size + sum(graph.nodes[i].size for i in node.inputs), "window": windows}
    key = ("vjp", id(composite), k, outer)
    if key not in memo:
        if composite.backward is not None:
            memo[key] = _add(shape_of(composite.backward, memo).counts(k), {"call": 1})
        else:
            body = shape_of(composite.body, memo).counts() if outer else {}
            memo[key] = _add(_add(body, {"call": 1}), backward(composite.body, k, memo, outer=False))
    return memo[key]


def differences(shape: Shape, width: Callable[[int], int], targets: list, output: int,
                exact: set | None = None, planned: DifferencePlan | None = None) -> dict:
    """The batched rows of `targets` (id, elements, projected), chunked as batches.run_rows chunks
    them: each chunk visits the nodes downstream of its targets, each on the rows that reach it.
    Targets differenced element by element share chunks, the plan's rows per element; each projected
    one runs on its own, once per step (its directions, then the smaller step where in doubt). The
    `exact` ones (the complex step: its rows per element) run in chunks of their own, with the
    differences' rows too, should an intermediate leave the complex step's linear regime; with
    `exact` given (the complex step on), the rest get the complex step's rows too: a row the
    differences fail is given the complex step off its kinks (a second opinion). None: no complex
    step. `planned`: the differences' plan (else plan.PLAN)."""
    planned = planned or plan.PLAN
    whole, dense, sparse = shape.bounds(output)
    total = {"call": 0, "element": 0, "window": 0, "sweep": 0}

    def close(start, rows: dict, elements: dict, down: dict):
        # a chunk visits the nodes some row reaches, each on the rows that reach it: a node at most once,
        # and no more than the elements its rows nudge reach, one by one
        for kind in ("call", "sweep"):
            total[kind] += min(whole[kind][start], sum(min(dense[kind][t], elements[t] * down[kind][t]) for t in rows))
        for kind in ("element", "window"):
            total[kind] += min(sum(rows.values()) * whole[kind][start], sum(r * down[kind][t] for t, r in rows.items()))

    def run(stream, down):
        start, room = None, 0
        rows: dict = {}
        elements: dict = {}
        for tid, n, left in stream:
            per = max(1, left // max(1, n))  # rows per element (a dense target: its rows are its directions)
            while left:
                if room == 0:
                    if start is not None:
                        close(start, rows, elements, down)
                    start, room, rows, elements = tid, max(1, CHUNK_ELEMENTS // max(1, width(tid))), {}, {}
                take = min(left, room)
                rows[tid] = rows.get(tid, 0) + take
                elements[tid] = elements.get(tid, 0) + -(-take // per) + 1  # a chunk may cut an element's rows
                room, left = room - take, left - take
                total["element"] += take * n  # the perturbed copies of the target
        if start is not None:
            close(start, rows, elements, down)
    exact_rows = planned.rows_per_element + planned.complex_rows_per_element
    # a failing row's second opinion, where the complex step is on: the complex step off its kinks
    differenced_rows = planned.rows_per_element + (planned.complex_rows_per_element if exact is not None else 0)
    run([(tid, n, differenced_rows * n) for tid, n, projected in sorted(targets)
         if not projected and tid not in (exact or ())], sparse)
    run([(tid, n, exact_rows * n) for tid, n, projected in sorted(targets) if not projected and tid in (exact or ())],
        sparse)
    for tid, n, projected in targets:
        if projected:  # a direction nudges every element: it reaches every consumer
            for _ in STEPS:
                run([(tid, n, planned.direction_rows_per_step)], dense)
    return {k: int(v * (1 + RARER_PASSES)) for k, v in total.items()}


class Calls:
    """What checking one gate call on its own costs, by the plan (`planned`, else CheckPlan.of()): its
    rows of differences (its inputs' elements, or projections past `exhaustive(node)`), its VJP and
    rounding reruns, and its judging; a `hand_derived(node)` gate again at the second point, and its
    d<local> lines through its body."""

    def __init__(self, graph, exhaustive: Callable[[Node], int], hand_derived: Callable[[Node], bool],
                 memo: dict | None = None, *, planned: CheckPlan | None = None):
        self.graph, self.exhaustive, self.hand_derived = graph, exhaustive, hand_derived
        self.memo = {} if memo is None else memo
        self.planned = planned or CheckPlan.of()

    def counts(self, node) -> dict:
        graph, memo, planned = self.graph, self.memo, self.planned
        calls, elements, windows = node_shape(graph, node, memo)
        n = sum(graph.nodes[i].size for i in node.inputs)
        rows = planned.differences.rows(n, projected=n > self.exhaustive(node))
        chunks = -(-rows // max(1, CHUNK_ELEMENTS // max(node.size, n, 1)))
        one = {"call": chunks * calls, "element": rows * (elements + n), "window": rows * windows, "row": 1}
        one = _add({k: int(v * (1 + RARER_PASSES)) for k, v in one.items()}, vjp(graph, node, 1, memo), planned.gate_vjps)
        composite = node.composite
        if composite is not None and composite.hand_derived:
            body = shape_of(composite.body, memo)
            widest_rows = planned.differences.rows(max((m.size for m in composite.body.nodes), default=1), projected=False)
            lines = len(composite.intermediates)
            _add(one, {"call": 2 * int(body.calls.sum()), "element": widest_rows * int(body.elements.sum()),
                       "window": widest_rows * int(body.windows.sum()), "sweep": len(composite.body.nodes), "row": 1},
                 lines * (1 + RARER_PASSES))
        return {k: v * (planned.hand_derived_points if self.hand_derived(node) else 1) for k, v in one.items()}

    def units(self, node) -> int:
        return units(self.counts(node))


def second_order(graph, hand_derived: list) -> Cost:
    """`check --order 2`: forward and backward passes (the point, three complex ones — backprop's, and
    through the gate bodies — the plan's rows of differences along v, and the gradient at the point),
    with one upstream row; each hand-derived call's body and d lines, complex, twice."""
    memo: dict = {}
    passes = 1 + 3 * COMPLEX_PASS + plan.PLAN.rows_per_element + 1
    gates: dict = {}
    for node in hand_derived:
        body = shape_of(node.composite.body, memo)
        _add(gates, {"call": int(body.calls.sum()), "element": int(body.elements.sum()), "window": int(body.windows.sum()),
                     "row": 1}, 3 * 2 * 2)  # its body forward (thrice: the kink test), backward, d lines; complex
    return Cost({"building": {"build": graph.built}, "forward": _add({}, Shape(graph, memo).counts(), passes),
                 "backward": _add({}, backward(graph, 1, memo), passes), "rows": {"row": len(graph.nodes)},
                 "gate checks": gates})


def _width(graph) -> Callable[[int], int]:
    """A target's batch width, as GraphRunner.width computes it (without the values)."""
    sizes = [max(n.size, workspace(graph, n)) for n in graph.nodes]
    suffix = np.maximum.accumulate(sizes[::-1])[::-1]
    out = graph.nodes[graph.output].size
    return lambda tid: max(int(suffix[tid]), out)


def predict(graph, checked: list, exhaustive: set, calls: list, gate_calls: Calls, built: int,
            recheckable: Sequence = (), exact: set | None = None) -> Cost:
    """What checking `graph` costs, by the plan `gate_calls` holds: its `built` nodes, its passes
    (CheckPlan.forward_passes and backward_passes), the differences at `checked`
    (element by element for `exhaustive`, else projections) and their rows, the `recheckable`
    projected nodes differenced again element by element (as a failed projection is), and the gate
    `calls` checked on their own. Not included: SymPy (it gets what is left) and the calls below
    failing rows (the checker admits them while the limit allows)."""
    memo, planned = gate_calls.memo, gate_calls.planned
    out = graph.nodes[graph.output]
    shape = Shape(graph, memo)
    width = _width(graph)
    targets = [(n.id, n.size, n.id not in exhaustive) for n in checked]
    rechecks: dict = {}
    for node in recheckable:
        _add(rechecks, differences(shape, width, [(node.id, node.size, False)], graph.output,
                                   planned=planned.differences))
    gates: dict = {}
    for node in calls:
        _add(gates, gate_calls.counts(node))
    return Cost({
        "building": {"build": built},
        "forward": _add({}, shape.counts(), planned.forward_passes),
        "backward": _add({}, backward(graph, out.size, memo), planned.backward_passes),
        "differences": differences(shape, width, targets, graph.output, exact, planned.differences),
        "rechecks": rechecks,
        "rows": {"row": len(graph.nodes), "element": out.size * sum(n.size for n in checked)},
        "gate checks": gates,
    })


def python_layer(n: int, out: int, batched: bool, exhaustive: int, recheck: int, kinked: int,
                 reference: bool = False) -> Cost:
    """A Python layer checked at two points: per point, its output and backward calls (with the
    rounding reruns, and the backward called again at the point itself), its rows of differences (each a
    call of its own unless the forward batches), a failed projection's element-by-element recheck (at most
    `recheck` units) and the
    output-by-output analysis at kinks, when it runs (`kinked`: at most that many outputs, else 0).
    With an exact `reference`: projections, and up to `exhaustive` elements where it disagrees
    differenced one by one (or, should it fail the projections, the differences alone)."""
    planned = plan.PLAN
    alone = planned.rows(n, projected=n > exhaustive)
    rows = alone if not reference else planned.rows(planned.projections + min(n, exhaustive), projected=False) + alone
    rows = int(rows * (1 + RARER_PASSES)) + narrow_rows(n, projected=n > exhaustive)  # a user's code: narrowed steps
    calls = -(-rows // max(1, CHUNK_ELEMENTS // max(n, out, 1))) if batched else rows
    analysis_calls = planned.rows(n, projected=False) + kinked  # the output-by-output rows, and a backward per kinked output
    analysis = {"python": analysis_calls, "element": analysis_calls * (n + out)} if kinked else {}
    extra = 2 if reference else 0  # the reference's forward and backward; its rows of differences
    diagnosis = 2  # a failing row's (python/blame.py): the backward at a zero upstream, the reference at ones
    point = {"python": 7 + extra + diagnosis + calls, "element": (7 + extra + diagnosis + rows) * (n + out) + rows * n,
             "row": 1 + extra // 2}
    return Cost({"differences": _add({}, point, 2), "recheck": {"element": 2 * recheck}, "kinks": _add({}, analysis, 2)})
