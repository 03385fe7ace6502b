"""A graph's node as a target of the check step: the whole function as a function of that node's
values (a `.grad` file's node, or a local of a hand-derived gate's body, checked as its `d` line's).
The gate call's own target is gatecheck.GateCall; a Python layer's is python/reference.LayerInputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..language.graph import Graph
from ..oracles import numeric, subgradients
from . import verdict
from .pipeline import ComplexStep, Symbolic


class ChainRules:
    """The valid chain rules at a graph's kinks for one upstream seed (subgradients), computed once,
    when a kink row of the graph first fails, and shared by all its nodes."""

    def __init__(self, graph: Graph, values: list, seed: np.ndarray):
        self.graph, self.values, self.seed = graph, values, seed
        self._found: list[tuple[str, Any]] | None = None  # (convention, every node's adjoint)

    def of(self, node_id: int) -> list[tuple[str, np.ndarray]]:
        """[(convention, the node's (out, n) adjoint under it)]."""
        if self._found is None:
            self._found = subgradients.references(lambda side, order: subgradients.chain_rule(
                self.graph, self.values, self.seed, side, order))
        rows = self.seed.shape[0]
        return [(name, adjoints[node_id].reshape(rows, -1)) for name, adjoints in self._found]


@dataclass(frozen=True, kw_only=True)
class GraphNode:
    """One node of a graph (pipeline.CheckTarget). Its backprop is never rerun on its own: a graph's
    rounding is measured for every node at once (`noise`, checker.backprop_noise)."""
    runner: numeric.Runner
    elements: numeric.Target
    backprop: np.ndarray
    chain_rules: ChainRules
    differences: numeric.NumericResult | None = None
    noise: np.ndarray | None = None
    symbolic: Symbolic | None = None
    complex_step: ComplexStep | None = None
    seed: int | np.random.Generator | None = None
    groups: np.ndarray | None = None   # a node is one array: one scale for its row

    def rerun(self, delta: float) -> np.ndarray | None:
        return None

    def references(self) -> list[tuple[str, np.ndarray]]:
        assert isinstance(self.elements.id, int)  # a graph's node id
        return self.chain_rules.of(self.elements.id)

    def explain(self, ev: verdict.Evidence) -> verdict.Evidence:
        return ev  # its chain rules are computed: references() explain its kinks
