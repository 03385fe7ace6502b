"""The circuit as data: nodes in topological order, each a leaf, a constant or a gate call."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

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
    gate: Gate | None = None  # for kind 'gate' (None for the others)
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


def _one_line(text: str) -> str:
    text = re.sub(r"#[^\n]*", "", text)
    return re.sub(r"\s+", " ", text).strip()
