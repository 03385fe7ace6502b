"""SymPy's exact derivatives at the point. Expressions are built from objects, never from text.

Each gate's output elements are SymPy expressions of symbols for its input elements (the registry's
`sym` forms). Their partial derivatives come from SymPy's own rules: for an elementwise gate,
`sympy.diff` of its one-element expression (cached per gate); otherwise a reverse pass over the
expression tree that takes each function's derivative from SymPy (`F(d).diff(d)`) and applies the
chain rule. The partials are evaluated exactly at the point (the floats substituted as they are),
then composed in reverse over the graph — linear in its size, independent of the registry's
hand-written VJPs, of users' d lines and of autodiff's accumulation. Along with each derivative
comes the magnitude of the terms summed into it, which bounds the rounding any float computation
of it can have.

Work is counted, not timed: past `budget` expression nodes the rest is skipped with a note, so
the same input gives the same result on any machine, loaded or not.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from ..gates import REGISTRY, sym_number
from ..gates.record import Gate
from .autodiff import run_graph
from ..language.graph import Composite, Graph
from . import jacobian_cache, partials_cache
from .symvalues import Exhausted, Recorded, Unsupported, Work, array_value, shared, count, partials, value_at  # noqa: F401 - part of the module's API
from .symvalues import replay, valid_spent  # noqa: F401 - part of the module's API
from .symvalues import tree_of, tree_value
from ..core.settings import DEFAULT_SYMBOLIC_BUDGET as DEFAULT_BUDGET

SYMBOL_COST = 4  # work units per SymPy symbol made for a gate's input element
RULE_PAST = 20_000   # a gate whose SymPy form would build more expression nodes than this, and which has an
                     # index rule (matmul), takes its local Jacobian from the rule, checked by SymPy first
SYMBOL_ARRAYS = 16   # operand shapes whose symbols are kept for the next gate
KEPT_BUILDS = 512    # gate calls' SymPy expressions kept between checks (symbolic._kept), the oldest going first,
KEPT_COST = 200_000  # and at most this many expression nodes of them (their build cost)
RULE_ENTRIES = 64    # index-rule entries per work unit: an entry is a gathered value, not a SymPy node


@dataclass
class SymbolicResult:
    value: np.ndarray | None      # gradient/Jacobian (output.shape + node.shape), or None when skipped
    magnitude: np.ndarray | None = None  # Σ |terms| summed into each entry (bounds float rounding)
    note: str | None = None


# --- building expressions ---------------------------------------------------------------------

def make_symbols(shape: tuple, prefix: str) -> np.ndarray:
    """An object array of fresh real SymPy symbols `prefix0`, `prefix1`, ..."""
    import sympy
    out = np.empty(shape, dtype=object)
    for k, idx in enumerate(np.ndindex(*shape)):
        out[idx] = sympy.Symbol(f"{prefix}{k}", real=True)
    return out


def numbers(value) -> np.ndarray:
    """A float array as an object array of SymPy numbers."""
    return np.asarray(np.frompyfunc(sym_number, 1, 1)(np.asarray(value, dtype=float)), dtype=object)


def build_cost(node, shapes: list) -> int:
    """Expression nodes a gate's SymPy form builds: one per output element, more where its registry
    entry says so (argmax compares every pair). Charged before anything is built."""
    extra = node.gate.sym_cost(shapes, node.attrs) if node.gate.sym_cost is not None else 0
    return node.size + extra


def expressions(graph: Graph, inputs: list, overrides: dict | None = None, upto: int | None = None,
                work: "Work | None" = None) -> dict:
    """SymPy expressions of every node up to the output (or `upto`), from object arrays for the
    leaves in order. `overrides` (node id -> object array) replaces a node's expression. With
    `work`, each gate's build cost is charged before it is built (Exhausted past the budget)."""
    overrides = overrides or {}
    expr = {leaf.id: np.asarray(v, dtype=object) for leaf, v in zip(graph.leaves(), inputs)}
    last = graph.output if upto is None else upto
    for node in graph.nodes[: last + 1]:
        if node.id in overrides:
            expr[node.id] = overrides[node.id]
        elif node.kind in ("literal", "const") or (node.kind == "leaf" and node.id not in expr):
            expr[node.id] = numbers(node.value)
        elif node.gate is not None:
            if work is not None:
                work.spend(build_cost(node, [np.shape(expr[i]) for i in node.inputs]))
            expr[node.id] = np.asarray(gate_sym(node.gate, [expr[i] for i in node.inputs], node.attrs), dtype=object)
    return expr


def evaluate(graph: Graph, inputs: list) -> np.ndarray:
    """A small graph's output as SymPy expressions, for object-array inputs in leaf order."""
    return expressions(graph, inputs)[graph.output]


# --- a gate's local Jacobian --------------------------------------------------------------------

def gate_sym(gate: Gate | Composite, args: list, attrs: dict):
    """A gate's SymPy form on these operands: the registry's, or a composite's body evaluated."""
    if isinstance(gate, Composite):
        return evaluate(gate.body, list(args))
    assert gate.sym is not None  # every registry gate has its SymPy form
    return gate.sym(args, attrs)


_elementwise: dict = {}
_built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gate node -> (where its symbols sit, expressions)
_kept: dict = {}  # (the gate's structure, its attributes, operand shapes) -> (where, expressions, build cost), oldest first
_kept_cost = [0]  # the build costs _kept holds
_structures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a user gate -> its structure (None: none)


def _built_key(node, args: list):
    """What a gate call's expressions are kept under: its gate's structure, attributes and operand shapes,
    which are all its SymPy form reads (`_kept`: shared by every call of a gate alike, in this check and
    the next: a tree calling one gate a hundred times, or a file checked again in one process (the
    editor's server, a notebook), builds it once); None where an attribute or a constant is not plain
    data (then its node keeps them, `_built`, for this graph only)."""
    structure = _structure(node.gate)
    attrs = _plain(node.attrs)
    if structure is None or attrs is None:
        return None
    return structure, attrs, tuple(tuple(np.shape(a)) for a in args)


def _structure(gate):
    """A registry gate itself (held by the key, so never confused with another); a user gate by what
    its body is made of, node by node: kinds, gates, inputs, attributes, shapes and constants
    (two checks of one file, or two definitions alike, share it). None where some part is not plain data."""
    if not isinstance(gate, Composite):
        return _Itself(gate)
    if gate not in _structures:
        parts = []
        for n in gate.body.nodes:
            inner = None if n.gate is None else _structure(n.gate)
            attrs = _plain(n.attrs)
            value = None if n.value is None else _plain(np.asarray(n.value))
            if (n.gate is not None and inner is None) or attrs is None or (n.value is not None and value is None):
                _structures[gate] = None
                return None
            parts.append((n.kind, inner, tuple(n.inputs), attrs, tuple(n.shape), value))
        _structures[gate] = ("user gate", tuple(parts), gate.body.output, gate.shapes)
    return _structures[gate]


def graph_structure(graph: Graph):
    """What a whole graph is made of, node by node: names, kinds, gates (`_structure`), inputs, attributes,
    shapes and values, and its output: hashable plain data, equal only for graphs alike (a key of
    `jacobian_cache`); None where some part is not plain data."""
    parts = []
    for n in graph.nodes:
        inner = None if n.gate is None else _structure(n.gate)
        attrs = _plain(n.attrs)
        value = None if n.value is None else _plain(np.asarray(n.value))
        if (n.gate is not None and inner is None) or attrs is None or (n.value is not None and value is None):
            return None
        parts.append((n.name, n.kind, inner, tuple(n.inputs), attrs, tuple(n.shape), value))
    return ("graph", tuple(parts), graph.output)


class _Itself:
    """A registry gate in a key, compared and hashed by identity (its fields need not be hashable)."""
    __slots__ = ("gate",)

    def __init__(self, gate) -> None:
        self.gate = gate

    def __eq__(self, other) -> bool:
        return isinstance(other, _Itself) and other.gate is self.gate

    def __hash__(self) -> int:
        return id(self.gate)


def _plain(x):
    """x as hashable data that is equal only for an equal x (types, float bits and array bytes
    included), or None when it is not plain data (an object array, a function, ...)."""
    if x is None or isinstance(x, (bool, int, str)) and not isinstance(x, np.generic):
        return (type(x).__name__, x)
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        a = np.asarray(x)
        return None if a.dtype.hasobject else ("array", type(x).__name__, a.dtype.str, a.shape, a.tobytes())
    if isinstance(x, float):
        return ("float", x.hex())
    if isinstance(x, complex):
        return ("complex", x.real.hex(), x.imag.hex())
    if isinstance(x, slice):
        parts = (_plain(x.start), _plain(x.stop), _plain(x.step))
        return None if None in parts else ("slice", parts)
    if isinstance(x, (tuple, list)):
        items = tuple(_plain(v) for v in x)
        return None if None in items else (type(x).__name__, items)
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        items = tuple((k, _plain(v)) for k, v in sorted(x.items()))
        return None if any(v is None for _, v in items) else ("dict", items)
    return None


def _keep(key, built: tuple, cost: int) -> bool:
    """Keep a build in `_kept`, the oldest going past KEPT_BUILDS entries or KEPT_COST expression nodes;
    False for one larger than KEPT_COST alone."""
    if cost > KEPT_COST:
        return False
    _kept[key] = (*built, cost)
    _kept_cost[0] += cost
    while _kept and (len(_kept) > KEPT_BUILDS or _kept_cost[0] > KEPT_COST):
        _kept_cost[0] -= _kept.pop(next(iter(_kept)))[2]
    return True


def _elementwise_partials(gate, attrs: dict, arity: int) -> list:
    """For an elementwise gate: SymPy's partial w.r.t. each input, as a `symvalues.tree_of` tree whose
    symbol k is input k. Differentiated once per kind of call; a registry gate's are kept between runs
    (`partials_cache`), where a later run finds them without importing SymPy."""
    key = (gate.name, repr(sorted(attrs.items())), arity)
    if key not in _elementwise:
        kept = partials_cache.store() if REGISTRY.get(gate.name) is gate else None
        name = f"{gate.name}|{key[1]}|{arity}"
        trees = kept.get(name) if kept is not None else None
        if trees is None or len(trees) != arity:
            trees = fresh_partials(gate, attrs, arity)
            if kept is not None:
                kept.put(name, trees)
        _elementwise[key] = trees
    return _elementwise[key]


def fresh_partials(gate, attrs: dict, arity: int) -> list:
    """An elementwise gate's partials as SymPy differentiates them now, as `_elementwise_partials` gives them."""
    import sympy
    d = [sympy.Symbol(f"d{k}", real=True) for k in range(arity)]
    expr = np.asarray(gate_sym(gate, [np.asarray(s, dtype=object) for s in d], attrs), dtype=object).item()
    where = {s: k for k, s in enumerate(d)}
    return [tree_of(expr.diff(s), where) for s in d]


def local_jacobian(node, args: list, work: Work, rules: dict | None = None) -> list:
    """Per input slot, the gate's exact local Jacobian at the point as (rows, cols, values):
    ∂out[row]/∂input[col] (flat indices), zero entries left out. A large gate with an index rule
    takes it from the rule once SymPy has confirmed the rule at reduced shapes; `rules` (the gate's
    name and line -> how) records where that happened. Otherwise SymPy's expressions of the gate,
    differentiated at the point: the call's Jacobian is kept between runs (`jacobian_cache`, keyed by the
    gate (a registry gate by its name, a user gate by its body), its attributes, its operands' shapes and
    values) with the work it spent, spent again here, so that a later run need not import SymPy."""
    gate = node.gate
    if gate.elementwise:
        return _elementwise_jacobian(node, args, work)
    by_rule = _rule_jacobian(node, args, work)
    if by_rule is None:
        by_rule = _slice_jacobian(node, args, work)
    if by_rule is not None:
        jac, how = by_rule
        if rules is not None:
            rules[f"{node.name} (line {node.pos.line})"] = how
        return jac
    key = _built_key(node, args)
    stored = jacobian_cache.key_of(key, args) if key is not None else None
    kept_jacobians = jacobian_cache.store() if stored is not None else None
    if stored is None or kept_jacobians is None or kept_jacobians.path is None:
        return _sympy_jacobian(node, args, work, key)
    found = kept_jacobians.get(stored, node.size, [int(np.size(a)) for a in args])
    if found is not None:  # this call's Jacobian as SymPy made it in an earlier run, its work spent again
        spent, jac = found
        replay(work, spent)
        return jac
    recorded = Recorded(work)
    jac = _sympy_jacobian(node, args, recorded, key)
    kept_jacobians.put(stored, recorded.spent, jac)
    return jac


def _sympy_jacobian(node, args: list, work: Work, key) -> list:
    """`local_jacobian` from SymPy's expressions of the gate (`key`: what they are kept under, `_built_key`)."""
    gate, attrs = node.gate, node.attrs
    # before any expression is built; a symbol the expressions use costs about as much as visiting
    # SYMBOL_COST expression nodes (one the gate does not read, as x[i] reads one of x's, costs nothing)
    work.spend(build_cost(node, [np.shape(a) for a in args]))
    kept = _kept.get(key) if key is not None else None
    if kept is not None:  # the expressions depend on the gate, its attributes and the shapes only
        where, out, _ = kept
        _kept.pop(key, None)
        _kept[key] = kept  # the newest now
    elif node in _built:
        where, out = _built[node]
    else:
        slots = [_symbols(tuple(np.shape(a)), k) for k, a in enumerate(args)]
        out = np.asarray(gate_sym(gate, [sym for sym, _ in slots], attrs), dtype=object).ravel()
        used = set().union(*(e.free_symbols for e in out if _is_expression(e)))
        where = {}  # the used symbols' places, in time linear in the smaller of the two per slot
        for _, place in slots:
            if len(place) <= len(used):
                where.update((s, w) for s, w in place.items() if s in used)
            else:
                where.update((s, place[s]) for s in used if s in place)
        if key is None or not _keep(key, (where, out), build_cost(node, [np.shape(a) for a in args])):
            _built[node] = (where, out)  # for this graph only
    work.spend(SYMBOL_COST * len(where))
    flat = [np.ravel(a) for a in args]
    point = {s: _number(flat[k][e]) for s, (k, e) in where.items()}
    entries: list[tuple[list, list, list]] = [([], [], []) for _ in args]  # per slot: rows, cols, values
    for o, expr in enumerate(out):
        if not _is_expression(expr):
            continue  # a plain number: no dependence
        for s, d in partials(expr, point, work).items():
            if s in where and d != 0:
                k, e = where[s]
                entries[k][0].append(o)
                entries[k][1].append(e)
                entries[k][2].append(d)
    return [(np.asarray(r, dtype=int), np.asarray(c, dtype=int),
             np.asarray(v, dtype=complex if any(isinstance(x, complex) for x in v) else float)) for r, c, v in entries]


def _is_expression(e) -> bool:
    """A SymPy expression, not a plain number: asked of its class, as `hasattr(e, "free_symbols")` did
    not (SymPy's property walked the whole expression for its symbols to answer)."""
    return getattr(type(e), "free_symbols", None) is not None


def _rule_jacobian(node, args: list, work: Work) -> tuple[list, str] | None:
    """The local Jacobian by the gate's index rule and how it was had, for a gate past RULE_PAST
    nodes whose rule SymPy confirms at reduced shapes; None otherwise (SymPy's expressions then)."""
    gate = node.gate
    rule = gate.index_rule if isinstance(gate, Gate) else None
    shapes = [tuple(np.shape(a)) for a in args]
    if rule is None or build_cost(node, shapes) <= RULE_PAST:
        return None
    small = confirmed_at(gate, shapes, node.attrs, work)
    if small is None:
        return None
    found = rule.jacobian([np.asarray(a) for a in args], node.attrs)
    work.spend(max(1, sum(r.size for r, _, _ in found) // RULE_ENTRIES))
    jac = []
    for rows, cols, values in found:
        values = np.asarray(values, dtype=complex if np.iscomplexobj(values) else float)
        keep = values != 0
        jac.append((rows[keep], cols[keep], values[keep]))
    at = " and ".join("×".join(map(str, s)) or "scalar" for s in small)
    return jac, f"by the index rule {rule.text}, which SymPy confirmed on {gate.name}'s own form at {at}"


SLICE_PAST = 256  # a one-operand gate along `axes` whose operand has more elements than this (and more than
                  # one slice) takes its local Jacobian from one slice's SymPy partials, confirmed first


class _Slices:
    """Where a gate along `axes` sits its slices: the operand's and the output's flat indices, one row
    per slice (the axes not reduced), one column per element within it; None where the output's axes
    are not the operand's others (the reduced ones dropped, kept as 1, or kept whole)."""

    def __init__(self, shape: tuple, axes: tuple, out_shape: tuple):
        self.shape, self.axes, self.out_shape = shape, axes, out_shape
        lead = [i for i in range(len(shape)) if i not in axes]
        self.n = math.prod(shape[i] for i in lead)
        self.slice_shape = tuple(1 if i in lead else n for i, n in enumerate(shape))
        self.cols = self.flat(shape, axes)
        self.rows = None
        if len(out_shape) == len(shape) and all(out_shape[i] == shape[i] for i in lead):
            self.rows = self.flat(out_shape, axes)
        elif out_shape == tuple(shape[i] for i in lead):
            self.rows = np.arange(self.n).reshape(self.n, 1)

    def flat(self, shape: tuple, axes: tuple) -> np.ndarray:
        """Flat indices of an array of `shape`, the `axes` moved last: (slices, per slice)."""
        return np.moveaxis(np.arange(math.prod(shape)).reshape(shape), axes, tuple(range(-len(axes), 0))).reshape(self.n, -1)


def _slice_jacobian(node, args: list, work: Work) -> tuple[list, str] | None:
    """The local Jacobian of a one-operand gate along `axes` (logsumexp, softmax, sum, mean, norm, ...)
    from SymPy's partials of its own form on one slice, evaluated at every slice's values at once: for a
    large operand, what the elementwise gates do per element. SymPy first confirms, on the gate's form
    at reduced shapes, that each slice's expressions are the one slice's, symbol for symbol; else None
    (and None below SLICE_PAST elements, or with one slice: SymPy's expressions then)."""
    gate, attrs = node.gate, node.attrs
    if not isinstance(gate, Gate) or len(args) != 1 or gate.sym is None or "axes" not in attrs:
        return None
    x = np.asarray(args[0])
    if x.size <= SLICE_PAST or not attrs["axes"]:
        return None
    axes = tuple(sorted(a % x.ndim for a in attrs["axes"]))
    slices = _Slices(x.shape, axes, node.shape)
    if slices.rows is None or slices.n <= 1:
        return None
    one = _one_slice(gate, attrs, slices, work)
    if one is None:
        return None
    symbols, partials_of, small = one
    point = x.reshape(-1)[slices.cols]  # (slices, per slice)
    work.spend(node.size + x.size)  # vectorised over the slices: an entry costs about one expression node
    columns = [point[:, j] for j in range(point.shape[1])]
    values_at = {} if symbols is None else {s: columns[j] for j, s in enumerate(symbols)}
    rows, cols, vals = [], [], []
    for q, j, deriv, tree in partials_of:
        # a tree's symbol k is column k: the very evaluation `array_value` makes of the derivative
        v = np.broadcast_to(tree_value(tree, columns) if tree is not None else
                            array_value(deriv, {s: values_at[s] for s in deriv.free_symbols if s in values_at}),
                            (slices.n,))
        rows.append(slices.rows[:, q])
        cols.append(slices.cols[:, j])
        vals.append(v)
    dtype = complex if any(np.iscomplexobj(v) for v in vals) else float
    r, c = np.concatenate(rows), np.concatenate(cols)
    v = np.concatenate(vals).astype(dtype)
    keep = v != 0
    at = "×".join(map(str, small)) or "scalar"
    one_shape = "×".join(map(str, slices.slice_shape))
    return ([(r[keep], c[keep], v[keep])],
            f"by SymPy's partials of {gate.name}'s own form on one {one_shape} slice, evaluated at each of its "
            f"{slices.n} slices; SymPy confirmed at {at} that every slice's form is that one's")


_one_slices: dict = {}


def _one_slice(gate: Gate, attrs: dict, slices: _Slices, work: Work):
    """One slice's symbols (in the slices' column order; None where an earlier run's answer was read),
    its nonzero partials (output column, operand column, SymPy's derivative, and the derivative as a
    `tree_of` tree whose symbol k is column k, or None where it has no such tree), and the reduced shape
    at which every slice was confirmed to be it; None where a slice of the reduced form differs. Kept
    between runs (`jacobian_cache`), trees and all, where every derivative has its tree."""
    small = tuple(n if i in slices.axes else min(n, 2) for i, n in enumerate(slices.shape))
    key = (gate.name, gate.sym, repr(sorted(attrs.items())), slices.shape, slices.axes)
    one_size, small_size = math.prod(slices.slice_shape), math.prod(small)
    # charged whether or not this process built it before: the same input spends the same work
    work.spend(SYMBOL_COST * (one_size + small_size) + 4 * (one_size + small_size))
    if key not in _one_slices:
        question = _answer_key(("one slice", _Itself(gate), _plain(attrs), slices.shape, slices.axes))
        kept = _kept_slice(_answer(question), slices)
        if kept is not None:  # as SymPy made it in an earlier run
            same, found = kept
            _one_slices[key] = (None, found, small if same else None)
        else:
            symbols, found, same = _slice_partials(gate, attrs, slices, small)
            _one_slices[key] = (symbols, found, small if same else None)
            if len(found) <= jacobian_cache.MAX_VALUES and all(tree is not None for _, _, _, tree in found):
                _keep_answer(question, {"same": same, "partials": [[q, j, tree] for q, j, _, tree in found] if same else []})
    symbols, found, confirmed = _one_slices[key]
    if confirmed is None:
        return None
    return symbols, found, confirmed


def _slice_partials(gate: Gate, attrs: dict, slices: _Slices, small: tuple) -> tuple:
    """`_one_slice`'s symbols and partials as SymPy makes them now, and whether every slice is the one."""
    import sympy
    sym = make_symbols(slices.slice_shape, "s")
    symbols = list(np.moveaxis(sym, slices.axes, tuple(range(-len(slices.axes), 0))).reshape(-1))
    out_cols = _slice_outputs(np.asarray(gate_sym(gate, [sym], attrs), dtype=object), slices)
    column = {s: j for j, s in enumerate(symbols)}
    found = []
    for q, expr in enumerate(out_cols):
        for j, s in enumerate(symbols):
            d = sympy.diff(expr, s) if s in getattr(expr, "free_symbols", ()) else 0
            if d != 0:
                try:
                    tree = tree_of(d, column)
                except (Unsupported, KeyError):
                    tree = None  # evaluated from SymPy's expression, which raises where the tree could not be made
                found.append((q, j, d, tree))
    return symbols, found, _every_slice_is_one(gate, attrs, slices, small, symbols, out_cols)


def _kept_slice(answer: dict | None, slices: _Slices) -> tuple | None:
    """(every slice the one?, the partials as `_one_slice` gives them) from a kept answer; None where it
    does not hold (another shape's, or a tree not of `tree_of`'s shape or reading past the slice)."""
    if answer is None or set(answer) != {"same", "partials"} or not isinstance(answer["same"], bool):
        return None
    found, partials = [], answer["partials"]
    outputs, inputs = (slices.rows.shape[1] if slices.rows is not None else 0), slices.cols.shape[1]
    if not isinstance(partials, list):
        return None
    for entry in partials:
        if not (isinstance(entry, list) and len(entry) == 3 and all(type(i) is int for i in entry[:2])):
            return None
        q, j, tree = entry
        if not (0 <= q < outputs and 0 <= j < inputs and partials_cache.valid(tree) and _symbols_below(tree, inputs)):
            return None
        found.append((q, j, None, tree))
    return answer["same"], found


def _symbols_below(tree: list, n: int) -> bool:
    """Whether every symbol of a (valid) tree is one of the first n."""
    stack = [tree]
    while stack:
        t = stack.pop()
        if t[0] == "s" and t[1] >= n:
            return False
        stack.extend(a for a in t[1:] if isinstance(a, list))
    return True


def _slice_outputs(out: np.ndarray, slices: _Slices) -> list:
    """One slice's output expressions in the slices' column order."""
    if len(slices.out_shape) == len(slices.shape):
        return list(np.moveaxis(out, slices.axes, tuple(range(-len(slices.axes), 0))).reshape(-1))
    return list(np.ravel(out))


def _every_slice_is_one(gate: Gate, attrs: dict, slices: _Slices, small: tuple, symbols: list, one: list) -> bool:
    """The gate's form on an operand of the reduced shape `small` (its other axes at most 2 long) is, slice
    by slice, the one slice's expressions with that slice's symbols: symbol for symbol."""
    import sympy
    if math.prod(n for i, n in enumerate(small) if i not in slices.axes) < 2:
        return False  # nothing to compare: a second slice is needed
    if len(slices.out_shape) == len(slices.shape):
        out_small = tuple(slices.out_shape[i] if i in slices.axes else n for i, n in enumerate(small))
    else:
        out_small = tuple(n for i, n in enumerate(small) if i not in slices.axes)
    reduced_slices = _Slices(small, slices.axes, out_small)
    if reduced_slices.rows is None:
        return False
    sym = make_symbols(small, "c")
    out = np.asarray(gate_sym(gate, [sym], attrs), dtype=object)
    if out.shape != out_small:
        return False
    flat_sym, flat_out = sym.reshape(-1), out.reshape(-1)
    for p in range(reduced_slices.n):
        rename = {s: flat_sym[c] for s, c in zip(symbols, reduced_slices.cols[p])}
        for expr, r in zip(one, reduced_slices.rows[p]):
            got = flat_out[r]
            want = expr.xreplace(rename) if hasattr(expr, "xreplace") else expr
            if got != want and sympy.expand(got - want) != 0:
                return False
    return True


_confirmed: dict = {}


def reduced(shapes: list) -> list:
    """Small shapes with the same ranks and the same pattern of equal and unit axes: each distinct
    axis length past 1 becomes the next of 2, 3, 4, ..."""
    sizes: dict = {}
    for shape in shapes:
        for n in shape:
            if n > 1 and n not in sizes:
                sizes[n] = len(sizes) + 2
    return [tuple(sizes.get(n, n) for n in shape) for shape in shapes]


def confirmed_at(gate: Gate, shapes: list, attrs: dict, work: Work) -> list | None:
    """The reduced shapes at which the gate's index rule gives exactly SymPy's partials of its `sym`
    form (every entry, symbol for symbol), or None where they differ."""
    assert gate.index_rule is not None and gate.sym is not None
    small = reduced(shapes)
    key = (gate.index_rule, gate.sym, repr(sorted(attrs.items())), tuple(small))
    # charged whether or not this process confirmed it before: the same input spends the same work
    work.spend(sum(int(np.prod(s)) for s in small) * SYMBOL_COST + int(gate.sym_cost(small, attrs) if gate.sym_cost else 0))
    if key not in _confirmed:
        question = _answer_key(("index rule confirmed", _Itself(gate), _plain(attrs), tuple(small)))
        kept = _answer(question)
        if kept is not None and set(kept) == {"same"} and isinstance(kept["same"], bool):
            _confirmed[key] = small if kept["same"] else None  # as SymPy found in an earlier run
        else:
            same = _rule_is_sympys(gate, small, attrs)
            _confirmed[key] = small if same else None
            _keep_answer(question, {"same": same})
    return _confirmed[key]


def _answer_key(question) -> str | None:
    """A question whose answer SymPy gives from it alone, as a `jacobian_cache` key (a registry gate by its
    name); None where some part is not plain data."""
    return None if any(p is None for p in question) else jacobian_cache.key_of(question, [])


def _answer(key: str | None) -> dict | None:
    """The answer SymPy gave to the question keyed `key` in an earlier run, or None."""
    return None if key is None else jacobian_cache.store().get_answer(key)


def _keep_answer(key: str | None, answer: dict) -> None:
    if key is not None:
        jacobian_cache.store().put_answer(key, answer)


def _rule_is_sympys(gate: Gate, small: list, attrs: dict) -> bool:
    """Whether the gate's index rule gives exactly SymPy's partials of its form at the shapes `small`."""
    import sympy
    assert gate.index_rule is not None and gate.sym is not None
    slots = [make_symbols(s, f"r{k}_") for k, s in enumerate(small)]
    where = {s: (k, e) for k, sym in enumerate(slots) for e, s in enumerate(sym.ravel())}
    expected: dict = {}
    for o, expr in enumerate(np.asarray(gate.sym(list(slots), attrs), dtype=object).ravel()):
        for s in getattr(expr, "free_symbols", ()):
            d = expr.diff(s)
            if s in where and d != 0:
                expected[(where[s][0], o, where[s][1])] = d
    got: dict = {}
    for k, (rows, cols, values) in enumerate(gate.index_rule.jacobian(list(slots), attrs)):
        for r, c, v in zip(rows, cols, values):
            got[(k, int(r), int(c))] = got.get((k, int(r), int(c)), 0) + v
    got = {t: v for t, v in got.items() if v != 0}
    return got.keys() == expected.keys() and all(sympy.expand(got[t] - expected[t]) == 0 for t in got)


_symbol_arrays: dict = {}


def _symbols(shape: tuple, slot: int) -> tuple:
    """Slot `slot`'s symbols for an operand of `shape`, and where each sits ((slot, flat index)): made
    once per shape and slot, and shared by every gate (a thousand x[i] on one x make x's symbols once)."""
    key = (shape, slot)
    if key not in _symbol_arrays:
        if len(_symbol_arrays) >= SYMBOL_ARRAYS:  # the oldest goes: a long session keeps a few shapes, not all
            del _symbol_arrays[next(iter(_symbol_arrays))]
        sym = make_symbols(shape, f"a{slot}_")
        _symbol_arrays[key] = (sym, {s: (slot, e) for e, s in enumerate(sym.ravel())})
    return _symbol_arrays[key]


def _number(v):
    """A point's value: a float, or a complex one on second order's complex step."""
    return complex(v) if np.iscomplexobj(v) else float(v)


def _elementwise_jacobian(node, args, work: Work) -> list:
    work.spend(node.size)  # vectorised: an element costs about one expression node
    trees = _elementwise_partials(node.gate, node.attrs, len(args))
    partials_cache.store().flush()
    point = _elementwise_point(node, args)
    return _elementwise_entries(node, args, [np.broadcast_to(tree_value(tree, point), (node.size,)) for tree in trees])


def _elementwise_point(node, args: list) -> list:
    """An elementwise gate's operands at its point, broadcast to its output and flat (complex where one is)."""
    return [np.broadcast_to(np.asarray(a, dtype=complex if np.iscomplexobj(a) else float), node.shape).ravel()
            for a in args]


def _elementwise_entries(node, args: list, derivatives: list) -> list:
    """Per input slot, (rows, cols, values) of an elementwise gate from its partials' values, one per
    output element; zero entries left out."""
    rows = np.arange(node.size)
    result = []
    for a, values in zip(args, derivatives):
        cols = rows if np.shape(a) == node.shape else \
            np.broadcast_to(np.arange(np.size(a)).reshape(np.shape(a)), node.shape).ravel()
        keep = values != 0
        result.append((rows[keep], cols[keep], values[keep]))
    return result


def elementwise_jacobians(nodes: list, values: list) -> dict:
    """The local Jacobians of many elementwise gate calls at once (node id -> per slot, as
    `local_jacobian` gives them): the calls of one gate kind (its name, attributes, arity, and which
    operands are complex) have their operands joined, each of SymPy's partials is evaluated once over
    all of them, and the values are split back. The same arrays as call by call, element for element:
    every operation is elementwise. Calls with a complex operand (second order's complex step) are left
    out: numpy's complex arithmetic may round an element differently in a longer array. So is a kind
    whose partials cannot be evaluated here (the call-by-call evaluation then meets the same error at
    its own node). No work is charged: the reverse pass charges each call as it reaches it."""
    kinds: dict = {}
    for node in nodes:
        args = [values[i] for i in node.inputs]
        if any(np.iscomplexobj(a) for a in args):
            continue
        kinds.setdefault((node.gate.name, repr(sorted(node.attrs.items())), len(args)), []).append((node, args))
    found: dict = {}
    for calls in kinds.values():
        first, first_args = calls[0]
        try:
            trees = _elementwise_partials(first.gate, first.attrs, len(first_args))
            points = [_elementwise_point(node, args) for node, args in calls]
            joined = [np.concatenate(operand) for operand in zip(*points)]
            total = sum(node.size for node, _ in calls)
            evaluated = [np.broadcast_to(tree_value(tree, joined), (total,)) for tree in trees]
        except Exception:  # noqa: BLE001 - left to the call-by-call evaluation, which raises at its node
            continue
        start = 0
        for node, args in calls:
            end = start + node.size
            found[node.id] = _elementwise_entries(node, args, [v[start:end] for v in evaluated])
            start = end
    partials_cache.store().flush()  # the kinds SymPy differentiated now, kept in one write
    return found


def pull_back(adjoint: np.ndarray, magnitude: np.ndarray, jac: tuple, size: int) -> tuple:
    """adjoint (K, out) through a local Jacobian (rows, cols, values) to (K, size), with magnitudes."""
    rows, cols, vals = jac
    k = adjoint.shape[0]
    grad = np.zeros((k, size), dtype=np.result_type(adjoint, vals))
    mag = np.zeros((k, size))
    if rows.size:
        # numpy's stubs take only integer arrays as ufunc.at's indices; numpy takes any index (a slice here).
        # unused-ignore: stubs that accept it make the ignore unused, and that is no error
        np.add.at(grad, (slice(None), cols), adjoint[:, rows] * vals)  # type: ignore[arg-type, unused-ignore]
        np.add.at(mag, (slice(None), cols), magnitude[:, rows] * np.abs(vals))  # type: ignore[arg-type, unused-ignore]
    return grad, mag


# --- derivatives of the output with respect to every node -------------------------------------------

def derivatives(graph: Graph, values: list, node_ids, budget: int = DEFAULT_BUDGET,
                seed: np.ndarray | None = None, jacobians: dict | None = None, rules: dict | None = None,
                seed_magnitude: np.ndarray | None = None) -> dict:
    """SymbolicResult per node: SymPy's exact d(output)/d(node), composed in reverse.

    `seed` (K, output.size) replaces the identity at the output. Local Jacobians are kept in
    `jacobians` (node id -> per slot) for reuse; `rules` records the gates whose Jacobian came from
    their index rule (local_jacobian). A user gate whose body would build past RULE_PAST nodes is
    chained through its body (its own gates' Jacobians, index rules included) instead of being built
    whole; `seed_magnitude` is then the magnitudes that come with `seed`. Past the work budget, or at a function SymPy's rules here
    cannot evaluate, the nodes not yet complete get a note instead of a value.
    """
    out = graph.nodes[graph.output]
    adj = {out.id: np.eye(out.size) if seed is None else np.asarray(seed, dtype=float).reshape(-1, out.size)}
    k = adj[out.id].shape[0]
    mag = {out.id: np.abs(adj[out.id]) if seed_magnitude is None else np.asarray(seed_magnitude, dtype=float).reshape(k, -1)}
    jacobians = {} if jacobians is None else jacobians
    work = Work(budget)
    reached = graph.ancestors(out.id)
    grouped = elementwise_jacobians([n for n in graph.nodes[: out.id + 1] if n.id in reached and n.id not in jacobians
                                     and isinstance(n.gate, Gate) and n.gate.elementwise], values)
    stopped_at, note = None, None
    for node in reversed(graph.nodes[: out.id + 1]):
        if node.gate is None or node.id not in adj:
            continue
        try:
            if node.id not in jacobians and _chained(node):
                found = _through_body(node, [values[i] for i in node.inputs], adj[node.id], mag[node.id], work, rules)
                if isinstance(found, str):
                    stopped_at, note = node.id, found
                    break
                for i, (g, m) in zip(node.inputs, found):
                    if i in adj:
                        adj[i] = adj[i] + g
                        mag[i] += m
                    else:
                        adj[i], mag[i] = g, m
                continue
            if node.id not in jacobians:
                jacobians[node.id] = _local_or_grouped(node, values, work, rules, grouped)
        except Exhausted:
            stopped_at, note = node.id, f"symbolic skipped: past the SymPy work budget ({work.limit:,} expression nodes)"
            break
        except Unsupported as err:
            stopped_at, note = node.id, f"symbolic skipped: SymPy's rules here do not cover {err} (gate '{node.name}')"
            break
        for i, jac in zip(node.inputs, jacobians[node.id]):
            g, m = pull_back(adj[node.id], mag[node.id], jac, graph.nodes[i].size)
            if i in adj:
                adj[i] = adj[i] + g  # (complex at second order, where a real one may come first)
                mag[i] += m
            else:
                adj[i], mag[i] = g, m
    results = {}
    complete = _complete(graph, stopped_at)
    for nid in node_ids:
        node = graph.nodes[nid]
        shape = (out.shape if seed is None else (k,) if k > 1 else ()) + node.shape
        if not complete(nid):
            results[nid] = SymbolicResult(None, None, note)
            continue
        value = adj.get(nid, np.zeros((k, node.size)))
        magnitude = mag.get(nid, np.zeros((k, node.size)))
        if not np.all(np.isfinite(value)):
            results[nid] = SymbolicResult(None, None, "symbolic derivative is not finite at this point")
            continue
        results[nid] = SymbolicResult(value.reshape(shape), magnitude.reshape(shape))
    return results


def _local_or_grouped(node, values: list, work: Work, rules: dict | None, grouped: dict) -> list:
    """A gate's local Jacobian: evaluated with its kind's other calls already (`elementwise_jacobians`),
    charged as `_elementwise_jacobian` charges it, or `local_jacobian` now."""
    if node.id in grouped:
        work.spend(node.size)
        return grouped[node.id]
    return local_jacobian(node, [values[i] for i in node.inputs], work, rules)


def _chained(node) -> bool:
    """A user gate whose body, built whole in SymPy, would pass RULE_PAST expression nodes."""
    if not isinstance(node.gate, Composite):
        return False
    return _body_cost(node.gate.body) > RULE_PAST


def _body_cost(body: Graph) -> int:
    return sum(build_cost(n, [body.nodes[i].shape for i in n.inputs]) if isinstance(n.gate, Gate)
               else _body_cost(n.gate.body) for n in body.nodes if n.gate is not None)


def _through_body(node, args: list, adjoint: np.ndarray, magnitude: np.ndarray, work: Work, rules: dict | None):
    """A user gate's pull-back chained through its body: per operand (gradient (K, size), magnitudes), or
    the note saying why it stopped."""
    body = node.gate.body
    leaves = body.leaves()
    with np.errstate(all="ignore"):
        inner_values = run_graph(body, list(args), outputs=list(range(len(body.nodes))))
    found = derivatives(body, inner_values, [leaf.id for leaf in leaves], work.limit - work.used, seed=adjoint,
                        rules=rules, seed_magnitude=magnitude)
    out = []
    for leaf in leaves:
        r = found[leaf.id]
        if r.value is None:
            return r.note or "symbolic skipped"
        out.append((r.value.reshape(adjoint.shape[0], -1), r.magnitude.reshape(adjoint.shape[0], -1)))
    return out


def _complete(graph: Graph, stopped_at):
    """Whether a node's derivative was fully accumulated before the reverse pass stopped."""
    if stopped_at is None:
        return lambda nid: True
    return lambda nid: nid >= stopped_at or all(c > stopped_at for c in graph.consumers[nid])
