"""Backwards whose last bits vary from run to run, as atomic adds make them: within float64's rounding
(a warning), and at float32's (a failure: the gradient is not reproducible to the check's dtype).

    gradcheck check-py examples/kernels/jitter.py::TripleJitter --shape x=4,5
"""

import torch
from torch.autograd import Function


class Triple(Function):
    """y = 3x, deterministic."""

    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        dx = 3 * grad
        return dx


CALLS = [0]  # the calls so far: each draws its own last bits, and a rerun draws the same ones again


def _generator() -> torch.Generator:
    CALLS[0] += 1
    return torch.Generator().manual_seed(CALLS[0])


class TripleJitter(Function):
    """y = 3x; the backward adds a few units in the last place, different at every call."""

    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        ulps = torch.randint(-2, 3, grad.shape, dtype=grad.dtype, generator=_generator())
        dx = 3 * grad * (1 + ulps * 2.0 ** -52)
        return dx


class TripleAtomicFloat32(Function):
    """y = 3x; the backward adds three partial gradients in float32, each element in its own random
    order, as a kernel's atomic adds do: each call rounds differently, by float32's ε."""

    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        parts = torch.stack([0.7 * grad, 1.1 * grad, 1.2 * grad]).float()
        order = torch.rand(parts.shape, generator=_generator()).argsort(0)  # which part each element adds 1st, 2nd, 3rd
        total = torch.zeros_like(parts[0])
        for k in range(3):
            total += parts.gather(0, order[k:k + 1])[0]
        dx = total.double()
        return dx
