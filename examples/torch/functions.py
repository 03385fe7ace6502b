"""torch.autograd.Function examples, each right and with a bug people ship (check them with
`gradcheck_cli.torch.check`, or `gradcheck check-py examples/torch/functions.py::NAME --shape ...`)."""

import math

import torch
from torch.autograd import Function

SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class FusedGELU(Function):
    """GELU, tanh approximation, forward and backward fused by hand."""

    @staticmethod
    def forward(ctx, x):
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


class FusedGELURounded(Function):
    """The same, with √(2/π) rounded to three digits in the backward only."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        inner = SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1 + torch.tanh(inner))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        t = torch.tanh(0.798 * (x + 0.044715 * x ** 3))
        dinner = 0.798 * (1 + 3 * 0.044715 * x ** 2)
        dx = grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)
        return dx


class LayerNorm(Function):
    """Layer normalisation over the last axis, without affine parameters."""

    @staticmethod
    def forward(ctx, x, eps=1e-5):
        mu = x.mean(-1, keepdim=True)
        inv = (x.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
        xhat = (x - mu) * inv
        ctx.save_for_backward(xhat, inv)
        return xhat

    @staticmethod
    def backward(ctx, grad):
        xhat, inv = ctx.saved_tensors
        dx = inv * (grad - grad.mean(-1, keepdim=True) - xhat * (grad * xhat).mean(-1, keepdim=True))
        return dx, None


class LayerNormNoMean(Function):
    """The same, missing the mean term of the backward."""

    @staticmethod
    def forward(ctx, x, eps=1e-5):
        mu = x.mean(-1, keepdim=True)
        inv = (x.var(-1, unbiased=False, keepdim=True) + eps).rsqrt()
        xhat = (x - mu) * inv
        ctx.save_for_backward(xhat, inv)
        return xhat

    @staticmethod
    def backward(ctx, grad):
        xhat, inv = ctx.saved_tensors
        dx = inv * (grad - xhat * (grad * xhat).mean(-1, keepdim=True))
        return dx, None


class Softmax(Function):
    """Softmax over the last axis."""

    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x, dim=-1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dx = y * (grad - (grad * y).sum(-1, keepdim=True))
        return dx


class SoftmaxWrongAxis(Function):
    """The same, its backward summing along the first axis."""

    @staticmethod
    def forward(ctx, x):
        y = torch.softmax(x, dim=-1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dx = y * (grad - (grad * y).sum(0, keepdim=True))
        return dx


class Transpose(Function):
    """A transposed copy (an output laid out differently from the input)."""

    @staticmethod
    def forward(ctx, x):
        return x.t().contiguous()

    @staticmethod
    def backward(ctx, grad):
        dx = grad.t()
        return dx


class TransposeStrideBug(Function):
    """The same, its backward reading the gradient in the output's memory order as if it were the input's."""

    @staticmethod
    def forward(ctx, x):
        return x.t().contiguous()

    @staticmethod
    def backward(ctx, grad):
        dx = grad.contiguous().view(grad.shape[1], grad.shape[0])
        return dx
