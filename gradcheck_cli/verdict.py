"""The verdict policy as pure functions: arrays of the three oracles in; status, note, culprit out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .settings import DEFAULT_ATOL

SYMBOLIC_RTOL = 1e-8     # backprop against the exact derivative: float rounding only
SAFETY = 4.0             # how many error estimates a finite difference may be off by
UNRELIABLE = 1e-2        # an error estimate above this fraction of the value: the difference can't judge
STATUS_CODES = {0: "pass", 1: "kink", 2: "warn", 3: "fail"}


def rel_error(a, b, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """|a − b| / max(|a|, |b|), elementwise; 0 where both are below `atol`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(all="ignore"):
        err = np.abs(a - b) / np.where(scale > 0, scale, 1.0)
    return np.where(scale < atol, 0.0, err)


@dataclass
class Judgement:
    """The verdict on one node: its status, why, and the numbers shown for its worst element."""
    status: str
    note: str | None
    numeric_error: float
    symbolic_error: float | None
    tolerance: float
    worst_index: tuple | None


def judge(bp, shape, num, sym, rtol: float, atol: float) -> Judgement:
    """Compare backprop `bp` (output.shape + shape) with a NumericResult and a SymbolicResult (or None)."""
    sv = sym.value if sym is not None else None
    if num.method == "projection":
        flat_bp = bp.reshape(bp.shape[: bp.ndim - len(shape)] + (-1,))
        u = num.directions.reshape(num.directions.shape[0], -1)
        a = np.moveaxis(np.tensordot(flat_bp, u, axes=([-1], [1])), -1, 0)  # (P, *out)
        b = num.projected
        sv_cmp = None
    else:
        a, b, sv_cmp = bp, num.value, sv
    scale = np.maximum(np.abs(a), np.abs(b))
    finite = np.isfinite(b)
    with np.errstate(all="ignore"):
        tol = np.maximum(np.maximum(atol, rtol * scale), SAFETY * num.estimate)
        # judged against the row's largest gradient, so exact zeros with rounding noise stay reliable
        row_scale = max(float(np.max(scale[finite], initial=0.0)), atol)
        unreliable = ~finite | (num.truncation > UNRELIABLE * np.maximum(scale, row_scale))
        num_ok = finite & (np.abs(a - b) <= tol) & ~unreliable  # an unreliable difference vouches for nothing
    num_err = rel_error(a, np.where(finite, b, np.inf), atol)
    kink = num.kink
    # On a kink (v itself) any slope between the one-sided differences is a valid subgradient;
    # near one, the function is differentiable at v and the exact derivative decides.
    if num.one_sided is not None:
        lower, upper = num.one_sided
        with np.errstate(all="ignore"):
            subgradient = (a >= lower - tol) & (a <= upper + tol)
        on_kink = num.at_kink
    else:
        subgradient = np.ones(np.shape(a), dtype=bool)
        on_kink = np.ones(np.shape(a), dtype=bool)
    if sv_cmp is not None:
        sym_err = rel_error(bp, sv_cmp, atol)
        sym_ok = np.abs(bp - sv_cmp) <= np.maximum(atol, SYMBOLIC_RTOL * np.maximum(np.abs(bp), np.abs(sv_cmp)))
        at_kink = np.where(sym_ok | (on_kink & subgradient), 1, 3)
        status = np.where(kink, at_kink, np.where(~sym_ok, np.where(num_ok, 2, 3), np.where(~num_ok, 2, 0)))
    else:
        sym_err = None
        at_kink = np.where(subgradient, 1, 3)
        status = np.where(kink, at_kink, np.where(~num_ok, np.where(unreliable, 2, 3), 0))
    worst_flat = int(np.argmax(status.ravel() * 10.0 + np.nan_to_num(num_err.ravel(), nan=9.0) / 10.0)) \
        if status.size else 0
    worst = np.unravel_index(worst_flat, status.shape) if status.ndim else ()
    code = int(status.max()) if status.size else 0
    label = STATUS_CODES[code]
    note = _note(label, sv_cmp is not None, bool(np.asarray(num_ok)[worst]) if status.size else True,
                 num, sym)
    with np.errstate(all="ignore"):
        tol_rel = float((tol / np.where(scale > 0, scale, 1.0)).ravel()[worst_flat]) if status.size else rtol
    return Judgement(
        status=label, note=note,
        numeric_error=float(np.max(num_err)) if num_err.size else 0.0,
        symbolic_error=float(np.max(sym_err)) if sym_err is not None and sym_err.size else None,
        tolerance=max(rtol, min(tol_rel, 1.0)),
        worst_index=tuple(int(i) for i in worst) if np.ndim(status) else None)


def _note(label, have_sym, num_ok, num, sym) -> str | None:
    notes = []
    if label == "fail":
        if have_sym and num_ok:
            notes.append("SymPy disagrees with backprop and finite differences")
        elif have_sym:
            notes.append("backprop disagrees with both finite differences and SymPy")
        else:
            notes.append("backprop disagrees with finite differences")
    elif label == "warn":
        if have_sym and num_ok:
            notes.append("SymPy disagrees with backprop and finite differences (which agree)")
        elif have_sym:
            notes.append("finite difference unreliable here: backprop agrees with SymPy")
        else:
            notes.append("finite difference unreliable here and no exact derivative to decide")
    elif label == "kink":
        notes.append("a max/min/relu/abs changes branch within the step")
    if num.left_domain:
        notes.append("a nudged value left the function's domain")
    if num.method == "projection":
        notes.append("finite differences by random projections (node past the element budget)")
    if sym is not None and sym.note:
        notes.append(sym.note)
    return "; ".join(notes) or None


@dataclass
class Cause:
    """Why a failing node fails: the note, and the (line, col) of the culprit if one is named."""
    note: str
    culprit: tuple | None
    inherited: bool = False  # the node only inherits a failure from downstream


def diagnose(consumers: dict, statuses: dict, gates: dict, backward_errors: dict) -> dict:
    """Point failing nodes at the gate whose backward goes wrong.

    `consumers` maps a node id to the ids of the gates reading it, `statuses` node id to status,
    `gates` gate node id to (name, label, line, col, backward_source, inputs), `backward_errors`
    gate node id to its BackwardError. The cause sits where a failing node feeds a consumer whose
    own row passes: that consumer's backward is wrong (for a user gate, the d line of that input).
    Rows further upstream only inherit the failure, and say so.
    """
    causes = {}
    for nid, status in statuses.items():
        if status != "fail":
            continue
        users = [c for c in consumers.get(nid, ()) if c in statuses]
        good = [c for c in users if statuses[c] != "fail" or c in backward_errors]
        if not good:
            bad = next((c for c in users if statuses[c] == "fail"), None)
            if bad is not None:
                causes[nid] = Cause(f"inherits the failure of '{gates[bad][0]}' downstream", None, True)
            continue
        texts, culprit = [], None
        for c in good:
            name, label, line, col, origin_of, inputs = gates[c]
            where = f"'{name}' ({label}, line {line})"
            if c in backward_errors:
                err = backward_errors[c]
                texts.append(f"the backward of {where} failed: {err.message}"
                             + (f" (line {err.line})" if err.line else ""))
                culprit = culprit or ((err.line, err.col) if err.line else (line, col))
                continue
            slots = [k for k, i in enumerate(inputs) if i == nid]
            origin = [origin_of[k] for k in slots if k < len(origin_of)]
            texts.append(f"the gradient goes wrong in the backward of {where}"
                         + (f": {origin[0][0]}" if origin else ""))
            culprit = culprit or ((origin[0][1], origin[0][2]) if origin else (line, col))
        causes[nid] = Cause("; ".join(texts), culprit)
    return causes
