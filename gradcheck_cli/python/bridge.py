"""One bridge from an array framework (PyTorch, JAX) to the Python-layer check. The user's target is
called on float64 numpy arrays: its forward (batched over the engine's rows where the framework can
vectorise it, else one call per row), its backward through the framework's vector-Jacobian product
with the engine's upstream, and autodiff through its forward as the exact reference. `check_python`
builds the report; inputs in float32, float16 or bfloat16 are then checked again in their own dtype
against the float64 reference (precision.py).

A framework supplies only what differs between libraries, as a `Framework`: which arguments are
differentiated, how arrays cross in and out, how its batching and its VJP are called, and the fixed
upstream its low-precision rows are drawn with. Its target's parts (what is called, where the
backward is written) come as a `UserCode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..checking import precision
from ..core.errors import GradcheckError
from ..core.report import CheckReport, GateRow
from ..core.settings import Settings
from .pycheck import check_python
from .pysource import USER_ERRORS, PythonError, branch_writes, grad_lines, qualname, where
from .structure import structures
from .usercode import Layer, flat_size, joined, split_outputs

FLOAT64 = "float64"
LOW_PRECISION = tuple(precision.EPS)  # the dtypes whose inputs are checked again in themselves


@dataclass(frozen=True, kw_only=True)
class UserCode:
    """A framework target's parts: what is called, what autodiff may run, where its lines are."""
    name: str                    # the report's name when the caller gives none
    call: Callable               # the target as the user calls it, its own backward (the rule under test) included
    batched: Callable            # what the framework's batching runs over the engine's rows (forward values only)
    autodiff: Callable           # the forward as autodiff code, the rule under test left out where it can be
    reference: bool              # autodiff through `autodiff` is an exact reference for every element
    forward: Callable            # the forward as written: an error of the target as a whole is placed there
    backward: Callable           # the backward (the rule) as written: the rows' lines are in it
    parameters: tuple[str, ...]  # the forward's positional parameters that name the arguments


@dataclass(frozen=True, kw_only=True)
class Arguments:
    """The target's arguments as given (framework arrays and values passed through), their names,
    and the positions differentiated."""
    values: list
    names: list[str]
    diff: list[int]


@dataclass(frozen=True, kw_only=True)
class Pullback:
    """One call of a function with its vector-Jacobian product pending: the shapes of its
    floating-point outputs, and `pull`, which takes one float64 cotangent per output and gives one
    float64 gradient per differentiated argument (None where the backward returned none)."""
    shapes: list[tuple]
    pull: Callable[[list[np.ndarray]], list[np.ndarray | None]]
    outputs: list[np.ndarray] = field(default_factory=list)  # the outputs, as float64 arrays (where the framework keeps them)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One call of the target's own backward at the given point, in float64, as the main check made
    it: what the layouts' check (torch_layouts.py) takes as its first contiguous run."""
    upstream: list[np.ndarray]
    outputs: list[np.ndarray]
    grads: list[np.ndarray | None]


class Framework(Protocol):
    """What one array library supplies to the bridge. `arrays` are float64 numpy arrays, one per
    differentiated position of `values` (the arguments as given); `dtype` is a name in `precision.EPS`
    or "float64"."""

    word: str  # what the library calls its arrays, in messages ("tensor", "array")

    def differentiable(self, values: list) -> list[int]:
        """The positions of `values` that are differentiated."""

    def to_numpy(self, value: Any) -> np.ndarray:
        """A differentiated argument as a float64 numpy array."""

    def dtype_name(self, value: Any) -> str:
        """A differentiated argument's dtype, by name ("float32", ...)."""

    def output_dtypes(self, function: Callable, values: list, diff: list[int], arrays: list) -> list[str]:
        """The dtypes, by name, of `function`'s floating-point outputs when called in float64."""

    def evaluate(self, function: Callable, values: list, diff: list[int], arrays: list,
                 dtype: str = "float64") -> list[np.ndarray]:
        """`function`'s floating-point outputs at one point, called in `dtype`, as float64 numpy arrays."""

    def evaluate_rows(self, function: Callable, values: list, diff: list[int], arrays: list) -> np.ndarray:
        """`function`'s outputs, flat, at each row of a leading axis of `arrays`, by the library's
        batching (vmap): (rows, outputs); raises when the function cannot be batched."""

    def pullback(self, function: Callable, values: list, diff: list[int], arrays: list, dtype: str) -> Pullback:
        """`function` called with `arrays` in `dtype`, its vector-Jacobian product pending."""

    def seeded_upstream(self, shapes: list[tuple]) -> list[np.ndarray]:
        """The fixed upstream, one array per output, that the low-precision rows are computed for."""


@dataclass(kw_only=True)
class Bridge:
    """The target as plain calls on float64 numpy arrays: the forward, backward and reference a
    `Layer` takes."""
    framework: Framework
    code: UserCode
    given: Arguments
    shapes: list[tuple] = field(default_factory=list)  # the outputs' shapes at the latest single point
    vectorises: bool | None = None  # does the framework's batching run the target? (found on the first rows)
    first: Call | None = None  # the first call of the backward at the given point (kept when the framework gives outputs)

    def forward(self, arrays: list) -> np.ndarray:
        """The output at one point, or at each row of a leading axis of points (the engine's rows)."""
        if all(np.ndim(a) == np.ndim(self.given.values[i]) + 1 for i, a in zip(self.given.diff, arrays)):
            return self._rows(arrays)
        outs = self.framework.evaluate(self.code.call, self.given.values, self.given.diff, arrays)
        if not outs:
            raise PythonError(f"{self.code.name} returned no floating-point {self.framework.word}")
        self.shapes = [tuple(o.shape) for o in outs]
        return joined(outs)

    def _rows(self, arrays: list) -> np.ndarray:
        """Batched by the framework where the target allows it, else one call per row (every element
        is then still differenced one by one, within the budget, as torch's own gradcheck does)."""
        n = np.shape(arrays[0])[0]
        if self.vectorises is not False:
            try:
                out = np.asarray(self.framework.evaluate_rows(self.code.batched, self.given.values, self.given.diff,
                                                              arrays), dtype=np.float64)  # as evaluate gives them
                self.vectorises = True
                whole = self.shapes[0] if len(self.shapes) == 1 else (flat_size(self.shapes),)
                return out.reshape((n,) + whole)
            except USER_ERRORS:  # noqa: BLE001 - a target the batching cannot run (a Function without a vmap rule)
                self.vectorises = False
        return np.stack([self.forward([a[r] for a in arrays]) for r in range(n)])

    def backward(self, dout: np.ndarray, arrays: list) -> list:
        """The gradients for `dout` through the target's own backward (the rule under test)."""
        pullback = self.framework.pullback(self.code.call, self.given.values, self.given.diff, arrays, FLOAT64)
        upstream = split_outputs(dout, pullback.shapes)
        grads = pullback.pull(upstream)
        if self.first is None and pullback.outputs and self._at_given(arrays):
            self.first = Call(upstream=[np.array(u, dtype=np.float64) for u in upstream], outputs=pullback.outputs,
                              grads=[None if g is None else np.array(g) for g in grads])
        return grads

    def _at_given(self, arrays: list) -> bool:
        """Are `arrays` the given point's values, exactly?"""
        return all(np.array_equal(np.asarray(a), self.framework.to_numpy(self.given.values[i]))
                   for i, a in zip(self.given.diff, arrays))

    def reference(self, dout: np.ndarray, arrays: list) -> list | None:
        """The exact gradients for `dout`, autodiff through the forward with the rule left out (an
        argument the forward does not use: 0); None where the target has no such forward."""
        if not self.code.reference:
            return None
        pullback = self.framework.pullback(self.code.autodiff, self.given.values, self.given.diff, arrays, FLOAT64)
        grads = pullback.pull(split_outputs(dout, pullback.shapes))
        return [np.zeros(np.shape(a)) if g is None else g for g, a in zip(grads, arrays)]

    def layer(self, name: str | None) -> Layer:
        """A Layer whose rows point into the user's backward (its rule), not into this bridge; the
        bridge takes the engine's rows itself (batched, or one call each)."""
        code, names = self.code, self.given.names
        path, line = where(code.backward)
        lines = grad_lines(code.backward, tuple(names))
        wanted = [names[i] for i in self.given.diff]
        branches = branch_writes(code.backward, tuple(names))
        return Layer(name or code.name, self.forward, self.backward, wanted, path, line, where(code.forward),
                     {n: lines[n] for n in wanted if n in lines}, backward_name=qualname(code.backward),
                     code=code.backward, reference=self.reference, batched=True, none_is_zero=True,
                     branches={n: branches[n] for n in wanted if n in branches})


def argument_names(parameters: tuple[str, ...], count: int) -> list[str]:
    """The first `count` arguments' names: the forward's parameters, then input<k> past them."""
    return [parameters[i] if i < len(parameters) else f"input{i}" for i in range(count)]


def arguments(framework: Framework, code: UserCode, inputs) -> Arguments:
    """`inputs` (a tuple of arguments, or a dict by name) as named arguments."""
    values = list(inputs.values()) if isinstance(inputs, dict) else list(inputs)
    names = list(inputs) if isinstance(inputs, dict) else argument_names(code.parameters, len(values))
    return Arguments(values=values, names=names, diff=framework.differentiable(values))


def nothing_to_differentiate(framework: Framework, code: UserCode, name: str | None,
                             settings: Settings) -> CheckReport:
    """The report of a target given no floating-point argument."""
    report = CheckReport(name or code.name, settings=settings)
    report.error = GradcheckError(f"no floating-point {framework.word} among the inputs: nothing to differentiate",
                                  None, None)
    return report


def check(framework: Framework, code: UserCode, inputs, *, name: str | None, settings: Settings) -> CheckReport:
    """The report of a framework target at `inputs`: never raises for the user's errors."""
    given = arguments(framework, code, inputs)
    if not given.diff:
        return nothing_to_differentiate(framework, code, name, settings)
    return check_arguments(framework, code, given, name=name, settings=settings)


def check_arguments(framework: Framework, code: UserCode, given: Arguments, *, name: str | None,
                    settings: Settings, structure: dict | None = None, low_rows: bool = True,
                    bridge: Bridge | None = None) -> CheckReport:
    """The Python-layer check in float64, then, when it found no error, the low-precision rows of
    the first differentiated argument's dtype that is one (unless `low_rows` is False: a native
    check, native.py, adds its own). `structure`: the inputs' stated structures (structure.py),
    kept by both. `bridge`: the Bridge to run it through (its `first` call then read by the caller)."""
    bridge = bridge or Bridge(framework=framework, code=code, given=given)
    layer = bridge.layer(name)
    report = check_python(layer, {given.names[i]: framework.to_numpy(given.values[i]) for i in given.diff}, settings,
                          structure)
    low = [d for d in (framework.dtype_name(given.values[i]) for i in given.diff) if d in LOW_PRECISION]
    if report.error is None and low and low_rows:
        report.gates += low_precision_rows(framework, code, given, low[0], layer, structure)
    return report


def low_precision_rows(framework: Framework, code: UserCode, given: Arguments, dtype: str,
                       layer: Layer, structure: dict | None = None) -> list[GateRow]:
    """GateRows, one per differentiated argument: the target's backward in `dtype` against the
    float64 reference (autodiff through the forward), allowed K× autodiff's own error in `dtype`;
    an input of a stated structure compared as its gradient's part along that structure."""
    names = [given.names[i] for i in given.diff]
    stated = structures(structure, names)

    def seeded(function, dtype):
        grads = seeded_gradients(framework, function, given, dtype)
        return None if grads is None else [stated[n].pull(g) if n in stated else g for n, g in zip(names, grads)]
    reference = seeded(code.autodiff, FLOAT64)
    own = seeded(code.call, dtype)
    if reference is None or own is None:
        return []
    autodiff = seeded(code.autodiff, dtype)
    return precision.rows(reference, own, autodiff, names, dtype, layer)


def seeded_gradients(framework: Framework, function: Callable, given: Arguments, dtype: str) -> list | None:
    """The gradients through `function` in `dtype` for the framework's fixed upstream, as float64
    arrays; None when that fails or a gradient is missing (the float64 check says why)."""
    arrays = [framework.to_numpy(given.values[i]) for i in given.diff]
    try:
        pullback = framework.pullback(function, given.values, given.diff, arrays, dtype)
        grads = pullback.pull(framework.seeded_upstream(pullback.shapes))
    except USER_ERRORS:  # noqa: BLE001 - the user's code may raise anything
        return None
    return None if any(g is None for g in grads) else grads


def placed(values: list, diff: list[int], parts: Sequence) -> list:
    """`values` with `parts` at the differentiated positions."""
    out = list(values)
    for i, part in zip(diff, parts):
        out[i] = part
    return out
