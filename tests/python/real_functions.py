"""torch.autograd.Functions written the way real code writes them (each a pattern seen in public
projects; the code is this project's own), right ones and one-slip wrong ones, for
test_torch_real_functions.py. Imported by the tests and named on check-py's command line."""

import torch


# --- outputs autograd does not differentiate ------------------------------------------------------

class SortValues(torch.autograd.Function):
    """Sorted values and the permutation (torch.sort's pattern: the indices marked non-differentiable)."""

    @staticmethod
    def forward(ctx, x):
        values, order = x.sort(dim=-1)
        ctx.save_for_backward(order)
        ctx.mark_non_differentiable(order)
        return values, order

    @staticmethod
    def backward(ctx, grad_values, grad_order):
        (order,) = ctx.saved_tensors
        dx = torch.zeros_like(grad_values).scatter_(-1, order, grad_values)
        return dx


class ReluWithMask(torch.autograd.Function):
    """A ReLU that also returns its float mask, marked non-differentiable (the mask feeds a later layer)."""

    @staticmethod
    def forward(ctx, x):
        mask = (x > 0).to(x.dtype)
        ctx.save_for_backward(mask)
        ctx.mark_non_differentiable(mask)
        return x * mask, mask

    @staticmethod
    def backward(ctx, grad_out, grad_mask):
        (mask,) = ctx.saved_tensors
        dx = grad_out * mask
        return dx


class ReluWithMaskSlip(torch.autograd.Function):
    """As ReluWithMask, the mask inverted in the backward."""

    @staticmethod
    def forward(ctx, x):
        mask = (x > 0).to(x.dtype)
        ctx.save_for_backward(mask)
        ctx.mark_non_differentiable(mask)
        return x * mask, mask

    @staticmethod
    def backward(ctx, grad_out, grad_mask):
        (mask,) = ctx.saved_tensors
        dx = grad_out * (1 - mask)
        return dx


class MaxWithArgmax(torch.autograd.Function):
    """The maximum along a dimension and where it is (an integer output)."""

    @staticmethod
    def forward(ctx, x, dim):
        values, index = x.max(dim=dim, keepdim=True)
        ctx.save_for_backward(index)
        ctx.dim, ctx.shape = dim, x.shape
        return values, index

    @staticmethod
    def backward(ctx, grad_values, grad_index):
        (index,) = ctx.saved_tensors
        dx = grad_values.new_zeros(ctx.shape).scatter_(ctx.dim, index, grad_values)
        return dx, None


class OnlyIndices(torch.autograd.Function):
    """Nothing differentiable comes out: the indices alone."""

    @staticmethod
    def forward(ctx, x):
        index = x.argmax(dim=-1)
        ctx.mark_non_differentiable(index)
        return index

    @staticmethod
    def backward(ctx, grad):
        return None


class OnlyMask(torch.autograd.Function):
    """Nothing differentiable comes out: a float mask, marked non-differentiable."""

    @staticmethod
    def forward(ctx, x):
        mask = (x > 0).to(x.dtype)
        ctx.mark_non_differentiable(mask)
        return mask

    @staticmethod
    def backward(ctx, grad):
        return None


# --- None for a differentiated input -----------------------------------------------------------------

class GateBySign(torch.autograd.Function):
    """x where the gate tensor is positive: the gate's gradient is zero almost everywhere, and the
    backward returns None for it."""

    @staticmethod
    def forward(ctx, x, gate):
        keep = (gate > 0).to(x.dtype)
        ctx.save_for_backward(keep)
        return x * keep

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad * keep, None


class ClampToFloor(torch.autograd.Function):
    """max(x, floor) with None returned for floor, whose gradient is not zero where x is below it."""

    @staticmethod
    def forward(ctx, x, floor):
        ctx.save_for_backward(x, floor)
        return torch.maximum(x, floor)

    @staticmethod
    def backward(ctx, grad):
        x, floor = ctx.saved_tensors
        return grad * (x >= floor).to(grad.dtype), None


# --- ctx under another name (older code) --------------------------------------------------------------

class SquareSelf(torch.autograd.Function):
    @staticmethod
    def forward(self, x, scale):
        self.save_for_backward(x)
        self.scale = scale
        return scale * x * x

    @staticmethod
    def backward(self, grad):
        (x,) = self.saved_tensors
        return 2 * self.scale * x * grad, None


class SquareSelfSlip(torch.autograd.Function):
    @staticmethod
    def forward(self, x, scale):
        self.save_for_backward(x)
        self.scale = scale
        return scale * x * x

    @staticmethod
    def backward(self, grad):
        (x,) = self.saved_tensors
        return self.scale * x * grad, None


# --- tensors given with --param ---------------------------------------------------------------------------

class MaskedFill(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x.masked_fill(mask, 0.0)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad.masked_fill(mask, 0.0), None


class CrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of logits against integer labels."""

    @staticmethod
    def forward(ctx, logits, labels):
        logp = logits.log_softmax(dim=-1)
        ctx.save_for_backward(logp, labels)
        return -logp.gather(-1, labels[:, None]).mean()

    @staticmethod
    def backward(ctx, grad):
        logp, labels = ctx.saved_tensors
        onehot = torch.zeros_like(logp).scatter_(-1, labels[:, None], 1.0)
        dlogits = grad * (logp.exp() - onehot) / logp.shape[0]
        return dlogits, None


class CrossEntropySlip(torch.autograd.Function):
    """As CrossEntropy, the mean's 1/N forgotten."""

    @staticmethod
    def forward(ctx, logits, labels):
        logp = logits.log_softmax(dim=-1)
        ctx.save_for_backward(logp, labels)
        return -logp.gather(-1, labels[:, None]).mean()

    @staticmethod
    def backward(ctx, grad):
        logp, labels = ctx.saved_tensors
        onehot = torch.zeros_like(logp).scatter_(-1, labels[:, None], 1.0)
        dlogits = grad * (logp.exp() - onehot)
        return dlogits, None


# --- nested ------------------------------------------------------------------------------------------------

class Activations:
    class SoftPlus(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.nn.functional.softplus(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * torch.sigmoid(x)


# --- inputs of a structure -------------------------------------------------------------------------------

def _denman_beavers(a, steps=40):
    """The principal square root of `a` by the Denman–Beavers iteration (any matrix it converges for)."""
    y, z = a, torch.eye(a.shape[-1], dtype=a.dtype).expand_as(a)
    for _ in range(steps):
        y, z = (y + torch.linalg.inv(z)) / 2, (z + torch.linalg.inv(y)) / 2
    return y


class Sqrtm(torch.autograd.Function):
    """A matrix square root whose backward solves the Sylvester equation Y dA + dA Y = G in Y's
    eigenbasis: exact where Y is symmetric, that is for symmetric A."""

    @staticmethod
    def forward(ctx, a):
        y = _denman_beavers(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        s, v = torch.linalg.eigh(y)
        g = v.transpose(-1, -2) @ grad @ v
        da = v @ (g / (s[..., :, None] + s[..., None, :])) @ v.transpose(-1, -2)
        return da


class SqrtmSlip(torch.autograd.Function):
    """As Sqrtm, the Sylvester solution's denominator a product instead of a sum."""

    @staticmethod
    def forward(ctx, a):
        y = _denman_beavers(a)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        s, v = torch.linalg.eigh(y)
        g = v.transpose(-1, -2) @ grad @ v
        da = v @ (g / (s[..., :, None] * s[..., None, :])) @ v.transpose(-1, -2)
        return da


class SqrtmEig(torch.autograd.Function):
    """A covariance's square root through its eigendecomposition (which reads one triangle), the
    same Sylvester backward: right along symmetric directions only."""

    @staticmethod
    def forward(ctx, a):
        s, v = torch.linalg.eigh(a)
        root = s.clamp_min(0).sqrt()
        ctx.save_for_backward(root, v)
        return v @ torch.diag_embed(root) @ v.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad):
        root, v = ctx.saved_tensors
        g = v.transpose(-1, -2) @ grad @ v
        da = v @ (g / (root[..., :, None] + root[..., None, :])) @ v.transpose(-1, -2)
        return da


class Entropy(torch.autograd.Function):
    """The entropy of distributions along the last axis; the backward drops the constant -1 of
    d(-p log p)/dp, which no direction inside the simplex sees."""

    @staticmethod
    def forward(ctx, p):
        ctx.save_for_backward(p)
        return -(p * p.log()).sum(dim=-1)

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        dp = -grad[..., None] * p.log()
        return dp


class EntropySlip(torch.autograd.Function):
    """As Entropy, the log's sign flipped."""

    @staticmethod
    def forward(ctx, p):
        ctx.save_for_backward(p)
        return -(p * p.log()).sum(dim=-1)

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        dp = grad[..., None] * p.log()
        return dp
