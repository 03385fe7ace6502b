"""The runner over a user's Python forward: Σ upstream ⊙ forward(inputs) as a function of the
inputs' elements, for the finite-difference engine, batched when the forward takes a leading axis."""

from __future__ import annotations


import numpy as np

from ..oracles import numeric, plan
from ..oracles.batches import Probe
from ..core.meter import PRICES, active, count
from .pysource import USER_ERRORS, PythonError, exception_text, user_position
from .usercode import output_values, quiet



def in_float32(values: np.ndarray, before: np.ndarray) -> bool:
    """Whether a forward computes in float32 inside: every value it gave (at a point moved from `before`'s) a
    float32 number, and some value that changed no short binary fraction (more than FLOAT32_PLAIN bits), as
    float64 arithmetic would leave in nearly every value (a 0/1 mask, a relu of integers, do not count)."""
    v = np.ravel(np.asarray(values, dtype=float))
    b = np.ravel(np.asarray(before, dtype=float))
    finite = v[np.isfinite(v)]
    with np.errstate(over="ignore", invalid="ignore"):
        if finite.size == 0 or not np.all(finite.astype(np.float32) == finite):
            return False
    changed = v[np.isfinite(v) & (v != 0) & ((v != b) if b.shape == v.shape else True)]
    mantissa = np.frexp(changed)[0] * 2.0 ** FLOAT32_PLAIN
    return bool(np.any(mantissa != np.round(mantissa)))


FLOAT32_PLAIN = 12  # (in_float32) a value with at most this many significant bits: as exact in float64 as in float32


class FunctionRunner:
    """Σ upstream ⊙ forward(inputs) as a function of the inputs' elements, concatenated.

    `batched`: the forward takes a leading axis of perturbed copies (checked once, on two rows
    against two single calls); otherwise it is called once per row.
    """

    def __init__(self, forward, args: list, upstream: np.ndarray, out: np.ndarray, batched: bool | None = None,
                 path: str | None = None):
        self.path = path  # the forward's file: an exception it raises at a nudged point is shown at its line
        self.forward, self.args, self.upstream = forward, args, np.ravel(upstream)
        sizes = [0] + [a.size for a in args]
        self.offsets = [sum(sizes[: k + 1]) for k in range(len(sizes))]
        self.x = np.concatenate([a.ravel() for a in args])
        self.centre = float(np.sum(out * upstream))
        with np.errstate(over="ignore", invalid="ignore"):  # the size of the terms summed: rounding follows it
            self.terms = float(np.sum(np.abs(out * upstream)))
        self.out_size, self.out_shape, self.calls = 1, out.shape, 0
        self.sees_branches = False  # the user's code: kinks are told from its slopes alone
        self.batched = self._batches(out) if batched is None else batched

    def _batches(self, out) -> bool:
        other = [a + 1e-3 * np.cos(np.arange(a.size) + k).reshape(a.shape) for k, a in enumerate(self.args)]
        try:
            with quiet():
                single = np.asarray(self._call(other), dtype=float)
        except USER_ERRORS:  # noqa: BLE001 - raising there, it is called one row at a time (and says so then)
            return False
        if in_float32(single, out):
            raise PythonError("the forward computes in float32 and returns float64: at a point moved from the given "
                              "one, every value it returns is a float32 number, so finite differences would measure "
                              "float32's rounding, not its slope; compute it in float64 (a torch or JAX version is "
                              "checked in float32 with --dtype float32)")
        try:
            with quiet():
                both = np.asarray(self._call([np.stack([a, b]) for a, b in zip(self.args, other)]), dtype=float)
        except USER_ERRORS:  # noqa: BLE001 - a forward that cannot batch simply raises
            return False
        scale = np.abs(out).max() + np.abs(single).max()
        return (both.shape == (2,) + out.shape and np.allclose(both[0], out, rtol=1e-12, atol=1e-14 * scale)
                and np.allclose(both[1], single, rtol=1e-12, atol=1e-14 * scale))

    def _call(self, arrays):
        self.calls += 1
        if active():
            count("python")
            count("element", sum(int(np.size(a)) for a in arrays))
        try:
            return self.forward(arrays)
        except PythonError:
            raise
        except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
            line, col = user_position(exc, self.path) if self.path else (None, None)
            raise PythonError(f"the forward raised {exception_text(exc)} at a point within a step of the given one "
                              "(the differences nudge each input by ~6e-6·max(1, |x|)): it must be defined around the point",
                              line, col, self.path if line else None) from None

    def width(self, target_id) -> int:
        return max(int(np.prod(self.out_shape, dtype=np.int64)), self.x.size)

    def work(self, target) -> int:
        """Four rows per element (or projection), each as wide as the inputs and the output, and a
        call of its own when the forward takes no batch axis."""
        rows = plan.PLAN.rows(target.n, target.projections)
        return rows * (self.x.size + int(np.prod(self.out_shape, dtype=np.int64)) + (0 if self.batched else PRICES["python"]))

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        """The forward's whole output (flat) at each row of flat inputs: (rows, outputs)."""
        parts = [rows[:, lo:hi].reshape((rows.shape[0],) + a.shape)
                 for a, lo, hi in zip(self.args, self.offsets[:-1], self.offsets[1:])]
        with quiet():
            if self.batched:
                return output_values(self._call([p.copy() for p in parts]),  # copies: never a view of our rows
                                     (rows.shape[0],) + tuple(self.out_shape)).reshape(rows.shape[0], -1)
            return np.array([np.ravel(output_values(self._call([p[r].copy() for p in parts]), self.out_shape))
                             for r in range(rows.shape[0])])

    def _perturbed(self, probes: list, n_rows: int) -> list:
        """Each input with a leading axis of rows, the probes' nudges added (each input copied once)."""
        parts = [np.broadcast_to(a, (n_rows,) + a.shape).copy() for a in self.args]
        flats = [p.reshape(n_rows, -1) for p in parts]
        bounds = np.asarray(self.offsets)
        for p in probes:
            if p.flat is None:
                for f, lo, hi in zip(flats, bounds[:-1], bounds[1:]):
                    f[p.rows] += p.delta[:, lo:hi]
                continue
            delta = np.broadcast_to(p.delta, p.flat.shape)
            if len(flats) == 1:
                np.add.at(flats[0], (p.rows, p.flat), delta)
                continue
            which = np.searchsorted(bounds, p.flat, side="right") - 1
            for k, f in enumerate(flats):
                sel = which == k
                if sel.any():
                    np.add.at(f, (p.rows[sel], p.flat[sel] - bounds[k]), delta[sel])
        return parts

    def run(self, probes: list, n_rows: int):
        rows = self._perturbed(probes, n_rows)
        with quiet():
            if self.batched:
                out = output_values(self._call(rows), (n_rows,) + tuple(self.out_shape)).reshape(n_rows, -1)
            else:  # one call per row: only the weighted sum of each output is kept
                u = self.upstream
                return (np.array([[np.dot(output_values(self._call([a[r].copy() for a in rows]), self.out_shape).ravel(), u)]
                                  for r in range(n_rows)]), np.zeros(n_rows, dtype=bool))
        return out @ self.upstream[:, None], np.zeros(n_rows, dtype=bool)


class Subset:
    """Some elements (`index`, flat) of another runner's inputs, the rest held at the point: the
    elements an exact reference disagrees with, differenced one by one."""

    def __init__(self, runner: FunctionRunner, index: np.ndarray):
        self.runner, self.index = runner, np.asarray(index, dtype=np.int64)
        self.x = runner.x[self.index]
        self.centre, self.sees_branches, self.terms = runner.centre, runner.sees_branches, runner.terms

    def width(self, target_id) -> int:
        return self.runner.width(target_id)

    def work(self, target) -> int:
        per_row = self.runner.work(numeric.Target("one", self.runner.x[:1])) // 4
        return plan.PLAN.rows(target.n, target.projections) * per_row

    def run(self, probes: list, n_rows: int):
        mapped = []
        for p in probes:
            if p.flat is None:
                delta = np.zeros((p.delta.shape[0], self.runner.x.size))
                delta[:, self.index] = p.delta
                mapped.append(Probe(p.node, p.rows, None, delta))
            else:
                mapped.append(Probe(p.node, p.rows, self.index[p.flat], p.delta))
        return self.runner.run(mapped, n_rows)
