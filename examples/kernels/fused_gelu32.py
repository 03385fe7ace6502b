"""A fused GELU kernel that runs in float32 only, as fused kernels do (they have no float64 build):
its forward raises for any other dtype. `FusedGELU32` is right; `FusedGELU32Slip` has a backward 1%
off. Checked in float32 against autograd through the forward, with the float32 error model.

    gradcheck check-py examples/kernels/fused_gelu32.py::FusedGELU32Slip --shape x=4,5
    gradcheck check-py examples/kernels/fused_gelu32.py::FusedGELU32 --shape x=4,5 --reference \
        examples/kernels/fused_gelu32.py::gelu_reference
"""

import math

import torch
from torch.autograd import Function

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _float32_only(x):
    if x.dtype != torch.float32:
        raise TypeError(f"this kernel runs in float32 only, not {x.dtype}")


class FusedGELU32(Function):
    """GELU, tanh approximation, forward and backward fused by hand, float32 only."""

    @staticmethod
    def forward(ctx, x):
        _float32_only(x)
        ctx.save_for_backward(x)
        inner = SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1 + torch.tanh(inner))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        t = torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        dinner = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2)
        dx = grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)
        return dx


class FusedGELU32Slip(Function):
    """The same, its backward 1% too large."""

    @staticmethod
    def forward(ctx, x):
        _float32_only(x)
        ctx.save_for_backward(x)
        inner = SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1 + torch.tanh(inner))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        t = torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        dinner = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2)
        dx = 1.01 * grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)
        return dx


def gelu_reference(x):
    """The same GELU as plain differentiable torch code (a reference, run in float64)."""
    return 0.5 * x * (1 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))
