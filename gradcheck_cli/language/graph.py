"""The circuit as data: nodes in topological order, each a leaf, a constant or a gate call.

A gate call's operation is of one of two kinds: a registry `Gate` (numpy forward, VJP, SymPy form), or
a `Composite`, the call of a user `gate` at one set of operand shapes, which has no functions of its
own but small graphs: its forward body and, when the user wrote d lines, its backward. The evaluators
(autodiff, symbolic, the complex step, the chain rules at kinks, the cost model) each tell the two
kinds apart in one place and run a composite's graphs; everything else reads what both kinds show
(`gates.record.Operation`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from ..core.errors import BackwardError
from ..gates.record import Gate
from . import nodes

NAME_WIDTH = 60


@dataclass(eq=False)
class Node:
    """One node of the circuit: a leaf, a frozen constant, a hidden literal, or a gate."""
    id: int
    name: str
    kind: str  # 'leaf' | 'const' | 'literal' | 'gate'
    shape: tuple
    pos: nodes.Pos
    gate: Gate | Composite | None = None  # for kind 'gate' (None for the others)
    inputs: tuple = ()
    attrs: dict = field(default_factory=dict)
    value: np.ndarray | None = None

    @property
    def label(self) -> str:
        """What the gate column shows: `input`, `const`, `+1`, `exp`, `@`, ..."""
        if self.kind == "leaf":
            return "input"
        if self.kind in ("const", "literal"):
            return "const"
        return self.gate.display(self.attrs)

    def __post_init__(self):
        self.size = math.prod(self.shape)

    @property
    def composite(self) -> Composite | None:
        """The user gate this node calls, or None (a leaf, a constant or a registry gate's call)."""
        return self.gate if isinstance(self.gate, Composite) else None


@dataclass
class Graph:
    """The circuit: `nodes` are in topological order (every input precedes its gate)."""
    nodes: list
    output: int
    names: dict
    expects: list
    text: str
    source: str
    warnings: list = field(default_factory=list)  # (message, line, col): not errors, shown with the report
    built: int = 0  # nodes built for it, user gates' bodies included (the cost model's building part)

    def node(self, name: str) -> Node:
        return self.nodes[self.names[name]]

    def checked(self) -> list:
        """Nodes that get a row in a report: everything but hidden literals."""
        return [n for n in self.nodes if n.kind != "literal"]

    def leaves(self) -> list:
        """The leaf nodes (the inputs a caller binds), in order."""
        return [n for n in self.nodes if n.kind == "leaf"]

    @cached_property
    def consumers(self) -> list:
        """For each node, the ids of the gates that read it."""
        out = [[] for _ in self.nodes]
        for node in self.nodes:
            for i in dict.fromkeys(node.inputs):
                out[i].append(node.id)
        return out

    @cached_property
    def last_uses(self) -> list:
        """For each node, the id of the last node that reads it (itself when none does)."""
        last = list(range(len(self.nodes)))
        for node in self.nodes:
            for i in node.inputs:
                last[i] = max(last[i], node.id)
        return last

    def downstream(self, start, upto: int) -> list:
        """Ids of the nodes `start` and those computed from them, up to `upto`, in topological order:
        time in proportion to what is found, not to the graph."""
        seen = set(start)
        stack = list(seen)
        while stack:
            for c in self.consumers[stack.pop()]:
                if c <= upto and c not in seen:
                    seen.add(c)
                    stack.append(c)
        return sorted(i for i in seen if i <= upto)

    def descendants(self, start) -> list:
        """Ids of the nodes downstream of `start` (excluded), in topological order."""
        seen = set()
        stack = [c for s in start for c in self.consumers[s]]
        while stack:
            nid = stack.pop()
            if nid not in seen:
                seen.add(nid)
                stack.extend(self.consumers[nid])
        return sorted(seen)

    def ancestors(self, nid: int) -> set:
        """The node and every node it is computed from."""
        seen, stack = set(), [nid]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.nodes[n].inputs)
        return seen


@dataclass(frozen=True, kw_only=True)
class Intermediate:
    """A forward local of a user gate that has a `d<local>` line (staged backprop: `dxhat`): checked on
    its own against the true gradient of that local."""
    local: str                      # the forward local's name
    body_id: int                    # its node in the forward body
    backward_id: int | None         # its d line's node in the backward graph; None when it cannot be computed
    line: nodes.Assign              # its d line
    error: BackwardError | None     # why its d line cannot be computed (a failure, or a wrong shape)


@dataclass(frozen=True, kw_only=True, eq=False)
class Composite:
    """A call of a user `gate` at one set of operand shapes: its forward body and its backward as small
    graphs, and what the reports show of it. Distinct from a registry `Gate`: it has no numpy forward,
    VJP or SymPy form; the evaluators run its graphs. Compared and hashed by identity (calls of one
    gate at the same shapes share one)."""
    definition: nodes.GateDef       # the `gate` definition (its name, parameters, body lines, formula)
    d_lines: Mapping[str, nodes.Assign]  # parameter -> its d line; empty: differentiated through the body
    body: Graph                     # the forward: its leaves are the parameters, its output the formula
    backward: Graph | None          # the d lines, on the parameters, `out` and `dout`; None without d lines
    shapes: tuple                   # the operands' shapes
    failures: Mapping[str, BackwardError]  # parameter -> why its d line cannot be computed
    intermediates: tuple[Intermediate, ...] = ()  # the forward locals with a d<local> line
    depends: Mapping[str, list] = field(default_factory=dict)  # a d line's name -> the locals whose
                                    # d<local> lines it uses
    cost: int = 1                   # gate applications one call takes (forward and backward)
    local: str                      # the local gradient, as text: the d lines, or how it is differentiated
    doc: str                        # one line: the definition
    routes: str                     # one line: how it routes the gradient
    has_kinks: bool                 # a gate of its body has a kink (max, relu, abs, ...)

    # What a registry gate says of itself that a composite does not have (gates.record.Operation).
    elementwise: ClassVar[bool] = False
    domain: ClassVar[str | None] = None
    workspace: ClassVar[None] = None
    sym_cost: ClassVar[None] = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def params(self) -> tuple:
        """The parameters' names, in order (one per operand)."""
        return tuple(self.definition.params)

    @property
    def hand_derived(self) -> bool:
        """Whether the user wrote its backward (d lines)."""
        return self.backward is not None

    def display(self, attrs: dict) -> str:
        """Its label in reports: the gate's name."""
        return self.definition.name

    def backward_outputs(self) -> list:
        """The backward graph's nodes of the d lines that can be computed, in parameter order."""
        if self.backward is None:
            return []
        return [self.backward.names["d" + p] for p in self.params if p not in self.failures]

    def gradients(self, results: list, k: int) -> list:
        """The d lines' values (`results`, for backward_outputs) as one gradient per parameter, with K
        rows; a d line that cannot be computed, or is not finite, raises BackwardError (NaN for it)."""
        failures = self.failures
        found = dict(zip([p for p in self.params if p not in failures], results))
        grads, problems = [], [failures[p] for p in self.params if p in failures]
        for p, shape in zip(self.params, self.shapes):
            if p in failures:
                grads.append(np.full((k,) + shape, np.nan))
                continue
            value = np.asarray(found[p])  # complex on forward-over-reverse's rows (hvp.py)
            r = np.broadcast_to(value.astype(complex if np.iscomplexobj(value) else float, copy=False), (k,) + shape)
            if not np.all(np.isfinite(r)):
                line = self.d_lines[p]
                problems.append(BackwardError(f"gate '{self.name}': d{p} is not finite at this point",
                                              line.pos.line, line.pos.col))
                r = np.full((k,) + shape, np.nan)
            grads.append(r)
        if problems:
            first = problems[0]
            raise BackwardError("; ".join(e.message for e in problems), first.line, first.col, grads)
        return grads


def applications(operation: Gate | Composite) -> int:
    """Gate applications one call of this operation takes: one for a registry gate, its bodies' for a composite."""
    return operation.cost if isinstance(operation, Composite) else 1


class Const:
    """A value known when the graph is built (a literal or a folded constant expression)."""
    __slots__ = ("value", "pos")

    def __init__(self, value, pos):
        self.value = np.asarray(value, dtype=float)
        self.pos = pos


def source_text(text: str, pos: nodes.Pos) -> str:
    """The source of a node, one line, comments dropped, shortened with … past NAME_WIDTH.

    Only the two ends of a long span are read, so naming every node of a deep chain stays linear.
    """
    if pos.end - pos.start > 4 * NAME_WIDTH:
        head = _one_line(text[pos.start:pos.start + 2 * NAME_WIDTH])
        tail = _one_line(text[pos.end - 2 * NAME_WIDTH:pos.end])
        half = (NAME_WIDTH - 1) // 2
        return head[:half] + "…" + tail[-half:]
    name = _one_line(text[pos.start:pos.end])
    if len(name) > NAME_WIDTH:
        half = (NAME_WIDTH - 1) // 2
        name = name[:half] + "…" + name[-half:]
    return name


_COMMENT, _SPACES = re.compile(r"#[^\n]*"), re.compile(r"\s+")


def _one_line(text: str) -> str:
    if text.isascii() and text.isprintable() and "#" not in text and "  " not in text:
        return text.strip()  # no comment and no run of spaces (nor any other space, a tab or a newline)
    return _SPACES.sub(" ", _COMMENT.sub("", text)).strip()
