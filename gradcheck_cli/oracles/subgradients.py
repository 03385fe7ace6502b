"""Valid chain rules at kinks: the backward pass with each kink's local derivative chosen inside that
gate's own subdifferential — its left or its right slope, a tie routed to its first or its last
element, or the registry's own choice (relu′(0) = ½, a tie split evenly).

A backward equal to one of them is correct at the kink (Kakade & Lee, NeurIPS 2018; Bolte & Pauwels,
Math. Programming 2021), even where the whole function's one-sided slopes do not contain it: moving
one weight of a convolution moves many pre-activations across a ReLU's 0 at once. User gates are
differentiated through their forward bodies, never through their d lines, so a wrong d line matches
none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .autodiff import backward, forward
from ..core.errors import GradcheckError

NUDGE = 1e-9   # a kink gate's inputs are moved this far (relative) to take one side's derivative or break a tie

# (name, side, order): side −1/+1 takes every kink's left/right slope, order −1/+1 breaks ties to the
# first/last element (row-major, earlier operands first); (0, 0) is the registry's own choice.
CONVENTIONS = (
    ("the registry's choices at the kinks (relu′(0) = ½, a tie split evenly)", 0, 0),
    ("the left slope at every kink (relu′(0) = 0; a tie to its first element)", -1, -1),
    ("the left slope at every kink (relu′(0) = 0; a tie to its last element)", -1, 1),
    ("the right slope at every kink (relu′(0) = 1; a tie to its first element)", 1, -1),
    ("the right slope at every kink (relu′(0) = 1; a tie to its last element)", 1, 1),
)


def nudged(args: list, side: int, order: int) -> list:
    """The operands moved by NUDGE·max(1, |v|)·(side + ½·order·rank), rank in [0, 1) by position:
    every element is off its kink on one side, and tied elements are no longer tied."""
    moved = []
    total = sum(max(1, np.size(a)) for a in args)
    start = 0
    for a in args:
        a = np.asarray(a, dtype=float)
        rank = (start + np.arange(a.size, dtype=float).reshape(a.shape)) / total
        moved.append(a + NUDGE * np.maximum(1.0, np.abs(a)) * (side + 0.5 * order * rank))
        start += max(1, a.size)
    return moved


def local_vjp(node, g, args: list, out, side: int, order: int) -> list:
    """One gate's VJP under one convention; a composite's through its forward body."""
    composite = node.composite
    if composite is not None:
        leaves = [n.id for n in composite.body.leaves()]
        adjoints = chain_rule(composite.body, forward(composite.body, dict(zip(leaves, args))), g, side, order)
        return [adjoints[i] for i in leaves]
    if node.gate.has_kinks and side:
        args = nudged(args, side, order)
        out = np.asarray(node.gate.forward(args, node.attrs), dtype=float)
    return node.gate.vjp(g, args, out, node.attrs)


def chain_rule(graph, values: list, seed: np.ndarray, side: int, order: int) -> list:
    """Every node's adjoint under one convention (as autodiff.backward returns them)."""
    return backward(graph, values, {}, seed,
                    local=lambda node, g, args, out: local_vjp(node, g, args, out, side, order))


Computed = TypeVar("Computed")


def references(compute: Callable[[int, int], Computed]) -> list[tuple[str, Computed]]:
    """[(convention, compute(side, order))] for every convention that can be computed at this point."""
    found: list[tuple[str, Computed]] = []
    for name, side, order in CONVENTIONS:
        try:
            with np.errstate(all="ignore"):
                found.append((name, compute(side, order)))
        except (GradcheckError, ValueError, FloatingPointError):
            continue  # a body undefined at this point has no chain rule to offer
    return found
