"""SymPy expressions evaluated at a point, and their partial derivatives there, without SymPy's own
(slow) evaluation: a walk over the expression tree with float implementations of its functions, each
function's derivative taken from SymPy once per function. Work is counted in expression nodes."""

from __future__ import annotations

import cmath
import math
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from ..core import meter


class Exhausted(Exception):
    """The symbolic work budget is spent."""


class Unsupported(Exception):
    """An expression holds a function this module cannot evaluate."""


class Work:
    """A counter of expression nodes visited; `spend` raises Exhausted past the budget, or past the
    file's shared budget when one is set (`shared`). `counted=False`: an evaluation of expressions
    already built and charged (free here: the meter's sympy price covers a node's building and evaluating)."""

    def __init__(self, budget: int, counted: bool = True):
        self.budget, self.used = budget, 0
        self.pool = _pool.get() if counted else None
        self.counted = counted

    @property
    def limit(self) -> int:
        """The nodes this work may visit: its own budget, or the file's shared one when smaller."""
        return self.budget if self.pool is None else min(self.budget, self.pool.budget)

    def spend(self, n: int):
        if self.used + n > self.budget or (self.pool is not None and self.pool.used + n > self.pool.budget):
            self.used += n
            raise Exhausted
        self.used += n
        if self.pool is not None:
            self.pool.used += n
        if self.counted:
            meter.count("sympy", n)


class Recorded(Work):
    """Spends from `work`, noting each amount in `spent` in order (replayed by spending them again)."""

    def __init__(self, work: Work):  # (no Work.__init__: the budget is `work`'s)
        self.work = work
        self.spent: list[int] = []

    def spend(self, n: int):
        self.spent.append(n)
        self.work.spend(n)


def replay(work: Work, spent: list) -> None:
    """Spends from `work`, in order, what a Recorded noted: its budget runs out (Exhausted) where the run
    that noted them would have run out under it."""
    for n in spent:
        work.spend(n)


def valid_spent(spent) -> bool:
    """Whether a kept value is a list of work amounts, as Recorded notes them."""
    return isinstance(spent, list) and all(type(n) is int and n >= 0 for n in spent)


_pool: ContextVar = ContextVar("gradcheck_sympy_pool", default=None)


@contextmanager
def shared(budget: int):
    """Every Work made inside also spends from one budget of `budget` nodes (a whole file's)."""
    pool = Work(budget, counted=False)
    token = _pool.set(pool)
    try:
        yield pool
    finally:
        _pool.reset(token)


def _safe(fn):
    def call(*args):
        try:
            return fn(*args)
        except (ValueError, ZeroDivisionError):
            return math.nan
        except OverflowError:
            return math.inf
    return call


def _log(x):
    return -math.inf if x == 0 else math.log(x)


def _pow(b, e):
    if b == 0 and e < 0:
        return math.inf
    return math.pow(b, e)


_FUNCTIONS = {  # SymPy function name -> float implementation
    "exp": math.exp, "log": _log, "sin": math.sin, "cos": math.cos, "tan": math.tan, "tanh": math.tanh,
    "sinh": math.sinh, "cosh": math.cosh, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "erf": math.erf, "Abs": abs,
    "sign": lambda x: 0.0 if x == 0 else math.copysign(1.0, x),
}
_FUNCTIONS = {k: _safe(v) for k, v in _FUNCTIONS.items()}
# On a complex point (second order's complex step: x + i·H·v) the kink functions follow the real part.
_COMPLEX = {
    "exp": cmath.exp, "log": lambda z: -math.inf if z == 0 else cmath.log(z), "sin": cmath.sin, "cos": cmath.cos,
    "tan": cmath.tan, "tanh": cmath.tanh, "sinh": cmath.sinh, "cosh": cmath.cosh, "asin": cmath.asin,
    "acos": cmath.acos, "atan": cmath.atan, "Abs": lambda z: z if z.real >= 0 else -z,
    "sign": lambda z: 0.0 if z.real == 0 else math.copysign(1.0, z.real),
}
_COMPLEX = {k: _safe(v) for k, v in _COMPLEX.items()}


def _function(name: str, x):
    if isinstance(x, complex):
        if name not in _COMPLEX:
            raise Unsupported(f"{name} on complex values")
        return _COMPLEX[name](x)
    return _FUNCTIONS[name](x)


def _pow_any(b, e):
    if isinstance(b, complex) or isinstance(e, complex):
        if b == 0 and e.real < 0:
            return math.inf
        try:
            return b ** e
        except (ZeroDivisionError, OverflowError, ValueError):
            return math.nan
    return _pow(b, e)


def _real(x) -> float:
    return x.real if isinstance(x, complex) else x


_POW = _safe(_pow_any)
_ZERO_DERIVATIVE = {"sign", "Heaviside", "DiracDelta"}  # constant for differentiation (comparisons)
_templates: dict = {}


def _template(name: str):
    """SymPy's derivative of the one-argument function `name`, as an expression of the symbol `d`."""
    if name not in _templates:
        import sympy
        d = sympy.Symbol("d", real=True)
        _templates[name] = (d, getattr(sympy, name)(d).diff(d))
    return _templates[name]


def _order(expr, work: Work) -> list:
    """The distinct sub-expressions of `expr`, children before parents."""
    order, seen = [], set()
    stack = [(expr, False)]
    while stack:
        e, ready = stack.pop()
        if ready:
            order.append(e)
            continue
        if e in seen:
            continue
        seen.add(e)
        stack.append((e, True))
        stack.extend((a, False) for a in e.args if a not in seen)
    work.spend(len(order))
    return order


def count(expr, work: Work) -> int:
    """The number of distinct sub-expressions of `expr`, spent from `work`."""
    return len(_order(expr, work))


def _value_of(e, val: dict) -> float:
    if e.is_Number or e.is_NumberSymbol:
        return float(e)
    if e.is_Add:
        terms = [val[a] for a in e.args]
        if any(isinstance(t, complex) for t in terms):
            return sum(terms)
        try:
            return math.fsum(terms)
        except OverflowError:  # partial sums past the float range (1e308 - 1e308 ...): inf or nan, as floats add
            return float(sum(terms))
    if e.is_Mul:
        p = 1.0
        for a in e.args:
            p *= val[a]
        return p
    if e.is_Pow:
        return _POW(val[e.args[0]], val[e.args[1]])
    name = type(e).__name__
    if name in _FUNCTIONS:
        return _function(name, val[e.args[0]])
    if name == "Heaviside":
        x = _real(val[e.args[0]])
        return 1.0 if x > 0 else 0.0 if x < 0 else (val[e.args[1]] if len(e.args) > 1 else 0.5)
    if name in ("Max", "Min"):
        return (max if name == "Max" else min)((val[a] for a in e.args), key=_real)
    if name == "DiracDelta":
        return 0.0  # only in derivatives of comparisons, which are constant for differentiation
    raise Unsupported(name)


def value_at(expr, point: dict, work: Work | None = None) -> float:
    """The float value of a SymPy expression, its symbols taken from `point`."""
    val: dict = {}
    for e in _order(expr, work or Work(10 ** 9, counted=False)):
        val[e] = point[e] if e.is_Symbol else _value_of(e, val)
    return val[expr]


_ARRAY_FUNCTIONS = {
    "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
    "sinh": np.sinh, "cosh": np.cosh, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "Abs": np.abs, "sign": np.sign,
}


def array_value(expr, point: dict) -> np.ndarray:
    """`value_at` for many points at once: `point` maps each symbol to an array (broadcast together)."""
    symbols = {s: k for k, s in enumerate(point)}
    return tree_value(tree_of(expr, symbols), list(point.values()))


TREE_FUNCTIONS = frozenset(_ARRAY_FUNCTIONS) | {"Heaviside", "Max", "Min", "DiracDelta", "erf"}


def tree_of(expr, symbols: dict) -> list:
    """A SymPy expression as a plain tree of lists, strings and numbers, which `tree_value` evaluates
    as `array_value` would the expression (its arguments in SymPy's order): `["s", k]` the symbol at
    position k of `symbols` (symbol -> position), `["n", x]` a number as a float, `["add", ...]`,
    `["mul", ...]`, `["pow", base, exponent]`, `["f", name, ...]` a function of TREE_FUNCTIONS.
    Plain data, so that it can be kept between runs as JSON: it is never text read back by SymPy."""
    made: dict = {}
    for e in _order(expr, Work(10 ** 9, counted=False)):
        if e.is_Symbol:
            made[e] = ["s", symbols[e]]
        elif e.is_Number or e.is_NumberSymbol:
            made[e] = ["n", float(e)]
        elif e.is_Add:
            made[e] = ["add", *(made[a] for a in e.args)]
        elif e.is_Mul:
            made[e] = ["mul", *(made[a] for a in e.args)]
        elif e.is_Pow:
            made[e] = ["pow", made[e.args[0]], made[e.args[1]]]
        elif type(e).__name__ in TREE_FUNCTIONS:
            made[e] = ["f", type(e).__name__, *(made[a] for a in e.args)]
        else:
            raise Unsupported(type(e).__name__)
    return made[expr]


def tree_value(tree: list, operands: list) -> np.ndarray:
    """A `tree_of` tree's value for many points at once: symbol k is `operands[k]` (arrays broadcast together)."""
    val: dict = {}  # id of a sub-tree -> its value: a sub-expression SymPy shares is evaluated once
    with np.errstate(all="ignore"):
        stack = [(tree, False)]
        while stack:
            t, ready = stack.pop()
            if id(t) in val:
                continue
            head = t[0]
            args = t[2:] if head == "f" else t[1:]
            if head not in ("s", "n") and not ready:
                stack.append((t, True))
                stack.extend((a, False) for a in args if id(a) not in val)
                continue
            val[id(t)] = _tree_node(head, t, [val[id(a)] for a in args] if head not in ("s", "n") else [], operands)
    return val[id(tree)]


def _tree_node(head: str, t: list, args: list, operands: list) -> np.ndarray:
    if head == "s":
        v = np.asarray(operands[t[1]])
        return v if np.iscomplexobj(v) else v.astype(float)
    if head == "n":
        return np.asarray(float(t[1]))
    if head == "add":
        return sum(args)
    if head == "mul":
        return np.prod(np.broadcast_arrays(*args), axis=0)
    if head == "pow":
        b, x = args
        return np.where((b == 0) & (np.real(x) < 0), np.inf, np.power(b, x))
    name = t[1]
    if name in ("Abs", "sign") and np.iscomplexobj(args[0]):  # the real part decides, as for a gate
        re = np.real(args[0])
        return np.where(re >= 0, args[0], -args[0]) if name == "Abs" else np.sign(re)
    if name in _ARRAY_FUNCTIONS:
        return _ARRAY_FUNCTIONS[name](args[0])
    if name == "Heaviside":
        h0 = args[1] if len(args) > 1 else 0.5
        re = np.real(args[0])
        return np.where(re > 0, 1.0, np.where(re < 0, 0.0, h0))
    if name in ("Max", "Min"):
        stacked = np.stack(np.broadcast_arrays(*args))
        pick = (np.argmax if name == "Max" else np.argmin)(np.real(stacked), axis=0)
        return np.take_along_axis(stacked, pick[None], axis=0)[0]
    if name == "DiracDelta":
        return np.zeros_like(args[0])  # comparisons are constant for differentiation
    if name == "erf":
        return np.vectorize(math.erf)(args[0])
    raise Unsupported(name)


def _sum_of_products(expr, point: dict, work: Work) -> dict | None:
    """`partials` for a sum of symbols and products of symbols and numbers (matmul, conv, dot: most
    of a network's terms), read straight off the terms; None for any other expression."""
    if not expr.is_Add:
        return None
    terms = expr.args
    for t in terms:
        if not (t.is_Symbol or t.is_Number or (t.is_Mul and all(f.is_Symbol or f.is_Number for f in t.args))):
            return None
    distinct = {expr, *terms}
    for t in terms:
        if t.is_Mul:
            distinct.update(t.args)
    work.spend(len(distinct))  # what _order would have counted: the same work, whichever way
    grad = {e: 0.0 for e in distinct if e.is_Symbol}
    for t in terms:
        if t.is_Symbol:
            grad[t] += 1.0
        elif t.is_Mul:
            values = [point[f] if f.is_Symbol else float(f) for f in t.args]
            for k, f in enumerate(t.args):
                if f.is_Symbol:
                    p = 1.0
                    for j, v in enumerate(values):
                        if j != k:
                            p *= v
                    grad[f] += p
    return grad


def partials(expr, point: dict, work: Work) -> dict:
    """∂expr/∂symbol at the point, for every symbol in `expr` (exact rules, float arithmetic)."""
    fast = _sum_of_products(expr, point, work)
    if fast is not None:
        return fast
    order = _order(expr, work)
    val: dict = {}
    for e in order:
        val[e] = point[e] if e.is_Symbol else _value_of(e, val)
    adj = {expr: 1.0}
    for e in reversed(order):
        g = adj.get(e)
        if g is None or e.is_Symbol or e.is_Number or e.is_NumberSymbol or g == 0:
            continue
        for a, d in _local(e, val):
            if d != 0:
                adj[a] = adj.get(a, 0.0) + g * d
    return {e: adj.get(e, 0.0) for e in order if e.is_Symbol}


def _local(e, val: dict):
    """(argument, ∂e/∂argument) pairs at the point."""
    args = e.args
    if e.is_Add:
        return [(a, 1.0) for a in args]
    if e.is_Mul:
        out = []
        for k, a in enumerate(args):
            p = 1.0
            for j, b in enumerate(args):
                if j != k:
                    p *= val[b]
            out.append((a, p))
        return out
    if e.is_Pow:
        b, x = args
        vb, vx = val[b], val[x]
        db = 0.0 if vx == 0 else (1.0 if vx == 1 else vx * _POW(vb, vx - 1.0))
        out = [(b, db)]
        if x.free_symbols:
            out.append((x, val[e] * _function("log", vb) if _real(vb) > 0 else math.nan))
        return out
    name = type(e).__name__
    if name in _ZERO_DERIVATIVE:
        return []
    if name == "Abs":
        return [(args[0], _function("sign", val[args[0]]))]
    if name in ("Max", "Min"):
        hit = [a for a in args if _real(val[a]) == _real(val[e])]
        return [(a, 1.0 / len(hit)) for a in hit]  # a tie splits evenly, as backprop does
    if name in _FUNCTIONS and len(args) == 1:
        d, template = _template(name)
        return [(args[0], value_at(template, {d: val[args[0]]}))]
    raise Unsupported(name)


