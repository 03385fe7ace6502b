"""A `torch.library.custom_op` with a backward registered by `register_autograd`, as a torch target
of the bridge (bridge.py), checked as a `torch.autograd.Function` is: the op is what is called (its
forward through the dispatcher, its backward the registered one: the rule under test); the function
the op was made from is its forward as written, what torch's batching runs over the engine's rows,
and autograd through it the exact reference — when it is plain torch code. A forward that leaves
torch (`x.numpy()`, a kernel of its own) gives no reference: autograd through it raises or gives no
gradient, and finite differences judge alone, as for a Function whose forward detaches.

    @torch.library.custom_op("mylib::softplus", mutates_args=())
    def softplus(x: torch.Tensor) -> torch.Tensor: ...
    softplus.register_autograd(backward, setup_context=setup_context)
"""

from __future__ import annotations

import inspect

import torch

from .bridge import UserCode
from .pysource import PythonError, qualname, where


def is_custom_op(obj) -> bool:
    """A `torch.library.custom_op` (a CustomOpDef)."""
    return isinstance(obj, torch.library.CustomOpDef)


def op_name(op) -> str:
    """The op's name as registered: `namespace::name`."""
    return f"{op._namespace}::{op._name}"


def forward_of(op):
    """The function the op was made from (its forward as written)."""
    return op._init_fn


def user_code(op) -> UserCode:
    """The op's parts; raises PythonError, at the op's forward, when no backward is registered."""
    forward, backward = forward_of(op), op._backward_fn
    if backward is None:
        raise PythonError(f"{op_name(op)} has no backward to check: register one with "
                          f"{getattr(forward, '__name__', 'op')}.register_autograd(backward, setup_context=setup_context)",
                          where(forward)[1], 1)
    return UserCode(name=qualname(forward), call=op, batched=forward, autodiff=forward, reference=True,
                    forward=forward, backward=backward, parameters=_parameters(forward))


def _parameters(forward) -> tuple[str, ...]:
    try:
        return tuple(p.name for p in inspect.signature(forward).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        return ()
