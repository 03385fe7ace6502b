"""PyTorch (an optional extra, imported only when a target uses it): a `torch.autograd.Function` — or
any function of tensors whose backward is not autograd's own — checked by this project's engine, as
one more target of the check pipeline (a Python layer whose forward and backward run in torch).

- `check(fn, inputs)`: rows per differentiable input, seeded upstreams, the second point, kinks told
  from bugs, the culprit at the line of `backward` that returns the failing gradient; non-tensor
  arguments pass through; several outputs, those autograd does not differentiate (marked
  non-differentiable, integer) left out; `None` for a differentiable input is zero, as autograd
  reads it; `structure={"x": "symmetric"}` keeps an input in a structure (structure.py).
- Low precision: a Function whose inputs are float32, float16 or bfloat16 is checked in float64 (its
  inputs upcast: the engine's oracles need it) and then its backward in its own dtype against that
  float64 reference, allowed K = precision.FACTOR times the error autograd makes through the
  same forward in the same dtype (FlashAttention's rule).
- `order=2`: the double backward (gradgradcheck's job): the first backward as a function of the
  inputs and the upstream gradient, its own backward checked against its finite differences
  (torch_order2: its failing rows blamed where the slip is).
- `gradcheck(func, inputs, eps=..., atol=..., rtol=...)`: torch's signature, this project's verdict;
  raises with the table's lines instead of two Jacobians.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from . import bridge, native, torch_jvp, torch_layouts
from ..core.errors import GradcheckError, UsageError
from .pycheck import layer_settings
from .pymodule import rerun_command
from .layouts import Layout, flag, parse
from .pysource import PythonError, indent, no_parameter, qualname, source_text, where
from ..core.report import CheckReport
from ..core.settings import Settings
from .structure import drawn, structures
from .torch_bridge import TORCH, differentiable_outputs, unbound, user_code
from .torch_order2 import check_double
from ..core.streams import Stream, stream


def check(fn, inputs, *, name: str | None = None, order: int = 1, settings: Settings | None = None,
          structure: dict | None = None, layouts: str | tuple | None = None, dtype: str | None = None,
          reference_fn=None, **options) -> CheckReport:
    """Check `fn` (a torch.autograd.Function subclass, or a function of tensors) at `inputs` (a
    tuple of arguments, or a dict by name); non-tensor arguments pass through unchanged.
    `structure`: {input name: "symmetric", "spd" or "simplex"} (structure.py). `layouts`: the memory
    layouts the backward is also called in ("all", the default; "none"; or names separated by commas,
    layouts.py), and the repeated runs that tell a nondeterministic backward (torch_layouts.py).
    `dtype` ("float32", "float16", "bfloat16"): also checked in that dtype, with its error model,
    against `reference_fn` (a plain differentiable function of the same arguments, run in float64)
    or autograd through the forward (native.py); a forward that refuses float64 is checked so anyway."""
    chosen = parse(layouts)
    fn = unbound(fn)
    code = user_code(fn)
    given = bridge.arguments(TORCH, code, inputs)
    settings = layer_settings(settings, options)
    if not given.diff:
        return bridge.nothing_to_differentiate(TORCH, code, name, settings)
    kept = differentiable_outputs(code, given)
    if kept is None:  # an error of the Function as a whole: at its forward
        path, line = where(code.forward)
        report = CheckReport(name or code.name, settings=settings)
        report.path = path
        report.error = GradcheckError(f"no output of {code.name} is differentiable (each is marked "
                                      "non-differentiable, or does not depend on the inputs): nothing to check",
                                      line, indent(source_text(path), line)).located(path, source_text(path))
        return report
    try:
        plan = native.plan(TORCH, kept, given, dtype, reference_fn)
    except GradcheckError as err:
        report = CheckReport(name or code.name, settings=settings)
        report.error = err
        return report
    if order == 2 and plan is None:
        return check_double(kept, given, name, settings, structure)
    if order == 2 and plan.refuses_float64:  # the double backward is checked by differences in float64
        runs = (f"computes in {plan.dtype}" if plan.computes_in_dtype
                else f"refuses float64 (it runs in {plan.dtype})")
        path, line = where(code.forward)
        report = CheckReport(name or code.name, settings=settings)
        report.path = path
        report.error = UsageError(f"--order 2 (order=2) checks the double backward in float64, by finite differences "
                                  f"of the first backward, and {code.name}'s forward {runs}: check it without "
                                  f"--order 2, in {plan.dtype}",
                                  line, indent(source_text(path), line)).located(path, source_text(path))
        return report
    if order == 2:  # the double backward in float64, and the first backward in the dtype asked
        layer = bridge.Bridge(framework=TORCH, code=kept, given=given).layer(name)
        return native.check(TORCH, kept, given, plan, layer, settings=settings,
                            float64=check_double(kept, given, name, settings, structure))
    made = bridge.Bridge(framework=TORCH, code=kept, given=given)  # its first backward call: the layouts' first run
    if plan is not None:
        float64 = None if plan.refuses_float64 else bridge.check_arguments(
            TORCH, kept, given, name=name, settings=settings, structure=structure, low_rows=False, bridge=made)
        layer = bridge.Bridge(framework=TORCH, code=kept, given=given).layer(name)
        report = native.check(TORCH, kept, given, plan, layer, float64=float64, settings=settings)
    else:
        report = bridge.check_arguments(TORCH, kept, given, name=name, settings=settings, structure=structure,
                                        bridge=made)
    if report.error is None and chosen and (plan is None or not plan.refuses_float64):
        started = time.perf_counter()
        found = torch_layouts.check(kept, given, chosen, settings.seed, first=made.first)
        report.gates += found.rows
        report.warnings += found.warnings
        report.elapsed += time.perf_counter() - started
    if report.error is None and not structure:  # a Function with a jvp: in forward mode too (torch_jvp.py;
        # its tangents are free: an input held in a structure would leave it)
        report.gates += torch_jvp.rows(fn, kept.call, given, report.path, settings)
    return report


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


def check_spec(spec: str, fn, shapes: dict, values: dict, params: dict, settings: Settings, order: int = 1,
               structure: dict | None = None, layouts: tuple | None = None, dtype: str | None = None,
               reference: tuple | None = None) -> CheckReport:
    """`check-py FILE.py::MyFunction --shape x=4,5 [--param dim=1]`: float64 tensors of the given
    shapes (seeded normal values, made of the input's stated structure) or values, in the forward's
    parameter order; params passed through, arrays among them as tensors (bool and integer kept)."""
    names = bridge.argument_names(user_code(fn).parameters, 64)
    given = list(shapes) + [n for n in values if n not in shapes]
    unknown = [n for n in given + list(params) if n not in names]
    if unknown:
        raise no_parameter(user_code(fn).forward, unknown[0], names, f"{qualname(fn)}.forward")
    if not given:
        raise PythonError("give each differentiated input's shape with --shape NAME=D1,D2 (or a value with --at)")
    stated = structures(structure, given)
    rng = stream(settings.seed, Stream.TORCH_INPUTS)
    last = max(names.index(n) for n in given + list(params))
    args = []
    for n in names[: last + 1]:
        if n in given:
            value = values[n] if n in values else drawn(rng.standard_normal(shapes[n]), stated.get(n), n)
            args.append(torch.tensor(np.asarray(value, dtype=float), dtype=torch.float64, requires_grad=True))
        elif n in params:
            args.append(as_tensor(params[n]))
        else:
            raise PythonError(f"{qualname(fn)}.forward's parameter '{n}' comes before the given ones: give it too")
    chosen = parse(None) if layouts is None else tuple(Layout(str(layout)) for layout in layouts)
    report = check(fn, {n: a for n, a in zip(names, args)}, name=spec, order=order, settings=settings,
                   structure=stated, layouts=flag(chosen) or "all", dtype=dtype,
                   reference_fn=reference[1] if reference else None)
    report.source = spec
    report.rerun = (rerun_command(spec, shapes, values, params, settings, stated) + (" --order 2" if order == 2 else "")
                    + (f" --layouts={flag(chosen)}" if flag(chosen) else "") + (f" --dtype={dtype}" if dtype else "")
                    + (f" --reference={reference[0]}" if reference else ""))
    return report


def as_tensor(value):
    """A --param value as the Function takes it: an array as a tensor (bool as torch.bool, integers
    as torch.long: masks, labels, indices; numbers as float64), anything else as it is."""
    if not isinstance(value, np.ndarray):
        return value
    dtype = {"b": torch.bool, "i": torch.long, "u": torch.long}.get(value.dtype.kind, torch.float64)
    return torch.tensor(value, dtype=dtype)
