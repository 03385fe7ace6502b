"""PyTorch (an optional extra, imported only when a target uses it): a `torch.autograd.Function` — or
any function of tensors whose backward is not autograd's own — checked by this project's engine, as
one more target of the check pipeline (a Python layer whose forward and backward run in torch).

- `check(fn, inputs)`: rows per differentiable input, seeded upstreams, the second point, kinks told
  from bugs, the culprit at the line of `backward` that returns the failing gradient; non-tensor
  arguments pass through; several outputs; `None` for a differentiable input is a failure.
- Low precision: a Function whose inputs are float32, float16 or bfloat16 is checked in float64 (its
  inputs upcast: the engine's oracles need it) and then its backward in its own dtype against that
  float64 reference, allowed K = precision.FACTOR times the error autograd makes through the
  same forward in the same dtype (FlashAttention's rule).
- `order=2`: the double backward (gradgradcheck's job): the first backward as a function of the
  inputs and the upstream gradient, its own backward checked against its finite differences.
- `gradcheck(func, inputs, eps=..., atol=..., rtol=...)`: torch's signature, this project's verdict;
  raises with the table's lines instead of two Jacobians.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from ..checking import precision
from ..core.errors import GradcheckError
from .pycheck import Layer, _settings, check_python
from .pymodule import _rerun
from .pysource import PythonError, grad_lines, qualname, where
from ..core.report import CheckReport
from ..core.settings import Settings
from .torch_order2 import check_double
from ..core.streams import Stream, stream

LOW = (torch.float32, torch.float16, torch.bfloat16)  # dtypes checked again in themselves (precision.py)


def _takes_ctx(fn) -> bool:
    """A Function in the classic style: `forward(ctx, ...)` (the newer one has setup_context)."""
    try:
        return next(iter(inspect.signature(fn.forward).parameters), None) == "ctx"
    except (TypeError, ValueError):
        return False


def _apply(fn):
    return fn.apply if _is_function(fn) else fn


def _is_function(fn) -> bool:
    return inspect.isclass(fn) and issubclass(fn, torch.autograd.Function)


def _unbound(fn):
    """`MyFunction.apply` (what torch's gradcheck is given) as the Function itself, so its forward can
    be the reference and its backward the culprit's file; anything else as it is."""
    owner = getattr(fn, "__self__", None)
    return owner if getattr(fn, "__name__", None) == "apply" and _is_function(owner) else fn


def _plain(fn):
    """A Function's forward as plain autograd code (on a stand-in ctx in the classic style), or None
    for any other callable (its autograd may run the very backward under test)."""
    if not _is_function(fn):
        return None
    if _takes_ctx(fn):
        return lambda *a: fn.forward(_Ctx(len(a)), *a)
    return fn.forward


def _names(fn, args: list) -> list:
    """The forward's parameter names for the arguments (after ctx for a Function), else input0, ..."""
    target = fn.forward if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function) else fn
    try:
        params = [p.name for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if inspect.isclass(fn) and params[:1] == ["ctx"]:
        params = params[1:]
    return [params[i] if i < len(params) else f"input{i}" for i in range(len(args))]


def _differentiable(args: list) -> list:
    """Positions differenced: tensors that require grad (or every floating tensor, when none does)."""
    tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    asked = [i for i in tensors if args[i].requires_grad]
    return asked or tensors


def _outputs(result) -> list:
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    return [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()]


class _Bridge:
    """The Function as plain calls on float64 numpy arrays, the shape pycheck's Layer takes."""

    def __init__(self, fn, args: list, diff: list, dtype=torch.float64):
        self.apply, self.args, self.diff, self.dtype = _apply(fn), args, diff, dtype
        # the engine's rows need the forward's values only: a ctx-style Function's forward, run on a
        # stand-in ctx, is plain torch code that vmap can batch (its apply cannot be vmapped)
        self.plain = _plain(fn)
        self.batched_apply = self.plain if _is_function(fn) and _takes_ctx(fn) else self.apply
        self.shapes: list = []
        self.vmap = None  # does torch.func.vmap run it? (found on the first batch)

    def _args(self, arrays, grad: bool):
        args = list(self.args)
        made = []
        for i, a in zip(self.diff, arrays):
            t = torch.tensor(np.asarray(a), dtype=self.dtype, device=self.args[i].device).requires_grad_(grad)
            args[i] = t
            made.append(t)
        return args, made

    def forward(self, arrays):
        """The output at one point, or at a leading axis of points (the engine's rows): with
        torch.func.vmap where the function allows it, else one call per row (every element is
        then still differenced one by one, within the budget, as torch's own gradcheck does)."""
        if all(np.ndim(a) == self.args[i].dim() + 1 for i, a in zip(self.diff, arrays)):
            return self._rows(arrays)
        with torch.no_grad():
            outs = _outputs(self.apply(*self._args(arrays, False)[0]))
        if not outs:
            raise PythonError(f"{qualname(self.apply)} returned no floating-point tensor")
        self.shapes = [tuple(o.shape) for o in outs]
        flat = [o.detach().to(torch.float64).cpu().numpy() for o in outs]
        return flat[0] if len(flat) == 1 else np.concatenate([f.ravel() for f in flat])

    def _rows(self, arrays):
        n = np.shape(arrays[0])[0]
        if self.vmap is not False:
            try:
                batched = [torch.from_numpy(np.ascontiguousarray(a)).to(self.dtype) for a in arrays]
                dims = tuple(0 if i in self.diff else None for i in range(len(self.args)))

                def call(*parts):
                    return torch.cat([o.reshape(-1) for o in _outputs(self.batched_apply(*parts))])
                with torch.no_grad():
                    args = list(self.args)
                    for i, b in zip(self.diff, batched):
                        args[i] = b
                    out = torch.func.vmap(call, in_dims=dims)(*args)
                self.vmap = True
                return out.reshape((n,) + self._shape()).numpy()
            except Exception:  # noqa: BLE001 - a Function without a vmap rule: one call per row
                self.vmap = False
        return np.stack([self.forward([a[r] for a in arrays]) for r in range(n)])

    def _shape(self) -> tuple:
        return self.shapes[0] if len(self.shapes) == 1 else (sum(int(np.prod(s)) for s in self.shapes),)

    def backward(self, dout, arrays, through=None):
        """The gradients for `dout` through the Function's backward (or through `through`'s autograd)."""
        args, made = self._args(arrays, True)
        outs = _outputs((through or self.apply)(*args))
        cuts = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in self.shapes])[:-1]
        douts = [torch.tensor(d.reshape(s), dtype=o.dtype, device=o.device)
                 for d, s, o in zip(np.split(np.ravel(dout), cuts), self.shapes, outs)]
        grads = torch.autograd.grad(outs, made, grad_outputs=douts, allow_unused=True)
        if through is not None:  # an input the forward does not use: its exact gradient is 0
            grads = [torch.zeros_like(m) if g is None else g for g, m in zip(grads, made)]
        return [None if g is None else g.detach().to(torch.float64).cpu().numpy() for g in grads]

    def reference(self, dout, arrays):
        """The exact gradients for `dout`: autograd through the forward's own torch code, or None."""
        return None if self.plain is None else self.backward(dout, arrays, self.plain)


def _layer(fn, bridge: _Bridge, name: str | None, all_names: list) -> Layer:
    """A Layer whose rows point into the user's `backward` (a Function's), not into this bridge."""
    code = fn.backward if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function) else fn
    forward = fn.forward if inspect.isclass(fn) and issubclass(fn, torch.autograd.Function) else fn
    path, line = where(code)
    lines = grad_lines(code, tuple(all_names))
    names = [all_names[i] for i in bridge.diff]
    return Layer(name or qualname(fn), bridge.forward, bridge.backward, names, path, line, where(forward),
                 {n: lines[n] for n in names if n in lines}, backward_name=qualname(code), code=code,
                 reference=bridge.reference, batched=True)  # the bridge takes rows itself (vmap, or one call each)


def check(fn, inputs, *, name: str | None = None, order: int = 1, settings: Settings | None = None,
          **options) -> CheckReport:
    """Check `fn` (a torch.autograd.Function subclass, or a function of tensors) at `inputs` (a
    tuple of arguments, or a dict by name); non-tensor arguments pass through unchanged."""
    fn = _unbound(fn)
    args = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    all_names = list(inputs) if isinstance(inputs, dict) else _names(fn, args)
    diff = _differentiable(args)
    settings = _settings(settings, options)
    if not diff:
        report = CheckReport(name or qualname(fn), settings=settings)
        report.error = GradcheckError("no floating-point tensor among the inputs: nothing to differentiate", None, None)
        return report
    if order == 2:
        return check_double(fn, _apply(fn), args, diff, all_names, name, settings)
    dtypes = {args[i].dtype for i in diff}
    bridge = _Bridge(fn, args, diff)
    layer = _layer(fn, bridge, name, all_names)
    report = check_python(layer, {all_names[i]: args[i].detach().to(torch.float64).cpu().numpy() for i in diff},
                          settings)
    low = [d for d in dtypes if d in LOW]
    if report.error is None and low:
        report.gates += low_precision(fn, args, diff, all_names, low[0], layer)
    return report


def low_precision(fn, args: list, diff: list, names: list, dtype, layer: Layer) -> list:
    """GateRows, one per input: the backward in `dtype` against the float64 reference (autograd
    through the forward in float64), allowed K× autograd's own error through the forward in `dtype`."""
    ref = _grads(fn, args, diff, torch.float64, autograd_forward=True)
    own = _grads(fn, args, diff, dtype, autograd_forward=False)
    if ref is None or own is None:
        return []
    auto = _grads(fn, args, diff, dtype, autograd_forward=True)
    return precision.rows(ref, own, auto, [names[i] for i in diff], str(dtype).removeprefix("torch."), layer)


class _Ctx:
    """A stand-in for a Function's ctx, so its forward can run as plain autograd code."""

    def __init__(self, n: int):
        self.saved_tensors = ()
        self.needs_input_grad = (True,) * n

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *args):
        pass

    def mark_dirty(self, *args):
        pass

    def set_materialize_grads(self, value):
        pass


def _grads(fn, args: list, diff: list, dtype, autograd_forward: bool):
    """The gradients for a fixed seeded upstream, in `dtype` (as float64 arrays): through the
    Function's own backward, or through its forward run as autograd code; None when that fails."""
    moved = list(args)
    made = []
    for i in diff:
        moved[i] = args[i].detach().to(dtype).requires_grad_(True)
        made.append(moved[i])
    try:
        result = ((_plain(fn) if autograd_forward else None) or _apply(fn))(*moved)
        outs = _outputs(result)
        gen = torch.Generator().manual_seed(104729)
        douts = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in outs]
        grads = torch.autograd.grad(outs, made, grad_outputs=douts, allow_unused=True)
    except Exception:  # noqa: BLE001 - the user's code may raise anything (the float64 check says what)
        return None
    if any(g is None for g in grads):
        return None
    return [g.detach().to(torch.float64).cpu().numpy() for g in grads]


def gradcheck(func, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, fast_mode: bool = False, **ignored) -> bool:
    """torch.autograd.gradcheck's signature with this project's engine: True when every input's
    gradient is right; else raises GradcheckError listing each failing input and its line (or returns
    False with raise_exception=False). eps sets the step, rtol the tolerance; atol is kept as a floor."""
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    report = check(func, args, step=min(max(eps, 1e-12), 0.5), rtol=min(max(rtol, 1e-12), 0.5),
                   atol=max(float(atol), 0.0) if atol else 0.0, fast=bool(fast_mode))
    if report.error is None and report.passed:
        return True
    if not raise_exception:
        return False
    rows = [r for r in report.nodes + report.gates if r.status == "fail"]
    lines = [report.error.format()] if report.error is not None else [
        f"{getattr(r, 'input', None) or r.name} (line {r.line} of {report.path}): {r.note or 'fail'}" for r in rows]
    raise GradcheckError("gradcheck failed:\n" + "\n".join(lines), None, None)


def check_spec(spec: str, fn, shapes: dict, values: dict, params: dict, settings: Settings, order: int = 1) -> CheckReport:
    """`check-py FILE.py::MyFunction --shape x=4,5 [--param dim=1]`: float64 tensors of the given
    shapes (seeded normal values) or values, params passed through, in the forward's parameter order."""
    names = _names(fn, [None] * 64)
    given = list(shapes) + [n for n in values if n not in shapes]
    unknown = [n for n in given + list(params) if n not in names]
    if unknown:
        raise PythonError(f"{qualname(fn)}.forward has no parameter '{unknown[0]}' (its parameters: "
                          + ", ".join(n for n in names if not n.startswith("input")) + ")")
    if not given:
        raise PythonError("give each differentiated input's shape with --shape NAME=D1,D2 (or a value with --at)")
    rng = stream(settings.seed, Stream.TORCH_INPUTS)
    last = max(names.index(n) for n in given + list(params))
    args = []
    for n in names[: last + 1]:
        if n in given:
            value = values[n] if n in values else rng.standard_normal(shapes[n])
            args.append(torch.tensor(np.asarray(value, dtype=float), dtype=torch.float64, requires_grad=True))
        elif n in params:
            args.append(params[n])
        else:
            raise PythonError(f"{qualname(fn)}.forward's parameter '{n}' comes before the given ones: give it too")
    report = check(fn, {n: a for n, a in zip(names, args)}, name=spec, order=order, settings=settings)
    report.source = spec
    report.rerun = _rerun(spec, shapes, values, params, settings) + (" --order 2" if order == 2 else "")
    return report
