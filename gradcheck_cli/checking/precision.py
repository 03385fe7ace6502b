"""Low precision (FlashAttention's rule): a backward run in float32, float16 or bfloat16 is compared
with a float64 reference and may err at most FACTOR times what autodiff through the same forward errs
in the same dtype (or FACTOR times the dtype's ε). Shared by the framework bridges (torch, JAX)."""

from __future__ import annotations

import numpy as np

from ..core.report import GateRow
from .verdict import Judgement
from ..core.status import Status

FACTOR = 3.0  # K: a low-precision backward may err at most K× autodiff's own error in that dtype
EPS = {"float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def rows(ref: list, own: list, auto: list | None, names: list, dtype: str, layer) -> list:
    """One GateRow per input: `own` (the user's backward in `dtype`) against `ref` (float64), allowed
    FACTOR × max(`auto`'s error (autodiff through the forward in `dtype`), ε)."""
    out = []
    for k, name in enumerate(names):
        scale = max(float(np.max(np.abs(ref[k]), initial=0.0)), 1e-30)
        err = float(np.max(np.abs(own[k] - ref[k]), initial=0.0)) / scale
        base = EPS[dtype]
        if auto is not None:
            base = max(base, float(np.max(np.abs(auto[k] - ref[k]), initial=0.0)) / scale)
        allowed = FACTOR * base
        status = Status.PASS if err <= allowed else Status.FAIL
        line, col = layer.grad_lines.get(name, (layer.line, 1))
        note = (f"in {dtype}: error {err:.1e} against the float64 reference, {'within' if status == 'pass' else 'past'} "
                f"{FACTOR:g}× autodiff's own through the forward ({base:.1e})")
        j = Judgement(status, None, err, None, allowed, (0, 0), np.zeros((1, 0)))
        out.append(GateRow(name=layer.backward_name, gate=dtype, input=name, line=line, col=col,
                           call_line=layer.line, status=j.status, numeric_error=err,
                           symbolic_error=None, tolerance=allowed, point=1, note=note))
    return out
