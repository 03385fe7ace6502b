"""The double backward of a torch Function (gradgradcheck's job), as one more Python target: the
first backward, a function of the inputs and of the upstream gradient, differenced by the engine and
compared with its own backward — autograd through the Function's backward, which is what a second
derivative (a Hessian-vector product, a gradient penalty) runs. A Function that keeps an
intermediate on ctx outside `save_for_backward` computes a right first backward and a silently
wrong double one (pytorch #76185): its rows fail here, saying they are second order, at the line that
holds the slip — in a Function the backward applies, or in the gradient whose own derivative is
wrong. A backward under `@once_differentiable` has none: an error at the decorator."""

from __future__ import annotations

import functools
import inspect
from dataclasses import replace

import numpy as np
import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from . import bridge
from .bridge import Arguments, UserCode, placed
from .pycheck import check_python
from .pysource import USER_ERRORS, PythonError, grad_lines, qualname, source_text, unwrapped, where
from ..core.report import CheckReport
from ..core.settings import Settings
from ..core.streams import Stream, stream
from .torch_bridge import TORCH, computed, floating_outputs, user_code
from .usercode import Layer, flat_size, split_outputs

UPSTREAM = "grad_out"  # the name the upstream gradient's row gets


class _FirstBackward:
    """(inputs, upstream) -> the first backward's gradients (flat), and its backward by autograd."""

    def __init__(self, apply, args: list, diff: list):
        self.apply, self.args, self.diff = apply, args, diff
        with torch.no_grad():
            outs = self._outs(self._with([args[i].detach().to(torch.float64) for i in diff])[0])
        self.out_shapes = [tuple(o.shape) for o in outs]

    def _outs(self, args):
        return floating_outputs(self.apply(*args))

    def _with(self, values):
        """(the arguments the Function is called with, the leaves they are copies of: torch_bridge.computed)."""
        made = [torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v, dtype=torch.float64)
                .detach().clone().requires_grad_(True) for v in values]
        return placed(self.args, self.diff, [computed(m) for m in made]), made

    def first(self, arrays, create_graph: bool, function=None):
        """(the inputs, the upstreams, the first backward's gradients) at `arrays`: through the
        target's own backward, or through `function` (its forward as plain autograd code)."""
        n = len(self.diff)
        args, made = self._with(arrays[:n])
        ups = [torch.as_tensor(u, dtype=torch.float64).requires_grad_(create_graph)
               for u in split_outputs(arrays[n], self.out_shapes)]
        outs = self._outs(args) if function is None else floating_outputs(function(*args))
        grads = torch.autograd.grad(outs, made, grad_outputs=ups, create_graph=create_graph, allow_unused=True)
        grads = [torch.zeros_like(m) if g is None else g for g, m in zip(grads, made)]
        return made, ups, grads

    def forward(self, arrays):
        _, _, grads = self.first(arrays, create_graph=False)
        return np.concatenate([g.detach().numpy().ravel() for g in grads])

    def backward(self, dout, arrays):
        made, ups, grads = self.first(arrays, create_graph=True)
        ws = [torch.as_tensor(w, dtype=torch.float64) for w in split_outputs(dout, [tuple(g.shape) for g in grads])]
        wanted = [(g, w) for g, w in zip(grads, ws) if g.requires_grad]
        if not wanted:
            return [np.zeros(m.shape) for m in made] + [np.zeros(flat_size(self.out_shapes))]
        second = torch.autograd.grad([g for g, _ in wanted], made + ups, grad_outputs=[w for _, w in wanted],
                                     allow_unused=True)
        return [np.zeros(tuple(t.shape)) if g is None else g.detach().numpy() for g, t in zip(second, made)] + \
            [np.concatenate([(np.zeros(tuple(t.shape)) if g is None else g.detach().numpy()).ravel()
                             for g, t in zip(second[len(made):], ups)])]


def check_double(code: UserCode, given: Arguments, name: str | None, settings: Settings,
                 structure: dict | None = None) -> CheckReport:
    """The report of the double backward of a Function (or of a function of tensors): a row per
    differentiated argument, and one for the upstream gradient; inputs of a stated structure kept in it; a
    failing row blamed on the line that holds the slip (blame_rows) and saying it is the second order that fails."""
    args, diff = given.values, given.diff
    path, line = where(code.backward)
    once = _once_differentiable(code.backward)
    if once is not None:
        report = CheckReport(name or code.name, settings=settings)
        report.error = PythonError(f"{qualname(code.backward)} is marked @once_differentiable: torch refuses to "
                                   "differentiate it again, so it has no double backward to check", *once,
                                   path).located(path, source_text(path))
        report.path = path
        return report
    first = _FirstBackward(code.call, args, diff)
    inputs = {given.names[i]: args[i].detach().to(torch.float64).numpy() for i in diff}
    rng = stream(settings.seed, Stream.TORCH_DOUBLE)
    inputs[UPSTREAM] = rng.standard_normal(flat_size(first.out_shapes))
    layer = Layer((name or code.name) + " (double backward)", first.forward, first.backward, list(inputs), path,
                  line, where(code.forward), {}, backward_name=qualname(code.backward) + " (double backward)",
                  code=code.backward, diagnose=False)
    layer.output = "the first backward"
    report = check_python(layer, inputs, settings, structure)
    if report.error is None and not report.passed:
        blame_rows(report, code, given, first, list(inputs.values()), settings)
    return report


_ONCE = once_differentiable(lambda ctx: ctx).__code__  # the wrapper torch's decorator puts around a backward


def _once_differentiable(backward) -> tuple | None:
    """(line, col) of `@once_differentiable` over a backward, or None when it is not under it."""
    f, found = backward, False
    while f is not None and not found:
        found = getattr(f, "__code__", None) is _ONCE
        f = getattr(f, "__wrapped__", None)
    if not found:
        return None
    try:
        lines, start = inspect.getsourcelines(unwrapped(backward))
    except (OSError, TypeError):
        return where(backward)[1], 1
    return next(((start + k, len(text) - len(text.lstrip()) + 1) for k, text in enumerate(lines)
                 if "once_differentiable" in text), (where(backward)[1], 1))


# --- which line holds a second-order slip ---------------------------------------------------------

SECOND = "the double backward (second order)"


def blame_rows(report: CheckReport, code: UserCode, given: Arguments, first: _FirstBackward, arrays: list,
               settings: Settings) -> None:
    """Each failing row of a double backward, said to be second order and moved to the line that holds
    its slip: in a Function the first backward applies whose own backward is wrong (checked on its own
    at the inputs it was applied to), else in the first backward's gradient whose own derivative
    disagrees with autograd's twice through the forward (the gradients one at a time)."""
    names = [given.names[i] for i in given.diff] + [UPSTREAM]
    try:
        found = _nested(code, given, first, arrays, names, settings) or _blocks(code, given, first, arrays, names)
    except USER_ERRORS:  # noqa: BLE001 - the user's code may raise anything: the rows keep their lines
        found = {}
    path = report.path
    for k, row in enumerate(report.nodes):
        if row.status == "fail":
            line, col, file, why = found.get(row.name, (row.line, row.col, None, None))
            report.nodes[k] = replace(row, line=line, col=col, note=_second_order(row.note, why),
                                      culprit=(line, col) if file in (None, path) else (line, col, file))
    for k, gate in enumerate(report.gates):
        if gate.status == "fail":
            line, col, file, why = found.get(gate.input, (gate.line, gate.col, None, None))
            report.gates[k] = replace(gate, line=line, col=col, note=_second_order(gate.note, why),
                                      file=None if file in (None, path) else file)


def _second_order(note: str | None, why: str | None) -> str:
    """A failing row's note, saying it is the double backward that disagrees."""
    note = note or "fails"
    said = note.replace("backprop disagrees", f"{SECOND} disagrees", 1)
    said = said if said != note else f"{SECOND}: {note}"
    return f"{said}; {why}" if why else said


def _nested(code: UserCode, given: Arguments, first: _FirstBackward, arrays: list, names: list,
            settings: Settings) -> dict:
    """Row name -> (line, col, file, why) for the rows a Function applied inside the first backward
    explains: its own backward (which the double backward runs) fails its own check at the inputs it
    was applied to, through an input the row's argument reaches."""
    made, ups, grads = first.first(arrays, create_graph=True)
    leaves = {id(t): n for t, n in zip(made + ups, names[:-1] + [UPSTREAM] * len(ups))}
    nodes = _function_nodes(grads, code)
    if not nodes:
        return {}
    applied = _applied({type(n)._forward_cls for n in nodes}, lambda: first.first(arrays, create_graph=True))
    found: dict = {}
    for cls, values in applied.items():
        inner = bridge.check_arguments(TORCH, user_code(cls), bridge.arguments(TORCH, user_code(cls), values),
                                       name=None, settings=settings)
        bad = {r.name: r for r in inner.nodes if r.status == "fail"}
        bad.update({g.input: g for g in inner.gates if g.status == "fail" and g.input not in bad})
        if inner.error is not None or not bad:
            continue
        arg_names = bridge.argument_names(user_code(cls).parameters, len(values))
        slots = [arg_names[i] for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
        for node in (n for n in nodes if type(n)._forward_cls is cls):
            for slot, (next_fn, _) in zip(slots, node.next_functions):
                if slot not in bad:
                    continue
                row = bad[slot]
                why = (f"it runs {qualname(cls.backward)}, whose d{slot} is wrong (line {row.line}"
                       + (f" of {inner.path}" if inner.path != where(code.backward)[0] else "")
                       + f": {row.note})")
                for leaf in _leaves(next_fn):
                    if leaf in leaves:
                        found.setdefault(leaves[leaf], (row.line, row.col, inner.path, why))
    return found


def _function_nodes(grads: list, code: UserCode) -> list:
    """The nodes of Functions other than the target in the graph of the first backward's gradients:
    their backwards are what the double backward runs."""
    seen, todo, found = set(), [g.grad_fn for g in grads if g.grad_fn is not None], []
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        cls = getattr(type(node), "_forward_cls", None)
        if cls is not None and getattr(code.call, "__self__", None) is not cls:
            found.append(node)
        todo += [n for n, _ in node.next_functions]
    return found


def _leaves(node) -> set:
    """The ids of the leaf tensors a node of the graph reaches."""
    seen, todo, found = set(), [node], set()
    while todo:
        n = todo.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        variable = getattr(n, "variable", None)
        if variable is not None:
            found.add(id(variable))
        todo += [m for m, _ in n.next_functions]
    return found


def _applied(classes: set, run) -> dict:
    """Function class -> the arguments it was first applied to while `run()` runs (each class's
    forward wrapped to record them, and put back)."""
    recorded: dict = {}
    saved = {cls: cls.__dict__.get("forward") for cls in classes}

    def recorder(cls, forward):
        @functools.wraps(forward)
        def record(*args, **kwargs):
            values = args[1:] if args and isinstance(args[0], FunctionCtx) else args
            recorded.setdefault(cls, [v.detach().clone().requires_grad_(v.requires_grad)
                                      if isinstance(v, torch.Tensor) else v for v in values])
            return forward(*args, **kwargs)
        return staticmethod(record)
    try:
        for cls in classes:
            cls.forward = recorder(cls, cls.forward)
        run()
    finally:
        for cls, forward in saved.items():
            if forward is None:
                del cls.forward
            else:
                cls.forward = forward
    return recorded


def _blocks(code: UserCode, given: Arguments, first: _FirstBackward, arrays: list, names: list) -> dict:
    """Row name -> (line, col, None, why) where one gradient of the first backward alone has a wrong
    derivative along that row's argument: each gradient's own backward (a random weight on it alone)
    against autograd's twice through the forward, which leaves the backward under test out."""
    if not code.reference:
        return {}
    lines = grad_lines(code.backward, tuple(given.names))
    made, ups, grads = first.first(arrays, create_graph=True)
    ref_made, ref_ups, ref_grads = first.first(arrays, create_graph=True, function=code.autodiff)
    generator = torch.Generator().manual_seed(0)
    wrong: dict = {n: [] for n in names}
    for k, (g, r) in enumerate(zip(grads, ref_grads)):
        w = torch.randn(tuple(g.shape), generator=generator, dtype=torch.float64)
        mine = _vjp(g, made + ups, w)
        theirs = _vjp(r, ref_made + ref_ups, w)
        parts = list(zip(mine, theirs))
        per_row = parts[:len(made)] + [(torch.cat([m.ravel() for m, _ in parts[len(made):]]),
                                        torch.cat([t.ravel() for _, t in parts[len(made):]]))]
        for n, (m, t) in zip(names, per_row):
            if not torch.allclose(m, t, rtol=1e-6, atol=1e-9 * max(1.0, float(t.abs().max()))):
                wrong[n].append(given.names[given.diff[k]])
    found = {}
    for n, culprits in wrong.items():
        if len(culprits) == 1 and culprits[0] in lines:
            line, col = lines[culprits[0]]
            why = (f"the derivative of d{culprits[0]} along {n} is wrong (a detach, .data, numpy or a tensor kept "
                   "on ctx cuts autograd there?)")
            found[n] = (line, col, None, why)
    return found


def _vjp(output, inputs: list, weight) -> list:
    """d<output, weight>/d(each input), zeros where it does not depend on one (or is not differentiable)."""
    if not output.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    got = torch.autograd.grad(output, inputs, grad_outputs=weight, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g.detach() for g, t in zip(got, inputs)]
