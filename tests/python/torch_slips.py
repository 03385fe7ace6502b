"""One-slip torch.autograd.Functions written the way real code writes them: backwards under
`@once_differentiable`, `@torch.amp.custom_bwd` or a decorator of the user's own, gradients built
in place (`addcmul_`, chained `mul_`), a `return` in the wrong order, a backward that forgets
`grad_output`, and second-order slips (a `detach` in a backward, a backward that applies another
Function whose own backward is wrong). Each slip's line ends with `# slip`; each case has an
independent forward (plain torch code) whose autograd is the golden answer
(tests/python/test_torch_culprits.py). Written for this suite; the patterns are the ones the issue's
corpus of public Functions showed."""

import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch.autograd import Function
from torch.autograd.function import once_differentiable


def logged(fn):
    """A decorator of the user's own (profiling, logging), written with functools.wraps."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


class MulOnce(Function):
    """a * b, its backward under @once_differentiable (as C-extension wrappers are)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        da = grad * b
        db = grad * a * 2  # slip
        return da, db


class SiluAmp(Function):
    """x · σ(x) under torch.amp's custom_fwd and custom_bwd (mixed-precision code)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        dx = grad * s * (1 + x * s)  # slip
        return dx


class SoftplusLogged(Function):
    """log(1 + eˣ), its backward under the user's own decorator."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.softplus(x)

    @staticmethod
    @logged
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = grad * torch.sigmoid(-x)  # slip
        return dx


class TanhStacked(Function):
    """tanh, its forward under custom_fwd and its backward under both once_differentiable and custom_bwd."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dx = grad * (1 - y)  # slip
        return dx


class QuadraticGate(Function):
    """x · w + x², its dx built in place with addcmul_."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w + x * x

    @staticmethod
    def backward(ctx, grad_output):
        x, w = ctx.saved_tensors
        grad_x = grad_output * w
        grad_x.addcmul_(grad_output, x, value=1.0)  # slip
        grad_w = grad_output * x
        return grad_x, grad_w


class HalfSquareGate(Function):
    """x + a · x² / 2, its dx a clone of grad_output updated in place."""

    @staticmethod
    def forward(ctx, x, a):
        ctx.save_for_backward(x, a)
        return x + 0.5 * a * x * x

    @staticmethod
    def backward(ctx, grad_output):
        x, a = ctx.saved_tensors
        grad = grad_output.clone()
        grad.addcmul_(grad_output, a)  # slip
        grad_a = 0.5 * grad_output * x * x
        return grad, grad_a


class ScaledTanh(Function):
    """2.5 · tanh(x), its gradient scaled by a chain of in-place methods."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return 2.5 * y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        grad = grad_output.clone()
        grad.mul_(1 - y * y).mul_(2.0)  # slip
        return grad


class Hypot(Function):
    """√(a² + b²), its gradients returned in the wrong order."""

    @staticmethod
    def forward(ctx, a, b):
        out = torch.sqrt(a * a + b * b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        ga = grad * a / out
        gb = grad * b / out
        return gb, ga  # slip


class Lerp(Function):
    """a + w · (b − a), its last two gradients swapped."""

    @staticmethod
    def forward(ctx, a, b, w):
        ctx.save_for_backward(a, b, w)
        return a + w * (b - a)

    @staticmethod
    def backward(ctx, grad):
        a, b, w = ctx.saved_tensors
        da = grad * (1 - w)
        db = grad * w
        dw = grad * (b - a)
        return da, dw, db  # slip


class SquareNoUpstream(Function):
    """x², its backward the local derivative alone (grad_output forgotten)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_x = 2 * x  # slip
        return grad_x


class MulNoUpstream(Function):
    """a * b, da without grad_output."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        da = b.clone()  # slip
        db = grad_output * a
        return da, db


class Sigmoid(Function):
    """σ(x), a sign slipped in the derivative."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dx = grad * y * (1 + y)  # slip
        return dx


class SigmoidIntermediate(Function):
    """σ(x), the slip in an intermediate the gradient is computed from (the culprit rule names the
    line that assigns the returned gradient, not this one)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x) * 0.5  # slip
        dx = grad * s * (1 - s)
        return dx


# --- second order: right first backwards whose own backward is wrong ------------------------------------

class CubeGrad(Function):
    """(x, g) -> 3x²g, the first backward of x³ as a Function of its own, its backward wrong."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return 3 * x * x * g

    @staticmethod
    def backward(ctx, gg):
        x, g = ctx.saved_tensors
        dx = gg * 3 * x * g  # slip
        dg = gg * 3 * x * x
        return dx, dg


class Cube(Function):
    """x³, its backward applying CubeGrad (so its double backward runs CubeGrad.backward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return CubeGrad.apply(x, grad)


class SinGrad(Function):
    """(x, g) -> g · cos x, right both ways."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return g * torch.cos(x)

    @staticmethod
    def backward(ctx, gg):
        x, g = ctx.saved_tensors
        return -gg * g * torch.sin(x), gg * torch.cos(x)


class ExpGrad(Function):
    """(x, g) -> g · eˣ, its backward's dg wrong."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return g * torch.exp(x)

    @staticmethod
    def backward(ctx, gg):
        x, g = ctx.saved_tensors
        e = torch.exp(x)
        dx = gg * g * e
        dg = gg * e * e  # slip
        return dx, dg


class SinPlusExp(Function):
    """sin x + eˣ, its backward applying two Functions, one of them wrong."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x) + torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = SinGrad.apply(x, grad) + ExpGrad.apply(x, grad)
        return dx


class MulDetached(Function):
    """a * b, db computed from a detached a: right at first order, its mixed second derivative lost."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        da = grad * b
        db = grad * a.detach()  # slip
        return da, db


class SquareData(Function):
    """x², its backward reading x.data: right at first order, no second derivative."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        dx = 2 * grad * x.data  # slip
        return dx


@dataclass(frozen=True)
class Case:
    function: type           # what is checked
    reference: Callable      # the same forward, written independently, for autograd
    shapes: tuple            # the inputs' shapes
    order: int = 1
    holder: type | None = None  # the Function whose source holds the slip (default: `function`)
    intermediate: bool = False  # the slip is in an intermediate: the culprit rule does not name it


CASES = [
    Case(MulOnce, lambda a, b: a * b, ((3, 4), (3, 4))),
    Case(SiluAmp, lambda x: x * torch.sigmoid(x), ((5,),)),
    Case(SoftplusLogged, torch.nn.functional.softplus, ((6,),)),
    Case(TanhStacked, torch.tanh, ((2, 3),)),
    Case(QuadraticGate, lambda x, w: x * w + x ** 2, ((4,), (4,))),
    Case(HalfSquareGate, lambda x, a: x + a * x ** 2 / 2, ((5,), (5,))),
    Case(ScaledTanh, lambda x: 2.5 * torch.tanh(x), ((3, 3),)),
    Case(Hypot, lambda a, b: torch.hypot(a, b), ((4,), (4,))),
    Case(Lerp, torch.lerp, ((3,), (3,), (3,))),
    Case(SquareNoUpstream, lambda x: x ** 2, ((2, 5),)),
    Case(MulNoUpstream, lambda a, b: a * b, ((4,), (4,))),
    Case(Sigmoid, torch.sigmoid, ((5,),)),
    Case(SigmoidIntermediate, torch.sigmoid, ((5,),), intermediate=True),
    Case(Cube, lambda x: x ** 3, ((4,),), order=2, holder=CubeGrad),
    Case(SinPlusExp, lambda x: torch.sin(x) + torch.exp(x), ((4,),), order=2, holder=ExpGrad),
    Case(MulDetached, lambda a, b: a * b, ((3,), (3,)), order=2),
    Case(SquareData, lambda x: x ** 2, ((5,),), order=2),
]
