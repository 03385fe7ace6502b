"""A backward that reads grad_output's memory as if it were contiguous (a hand-written kernel that
takes a pointer and assumes row-major strides), and the same backward reading its values.

    gradcheck check-py examples/kernels/strided.py::StridedScale --shape x=4,5
"""

import torch
from torch.autograd import Function


class StridedScale(Function):
    """y = 2x; the backward reinterprets grad_output's storage with contiguous strides: right for the
    contiguous grad_output torch.autograd.gradcheck feeds, wrong behind `y.t()` or `y.sum()`."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        flat = torch.empty(0, dtype=grad.dtype).set_(grad.untyped_storage(), grad.storage_offset(), grad.shape)
        return flat * 2


class Scale(Function):
    """The same, right: the backward reads grad_output's values, whatever its strides."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        flat = grad.contiguous()
        return flat * 2
