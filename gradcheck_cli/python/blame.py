"""What a Python layer's failing gradients say about their slip, beyond "disagrees": gradients that are
each right but returned in another input's place (blamed on the `return` line), and a backward not
scaled by the upstream gradient (the same gradient whatever the upstream, or a nonzero one for a
zero upstream: a vector-Jacobian product is linear in it). One piece for every Python target —
numpy layers, torch Functions, JAX rules — judged against the right gradients the check already
has: the exact reference where there is one, else each element's finite difference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pysource import USER_ERRORS, parameter_names, return_line, unused_parameters
from .usercode import Layer, call_backward, call_on_copies

CLOSE = 1e-4  # relative: two gradients this close are the same one (a diagnosis, not the verdict)
NOT_UPSTREAM = {"ctx", "self", "cache", "res", "residuals", "saved"}  # a backward's parameters that are not its upstream


@dataclass(frozen=True, kw_only=True)
class Finding:
    """Why one input's gradient fails, and where, when that is not the line that assigns it."""
    note: str
    at: tuple | None = None  # (line, col) to blame instead


def diagnose(layer: Layer, args: list, upstream: np.ndarray, grads: list, right: list,
             failing: set) -> dict[str, Finding]:
    """Per failing input (by name), what its numbers show: `grads` are the backward's at `upstream`,
    `right` the right ones (or None where unknown); inputs in `failing` only."""
    if not failing:
        return {}
    found = _swapped(layer, grads, right, failing)
    if found:
        return found
    return _unscaled(layer, args, upstream, grads, failing)


def _close(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return float(np.max(np.abs(a - b), initial=0.0)) <= CLOSE * scale


def _swapped(layer: Layer, grads: list, right: list, failing: set) -> dict[str, Finding]:
    """Every failing gradient is the right gradient of another failing input of its shape (and of
    that one alone), the failing inputs trading places: the order the backward returns them in."""
    names = layer.names
    moved = {}
    for i, name in enumerate(names):
        if name not in failing:
            continue
        if right[i] is None:
            return {}
        hits = [j for j, r in enumerate(right) if j != i and names[j] in failing and r is not None
                and np.any(r) and _close(grads[i], r) and not _close(right[i], r)]
        if len(hits) != 1:
            return {}
        moved[i] = hits[0]
    if sorted(moved.values()) != sorted(moved):
        return {}
    at = return_line(layer.code, layer.first)
    return {names[i]: Finding(note=f"the gradients are returned in the wrong order (d{names[j]} where d{names[i]} goes)",
                              at=at) for i, j in moved.items()}


def _unscaled(layer: Layer, args: list, upstream: np.ndarray, grads: list, failing: set) -> dict[str, Finding]:
    """The failing gradients the upstream does not scale: the backward called again with a zero
    upstream gives them nonzero (a vector-Jacobian product gives 0); the same as with the upstream
    when it is not used at all, and then, with a reference, said to be the all-ones upstream's."""
    if layer.first:  # a loss's gradient: no upstream of its own
        return {}
    zero, failed = call_backward(layer, np.zeros_like(upstream), args)
    ones = _reference(layer, np.ones_like(upstream), args)
    name = _upstream_name(layer)
    found = {}
    for i, input_name in enumerate(layer.names):
        if input_name not in failing or input_name in failed:
            continue
        z = np.asarray(zero[i], dtype=float)
        scale = float(np.max(np.abs(grads[i]), initial=0.0))
        if not np.all(np.isfinite(z)) or float(np.max(np.abs(z), initial=0.0)) <= 1e-12 * scale:
            continue
        if _close(z, grads[i]):
            note = (f"not scaled by the upstream gradient: d{input_name} is the same whatever the upstream "
                    f"({name} is not {'used' if name in unused_parameters(layer.code) else 'multiplied into it'})")
            if ones is not None and _close(z, ones[i]):
                note += "; it is the gradient for an all-ones upstream"
        else:
            note = (f"not scaled by the upstream gradient: for a zero upstream d{input_name} is not zero "
                    f"({name} is not multiplied in)")
        found[input_name] = Finding(note=note)
    return found


def _reference(layer: Layer, upstream: np.ndarray, args: list) -> list | None:
    if layer.reference is None:
        return None
    try:
        grads = call_on_copies(layer.reference, upstream, args)
    except USER_ERRORS:  # noqa: BLE001 - no reference: the diagnosis says less
        return None
    return None if grads is None or any(g is None for g in grads) else grads


def _upstream_name(layer: Layer) -> str:
    """The backward's upstream parameter (grad_output, dout, g), or a description when it is not one."""
    params = [p for p in parameter_names(layer.code) if p not in NOT_UPSTREAM and p not in layer.names]
    unused = [p for p in params if p in unused_parameters(layer.code)]
    if len(params) == 1 or len(unused) == 1:
        return (unused or params)[0]
    return "the upstream gradient"
