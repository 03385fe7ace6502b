"""PyTorch's side of the bridge (bridge.py): tensors in and out, `torch.func.vmap` over the engine's
rows, autograd's vector-Jacobian product, and a `torch.autograd.Function`'s parts — its `apply`,
its `backward` (the rows' lines), and its forward as plain autograd code (on a stand-in ctx in the
classic style), the exact reference that leaves the backward under test out."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import numpy as np
import torch

from . import custom_op
from .bridge import Arguments, Pullback, UserCode, placed
from .pysource import USER_ERRORS, qualname
from .usercode import quiet


class Torch:
    """The `Framework` of tensors: float64 on the arguments' own devices, autograd's VJP."""

    word = "tensor"

    def differentiable(self, values: list) -> list[int]:
        """Tensors that require grad (or every floating tensor, when none does)."""
        tensors = [i for i, a in enumerate(values) if isinstance(a, torch.Tensor) and a.is_floating_point()]
        asked = [i for i in tensors if values[i].requires_grad]
        return asked or tensors

    def to_numpy(self, value) -> np.ndarray:
        return value.detach().to(torch.float64).cpu().numpy()

    def dtype_name(self, value) -> str:
        return str(value.dtype).removeprefix("torch.")

    def output_dtypes(self, function, values: list, diff: list[int], arrays: list) -> list[str]:
        with torch.no_grad():
            outs = floating_outputs(function(*placed(values, diff, _tensors(values, diff, arrays, torch.float64))))
        return [str(o.dtype).removeprefix("torch.") for o in outs]

    def evaluate(self, function, values: list, diff: list[int], arrays: list, dtype: str = "float64") -> list[np.ndarray]:
        with torch.no_grad():
            outs = floating_outputs(function(*placed(values, diff, _tensors(values, diff, arrays, getattr(torch, dtype)))))
        return [o.detach().to(torch.float64).cpu().numpy() for o in outs]

    def evaluate_rows(self, function, values: list, diff: list[int], arrays: list) -> np.ndarray:
        """With torch.func.vmap (a ctx-style Function's forward runs on a stand-in ctx: its apply
        cannot be vmapped)."""
        batched = [torch.tensor(np.asarray(a), dtype=torch.float64) for a in arrays]  # copies: a forward may write into them
        dims = tuple(0 if i in diff else None for i in range(len(values)))

        def call(*parts):
            return torch.cat([o.reshape(-1) for o in floating_outputs(function(*parts))])
        with torch.no_grad():
            out = torch.func.vmap(call, in_dims=dims)(*placed(values, diff, batched))
        return out.numpy()

    def pullback(self, function, values: list, diff: list[int], arrays: list, dtype: str) -> Pullback:
        made = [t.requires_grad_(True) for t in _tensors(values, diff, arrays, getattr(torch, dtype))]
        outs = floating_outputs(function(*placed(values, diff, [computed(t) for t in made])))

        def pull(cotangents: list) -> list:
            douts = [torch.tensor(c, dtype=o.dtype, device=o.device) for c, o in zip(cotangents, outs)]
            grads = torch.autograd.grad(outs, made, grad_outputs=douts, allow_unused=True)
            return [None if g is None else g.detach().to(torch.float64).cpu().numpy() for g in grads]
        return Pullback(shapes=[tuple(o.shape) for o in outs], pull=pull,
                        outputs=[o.detach().to(torch.float64).cpu().numpy() for o in outs])

    def seeded_upstream(self, shapes: list[tuple]) -> list[np.ndarray]:
        generator = torch.Generator().manual_seed(104729)
        return [torch.randn(s, generator=generator, dtype=torch.float64).numpy() for s in shapes]


TORCH = Torch()


def _tensors(values: list, diff: list[int], arrays: list, dtype) -> list:
    """The arrays as tensors of `dtype`, each on its argument's device."""
    return [torch.tensor(np.asarray(a), dtype=dtype, device=values[i].device) for i, a in zip(diff, arrays)]


def computed(leaf: torch.Tensor) -> torch.Tensor:
    """What a Function is called with in place of `leaf` (a tensor that requires grad), as a graph
    gives it a tensor it computed: a copy that is no leaf, autograd taking its gradient back to `leaf`
    unchanged. torch refuses an in-place op on a leaf that requires grad (or on a view of one), so a
    Function that writes into its input (`ctx.mark_dirty`) runs on it (torch's own gradcheck needs it
    wrapped, `lambda t: F.apply(t.clone())`); its writes reach this copy's storage, never `leaf`'s.
    The copy keeps `leaf`'s size, strides, storage offset and storage contents (a memory layout and
    its padding, torch_layouts.py), which `clone()` would not all keep."""
    copy = leaf.clone()
    with torch.no_grad():  # the clone's graph (its gradient passed back as it is), over a copy of the whole storage
        copy.set_(leaf.untyped_storage().clone(), leaf.storage_offset(), leaf.size(), leaf.stride())
    return copy


def floating_outputs(result) -> list:
    """A call's floating-point tensors, in order (one output, or a tuple or list of them)."""
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    return [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()]


def differentiable_outputs(code: UserCode, given: Arguments) -> UserCode | None:
    """`code` with every call keeping only the floating outputs autograd differentiates, as torch's
    gradcheck does: one marked `ctx.mark_non_differentiable`, or not depending on the differentiated
    inputs, gets no upstream and is not checked (integer outputs never are). Found by one call with the
    differentiated inputs requiring grad; None when no output is differentiable. A call that raises
    changes nothing (the check says what it raised)."""
    made = placed(given.values, given.diff, [computed(given.values[i].detach().clone().requires_grad_(True))
                                             for i in given.diff])
    try:
        with torch.enable_grad(), quiet():
            keep = tuple(o.requires_grad for o in floating_outputs(code.call(*made)))
    except USER_ERRORS:  # noqa: BLE001 - the user's code may raise anything
        return code
    if keep and not any(keep):
        return None
    if all(keep):
        return code

    def kept(function):
        @functools.wraps(function)
        def call(*args):
            return tuple(o for o, k in zip(floating_outputs(function(*args)), keep) if k)
        return call
    return dataclasses.replace(code, call=kept(code.call), batched=kept(code.batched), autodiff=kept(code.autodiff))


def user_code(fn) -> UserCode:
    """A Function's parts (or a plain function of tensors': it is its own forward and backward, and
    has no reference, since its autograd may run the very backward under test); a custom op's
    (custom_op.py)."""
    if custom_op.is_custom_op(fn):
        return custom_op.user_code(fn)
    function = is_function(fn)
    call = fn.apply if function else fn
    plain = _plain(fn)
    return UserCode(name=qualname(fn), call=call, batched=plain if function and _takes_ctx(fn) else call,
                    autodiff=plain or call, reference=plain is not None, forward=fn.forward if function else fn,
                    backward=fn.backward if function else fn, parameters=_parameters(fn))


def is_function(fn) -> bool:
    return inspect.isclass(fn) and issubclass(fn, torch.autograd.Function)


def unbound(fn):
    """`MyFunction.apply` (what torch's gradcheck is given) as the Function itself, so its forward can
    be the reference and its backward the culprit's file; anything else as it is."""
    owner = getattr(fn, "__self__", None)
    return owner if getattr(fn, "__name__", None) == "apply" and is_function(owner) else fn


def _takes_ctx(fn) -> bool:
    """A Function in the classic style, `forward(ctx, ...)`, its first parameter ctx whatever its name
    (`self` in older code); the newer style defines setup_context, and its forward takes no ctx."""
    return is_function(fn) and fn.setup_context is torch.autograd.Function.setup_context


def _plain(fn):
    """A Function's forward as plain autograd code (on a stand-in ctx in the classic style), or None
    for any other callable."""
    if not is_function(fn):
        return None
    if _takes_ctx(fn):
        return lambda *a: fn.forward(_Ctx(len(a)), *a)
    return fn.forward


def _parameters(fn) -> tuple[str, ...]:
    """The forward's positional parameters (after ctx for a Function)."""
    target = fn.forward if is_function(fn) else fn
    try:
        params = [p.name for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return tuple(params[1:] if _takes_ctx(fn) else params)


class _Ctx:
    """A stand-in for a Function's ctx, so its forward can run as plain autograd code."""

    def __init__(self, n: int):
        self.saved_tensors: tuple = ()
        self.needs_input_grad = (True,) * n

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *args):
        pass

    def mark_dirty(self, *args):
        pass

    def set_materialize_grads(self, value):
        pass
