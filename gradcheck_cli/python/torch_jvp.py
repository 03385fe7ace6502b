"""A torch Function's `jvp` (forward-mode AD: `ctx.save_for_forward`, what `torch.func.jvp` and
`torch.autograd.forward_ad`'s dual tensors run) checked in forward mode (forward_mode.py): the
Function applied to dual tensors, its output tangents against the directional derivative of its
forward, the culprit the line of `jvp` that carries the failing input's tangent."""

from __future__ import annotations

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from ..core.report import GateRow
from ..core.settings import Settings
from . import forward_mode
from .bridge import Arguments, placed
from .jax_source import parameter_tangent_lines
from .pysource import qualname, where
from .torch_bridge import floating_outputs, is_function


def has_jvp(fn) -> bool:
    """A Function that defines its own `jvp` (the base class's raises)."""
    return is_function(fn) and getattr(fn, "jvp", None) is not getattr(torch.autograd.Function, "jvp", None)


def rows(fn, call, given: Arguments, report_path: str | None, settings: Settings) -> list[GateRow]:
    """The forward-mode rows of Function `fn` (called as `call`: its outputs autograd keeps) at the
    given point; none when it defines no jvp."""
    if not has_jvp(fn):
        return []
    names = [given.names[i] for i in given.diff]
    devices = [given.values[i].device for i in given.diff]

    def tensors(arrays: list, dtype) -> list:
        return [torch.tensor(np.asarray(a), dtype=dtype, device=d) for a, d in zip(arrays, devices)]

    def forward(arrays: list) -> list[np.ndarray]:
        dtype = torch.complex128 if any(np.iscomplexobj(a) for a in arrays) else torch.float64
        with torch.no_grad():
            outs = _outputs(call(*placed(given.values, given.diff, tensors(arrays, dtype))))
        return [o.detach().cpu().numpy() for o in outs]

    def jvp(arrays: list, tangents: list) -> list:
        with fwAD.dual_level(), torch.no_grad():
            duals = [fwAD.make_dual(p, t) for p, t in zip(tensors(arrays, torch.float64),
                                                          tensors(tangents, torch.float64))]
            outs = floating_outputs(call(*placed(given.values, given.diff, duals)))
            found = [fwAD.unpack_dual(o).tangent for o in outs]
        return [None if t is None else t.detach().to(torch.float64).cpu().numpy() for t in found]

    path, line = where(fn.jvp)
    try:
        lines = parameter_tangent_lines(fn.jvp, names, 1)
    except (RecursionError, ValueError, TypeError, AttributeError):  # an odd source: the rule's first line
        lines = {}
    rule = forward_mode.Rule(name=forward_mode.named(qualname(fn.jvp)), file=None if path == report_path else path, line=line,
                             lines={n: lines.get(n, (line, 1)) for n in names})
    arrays = [given.values[i].detach().to(torch.float64).cpu().numpy() for i in given.diff]
    return forward_mode.rows(forward_mode.functions(forward, jvp), arrays, names, rule, settings)


def _outputs(result) -> list:
    """A call's floating-point and complex tensors, in order."""
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    return [o for o in outs if isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex())]
