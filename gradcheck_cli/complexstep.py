"""The complex step as an oracle for a user's Python (opt-in: `complex_step=True`, `--complex-step`):
φ'(x)·e_j = Im φ(x + i·H·e_j) / H has no subtractive cancellation, so it is exact to rounding with
H = 1e-20 (Squire & Trapp 1998; Martins, Sturdza & Alonso 2003) and sees a backward wrong by 1e-7 of
its value, which no finite difference can. Code that is not complex-safe (it raises, drops the
imaginary part, or takes abs of it) is told by comparing with the finite differences: then the
complex step is not used for it, and the report says so — never a wrong verdict."""

from __future__ import annotations

import warnings

import numpy as np

H = 1e-20          # the complex step (any tiny step will do: nothing cancels)
RTOL = 1e-11       # backprop must agree with the complex step to this, relative to the row's largest
AGREE = 10.0       # the complex step must agree with the finite differences within this many of their error estimates


def derivatives(forward, args: list, upstream: np.ndarray, offsets: list, batched: bool):
    """Im Σ upstream ⊙ forward(x + iH·e_j) / H for every input element j: (n,) and None, or None and
    why the code is not complex-safe."""
    x = np.concatenate([np.ravel(a) for a in args]).astype(complex)
    n = x.size
    u = np.ravel(upstream)

    def call(rows):  # rows (r, n) complex -> (r,) directional derivatives
        parts = [rows[:, lo:hi].reshape((rows.shape[0],) + np.shape(a)) for a, lo, hi in zip(args, offsets[:-1], offsets[1:])]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            if batched:
                out = np.asarray(forward([np.ascontiguousarray(p) for p in parts]))
                return _imag(out, rows.shape[0]) @ u / H
            return np.array([(_imag(np.asarray(forward([p[r].copy() for p in parts])), 1) @ u)[0]
                             for r in range(rows.shape[0])]) / H
    try:
        values = np.concatenate([call(x[None, :] + 1j * H * np.eye(n)[lo:hi]) for lo, hi in _chunks(n)])
    except _NotComplex as err:
        return None, str(err)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything on complex inputs
        return None, f"it raised {type(exc).__name__} on complex inputs"
    return values, None


class _NotComplex(Exception):
    pass


def _imag(out: np.ndarray, rows: int) -> np.ndarray:
    if not np.iscomplexobj(out):
        raise _NotComplex("its output is real: the imaginary part was dropped on the way (a cast to float?)")
    return np.imag(out).reshape(rows, -1)


def _chunks(n: int, size: int = 256) -> list:
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def judge(cs: np.ndarray, fd: np.ndarray, fd_error: np.ndarray, bp: np.ndarray, noise: np.ndarray | None,
          kinked: np.ndarray):
    """(usable, failing elements, worst error): the complex step is usable where it agrees with the
    finite differences within AGREE× their error estimate (a wrong backward does not enter this);
    then backprop must agree with it to RTOL of the row's scale, plus backprop's own rounding.
    Elements at a kink are left to the differences' verdict (no derivative to be exact about)."""
    smooth = ~np.asarray(kinked, dtype=bool)
    scale = max(float(np.max(np.abs(cs[smooth]), initial=0.0)), 1e-300)
    usable = np.abs(cs - fd) <= AGREE * fd_error  # (the estimate is never 0: it counts the differences' rounding)
    if not np.all(usable[smooth]):
        return False, np.zeros(0, dtype=int), 0.0
    allowed = RTOL * scale + (0.0 if noise is None else np.ravel(noise))
    err = np.where(smooth, np.abs(bp - cs), 0.0)
    return True, np.flatnonzero(err > allowed), float(np.max(err, initial=0.0)) / scale
