"""The double backward of a torch Function (gradgradcheck's job), as one more Python target: the
first backward, a function of the inputs and of the upstream gradient, differenced by the engine and
compared with its own backward — autograd through the Function's backward, which is what a second
derivative (a Hessian-vector product, a gradient penalty) runs. A Function that keeps an
intermediate on ctx outside `save_for_backward` computes a right first backward and a silently
wrong double one (pytorch #76185): its rows fail here."""

from __future__ import annotations

import numpy as np
import torch

from .bridge import Arguments, UserCode, placed
from .pycheck import check_python
from .pysource import qualname, where
from ..core.report import CheckReport
from ..core.settings import Settings
from ..core.streams import Stream, stream
from .torch_bridge import floating_outputs
from .usercode import Layer, flat_size, split_outputs

UPSTREAM = "grad_out"  # the name the upstream gradient's row gets


class _FirstBackward:
    """(inputs, upstream) -> the first backward's gradients (flat), and its backward by autograd."""

    def __init__(self, apply, args: list, diff: list):
        self.apply, self.args, self.diff = apply, args, diff
        with torch.no_grad():
            outs = self._outs(self._with([args[i].detach().to(torch.float64) for i in diff])[0])
        self.out_shapes = [tuple(o.shape) for o in outs]

    def _outs(self, args):
        return floating_outputs(self.apply(*args))

    def _with(self, values):
        made = [torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v, dtype=torch.float64)
                .detach().clone().requires_grad_(True) for v in values]
        return placed(self.args, self.diff, made), made

    def _first(self, arrays, create_graph: bool):
        n = len(self.diff)
        args, made = self._with(arrays[:n])
        ups = [torch.as_tensor(u, dtype=torch.float64).requires_grad_(create_graph)
               for u in split_outputs(arrays[n], self.out_shapes)]
        grads = torch.autograd.grad(self._outs(args), made, grad_outputs=ups, create_graph=create_graph,
                                    allow_unused=True)
        grads = [torch.zeros_like(m) if g is None else g for g, m in zip(grads, made)]
        return made, ups, grads

    def forward(self, arrays):
        _, _, grads = self._first(arrays, create_graph=False)
        return np.concatenate([g.detach().numpy().ravel() for g in grads])

    def backward(self, dout, arrays):
        made, ups, grads = self._first(arrays, create_graph=True)
        ws = [torch.as_tensor(w, dtype=torch.float64) for w in split_outputs(dout, [tuple(g.shape) for g in grads])]
        wanted = [(g, w) for g, w in zip(grads, ws) if g.requires_grad]
        if not wanted:
            return [np.zeros(m.shape) for m in made] + [np.zeros(flat_size(self.out_shapes))]
        second = torch.autograd.grad([g for g, _ in wanted], made + ups, grad_outputs=[w for _, w in wanted],
                                     allow_unused=True)
        return [np.zeros(tuple(t.shape)) if g is None else g.detach().numpy() for g, t in zip(second, made)] + \
            [np.concatenate([(np.zeros(tuple(t.shape)) if g is None else g.detach().numpy()).ravel()
                             for g, t in zip(second[len(made):], ups)])]


def check_double(code: UserCode, given: Arguments, name: str | None, settings: Settings,
                 structure: dict | None = None) -> CheckReport:
    """The report of the double backward of a Function (or of a function of tensors): a row per
    differentiated argument, and one for the upstream gradient; inputs of a stated structure kept in it."""
    args, diff = given.values, given.diff
    first = _FirstBackward(code.call, args, diff)
    path, line = where(code.backward)
    inputs = {given.names[i]: args[i].detach().to(torch.float64).numpy() for i in diff}
    rng = stream(settings.seed, Stream.TORCH_DOUBLE)
    inputs[UPSTREAM] = rng.standard_normal(flat_size(first.out_shapes))
    layer = Layer((name or code.name) + " (double backward)", first.forward, first.backward, list(inputs), path,
                  line, where(code.forward), {}, backward_name=qualname(code.backward), code=code.backward)
    layer.output = "the first backward"
    return check_python(layer, inputs, settings, structure)
