"""PyTorch, an optional extra: `check(MyFunction, inputs)` checks a `torch.autograd.Function`'s backward
(and its double backward with `order=2`); `gradcheck(...)` is a drop-in for `torch.autograd.gradcheck`.
The check is `python/torch.py`, on the bridge (`python/bridge.py`) with torch's side in
`python/torch_bridge.py`; torch is imported only when a target uses it."""

from .python.torch import check, check_spec, gradcheck

__all__ = ["check", "gradcheck", "check_spec"]
