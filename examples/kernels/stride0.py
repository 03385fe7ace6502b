"""A backward that writes into grad_output: fine for a grad_output of its own, an error for the
stride-0 one behind `y.sum()` or `y.mean()` (its elements share one memory location).

    gradcheck check-py examples/kernels/stride0.py::ScaleInPlace --shape x=4,5
"""

from torch.autograd import Function


class ScaleInPlace(Function):
    """y = 3x; the backward scales grad_output in place."""

    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        dx = grad.mul_(3)
        return dx


class Scale(Function):
    """The same, right: a new tensor."""

    @staticmethod
    def forward(ctx, x):
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        dx = grad * 3
        return dx
