"""A `torch.library.custom_op` with its backward registered by `register_autograd`, right and with a
bug people ship: softplus's derivative written σ(−x) (the derivative of softplus(−x)) instead of σ(x).
torch.library.opcheck and torch.autograd.gradcheck see the op only through the dispatcher; gradcheck
checks it as it checks a Function, the culprit in the registered backward.

    gradcheck check-py examples/kernels/softplus_op.py --shape x=4,5
"""

import torch


@torch.library.custom_op("kernels::softplus", mutates_args=())
def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x)


def setup_context(ctx, inputs, output):
    (x,) = inputs
    ctx.save_for_backward(x)


def softplus_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    dx = grad * torch.sigmoid(x)
    return dx


softplus.register_autograd(softplus_backward, setup_context=setup_context)


@torch.library.custom_op("kernels::softplus_wrong", mutates_args=())
def softplus_wrong(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x)


def softplus_wrong_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    dx = grad * torch.sigmoid(-x)
    return dx


softplus_wrong.register_autograd(softplus_wrong_backward, setup_context=setup_context)


@torch.library.custom_op("kernels::softplus_numpy", mutates_args=())
def softplus_numpy(x: torch.Tensor) -> torch.Tensor:
    """The forward leaves torch (a kernel of its own): no autograd reference, finite differences judge."""
    import numpy as np
    return torch.from_numpy(np.logaddexp(0.0, x.detach().cpu().numpy())).to(x.dtype)


def softplus_numpy_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    dx = grad * torch.sigmoid(x)
    return dx


softplus_numpy.register_autograd(softplus_numpy_backward, setup_context=setup_context)
