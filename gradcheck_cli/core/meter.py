"""The work meter: every gate evaluation, gate VJP, SymPy node, Python call, graph node built and
row judged counts here, so that tests and benchmarks can hold the cost model (`cost.py`) to what a
check really does. Counting only: nothing here decides anything.

Work is priced in units of about one element evaluation; the prices are fitted to this project's
machine by tests/benchmarks/bench_cost.py (least squares of seconds on the counts).
"""

from __future__ import annotations

from contextvars import ContextVar

PRICES = {
    "element": 1,        # an element a gate computes (a row's copy of its output, a VJP's row entry): ~2 ns
    "window": 12,        # an element of a window buffer conv2d and maxpool2d lay out (copied, then reduced)
    "call": 5_000,      # a gate call (a user gate's body too), beyond its elements: numpy's dispatch, bookkeeping
    "sweep": 500,        # a node a batched pass walks past (recomputed or not)
    "row": 100_000,      # a node or gate call judged: the check step, its verdict, its row
    "build": 25_000,     # a node built from the source (parsing included)
    "sympy": 3_000,      # a SymPy expression node built, differentiated and evaluated
    "python": 10_000,    # a call of a user's Python forward or backward, beyond its elements
}
GATE_CALL = PRICES["call"]

_meter: ContextVar = ContextVar("gradcheck_meter", default=None)


class Meter:
    """Counts while it is active (`with Meter() as m: ...`); `m.units` prices them."""

    def __init__(self):
        self.counts: dict = {}

    def __enter__(self):
        self._token = _meter.set(self)
        return self

    def __exit__(self, *exc):
        _meter.reset(self._token)
        outer = _meter.get()
        if outer is not None:  # a meter inside another: the outer one counts this work too
            for k, n in self.counts.items():
                outer.counts[k] = outer.counts.get(k, 0) + n

    @property
    def units(self) -> int:
        return sum(PRICES[k] * n for k, n in self.counts.items())


def active() -> bool:
    """Whether a meter is counting (callers skip working out what to count when none is)."""
    return _meter.get() is not None


def count(kind: str, n: int = 1) -> None:
    """Count `n` of `kind` (a key of PRICES) on the active meter (free when none is active)."""
    m = _meter.get()
    if m is not None:
        m.counts[kind] = m.counts.get(kind, 0) + n


def gate_units(gate, shapes: list, attrs: dict, size: int, rows: int = 1) -> tuple:
    """(elements, window elements) one call of a registry gate computes for `rows` copies: its
    output, and the temporary it lays out (conv2d's and maxpool2d's windows)."""
    workspace = int(gate.workspace(shapes, attrs)) if gate.workspace is not None else 0
    return rows * size, rows * workspace
