"""Where a JAX rule is written (python/jax.py's culprits, read without importing JAX): the user's file
parsed whole, so a lambda, a nested def or a jitted function is found at its own line. The line of
a custom_vjp `bwd` that computes each cotangent, of a `jvp(primals, tangents)` that computes each
input's part of the tangent, of the rule a `custom_gradient` function returns, of the primal a `fwd`
returns. Positions are (line, column), the column in characters."""

from __future__ import annotations

import ast
import functools
import os
from dataclasses import dataclass, field

from .pysource import grad_lines, source_text

Position = tuple[int, int]
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def own(fn):
    """The user's function under functools' and JAX's wrappers (partial, wraps, jit, custom_vjp and
    custom_jvp, which set __wrapped__ to the function they wrap): where its source is."""
    for _ in range(32):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif getattr(fn, "__wrapped__", None) is not None:
            fn = fn.__wrapped__
        else:
            break
    return fn


@functools.lru_cache(maxsize=32)
def _file(path: str, stamp: tuple):
    """(the file's AST, its lines), or None (`stamp`: its mtime and size, so an edited file is read again)."""
    text = source_text(path)
    if text is None:
        return None
    try:
        return ast.parse(text), text.splitlines()
    except (SyntaxError, ValueError):
        return None


@dataclass(frozen=True)
class Written:
    """A def or lambda as written: its node, and its file's lines (for columns in characters)."""
    node: ast.AST
    lines: list = field(repr=False)

    def at(self, node) -> Position:
        text = self.lines[node.lineno - 1] if 0 < node.lineno <= len(self.lines) else ""
        return node.lineno, len(text.encode("utf-8")[: node.col_offset].decode("utf-8", "replace")) + 1


def definition(fn) -> Written | None:
    """Where `fn` is written, found in its file by its name and first line; None for code without a file."""
    code = getattr(own(fn), "__code__", None)
    if code is None:
        return None
    try:
        stat = os.stat(code.co_filename)
    except OSError:
        return None
    parsed = _file(code.co_filename, (stat.st_mtime_ns, stat.st_size))
    if parsed is None:
        return None
    tree, lines = parsed
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            if min([node.lineno] + [d.lineno for d in node.decorator_list]) == code.co_firstlineno:
                return Written(node, lines)
        elif isinstance(node, ast.Lambda) and code.co_name == "<lambda>" and node.lineno == code.co_firstlineno:
            return Written(node, lines)
    return None


def _own_nodes(func) -> list:
    """The nodes of a def's body (a lambda's), not of the defs, lambdas and classes nested in it."""
    found, todo = [], [func.body] if isinstance(func, ast.Lambda) else list(func.body)
    while todo:
        node = todo.pop()
        found.append(node)
        todo += [c for c in ast.iter_child_nodes(node) if not isinstance(c, SCOPES)]
    return found


def result(func):
    """What a def's last `return` (a lambda's body) gives, or None."""
    if isinstance(func, ast.Lambda):
        return func.body
    returns = [n for n in _own_nodes(func) if isinstance(n, ast.Return) and n.value is not None]
    return max(returns, key=lambda n: (n.lineno, n.col_offset)).value if returns else None


def assignments(func) -> list:
    """The def's own assignments, in the order written."""
    if isinstance(func, ast.Lambda):
        return []
    found = [n for n in _own_nodes(func) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def targets(node) -> list:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def written_names(target) -> set:
    """The names an assignment target writes (`dx[...] = ...` and `dx.at = ...` write dx)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(written_names(t) for t in target.elts))
    if isinstance(target, (ast.Starred, ast.Subscript, ast.Attribute)):
        return written_names(target.value)
    return set()


def _writes(node, name: str) -> bool:
    return any(name in written_names(t) for t in targets(node))


def value_position(w: Written, value) -> Position:
    """Where a returned value is computed: a name's last assignment in the def, else the value itself."""
    if isinstance(value, ast.Name):
        assigned = [a for a in assignments(w.node) if _writes(a, value.id)]
        if assigned:
            return w.at(assigned[-1])
    return w.at(value)


def returned_lines(w: Written, names: list[str]) -> dict:
    """Input name -> where the def computes the cotangent it returns for it (one returned value per
    name, in order); every name at the return when it gives another number of values."""
    value = result(w.node)
    if value is None:
        return {}
    values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [value]
    if len(values) != len(names):
        return {n: w.at(value) for n in names}
    return {n: value_position(w, v) for n, v in zip(names, values)}


def vjp_lines(bwd, names: list[str]) -> dict:
    """A custom_vjp bwd's lines, per input it returns a cotangent for."""
    w = definition(bwd)
    if w is not None:
        return returned_lines(w, names)
    return dict(grad_lines(own(bwd), tuple(names)))


def gradient_rule(fun) -> Written | None:
    """The rule a `jax.custom_gradient` function returns beside its output: a lambda, or the def (or
    lambda) bound in the function to the name it returns."""
    w = definition(fun)
    value = result(w.node) if w is not None else None
    if w is None or not isinstance(value, (ast.Tuple, ast.List)) or len(value.elts) != 2:
        return None
    rule = value.elts[1]
    if isinstance(rule, ast.Lambda):
        return Written(rule, w.lines)
    if not isinstance(rule, ast.Name):
        return None
    defs = [n for n in ast.walk(w.node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name == rule.id and n is not w.node]
    lambdas = [a.value for a in assignments(w.node) if isinstance(a.value, ast.Lambda) and _writes(a, rule.id)]
    found = sorted([*defs, *lambdas], key=lambda n: (n.lineno, n.col_offset))
    return Written(found[-1], w.lines) if found else None


def result_position(fn) -> Position | None:
    """Where a one-input rule (`defjvps`) computes what it returns."""
    w = definition(fn)
    value = result(w.node) if w is not None else None
    return value_position(w, value) if w is not None and value is not None else None


def primal_position(fn) -> Position | None:
    """Where a fwd or jvp computes the primal output it returns first."""
    w = definition(fn)
    value = result(w.node) if w is not None else None
    if w is None or not isinstance(value, (ast.Tuple, ast.List)) or not value.elts:
        return None
    return value_position(w, value.elts[0])


def tangent_lines(jvp, names: list[str], skip: int) -> dict:
    """Input name -> the line of a `jvp(primals, tangents)` rule (after `skip` nondiff arguments)
    that computes that input's part of the returned tangent: on the way to the `return`, the last
    assignment that carries this input's tangent alone; else the first that carries it with others'
    tangents; else the returned tangent itself. Copies (`x_dot, = tangents`) are never blamed.
    Control flow is ignored: every assignment counts."""
    w = definition(jvp)
    if w is None or not isinstance(w.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {}
    args = [a.arg for a in w.node.args.posonlyargs + w.node.args.args]
    value = result(w.node)
    if len(args) < skip + 2 or not isinstance(value, (ast.Tuple, ast.List)) or len(value.elts) != 2:
        return {}
    flow = _Tangents(args[skip + 1], len(names))
    steps = [flow.step(a) for a in assignments(w.node) if a.value is not None]
    used = _feeding(steps, value.elts[1])
    way = [(node, inputs) for node, inputs, _ in (steps[j] for j in sorted(used)) if not flow.is_copy(node.value)]
    out = {}
    for k, name in enumerate(names):
        alone = [node for node, inputs in way if inputs == {k}]
        mixed = [node for node, inputs in way if k in inputs]
        out[name] = w.at(alone[-1] if alone else mixed[0] if mixed else value.elts[1])
    return out


def _feeding(steps: list, expr) -> set:
    """The indices of the steps the expression is computed from: for each name it reads, the last
    assignment to it before the use, and theirs in turn."""
    used: set = set()
    todo = [({n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}, len(steps))]
    while todo:
        read, before = todo.pop()
        for name in read:
            k = next((j for j in range(before - 1, -1, -1) if _writes(steps[j][0], name)), None)
            if k is not None and k not in used:
                used.add(k)
                todo.append((steps[k][2], k))
    return used


class _Tangents:
    """Which inputs' tangents each name of a jvp rule carries, assignment by assignment."""

    def __init__(self, tangents: str, count: int):
        self.tangents, self.count = tangents, count
        self.carried: dict = {}

    def reads(self, node) -> set:
        """The inputs whose tangents an expression reads (`tangents[k]`, a name carrying them)."""
        if self._indexed(node):
            return {node.slice.value % self.count} if self.count else set()
        if isinstance(node, ast.Name):
            return set(range(self.count)) if node.id == self.tangents else set(self.carried.get(node.id, ()))
        return set().union(*(self.reads(c) for c in ast.iter_child_nodes(node)))

    def _indexed(self, node) -> bool:
        return (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == self.tangents
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int))

    def is_copy(self, node) -> bool:
        """A value that only passes tangents on: a name, `tangents[k]`, or a tuple of them."""
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self.is_copy(e) for e in node.elts)
        return isinstance(node, ast.Name) or self._indexed(node)

    def step(self, node) -> tuple:
        """(the assignment, the inputs it carries, the names it reads), its targets bound."""
        inputs = self.reads(node.value)
        read = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
        if isinstance(node, ast.AugAssign) or any(isinstance(t, (ast.Subscript, ast.Attribute)) for t in targets(node)):
            names = set().union(*(written_names(t) for t in targets(node)))  # updated in place: it reads itself
            read |= names
            inputs |= set().union(*(self.carried.get(n, set()) for n in names))
        for t in targets(node):
            self.bind(t, node.value, inputs)
        return node, inputs, read

    def bind(self, target, value, inputs: set) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            self._unpack(target, value, inputs)
        elif isinstance(target, ast.Name):
            self.carried[target.id] = set(inputs)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, None, inputs)
        else:  # dx[...] = ..., dx.attr = ...: a part of dx
            for name in written_names(target):
                self.carried[name] = self.carried.get(name, set()) | inputs

    def _unpack(self, target, value, inputs: set) -> None:
        """`x_dot, y_dot = tangents` binds each its own input; `(x,), (t,) = primals, tangents` pairwise."""
        if isinstance(value, ast.Name) and value.id == self.tangents:
            for k, t in enumerate(target.elts):
                whole = isinstance(t, ast.Starred) or k >= self.count
                self.bind(t, None, set(range(self.count)) if whole else {k})
        elif isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
            for t, v in zip(target.elts, value.elts):
                self.bind(t, v, self.reads(v))
        else:
            for t in target.elts:
                self.bind(t, None, inputs)


def parameter_tangent_lines(jvp, names: list[str], skip: int) -> dict:
    """Input name -> the line of a rule taking one tangent per parameter (a torch Function's
    `jvp(ctx, x_t, y_t)`, after `skip` parameters) and returning the output tangent(s), that computes
    that input's part of what it returns: as `tangent_lines`, each parameter carrying its own input's
    tangent."""
    w = definition(jvp)
    if w is None or not isinstance(w.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {}
    args = [a.arg for a in w.node.args.posonlyargs + w.node.args.args][skip:]
    value = result(w.node)
    if value is None:
        return {}
    flow = _Tangents("", len(names))
    flow.carried.update({arg: {k} for k, arg in enumerate(args[: len(names)])})
    steps = [flow.step(a) for a in assignments(w.node) if a.value is not None]
    used = _feeding(steps, value)
    way = [(node, inputs) for node, inputs, _ in (steps[j] for j in sorted(used)) if not flow.is_copy(node.value)]
    out = {}
    for k, name in enumerate(names):
        alone = [node for node, inputs in way if inputs == {k}]
        mixed = [node for node, inputs in way if k in inputs]
        out[name] = w.at(alone[-1] if alone else mixed[0] if mixed else value)
    return out
