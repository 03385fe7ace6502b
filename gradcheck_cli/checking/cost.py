"""The cost model: what checking a graph will cost, predicted from its shape before any of the work
runs, as counts of the meter's kinds (gate calls, elements, nodes walked, rows judged, nodes built,
SymPy nodes) priced in work units by meter.PRICES. One figure, its parts named, held against MAX_WORK.

A node evaluated for `rows` copies costs its calls and `rows ×` its elements (a user gate: its
body's). The finite differences are planned as the engine plans them (rows sorted by node, chunks
of CHUNK_ELEMENTS, each walking every node from its first row's node to the output); the gates' own
checks are the calls the checker will check; SymPy gets what is left of MAX_WORK.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..language.graph import Node
from ..oracles.batches import CHUNK_ELEMENTS
from ..core.limits import MAX_WORK, size_error
from ..core.meter import PRICES, gate_units
from ..oracles.numeric import PROJECTIONS
from ..oracles.runners import workspace

ROWS = 4            # rows per element differenced: ±h, then ±h/2 where in doubt (Richardson)
EXTRA = 0.5         # the rarer passes (larger steps, kinks, ties), as a share of the differences
BACKWARD_PASSES = 3 + 5  # backprop and its two rounding reruns; five chain-rule conventions at kinks
FORWARD_PASSES = 4  # the point; the second point's attempts (0.1, 0.02, 0.004)


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
        self.calls, self.elements, self.windows = (np.zeros(len(graph.nodes), dtype=np.int64) for _ in range(3))
        for node in graph.nodes:
            if node.gate is not None:
                self.calls[node.id], self.elements[node.id], self.windows[node.id] = node_shape(graph, node, memo)

    def counts(self, rows: int = 1) -> dict:
        return {"call": int(self.calls.sum()), "element": rows * int(self.elements.sum()),
                "window": rows * int(self.windows.sum())}


def node_shape(graph, node, memo: dict) -> tuple:
    """(gate calls, elements, window elements) per row of one evaluation of a gate node (a user
    gate: its whole body, and a call of its own)."""
    inst = node.gate.instance
    if inst is None:
        return (1,) + gate_units(node.gate, [graph.nodes[i].shape for i in node.inputs], node.attrs, node.size)
    if id(inst) not in memo:
        body = shape_of(inst.fwd, memo)
        memo[id(inst)] = (1 + int(body.calls.sum()), int(body.elements.sum()), int(body.windows.sum()))
    return memo[id(inst)]


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
    body (whose values the outermost such VJP computes once, nested bodies included: autodiff._BODIES)."""
    inst = node.gate.instance
    if inst is None:
        _, windows = gate_units(node.gate, [graph.nodes[i].shape for i in node.inputs], node.attrs, node.size, k)
        return {"call": 1, "element": k * node.size + sum(graph.nodes[i].size for i in node.inputs), "window": windows}
    key = ("vjp", id(inst), k, outer)
    if key not in memo:
        if inst.bwd is not None:
            memo[key] = _add(shape_of(inst.bwd, memo).counts(k), {"call": 1})
        else:
            body = shape_of(inst.fwd, memo).counts() if outer else {}
            memo[key] = _add(_add(body, {"call": 1}), backward(inst.fwd, k, memo, outer=False))
    return memo[key]


def differences(shape: Shape, width: Callable[[int], int], targets: list, output: int,
                exact: set | None = None) -> dict:
    """The batched rows of `targets` (id, elements, projected), chunked as batches.run_rows chunks
    them: each chunk walks every node from its first row's node to the output, for all its rows.
    Targets differenced element by element share chunks; each projected one runs on its own, twice
    (its directions, then the smaller step where in doubt). The `exact` ones (the complex step: a
    complex row per element) run in chunks of their own, counted as ROWS + 1 rows per element (the
    differences too, should an intermediate leave the complex step's linear regime); with `exact`
    given (the complex step on), the rest get a row more per element: a row the differences fail is
    given the complex step off its kinks (a second opinion). None: no complex step."""
    def suffix(a):
        return np.concatenate([np.cumsum(a[: output + 1][::-1])[::-1], [0]])
    calls, elements, windows = suffix(shape.calls), suffix(shape.elements), suffix(shape.windows)
    total = {"call": 0, "element": 0, "window": 0, "sweep": 0}

    def close(start, rows):
        total["call"] += int(calls[start])
        total["element"] += rows * int(elements[start])
        total["window"] += rows * int(windows[start])
        total["sweep"] += output + 1 - start

    def run(stream):
        start, room, rows = None, 0, 0
        for tid, n, left in stream:
            while left:
                if room == 0:
                    if start is not None:
                        close(start, rows)
                    start, room, rows = tid, max(1, CHUNK_ELEMENTS // max(1, width(tid))), 0
                take = min(left, room)
                rows, room, left = rows + take, room - take, left - take
                total["element"] += take * n  # the perturbed copies of the target
        if start is not None:
            close(start, rows)
    second = 1 if exact is not None else 0  # a failing row's second opinion: the complex step off its kinks
    run([(tid, n, (ROWS + second) * n) for tid, n, projected in sorted(targets) if not projected and tid not in (exact or ())])
    run([(tid, n, (ROWS + 1) * n) for tid, n, projected in sorted(targets) if not projected and tid in (exact or ())])
    for tid, n, projected in targets:
        if projected:
            for _ in range(2):
                run([(tid, n, ROWS // 2 * PROJECTIONS)])
    return {k: int(v * (1 + EXTRA)) for k, v in total.items()}


class Calls:
    """What checking one gate call on its own costs: its rows of differences (its inputs' elements,
    four each, or projections past `exhaustive(node)`), three VJPs and its judging; a
    `hand_derived(node)` gate again at the second point, and its d<local> lines through its body."""

    def __init__(self, graph, exhaustive: Callable[[Node], int], hand_derived: Callable[[Node], bool],
                 memo: dict | None = None):
        self.graph, self.exhaustive, self.hand_derived = graph, exhaustive, hand_derived
        self.memo = {} if memo is None else memo

    def counts(self, node) -> dict:
        graph, memo = self.graph, self.memo
        calls, elements, windows = node_shape(graph, node, memo)
        n = sum(graph.nodes[i].size for i in node.inputs)
        rows = ROWS * (n if n <= self.exhaustive(node) else PROJECTIONS)
        chunks = -(-rows // max(1, CHUNK_ELEMENTS // max(node.size, n, 1)))
        one = {"call": chunks * calls, "element": rows * (elements + n), "window": rows * windows, "row": 1}
        one = _add({k: int(v * (1 + EXTRA)) for k, v in one.items()}, vjp(graph, node, 1, memo), 3)
        inst = node.gate.instance
        if inst is not None and inst.bwd is not None:
            body = shape_of(inst.fwd, memo)
            widest = max((m.size for m in inst.fwd.nodes), default=1)
            lines = len(inst.intermediates)
            _add(one, {"call": 2 * int(body.calls.sum()), "element": ROWS * widest * int(body.elements.sum()),
                       "window": ROWS * widest * int(body.windows.sum()), "sweep": len(inst.fwd.nodes), "row": 1},
                 lines * (1 + EXTRA))
        return {k: v * (2 if self.hand_derived(node) else 1) for k, v in one.items()}

    def units(self, node) -> int:
        return units(self.counts(node))


def second_order(graph, hand_derived: list) -> Cost:
    """`check --order 2`: forward and backward passes (the point, three complex ones counted twice —
    backprop's, and through the gate bodies — four differences), with one upstream row; each
    hand-derived call's body and d lines, complex, twice."""
    memo: dict = {}
    passes = 1 + 3 * 2 + 4 + 1
    gates: dict = {}
    for node in hand_derived:
        inst = node.gate.instance
        body = shape_of(inst.fwd, memo)
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
    """What checking `graph` costs: its `built` nodes, its passes, the differences at `checked`
    (element by element for `exhaustive`, else projections) and their rows, the `recheckable`
    projected nodes differenced again element by element (as a failed projection is), and the gate
    `calls` checked on their own. Not included: SymPy (it gets what is left) and the calls below
    failing rows (the checker admits them while the limit allows)."""
    memo = gate_calls.memo
    out = graph.nodes[graph.output]
    shape = Shape(graph, memo)
    width = _width(graph)
    targets = [(n.id, n.size, n.id not in exhaustive) for n in checked]
    rechecks: dict = {}
    for node in recheckable:
        _add(rechecks, differences(shape, width, [(node.id, node.size, False)], graph.output))
    gates: dict = {}
    for node in calls:
        _add(gates, gate_calls.counts(node))
    return Cost({
        "building": {"build": built},
        "forward": _add({}, shape.counts(), FORWARD_PASSES),
        "backward": _add({}, backward(graph, out.size, memo), BACKWARD_PASSES),
        "differences": differences(shape, width, targets, graph.output, exact),
        "rechecks": rechecks,
        "rows": {"row": len(graph.nodes), "element": out.size * sum(n.size for n in checked)},
        "gate checks": gates,
    })


def python_layer(n: int, out: int, batched: bool, exhaustive: int, recheck: int, kinked: int,
                 reference: bool = False) -> Cost:
    """A Python layer checked at two points: per point, its output and backward calls (with the
    rounding reruns), its rows of differences (each a call of its own unless the forward batches),
    a failed projection's element-by-element recheck (at most `recheck` units) and the
    output-by-output analysis at kinks, when it runs (`kinked`: at most that many outputs, else 0).
    With an exact `reference`: projections, and up to `exhaustive` elements where it disagrees
    differenced one by one (or, should it fail the projections, the differences alone)."""
    alone = n if n <= exhaustive else PROJECTIONS
    rows = int(ROWS * (alone + PROJECTIONS + min(n, exhaustive) if reference else alone) * (1 + EXTRA))
    calls = -(-rows // max(1, CHUNK_ELEMENTS // max(n, out, 1))) if batched else rows
    analysis = {"python": 4 * n + kinked, "element": (4 * n + kinked) * (n + out)} if kinked else {}
    extra = 2 if reference else 0  # the reference's forward and backward; its rows of differences
    point = {"python": 6 + extra + calls, "element": (6 + extra + rows) * (n + out) + rows * n, "row": 1 + extra // 2}
    return Cost({"differences": _add({}, point, 2), "recheck": {"element": 2 * recheck}, "kinks": _add({}, analysis, 2)})
