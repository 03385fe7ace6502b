"""Teaching data: the chain rule step by step, quiz questions, gradient descent. Never prints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..oracles import autodiff
from ..core.errors import BackwardError, GradcheckError, GradValueError
from ..language.expects import within, written_tolerance
from ..language.frontend import load, parse_value
from ..core.display import Displayed
from ..language.graph import Composite, Graph
from ..core.limits import MAX_DESCENT_WORK, MAX_HISTORY, size_error
from ..oracles.runners import NODE_COST
from ..language.syntax import parse

SMALL = 64  # tensors up to this many elements are shown in full; larger ones by shape
ANSWER_RTOL = 1e-6  # an answer written without decimals (`3`, `[1, 2]`) is right within this

__all__ = ["load", "explain", "quiz", "grade", "descend", "Diverged"]


@dataclass
class ForwardStep:
    node: str
    gate: str
    inputs: list        # [(name, value)]
    value: np.ndarray
    line: int


D_LINE_WIDTH = 160  # characters of a d line shown beside its step (a longer one ends in …)


@dataclass(frozen=True, kw_only=True)
class DLine:
    """The learner's own `d<param>` line that a backward step runs: its text, where it is, what it
    gives, and what the gate's forward body says the gradient is (None where that cannot be computed)."""
    text: str
    line: int
    value: np.ndarray
    expected: np.ndarray | None


@dataclass
class BackwardStep:
    """One edge of the backward pass: upstream × local = downstream, into `input`."""
    node: str
    gate: str
    input: str
    upstream: np.ndarray
    local: np.ndarray | None   # ∂node/∂input (None for tensors too large to show)
    downstream: np.ndarray
    formula: str
    accumulate: bool            # fan-out: added (+=) to what `input` already received
    total: np.ndarray           # the input's gradient after this edge
    line: int
    input_id: int = -1          # the input's node id (names of unnamed gates can repeat)
    node_id: int = -1           # the gate's node id
    slot: int = -1              # which input of the gate
    d_line: DLine | None = None  # the learner's d line this edge runs (a hand-derived gate's input)


@dataclass
class Explanation(Displayed):
    source: str
    output: str
    value: np.ndarray
    forward: list = field(default_factory=list)
    backward: list = field(default_factory=list)
    graph: Graph | None = None
    values: list | None = None
    grads: dict | None = None   # node id -> gradient
    errors: list = field(default_factory=list)  # BackwardErrors of hand-derived gates that could not run


def _scalar_output(graph: Graph, what: str):
    out = graph.nodes[graph.output]
    if out.size != 1:
        raise GradValueError(f"the output '{out.name}' has shape {out.shape}: {what} needs a scalar output "
                             "(wrap it, e.g. sum(...))", out.pos.line, out.pos.col)
    return out


def explain(graph: Graph) -> Explanation:
    """The forward pass in topological order, then every edge of the backward pass in reverse."""
    values = autodiff.forward(graph)
    out = _scalar_output(graph, "explaining")
    ex = Explanation(graph.source, out.name, values[out.id], graph=graph, values=values)
    for node in graph.nodes[: out.id + 1]:
        if node.gate is not None:
            ex.forward.append(ForwardStep(node.name, node.label,
                                          [(graph.nodes[i].name, values[i]) for i in node.inputs],
                                          values[node.id], node.pos.line))
    upstream_of: dict = {}
    reached = {out.id}

    def on_edge(node, slot, contribution, total, accumulated):
        target = graph.nodes[node.inputs[slot]]
        if target.kind in ("literal", "const"):  # frozen: no gradient flows into it
            return
        reached.add(target.id)
        args = [values[i] for i in node.inputs]
        upstream = upstream_of[node.id]
        ex.backward.append(BackwardStep(
            node.name, node.label, target.name, upstream, _local(node, args, values, slot),
            contribution[0].copy(), node.gate.local, accumulated, total[0].copy(), node.pos.line, target.id,
            node.id, slot, _d_line(graph, node, slot, upstream, args, contribution[0])))

    def record(node, adjoint):
        upstream_of[node.id] = adjoint[0]

    failed: dict = {}
    adjoints = autodiff.backward(graph, values, failed, seed=np.ones((1,) + out.shape), on_edge=on_edge,
                                 on_node=record)
    ex.errors = list(failed.values())
    ex.grads = {nid: adjoints[nid][0] for nid in sorted(reached)}
    return ex


def _local(node, args, values, slot):
    """∂node/∂(its input `slot`) at the point: the local gradient, for small nodes."""
    out_size, in_size = node.size, int(np.size(args[slot]))
    if out_size * in_size > SMALL:
        return None
    eye = np.eye(out_size).reshape((out_size,) + node.shape)
    try:
        jac = autodiff.gate_vjp(node.gate, eye, args, values[node.id], node.attrs)[slot]
    except BackwardError as err:
        jac = (err.grads or [np.full((out_size,) + np.shape(a), np.nan) for a in args])[slot]
    jac = np.broadcast_to(jac, (out_size,) + np.shape(args[slot]))
    return jac.reshape(node.shape + np.shape(args[slot]))


def _d_line(graph: Graph, node, slot: int, upstream, args: list, value) -> DLine | None:
    """The d line of a hand-derived gate's input `slot`, with the gradient the gate's body gives."""
    gate = node.gate
    if not isinstance(gate, Composite) or not gate.hand_derived:
        return None
    param = gate.params[slot]
    assign = gate.d_lines.get(param)
    if assign is None:
        return None
    written = " ".join(graph.text[assign.expr.pos.start:assign.expr.pos.end].split())
    text = f"d{param} = {written}"
    if len(text) > D_LINE_WIDTH:
        text = text[: D_LINE_WIDTH - 1] + "…"
    try:
        with np.errstate(all="ignore"):
            truth = autodiff.body_vjp(gate, np.asarray(upstream)[None], args)[slot][0]
        expected = np.broadcast_to(truth, np.shape(args[slot])).copy()
    except GradcheckError:
        expected = None
    return DLine(text=text, line=assign.pos.line, value=np.array(value), expected=expected)


@dataclass
class Question:
    """Quiz: what is d(output)/d(node)? Asked in backward order."""
    node: str
    answer: np.ndarray
    edges: list          # the BackwardSteps into this node
    line: int


def quiz(ex: Explanation) -> list:
    """One question per node (output, consts and literals aside), in backward order."""
    graph = ex.graph
    questions = []
    into: dict = {}
    for step in ex.backward:
        into.setdefault(step.input_id, []).append(step)
    for node in reversed(graph.nodes[: graph.output]):
        if node.kind in ("const", "literal"):
            continue
        edges = into.get(node.id, [])
        answer = ex.grads.get(node.id, np.zeros(node.shape))
        questions.append(Question(node.name, answer, edges, node.pos.line))
    return questions


def grade(written: str, answer: np.ndarray) -> bool:
    """Is the written answer right? Digits written set the tolerance, as for `expect`."""
    value = parse_value(written, name="the answer")
    program = parse(written)
    if np.shape(value) != np.shape(answer) and np.size(value) != 1:
        return False
    return within(value, answer, written_tolerance(program.statements[0].expr, program.text), ANSWER_RTOL)


class Diverged(Exception):
    """Gradient descent left the function's domain or overflowed at `step`."""

    def __init__(self, step: int, error):
        super().__init__(error.message)
        self.step, self.error = step, error


@dataclass
class DescentStep:
    value: float
    leaves: dict   # name -> value


def descend(graph: Graph, lr: float, steps: int) -> list:
    """Gradient descent x ← x − η∇f on the leaves (consts stay); the state before each step and after the last."""
    out = _scalar_output(graph, "descent")
    leaves = graph.leaves()
    _bound_descent(graph, leaves, steps)
    history = []
    for step in range(steps + 1):
        try:
            values = autodiff.forward(graph)
        except GradValueError as err:
            if step == 0:
                raise
            raise Diverged(step, err) from None
        history.append(DescentStep(float(np.asarray(values[out.id]).reshape(())),
                                   {n.name: np.array(values[n.id]) for n in leaves}))
        if step == steps:
            break
        failed: dict = {}
        adjoints = autodiff.backward(graph, values, failed)
        if failed:
            raise next(iter(failed.values()))
        for n in leaves:
            with np.errstate(all="ignore"):
                n.value = n.value - lr * adjoints[n.id][0]
            if not np.all(np.isfinite(n.value)):
                raise Diverged(step + 1, GradValueError(f"leaf '{n.name}' is not finite after step {step + 1}",
                                                        n.pos.line, n.pos.col))
    return history


def _bound_descent(graph: Graph, leaves: list, steps: int) -> None:
    """Refuse, before the first step, a descent whose work or history is past its limit."""
    per_step = sum(n.size + NODE_COST for n in graph.nodes[: graph.output + 1])  # as the differences count a node
    if (steps + 1) * per_step > MAX_DESCENT_WORK:
        raise GradValueError(size_error(f"{steps:,} descent steps of this function", (steps + 1) * per_step,
                                        MAX_DESCENT_WORK, "units of work", "MAX_DESCENT_WORK") + "; take fewer --steps")
    kept = (steps + 1) * sum(n.size for n in leaves)
    if kept > MAX_HISTORY:
        raise GradValueError(size_error(f"the history of {steps:,} steps", kept, MAX_HISTORY, "leaf values",
                                        "MAX_HISTORY") + "; take fewer --steps")


def grad_name(node: str) -> str:
    """The gradient of a node in words that cannot be misread: `dx`, but `d(q^2)` and `d(1 + exp(-dot))`
    (`dq^2` reads as (dq)^2)."""
    return f"d{node}" if node.isidentifier() else f"d({node})"
