"""The verdict policy as pure functions: arrays of the three oracles in; status, note, culprit out.

Per element (a gradient or Jacobian entry), with backprop a, finite difference b (estimate e of its
error), SymPy's exact value s (magnitude m of the terms summed into it) and backprop's own noise z:

- the element is judged at the scale n = max(|a|, |b|, ROW_FLOOR·(the row's largest)), so exact
  zeros next to large entries are judged at the row's precision, and a row of tiny gradients at its own;
- tolerance t = max(atol, rtol·n, NOISE·z);
- the finite difference *agrees* when |a − b| ≤ t and SAFETY·e ≤ t (it could have seen an error of t),
  *disagrees* when |a − b| > max(t, SAFETY·e) and it is reliable, and is *undecided* otherwise;
- SymPy agrees when |a − s| ≤ max(atol, SYMBOLIC_RTOL·max(|a|, |s|), NOISE·z, SYM_ROUNDING·ε·m);
- against an exact column (the complex step), backprop rounds at SYM_ROUNDING·ε·m at least, whatever
  its measured noise says: that stands beside SAFETY·e above (an error within it never disagrees).

Status: backprop that disagrees with SymPy fails; with SymPy agreeing, the row passes unless the
difference is unreliable or disagrees (`warn`); without SymPy, the difference decides (undecided
is `warn`). Where a
branch switches within the step the element is a `kink` if backprop is defensible there — SymPy's
value, or (on the kink itself) a slope between the one-sided differences, with tied elements'
gradients summing to the slope of moving them together — and fails otherwise. So a passing row
never shows an error above its tolerance, and backprop that disagrees with SymPy never passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.settings import DEFAULT_ATOL, DEFAULT_RTOL
from ..core.status import Status
from . import ties
from ..gates.tensors import fmt_note
from ..oracles.numeric import NumericResult
from ..core.tolerances import EPS, ROW_FLOOR, SAFETY, TERMS_ROUNDING

SYMBOLIC_RTOL = 1e-8     # backprop against the exact derivative: float rounding only
EXACT_RTOL = 1e-9        # backprop against a numeric column exact to rounding (the complex step): no step's error
EXACT_ATOL = 1e-80       # ... and below this it is 0: its step (1e-100) times the curvature leaks into it
UNRELIABLE = 1e-2        # truncation above this fraction of the row's scale: the difference can't judge
NOISE = 16.0             # backprop's measured noise, times this, is rounding (not a bug)
SYM_ROUNDING = TERMS_ROUNDING  # an exact derivative's float sum may be off by this × ε × the magnitude of its terms


def finite_or(x, fill: float) -> np.ndarray:
    """`x` with every nan and ±inf replaced by `fill` (np.nan_to_num is five times slower on small rows)."""
    x = np.asarray(x, dtype=float)
    return np.where(np.isfinite(x), x, fill)


def rel_error(a, b, floor: float = 0.0) -> np.ndarray:
    """|a − b| / max(|a|, |b|, floor), elementwise; 0 where both are 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    with np.errstate(all="ignore"):
        err = np.abs(a - b) / np.where(scale > 0, scale, 1.0)
    return np.where((scale == 0) & (a == b), 0.0, err)


@dataclass
class Judgement:
    """The verdict on one row: its status, why, and the numbers shown for its worst element."""
    status: Status
    note: str | None
    numeric_error: float | None
    symbolic_error: float | None
    tolerance: float
    worst: tuple               # index into the flat (out, n) arrays (or (out, P) for projections)
    codes: np.ndarray          # per element: 0 pass, 1 kink, 2 warn, 3 fail
    numeric_rounding: float | None = None   # the rounding level of numeric_error (relative, as it is):
    symbolic_rounding: float | None = None  # a figure at or below it is rounding, not a measured error


def _projected(bp, noise, num, sym, mag):
    """Everything in the projected space of a projection result: (out, P)."""
    d = num.directions.astype(float).T  # (n, P): the ±1 directions
    a = bp @ d
    b = num.projected.T
    z = np.abs(noise) @ np.abs(d) if np.any(noise) else np.zeros_like(a)
    sv = None if sym is None else sym @ d
    m = None if mag is None else np.abs(mag) @ np.abs(d)
    kink = np.broadcast_to(num.kink[None, :], a.shape)
    return a, b, num.estimate.T, num.truncation.T, z, sv, m, kink


@dataclass
class Evidence:
    """Per-element comparisons of one row, before they are summed up into a Judgement."""
    codes: np.ndarray          # 0 pass, 1 kink, 2 warn, 3 fail
    excess: np.ndarray         # |a − b| / tolerance (or against SymPy, whichever is worse)
    num_rel: np.ndarray        # |a − b| / n: the shown numeric error
    tol_rel: np.ndarray        # t / n: the shown tolerance
    sym_rel: np.ndarray | None
    context: dict              # boolean arrays for the notes
    a: np.ndarray
    num: NumericResult
    have_sym: bool
    groups: dict[int, ties.Tie]  # each tied element's tie
    noise: np.ndarray          # backprop's own noise z, in the space of `a`
    atol: float | np.ndarray   # per element where some are exact (the complex step's)
    convention: str | None = None  # why its kinks are valid (by_chain_rule, per_output.explain)
    slack: np.ndarray | None = None     # how far `excess` may move by rounding alone (another CPU or BLAS kernel)
    num_round: np.ndarray | None = None  # the rounding level of num_rel, relative as it is
    sym_round: np.ndarray | None = None  # ... and of sym_rel


def evidence(bp: np.ndarray, num: NumericResult, noise: np.ndarray | None = None, sym: np.ndarray | None = None,
             mag: np.ndarray | None = None, rtol: float | np.ndarray = DEFAULT_RTOL,
             atol: float | np.ndarray = DEFAULT_ATOL, *, groups: np.ndarray | None = None) -> Evidence:
    """Compare one row element by element. `bp`, `noise`, `sym`, `mag` are flat (out, n) arrays;
    `num` a numeric.NumericResult for the same n elements (exhaustive or projection); `groups` the
    input each element belongs to, where the row joins several (each judged at its own scale)."""
    bp = np.asarray(bp, dtype=float)
    noise = np.zeros_like(bp) if noise is None else finite_or(noise, 0.0)
    projection = num.method == "projection"
    exact = np.asarray(num.exact, dtype=bool)  # elements from the complex step (all, or those off a kink)
    if exact.any():  # the complex step: its tolerance is rounding, not a step's truncation
        rtol, atol = np.where(exact, min(rtol, EXACT_RTOL), rtol), np.where(exact, max(atol, EXACT_ATOL), atol)
    a, b, est, trunc, z, sv, m, kink, at = _aligned(bp, noise, num, sym, mag, projection)
    with np.errstate(all="ignore"):
        finite = np.isfinite(b)
        # the scale an element is judged at: backprop's and the difference's, or, beside a kink the small step
        # missed, that step's derivative (the difference across a jump in value, J/2h, is no scale of f′)
        scale_b = np.where(finite, np.abs(b), 0.0)
        beside = np.zeros(np.shape(a), dtype=bool)
        near = np.zeros(np.shape(a))
        if not projection and num.near is not None:
            beside = np.isfinite(num.near) & ~np.asarray(at, dtype=bool)
            near = np.where(beside, num.near, 0.0)
            scale_b = np.where(beside, np.abs(near), scale_b)
        s = np.maximum(np.abs(a), scale_b)
        row_scale = _row_scale(s, sv, None if projection else groups)
        n = np.maximum(s, ROW_FLOOR * row_scale)
        # Where a perturbation crosses a kink, the rerun that measures backprop's rounding (every value
        # nudged by 4 ulps) may cross it too — a pre-activation at exactly 0 nudged to 1e-17 flips its
        # branch: that measured a branch, not rounding.
        z = np.where(kink, 0.0, z)
        tol = np.maximum(np.maximum(atol, rtol * n), NOISE * z)
        # Against an exact column, backprop rounds at ε of the terms it sums (`m`) even where the rerun that
        # measures its noise rounds a cancellation of equal terms alike: the least error it can resolve.
        terms = np.where(exact, SYM_ROUNDING * EPS * m, 0.0) if exact.any() and m is not None else 0.0
        resolves = np.maximum(SAFETY * est, terms)
        diff = np.where(finite, np.abs(a - b), np.inf)
        unreliable = ~finite | (trunc > UNRELIABLE * np.maximum(s, row_scale))
        agree = ~unreliable & (diff <= tol) & (resolves <= tol)
        disagree = ~unreliable & (diff > np.maximum(tol, resolves))
        versus = _against_sympy(a, sv, m, z, atol, row_scale) if sv is not None else None
        sym_ok = versus.ok if versus is not None else None
        within, resolved = _between_slopes(a, tol, at, num, projection)
        group_ok, group_detail = (np.ones(a.shape, dtype=bool), {}) if projection else ties.of_row(a, tol, est, num)
        codes, confirmed = _codes(a, kink=kink, on_kink=at & within & group_ok, at=at, within=within, agree=agree,
                                  disagree=disagree, unreliable=unreliable, sym_ok=sym_ok, exact=exact)
        if confirmed is not None:  # SymPy confirms: the shown tolerance is what the difference could resolve
            tol = np.where(confirmed & ~agree, np.maximum(tol, resolves), tol)
        # beside a kink the error shown is against the small step's derivative (which decides where it resolves
        # the tolerance): the difference across the kink is no estimate of f′ at the point
        diff = np.where(beside, np.abs(a - near), diff)
        # The rounding of each comparison: what another CPU or BLAS kernel may change in |a − b| (the
        # difference's own rounding, backprop's measured noise, float64 at the elements' scale).
        rounding = np.maximum(rounding_level(a, b, z, est, trunc), terms)
        excess, slack = _ratio(diff, tol), _ratio(rounding, tol)
        if versus is not None:
            excess, slack = np.maximum(excess, versus.excess), np.maximum(slack, versus.slack)
        per_n = np.where(n > 0, n, 1.0)
        num_rel, tol_rel, num_round = diff / per_n, tol / per_n, rounding / per_n
    context = dict(agree=agree, unreliable=unreliable, kink=np.asarray(kink), within=within, sym_ok=sym_ok,
                   near=resolved, fine=diff <= DEFAULT_RTOL * n,  # an error finite differences cannot see
                   exact=np.broadcast_to(exact, np.shape(a)))
    return Evidence(codes, excess, num_rel, tol_rel, versus.rel if versus is not None else None, context, a, num,
                    versus is not None, group_detail, z, atol, slack=slack, num_round=num_round,
                    sym_round=versus.round_rel if versus is not None else None)


def columns(ev: Evidence, start: int, end: int, num: NumericResult) -> Evidence:
    """The evidence of the elements start:end of a row that joined several targets' rows side by side
    (their ties none, each at its own scale), as that target's own `evidence` gives it: `num` its differences."""
    part = slice(start, end)

    def cut(x):
        return None if x is None else x[:, part]
    atol = ev.atol[..., part] if isinstance(ev.atol, np.ndarray) and ev.atol.ndim else ev.atol
    return Evidence(cut(ev.codes), cut(ev.excess), cut(ev.num_rel), cut(ev.tol_rel), cut(ev.sym_rel),
                    {key: cut(v) for key, v in ev.context.items()}, cut(ev.a), num, ev.have_sym, {}, cut(ev.noise),
                    atol, convention=ev.convention, slack=cut(ev.slack), num_round=cut(ev.num_round),
                    sym_round=cut(ev.sym_round))


def _codes(a, *, kink, on_kink, at, within, agree, disagree, unreliable, sym_ok, exact) -> tuple:
    """(each element's status code, and where SymPy confirms an element or None without SymPy)."""
    confirmed = None
    if sym_ok is not None:
        defensible = sym_ok | on_kink
        # SymPy confirms; a difference that merely cannot resolve the tolerance does not contradict it
        confirmed = ~disagree & ~unreliable
        codes = np.where(kink, np.where(defensible, 1, 3), np.where(~sym_ok, 3, np.where(confirmed, 0, 2)))
    else:
        defensible = np.where(at, on_kink, within)
        codes = np.where(kink, np.where(defensible, 1, 3), np.where(agree, 0, np.where(disagree, 3, 2)))
    if exact.any():  # an exact column that disagrees is a bug, whatever SymPy's coarser tolerance says
        codes = np.where(exact & ~np.asarray(kink) & disagree, 3, codes)
    # No gradient exists to check where backprop's is infinite or nan (sqrt at 0): never a pass,
    # so a CI job cannot go green on a point where nothing was verified.
    return np.where(np.isfinite(a), codes, 3), confirmed


def _row_scale(s: np.ndarray, sv: np.ndarray | None, groups: np.ndarray | None) -> float | np.ndarray:
    """The largest finite magnitude of the row (of backprop, the differences and SymPy), or, with
    `groups`, of each element's input: a float, or one value per element."""
    parts = [np.where(np.isfinite(s), s, 0.0)] + ([np.where(np.isfinite(sv), np.abs(sv), 0.0)] if sv is not None else [])
    if groups is None:
        return max(float(np.max(p, initial=0.0)) for p in parts)
    column = np.max([np.max(np.reshape(p, (-1, np.shape(p)[-1])), axis=0) for p in parts], axis=0)
    per_group = np.zeros(int(np.max(groups, initial=0)) + 1)
    np.maximum.at(per_group, groups, column)
    return per_group[groups]


@dataclass(frozen=True, kw_only=True)
class _SymPySide:
    """Backprop against SymPy's exact values, per element."""
    ok: np.ndarray          # within the symbolic tolerance
    excess: np.ndarray      # |a − s| / that tolerance
    slack: np.ndarray       # how far `excess` may move by rounding alone
    rel: np.ndarray         # the shown relative error
    round_rel: np.ndarray   # its rounding level, relative as it is


def _against_sympy(a, sv, m, z, atol, row_scale) -> _SymPySide:
    with np.errstate(all="ignore"):
        magnitude = m if m is not None else 0.0 * a
        tol = np.maximum.reduce([np.full_like(a, atol), SYMBOLIC_RTOL * np.maximum(np.abs(a), np.abs(sv)),
                                 NOISE * z, SYM_ROUNDING * EPS * magnitude])
        diff = np.abs(a - sv)
        rounding = np.maximum(NOISE * z, SYM_ROUNDING * EPS * np.maximum(np.maximum(np.abs(a), np.abs(sv)), magnitude))
        scale = np.maximum(np.maximum(np.abs(a), np.abs(sv)), ROW_FLOOR * row_scale)
        return _SymPySide(ok=diff <= tol, excess=_ratio(diff, tol), slack=_ratio(rounding, tol),
                          rel=rel_error(a, sv, ROW_FLOOR * row_scale),
                          round_rel=rounding / np.where(scale > 0, scale, 1.0))


def _aligned(bp, noise, num, sym, mag, projection: bool) -> tuple:
    """(a, b, estimate, truncation, noise, SymPy, magnitude, kink, on the kink) in the space the row is
    compared in: the elements, or the random directions of a projection."""
    if projection:
        a, b, est, trunc, z, sv, m, kink = _projected(bp, noise, num, sym, mag)
        return a, b, est, trunc, z, sv, m, kink, np.zeros_like(kink)
    kink = np.broadcast_to(num.kink[None, :], bp.shape)
    at = np.broadcast_to(num.at_kink[None, :], bp.shape)
    return bp, num.value, num.estimate, num.truncation, noise, sym, mag, kink, at


def rounding_level(a, b, z, est, trunc) -> np.ndarray:
    """How much |a − b| may change by rounding alone, per element: the difference's rounding (its
    estimate less its truncation, SAFETY times), backprop's measured noise (NOISE times) and float64's
    rounding at the elements' own scale. Two figures closer than this are equal as far as the machine
    can tell, and an error below it is rounding, not a measured error."""
    with np.errstate(all="ignore"):
        own = np.maximum(np.asarray(est, dtype=float) - np.asarray(trunc, dtype=float), 0.0)
        scale = np.maximum(np.abs(a), np.where(np.isfinite(b), np.abs(b), 0.0))
        return finite_or(SAFETY * own + NOISE * np.asarray(z, dtype=float) + SYM_ROUNDING * EPS * scale, 0.0)


def _between_slopes(a, tol, at, num, projection: bool) -> tuple:
    """(within, resolved): backprop between the one-sided slopes; and, near a kink but not on it, where
    the small step that does not reach the kink resolves the tolerance (the function is smooth at v
    there), equal to that step's derivative instead — a bug beside a kink fails."""
    if projection:
        return np.ones(a.shape, dtype=bool), np.zeros(a.shape, dtype=bool)
    within = (a >= num.lower - tol) & (a <= num.upper + tol)
    if num.near is None:
        return within, np.zeros(a.shape, dtype=bool)
    resolved = ~at & np.isfinite(num.near) & (SAFETY * num.near_error <= tol)
    return np.where(resolved, np.abs(a - num.near) <= tol, within), resolved


def by_chain_rule(ev: Evidence, references: list) -> Evidence:
    """Failing elements at a kink where backprop equals a valid chain rule become kinks: `references`
    are (convention, (out, n) values); the first that matches every such element (as SymPy is
    matched) is named. Elements away from kinks are never touched."""
    failing = _explainable(ev)
    if not failing.any():
        return ev
    for name, ref in references:
        ref = np.asarray(ref, dtype=float).reshape(ev.codes.shape[0], -1)
        if ev.num.method == "projection":
            assert ev.num.directions is not None  # a projection's
            ref = ref @ ev.num.directions.astype(float).T
        with np.errstate(all="ignore"):
            tol = np.maximum.reduce([np.full_like(ev.a, ev.atol), SYMBOLIC_RTOL * np.maximum(np.abs(ev.a), np.abs(ref)),
                                     NOISE * ev.noise])
            match = np.abs(ev.a - ref) <= tol
        if np.all(match[failing]):
            return explained(ev, f"backprop is the chain rule with {name}: a valid choice at every kink")
    return ev


def _explainable(ev: Evidence) -> np.ndarray:
    """Failing elements at a kink that a valid choice there may explain: not those beside a kink whose
    small step decided them (the function is smooth at the point: its derivative there is the only one)."""
    return (ev.codes == 3) & ev.context["kink"] & np.isfinite(ev.a) & ~ev.context["near"]


def explained(ev: Evidence, note: str, code: int = 1) -> Evidence:
    """`ev` with its failing elements at a kink marked as kinks (or `code`), for the reason `note`."""
    failing = _explainable(ev)
    ev.codes = np.where(failing, code, ev.codes)
    ev.excess = np.where(failing, 0.0, ev.excess)
    if ev.slack is not None:
        ev.slack = np.where(failing, 0.0, ev.slack)
    ev.convention = note
    return ev


KinkNote = Callable[[Evidence, tuple], str]  # (the row's evidence, its worst element) -> why it is a kink


def summarize(ev: Evidence, columns=None, *, kink_note: KinkNote | None = None) -> Judgement:
    """The Judgement of a row, or of some of its elements (`columns`: indices along n)."""
    cols = None if columns is None else np.asarray(columns)
    pick = slice(None) if cols is None else cols  # every column: the row's own arrays, read as they are
    codes, excess = ev.codes[:, pick], ev.excess[:, pick]
    if not codes.size:
        return Judgement(Status.PASS, None, 0.0, None, 0.0, (0, 0), codes)
    flat = codes.ravel()
    slack = ev.slack[:, pick] if ev.slack is not None else np.zeros_like(excess)
    row, col = divmod(worst_element(flat, excess.ravel(), slack.ravel()), codes.shape[1])
    w = (int(row), int(col if cols is None else cols[col]))
    label = Status.of_code(int(flat.max()))
    num_err = float(ev.num_rel[w])
    num_round = float(ev.num_round[w]) if ev.num_round is not None else None
    sym_err = sym_round = None
    if ev.sym_rel is not None and ev.sym_round is not None:  # (set together)
        sym_err, sym_round = _largest_measured(ev.sym_rel[:, pick], ev.sym_round[:, pick])
    c: dict[str, Any] = {key: (bool(v[w]) if v is not None else None) for key, v in ev.context.items()}
    c["group"] = ev.groups.get(w[1])
    note = _note(label, c, ev.num, ev.have_sym, ev.a, w, (lambda: kink_note(ev, w)) if kink_note else None)
    if label in (Status.KINK, Status.WARN) and ev.convention and ev.codes[w] == label.code:
        note = ev.convention

    return Judgement(label, note, num_err if np.isfinite(num_err) else None, sym_err,
                     float(ev.tol_rel[w]), w, codes, num_round, sym_round)


def worst_element(codes, excess, slack) -> int:
    """The flat index of a row's worst element, the same on any CPU and BLAS kernel: of the elements
    with the worst status, those whose excess could be the largest within its rounding (`slack`) are
    tied, and the tie goes to the lowest index. Rounding never decides which element a report shows."""
    if codes.size == 1:  # one element is its own worst (where its bounds compare, as below they do)
        e, s = float(excess[0]), float(slack[0])
        if e + s >= max(e - s, 0.0):
            return 0
    worst = codes == codes.max()
    with np.errstate(all="ignore"):
        lower = np.where(worst, np.maximum(excess - slack, 0.0), -1.0)
        upper = np.where(worst, excess + slack, -1.0)
    return int(np.flatnonzero(worst & (upper >= lower.max()))[0])


def _largest_measured(rel, rounding) -> tuple:
    """(the largest relative error, its rounding level): of the elements whose error is above their
    rounding when there are any (rounding-level elements elsewhere cannot outrank a measured error)."""
    measured = rel > rounding
    if measured.any():
        k = int(np.flatnonzero(measured.ravel() & (rel.ravel() == rel[measured].max()))[0])
        return float(rel.ravel()[k]), float(rounding.ravel()[k])
    return float(np.max(rel, initial=0.0)), float(np.max(rounding, initial=0.0))


def judge(bp, num, noise=None, sym=None, mag=None, rtol: float = DEFAULT_RTOL,
          atol: float = DEFAULT_ATOL) -> Judgement:
    """The verdict on one row (see `evidence` for the arguments)."""
    return summarize(evidence(bp, num, noise, sym, mag, rtol, atol))


def _ratio(diff, tol) -> np.ndarray:
    """diff / tol, how far past its tolerance an element is: 0 where they agree exactly (0 = 0 is no
    excess, even at a zero tolerance), 1e300 where a difference meets no tolerance at all."""
    with np.errstate(all="ignore"):
        return np.where(diff == 0, 0.0, finite_or(diff / tol, 1e300))


def _note(label, c, numres, have_sym, a, w, kink=None) -> str | None:
    """The row's note, built from its worst element's comparison; `kink()` says why a kink is one,
    where the caller knows more than that a branch switched (the gate, the slopes)."""
    num = numres
    notes = []
    if label == "fail" and np.isinf(a[w]):
        return ("backprop's gradient is infinite here: the function is not differentiable at this point, "
                "so nothing can be checked; check it at another point")
    if label == "fail":
        if c["kink"]:
            notes.append(_kink_failure(c, numres, a, w))
        elif c["exact"] and not c["agree"]:
            both = "both the complex-step derivative and SymPy" if have_sym and c["sym_ok"] is False else \
                "the complex-step derivative"
            fine = " (by less than any finite difference resolves: the complex step is exact to rounding)" \
                if c["fine"] else ""
            notes.append(f"backprop disagrees with {both}{fine}")
        elif have_sym and c["sym_ok"] is False and c["agree"]:
            notes.append("backprop disagrees with SymPy's exact derivative (finite differences are too coarse "
                         "here to see it)")
        elif have_sym:
            notes.append("backprop disagrees with both finite differences and SymPy")
        else:
            notes.append("backprop disagrees with finite differences")
    elif label == "warn":
        if have_sym and not c["unreliable"] and not c["agree"]:
            notes.append("finite differences cannot confirm backprop here; backprop agrees with SymPy")
        elif have_sym:
            notes.append("finite difference unreliable here: backprop agrees with SymPy")
        elif c["unreliable"]:
            notes.append("finite difference unreliable here and no exact derivative to decide")
        elif c["exact"]:
            notes.append("the complex step cannot resolve the tolerance here: its rounding (ε of the function's own "
                         "scale) is larger")
        else:
            notes.append("finite differences cannot resolve the tolerance here and no exact derivative to decide")
    elif label == "kink":
        notes.append(kink() if kink is not None else KINK_NOTE)
    if num.left_domain:
        notes.append("a nudged value left the function's domain")
    if num.method == "projection":
        notes.append("finite differences by random projections (node past the element budget)")
    return "; ".join(notes) or None


def _kink_failure(c, numres, a, w) -> str:
    """Why a kink element fails: a tie's sum, the derivative beside the kink, or the one-sided slopes."""
    if c["group"] is not None and not c["group"].holds[w[0]]:
        return c["group"].note(w[0])
    if c["near"] and not c["within"]:
        return (f"beside a kink but not on it (a step of 10⁻⁴·h does not reach it), the function is "
                f"smooth here: its derivative is {fmt_note(numres.near[w])}, not backprop's {fmt_note(a[w])}")
    if not c["within"] and numres.lower is not None:
        return (f"at a kink, backprop ({fmt_note(a[w])}) is outside the one-sided slopes "
                f"[{fmt_note(numres.lower[w])}, {fmt_note(numres.upper[w])}]")
    return "near a kink, backprop disagrees with SymPy's exact derivative"


KINK_NOTE = "a max/min/relu/abs changes branch within the step"  # the checker names the gate where it can


def slopes_kink_note(ev: Evidence, w: tuple) -> str:
    """What the forward's slopes say at a kink element (for code whose branches cannot be seen): the
    one-sided slopes, or a tie's joint slope."""
    tie = ev.groups.get(w[1])
    if tie is not None:
        return tie.note(w[0])
    if ev.num.lower is None or ev.num.upper is None:  # projections have no one-sided slopes
        return KINK_NOTE
    lo, hi = ev.num.lower[w], ev.num.upper[w]
    if ev.context["near"][w] and ev.num.near is not None:  # decided by the small step, not by the slopes
        return (f"the forward's slope changes within the step (one-sided slopes {fmt_note(lo)} and {fmt_note(hi)}), "
                f"but not at the point: a step of 10⁻⁴·h does not reach the change, and backprop's {fmt_note(ev.a[w])} "
                f"is the derivative there ({fmt_note(ev.num.near[w])})")
    return (f"the forward's slope changes within the step (one-sided slopes {fmt_note(lo)} and {fmt_note(hi)}); "
            f"backprop's {fmt_note(ev.a[w])} is between them: a kink, not a bug")
