"""A Function with a forward-mode rule (`jvp`, what `torch.func.jvp` and forward-mode dual tensors run)
beside its backward: y = tanh(x)·w, right, and with the jvp forgetting that w scales x's part — a
slip its backward does not have, so a check of the backward alone passes it.

    gradcheck check-py examples/kernels/jvp_scale.py::ScaledTanhJvpWrong --shape x=4,5 --shape w=4,5
"""

import torch
from torch.autograd import Function


class ScaledTanh(Function):
    """y = tanh(x)·w, its backward and its jvp."""

    @staticmethod
    def forward(x, w):
        return torch.tanh(x) * w

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w = inputs
        t = torch.tanh(x)
        ctx.save_for_backward(t, w)
        ctx.save_for_forward(t, w)

    @staticmethod
    def backward(ctx, grad):
        t, w = ctx.saved_tensors
        dx = grad * (1 - t * t) * w
        dw = grad * t
        return dx, dw

    @staticmethod
    def jvp(ctx, x_t, w_t):
        t, w = ctx.saved_tensors
        from_x = (1 - t * t) * w * x_t
        from_w = t * w_t
        return from_x + from_w


class ScaledTanhJvpWrong(Function):
    """The same, its jvp's x part missing the factor w."""

    @staticmethod
    def forward(x, w):
        return torch.tanh(x) * w

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w = inputs
        t = torch.tanh(x)
        ctx.save_for_backward(t, w)
        ctx.save_for_forward(t, w)

    @staticmethod
    def backward(ctx, grad):
        t, w = ctx.saved_tensors
        dx = grad * (1 - t * t) * w
        dw = grad * t
        return dx, dw

    @staticmethod
    def jvp(ctx, x_t, w_t):
        t, w = ctx.saved_tensors
        from_x = (1 - t * t) * x_t
        from_w = t * w_t
        return from_x + from_w
