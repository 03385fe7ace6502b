"""A forward-mode rule checked in forward mode: a torch Function's `jvp` (torch_jvp.py) or a JAX
`custom_jvp` (jax.py), its Jacobian-vector product along a few seeded random tangents against the
directional derivative of the forward along the same tangent. The framework supplies the two calls
(`Directional`); this module holds what both share, on float64 numpy arrays:

- TANGENTS tangents per differentiated input, each nonzero on that input alone (so a failing row
  names the input, and its culprit is the line of the rule that carries that input's tangent), drawn
  from the FORWARD_TANGENTS stream keyed by the input and the tangent: the same on every run;
- the reference along a tangent t: centered differences (f(x + h·t) − f(x − h·t)) / 2h at h and h/2,
  Richardson-extrapolated, their gap the error estimate; and the complex step Im f(x + iH·t) / H where
  the forward is complex-safe (it agrees with the differences within AGREE of their estimate, its
  real part is the forward's): then it is the reference, exact to rounding; where the one-sided
  slopes disagree (a kink between the steps) the differences are unreliable and nothing is judged;
- an error relative to the output's largest entry (CS231n's relative error, taken over the whole
  output, so a near-zero element is not judged alone), failing past `rtol` and past SAFETY times the
  differences' own estimate; a reference the differences cannot give (their two steps disagree: a
  kink along t) is a warning, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..core.report import GateRow
from ..core.settings import Settings
from ..core.status import Status
from ..core.streams import Stream, stream
from ..core.tolerances import EPS, SAFETY
from ..oracles.complexstep import AGREE, H
from ..oracles.numeric import NARROW, NARROW_LEVELS, TIE
from .pysource import USER_ERRORS, exception_text

TANGENTS = 3          # random tangents per differentiated input
LABEL = "forward mode (jvp)"  # the rows' gate label, in every face
UNRELIABLE = 1e-2     # the differences' estimate past this fraction of the output's largest: a kink along t
TINY = 1e-300


class Directional(Protocol):
    """What a framework supplies: float64 numpy arrays in (one per differentiated input), float64 (or
    complex128) numpy arrays out, one per floating-point output."""

    def forward(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The function's outputs at `arrays` (complex arrays: its outputs in complex, or raises)."""

    def jvp(self, arrays: list[np.ndarray], tangents: list[np.ndarray]) -> list[np.ndarray | None]:
        """The rule's output tangents at `arrays` along `tangents` (None: the rule gave none)."""


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Where the rule under test is written: its name, its file, its first line, and per input the
    line that carries that input's tangent."""
    name: str
    file: str | None          # None: the report's own file
    line: int
    lines: dict               # input name -> (line, col)


@dataclass(frozen=True, kw_only=True)
class Along:
    """One tangent's comparison."""
    tangent: int               # 1-based
    error: float               # relative to the output's largest entry
    tolerance: float
    reliable: bool             # the reference along it is trustworthy
    method: str                # "the complex step" or "finite differences"
    said: str                  # the worst element, in words, when it fails
    raised: str | None = None  # what the rule raised


def rows(target: Directional, arrays: list[np.ndarray], names: list[str], rule: Rule,
         settings: Settings) -> list[GateRow]:
    """One GateRow per differentiated input: its rule checked along TANGENTS tangents on it alone."""
    out = []
    for i, name in enumerate(names):
        found = [along(target, arrays, _tangent(arrays, i, k, settings.seed), k + 1, settings) for k in range(TANGENTS)]
        out.append(_row(found, name, rule, settings))
    return out


def _tangent(arrays: list[np.ndarray], i: int, k: int, seed: int) -> list[np.ndarray]:
    rng = stream(seed, Stream.FORWARD_TANGENTS, i, k)
    return [rng.standard_normal(np.shape(a)) if j == i else np.zeros(np.shape(a)) for j, a in enumerate(arrays)]


def along(target: Directional, arrays: list[np.ndarray], t: list[np.ndarray], k: int, settings: Settings) -> Along:
    """The rule's JVP along `t` against the reference along it."""
    try:
        got = target.jvp(arrays, t)
    except USER_ERRORS as exc:  # noqa: BLE001 - the user's rule may raise anything
        return Along(tangent=k, error=float("inf"), tolerance=settings.rtol, reliable=True, method="",
                     said="", raised=exception_text(exc))
    try:
        ref, estimate, method = reference(target, arrays, t, settings)
    except USER_ERRORS:  # noqa: BLE001 - the forward raised off the point: the main check says so
        return Along(tangent=k, error=0.0, tolerance=settings.rtol, reliable=False, method="finite differences",
                     said="")
    got = [np.zeros(np.shape(r)) if g is None else np.asarray(g, dtype=float) for g, r in zip(got, ref)]
    if len(got) != len(ref) or any(np.shape(g) != np.shape(r) for g, r in zip(got, ref)):
        return Along(tangent=k, error=float("inf"), tolerance=settings.rtol, reliable=True, method=method,
                     said=f"output tangents of shape(s) {[np.shape(g) for g in got]} where the outputs are "
                          f"{[np.shape(r) for r in ref]}")
    scale = max([float(np.max(np.abs(a), initial=0.0)) for a in got + ref] + [TINY])
    tolerance = max(settings.rtol, SAFETY * estimate / scale)
    reliable = estimate <= UNRELIABLE * scale or method == "the complex step"
    gaps = [np.where(np.isnan(g) & np.isnan(r), 0.0, np.abs(g - r)) for g, r in zip(got, ref)]
    gaps = [np.where(np.isnan(gap), np.inf, gap) for gap in gaps]
    worst = max(range(len(gaps)), key=lambda j: float(np.max(gaps[j], initial=0.0)))
    error = float(np.max(gaps[worst], initial=0.0)) / scale
    said = ""
    if gaps[worst].size:
        at = int(np.argmax(gaps[worst]))
        index = [int(v) for v in np.unravel_index(at, np.shape(gaps[worst]))]
        which = f"output {worst}" if len(gaps) > 1 else "the output"
        said = (f"{which}'s tangent{(' at ' + str(index)) if index else ''} is {np.ravel(got[worst])[at]:.6g} by the "
                f"jvp, {np.ravel(ref[worst])[at]:.6g} by {method}")
    return Along(tangent=k, error=error, tolerance=tolerance, reliable=reliable, method=method, said=said)


def reference(target: Directional, arrays: list[np.ndarray], t: list[np.ndarray],
              settings: Settings) -> tuple[list[np.ndarray], float, str]:
    """(the directional derivative along `t`, its error estimate, which oracle gave it)."""
    size = max([float(np.max(np.abs(a), initial=0.0)) for a in arrays] + [1.0])
    norm = max([float(np.max(np.abs(d), initial=0.0)) for d in t] + [TINY])
    h = (settings.step or np.cbrt(EPS)) * size / norm

    def at(step: float) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            return [np.asarray(o, dtype=float) for o in target.forward([a + step * d for a, d in zip(arrays, t)])]
    centre = at(0.0)

    def along(step: float) -> tuple[list[np.ndarray], float, float]:
        """(Richardson's derivative from ±step and ±step/2, its estimate, the one-sided slopes' gap)."""
        plus, minus = at(step), at(-step)
        with np.errstate(all="ignore"):
            coarse = [(p - m) / (2 * step) for p, m in zip(plus, minus)]
            fine = [(p - m) / step for p, m in zip(at(step / 2), at(-step / 2))]
            richardson = [(4 * f - c) / 3 for c, f in zip(coarse, fine)]
            estimate = max([float(np.max(np.abs(r - f), initial=0.0)) for r, f in zip(richardson, fine)] + [0.0])
            sides = max([float(np.max(np.abs((p - c) - (c - m)), initial=0.0)) / step
                         for p, c, m in zip(plus, centre, minus)] + [0.0])
            kinked = not sides <= UNRELIABLE * max([float(np.max(np.abs(c), initial=0.0)) for c in coarse] + [TINY])
        return richardson, estimate, (sides if kinked else 0.0)
    richardson, estimate, sides = along(h)
    # one-sided slopes that differ by more than UNRELIABLE of the slope: a kink between x - h·t and x + h·t (where
    # the two centred steps can agree, the kink at their middle) — or a pole, or the domain's edge, the step
    # reaches: narrowed steps (numeric's), the first where the slopes agree and the values are finite
    small = h * TIE
    for _ in range(NARROW_LEVELS if sides else 0):
        narrowed = along(small)
        if not narrowed[2] and all(np.all(np.isfinite(r)) for r in narrowed[0]):
            richardson, estimate, sides = narrowed
            break
        small *= NARROW
    if sides:
        return richardson, max(estimate, sides), "finite differences"  # nothing to hold the complex step to
    exact = _complex_step(target, arrays, t, norm)
    if exact is not None and len(exact) == len(richardson) and all(
            np.shape(e) == np.shape(r) for e, r in zip(exact, richardson)):
        scale = max([float(np.max(np.abs(r), initial=0.0)) for r in richardson] + [TINY])
        gap = max(float(np.max(np.abs(e - r), initial=0.0)) for e, r in zip(exact, richardson)) if exact else 0.0
        if gap <= AGREE * max(estimate, 1e3 * EPS * scale):
            return exact, 0.0, "the complex step"
    return richardson, estimate, "finite differences"


def _complex_step(target: Directional, arrays: list[np.ndarray], t: list[np.ndarray], norm: float):
    """Im f(x + iH·t) / H, or None where the forward is not complex-safe (it raises, or its real part is
    not the forward's value)."""
    step = H / norm
    try:
        with np.errstate(all="ignore"):
            out = target.forward([a + 1j * step * d for a, d in zip(arrays, t)])
            real = target.forward(arrays)
    except USER_ERRORS:  # noqa: BLE001 - code that is not complex-safe
        return None
    out = [np.asarray(o) for o in out]
    if not all(np.iscomplexobj(o) for o in out):
        return None
    for o, r in zip(out, real):
        r = np.asarray(r, dtype=float)
        if o.shape != r.shape or not np.all(np.isfinite(o)):
            return None
        if np.max(np.abs(o.real - r), initial=0.0) > 1e-12 * max(float(np.max(np.abs(r), initial=0.0)), 1.0):
            return None
    return [o.imag * (norm / H) for o in out]


def _row(found: list[Along], name: str, rule: Rule, settings: Settings) -> GateRow:
    line, col = rule.lines.get(name, (rule.line, 1))
    raised = next((a for a in found if a.raised is not None), None)
    failing = [a for a in found if a.reliable and a.error > a.tolerance]
    unreliable = [a for a in found if not a.reliable]
    worst = max(found, key=lambda a: (a.error / a.tolerance if a.tolerance else 0.0))
    if raised is not None:
        status, note = Status.FAIL, f"the jvp raised {raised.raised} (tangent {raised.tangent} on {name})"
    elif failing:
        bad = max(failing, key=lambda a: a.error / a.tolerance)
        which = ", ".join(str(a.tangent) for a in failing)
        note = (f"the JVP disagrees with {bad.method} along tangent{'s' if len(failing) > 1 else ''} {which} of "
                f"{TANGENTS} (seeded, on {name} alone): {bad.said} (error {bad.error:.1e} of its largest)")
        status, worst = Status.FAIL, bad
    elif unreliable and len(unreliable) == len(found):
        status, note = Status.WARN, (f"finite differences along the tangents on {name} are unreliable here (their "
                                     "two steps disagree: a kink along them?): the jvp is not judged")
    else:
        status, note = Status.PASS, None
    return GateRow(name=rule.name, gate=LABEL, input=name, line=line, col=col, call_line=rule.line, status=status,
                   numeric_error=worst.error if np.isfinite(worst.error) else None, symbolic_error=None,
                   tolerance=worst.tolerance, point=1, note=note, file=rule.file)


def named(rule: str) -> str:
    """A forward-mode row's name: the rule's, said to be checked in forward mode."""
    return f"{rule} (forward mode)"


def functions(forward: Callable, jvp: Callable) -> Directional:
    """A Directional from two plain calls."""
    return _Calls(forward, jvp)


@dataclass(frozen=True)
class _Calls:
    forward_call: Callable
    jvp_call: Callable

    def forward(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.forward_call(arrays)

    def jvp(self, arrays: list[np.ndarray], tangents: list[np.ndarray]) -> list[np.ndarray | None]:
        return self.jvp_call(arrays, tangents)
