"""A Python exercise's pairs, found and called as `check-py` finds and calls a module's layers:
`NAME_forward`/`NAME_backward` (or CS231n's `NAME_forward_naive`/`NAME_backward_naive`), or a loss
`NAME` returning `(loss, dx)`; the differentiated inputs in the forward's parameter order; the params
(`# params:`, JSON, integers kept) given fresh to every call, so a forward that updates them (running
means) changes nothing; several outputs then the cache (`lstm_step`). Every header that does not fit
the exercise's own functions is the teacher's error, at its line, before any student is graded."""

from __future__ import annotations

import copy
import inspect
import random
import re
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import GradcheckError, did_you_mean
from ..python.pymodule import SUFFIXES
from ..python.pysource import parameter_names
from ..python.usercode import gradients_of, joined, split_outputs
from .student_side import arguments, call_with


@dataclass(frozen=True, kw_only=True)
class Pair:
    """The exercise's forward and backward (or its loss: `backward` None), the teacher's, trusted, in
    this process, and how they are called."""
    owner: str
    forward: object
    backward: object
    names: tuple                      # the differentiated inputs, in the forward's parameter order
    params: dict = field(default_factory=dict)  # argument -> JSON value, in the forward's order
    order: tuple = ()                 # every argument the exercise gives, in the forward's order
    forward_name: str = ""
    backward_name: str = ""
    keep: float | None = None         # a random forward (dropout): its keep probability
    memo: Outputs | None = field(default=None, compare=False, repr=False)  # the class's outputs, when shared

    @property
    def loss(self) -> bool:
        return self.backward is None

    @property
    def functions(self) -> tuple:
        """The names a submission defines: the forward and the backward, or the loss alone."""
        return (self.forward_name,) if self.loss else (self.forward_name, self.backward_name)

    def run(self, arrays: list) -> tuple:
        """(outputs, cache) of the exercise's forward at `arrays`; a loss's cache is its gradients."""
        values = {**dict(zip(self.names, [a.copy() for a in arrays])), **arguments(copy.deepcopy(self.params))}
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = call_with(self.forward, list(self.order), values)
            if self.loss:
                return [np.asarray(result[0], dtype=float)], gradients_of(result[1], list(self.names), self.forward)
            return [np.asarray(o, dtype=float) for o in result[:-1]], result[-1]

    def output(self, arrays: list) -> np.ndarray:
        if self.memo is not None and self.keep is None:
            return self.memo.output(self, arrays)
        return joined(self.run(arrays)[0])

    def cache(self, arrays: list):
        return self.run(arrays)[1]

    def gradients(self, dout: np.ndarray, arrays: list) -> list:
        outs, cache = self.run(arrays)
        if self.loss:
            return [None if g is None else dout * g for g in cache]
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return gradients_of(self.backward(*self.upstreams(dout, outs), cache), list(self.names), self.backward)

    @staticmethod
    def upstreams(dout: np.ndarray, outs: list) -> list:
        """One upstream gradient per output (a flat one cut in the outputs' shapes when there are several)."""
        return [dout.copy()] if len(outs) == 1 else split_outputs(dout, [o.shape for o in outs])


class Outputs:
    """The exercise's forward outputs at the inputs it was called at, kept for a class: the grader
    differences the same forward at the same points for every student, so each output is computed once
    and handed out as a copy (the same bytes a new call gives). Only for a forward that gives the same
    output for the same inputs: a pair is never kept when its forward touches numpy's or Python's global
    random state (looked at on its first call and when an output is computed again), nor when an output
    computed again (at the first input asked for twice) differs.
    At most MOST_BYTES are kept (inputs and outputs); past them, outputs are computed as before."""

    MOST_BYTES = 64 << 20

    def __init__(self):
        self.lock = threading.Lock()
        self.kept: dict = {}      # (owner, the inputs' dtypes, shapes and bytes) -> the output (read-only)
        self.bytes = 0
        self.off: set = set()     # owners whose outputs are not kept
        self.checked: set = set()  # owners whose output, computed again, was the same
        self.looked: set = set()  # owners whose forward's first call was seen to leave the random states as they were

    def output(self, pair: Pair, arrays: list) -> np.ndarray:
        owner = pair.owner
        if owner in self.off:
            return joined(pair.run(arrays)[0])
        inputs = [np.asarray(a) for a in arrays]
        key = (owner, *((a.dtype.str, a.shape, a.tobytes()) for a in inputs))
        found = self.kept.get(key)
        if found is not None and owner in self.checked:
            return found.copy(order="K")
        looked = owner not in self.looked or found is not None
        states = (np.random.get_state(legacy=False), random.getstate()) if looked else None
        out = joined(pair.run(arrays)[0])
        with self.lock:
            self.looked.add(owner)
            if states is not None and not _same_state(states, (np.random.get_state(legacy=False), random.getstate())):
                self.off.add(owner)  # a random forward: its outputs are its draws'
            elif found is not None:
                if _same(found, out):
                    self.checked.add(owner)
                else:
                    self.off.add(owner)
            elif self.bytes < self.MOST_BYTES and isinstance(out, np.ndarray) and _contiguous(out):
                kept = out.copy(order="K")  # (its layout too: a sum over it adds in the same order)
                kept.flags.writeable = False
                self.kept[key] = kept
                self.bytes += kept.nbytes + sum(a.nbytes for a in inputs)
        return out


def _contiguous(a: np.ndarray) -> bool:
    return bool(a.flags.c_contiguous or a.flags.f_contiguous)


def _same(a: np.ndarray, b) -> bool:
    """The same array, bit for bit (dtype, shape, layout and bytes: NaNs and signed zeros too)."""
    return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and _contiguous(b)
            and a.flags.c_contiguous == b.flags.c_contiguous and a.tobytes() == b.tobytes())


def _same_state(a: tuple, b: tuple) -> bool:
    """The same global random states (numpy's legacy one, Python's): nothing was drawn or seeded."""
    (np_a, py_a), (np_b, py_b) = a, b
    return (py_a == py_b and np_a["bit_generator"] == np_b["bit_generator"] and np_a["has_gauss"] == np_b["has_gauss"]
            and np_a["gauss"] == np_b["gauss"] and np_a["state"]["pos"] == np_b["state"]["pos"]
            and np.array_equal(np_a["state"]["key"], np_b["state"]["key"]))


def find(module, owner: str) -> tuple | None:
    """(forward's name, backward's name or None for a loss) of `owner` in the module, as check-py's
    `FILE.py::NAME` finds it: NAME_forward/NAME_backward, the _naive pair, or a loss NAME."""
    for fwd, bwd in SUFFIXES:
        if callable(getattr(module, owner + fwd, None)) and callable(getattr(module, owner + bwd, None)):
            return owner + fwd, owner + bwd
    if callable(getattr(module, owner, None)):
        return owner, None
    return None


def pairs_of(exercise, module) -> dict:
    """owner -> Pair for each pair the exercise's parts name, with every header checked against the
    exercise's own functions (a GradcheckError at the header's line)."""
    pairs: dict = {}
    for part in exercise.parts:
        if part.owner not in pairs:
            pairs[part.owner] = _pair(exercise, module, part)
        pair = pairs[part.owner]
        if part.forward:
            continue
        if part.input not in pair.names:
            raise GradcheckError(f"part '{part.what}': {pair.forward_name} has no differentiated input "
                                 f"'{part.input}'" + did_you_mean(part.input, list(pair.names))
                                 + f" (give its shape with `# shapes:`; the pair's inputs: {', '.join(pair.names)})",
                                 part.line, 1)
    return pairs


def _pair(exercise, module, part) -> Pair:
    owner = part.owner
    found = find(module, owner)
    if found is None:
        raise GradcheckError(f"the exercise has no {owner}_forward/{owner}_backward pair (nor {owner}_forward_naive/"
                             f"{owner}_backward_naive, nor a loss {owner} returning (loss, dx))", part.line, 1)
    forward = getattr(module, found[0])
    order = parameter_names(forward)
    given = {**exercise.values.get(owner, {}), **exercise.shapes.get(owner, {})}
    params = exercise.params.get(owner, {})

    def at(name: str) -> tuple:
        line, col = exercise.where.get(f"{owner}.{name}", [part.line, 1])
        return line, col
    for name in list(given) + list(params):
        if name not in order:
            raise GradcheckError(f"{found[0]} has no parameter '{name}'" + did_you_mean(name, order)
                                 + f" (its parameters: {', '.join(order)})", *at(name))
        if name in given and name in params:
            raise GradcheckError(f"'{name}' is both an input (`# shapes:`/`# inputs:`) and a param (`# params:`)",
                                 *at(name))
    missing = [p for p in _required(forward) if p not in given and p not in params]
    if missing:
        first = next(iter(given), None)
        raise GradcheckError(f"{found[0]} needs {', '.join(missing)}: give each with `# shapes:` or `# inputs:` "
                             f"(differentiated) or `# params: {owner} {missing[0]}=JSON`",
                             *(at(first) if first else (part.line, 1)))
    keep = _keep(exercise, owner, params, at) if owner in exercise.random else None
    if keep is not None and (len(given) != 1 or found[1] is None):
        raise GradcheckError(f"`# random:` {owner}: a random forward is graded by its mask, so its pair takes one "
                             "differentiated input", *at("keep"))
    rank = {name: k for k, name in enumerate(order)}
    return Pair(owner=owner, forward=forward, backward=getattr(module, found[1]) if found[1] else None,
                names=tuple(sorted(given, key=rank.__getitem__)),
                params={k: params[k] for k in sorted(params, key=rank.__getitem__)},
                order=tuple(sorted([*given, *params], key=rank.__getitem__)),
                forward_name=found[0], backward_name=found[1] or "", keep=keep)


def _required(fn) -> list:
    try:
        found = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in found if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)]


def _keep(exercise, owner: str, params: dict, at) -> float:
    """The keep probability `# random: NAME keep=P` states: a number, or PARAM.KEY of the pair's params."""
    text = exercise.random[owner]
    if re.fullmatch(r"\w+\.\w+", text):
        param, _, key = text.partition(".")
        value = params.get(param, {}).get(key) if isinstance(params.get(param), dict) else None
        if value is None:
            raise GradcheckError(f"`# random:` keep={text}: the pair has no param {param} with a key '{key}' "
                                 f"(give it with `# params: {owner} {param}={{\"{key}\": 0.8}}`)", *at("keep"))
    else:
        try:
            value = float(text)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise GradcheckError(f"`# random:` keep={text}: the keep probability must be a number in (0, 1]", *at("keep"))
    return float(value)
