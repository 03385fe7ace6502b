"""The state of one target's exhaustive differencing, pass by pass: what the difference engine
(`numeric`) fills in and the kink tests (`kinks`) read. Arrays are (n, out) per element and output
unless said; index arrays name elements."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _none() -> np.ndarray:
    return np.zeros(0)


def _no_index() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(kw_only=True)
class PassState:
    """One target's differences so far; each pass reads what the earlier ones left."""
    h: np.ndarray                                            # the step per element (n,)
    plus: np.ndarray = field(default_factory=_none)          # f(v + h), f(v − h) per element
    minus: np.ndarray = field(default_factory=_none)
    d1: np.ndarray = field(default_factory=_none)            # the first centred difference
    value: np.ndarray = field(default_factory=_none)         # the best estimate so far
    truncation: np.ndarray = field(default_factory=_none)    # its truncation error estimate
    rounding: np.ndarray = field(default_factory=_none)      # its rounding error estimate
    kink: np.ndarray = field(default_factory=_none)          # a branch switched (or a slope jumped) within the step
    upper: np.ndarray = field(default_factory=_none)         # the one-sided slopes, widest seen
    lower: np.ndarray = field(default_factory=_none)
    doubt: np.ndarray = field(default_factory=_no_index)     # elements refined at h/2 (Richardson)
    esc: np.ndarray = field(default_factory=_no_index)       # elements redone with a larger step ...
    big: np.ndarray = field(default_factory=_none)           # ... that step
    escalated: int = 0                                       # how many of them it improved
    rough: np.ndarray = field(default_factory=_no_index)     # off the reference, no kink, and not smooth at ±h, ±h/2
                                                             # or too coarse for the tolerance (numeric._refine_pass)
    rough_best: np.ndarray = field(default_factory=_none)    # ... the estimate a narrowed difference must beat
    kinked: np.ndarray = field(default_factory=_no_index)    # kink elements, tested at ±TIE·h
    at: np.ndarray = field(default_factory=_none)            # (n,) the kink is on the point itself
    near: np.ndarray = field(default_factory=_none)          # off the kink: the difference at ±TIE·h (nan elsewhere)
    near_error: np.ndarray = field(default_factory=_none)    # ... and its rounding error
    narrow: np.ndarray = field(default_factory=_no_index)    # kink elements whose slopes still jump at ±TIE·h ...
    narrow_small: tuple = ()                                 # ... their f(v ± TIE·h) and that step
    narrow_pole: np.ndarray = field(default_factory=_none)   # ... whose slopes' jump grows as the step shrinks
    narrowed: int = 0                                        # how many of them are smooth at the narrowed steps
    classes: list = field(default_factory=list)              # kink elements that jump alike
    pairs: list = field(default_factory=list)                # pairs of them tested for a tie
    groups: list = field(default_factory=list)               # ties found (member index arrays)
    ties: list = field(default_factory=list)                 # (members, joint slope) of each tie
