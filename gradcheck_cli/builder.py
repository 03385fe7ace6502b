"""AST → Graph: names resolved, constants folded, shapes checked, gates chosen from the registry."""

from __future__ import annotations

import numpy as np

from . import gates as G
from . import nodes as N
from . import usergates
from .errors import GradNameError, GradShapeError, GradSyntaxError, GradValueError, did_you_mean
from .graph import Const, Graph, Node, source_text
from .limits import MAX_ELEMENTS, MAX_GATE_WORK, MAX_NDIM, MAX_NODES, MAX_TOTAL_ELEMENTS, MAX_UNROLL, size_error
from .values import CONSTRUCTORS, construct

KEYWORDS = {"const", "output", "expect", "gate"}


def _finite_or_raise(value, pos, what):
    if not np.all(np.isfinite(value)):
        raise GradValueError(f"{what} is not finite ({_describe_bad(value)})", pos.line, pos.col)


def _check_shape(shape: tuple, pos, what: str):
    """Refuse, before anything is allocated, an array past the documented limits."""
    if len(shape) > MAX_NDIM:
        raise GradShapeError(f"{what} would have {len(shape)} dimensions (at most {MAX_NDIM})", pos.line, pos.col)
    size = 1
    for n in shape:
        size *= int(n)
    if size == 0:
        raise GradShapeError(f"{what} would have no elements (a size is 0); nothing could be checked", pos.line, pos.col)
    if size > MAX_ELEMENTS:
        raise GradShapeError(size_error(what, size, MAX_ELEMENTS, name="MAX_ELEMENTS"), pos.line, pos.col)


def _describe_bad(value) -> str:
    v = np.asarray(value)
    bad = v[~np.isfinite(v)]
    return "nan" if np.isnan(bad).any() else "overflow to infinity"


class _SliceRef:
    """A built subscript item that is no value: a slice (parts: (ref, pos) or None each) or None (parts None)."""
    __slots__ = ("parts", "pos")

    def __init__(self, parts, pos):
        self.parts, self.pos = parts, pos


class Builder:
    """Turns a parsed Program into a Graph; one instance per program."""

    def __init__(self, program: N.Program, source: str, at: dict | None, free_names: bool, seed: int):
        self.program = program
        self.text = program.text
        self.source = source
        self.at = dict(at or {})
        self.free_names = free_names
        self.rng = np.random.default_rng(seed)
        self.nodes: list[Node] = []
        self.names: dict[str, int] = {}
        self.defined_at: dict[str, N.Pos] = {}
        self.user_gates: dict = {}
        self.consts: dict = {}   # in a gate's body: the file consts it may use, name -> value
        self.loop_values: dict = {}  # inside a comprehension: its loop variables' current values
        self.warnings: list = []
        self.total = 0   # elements in all nodes so far
        self.work = 0    # gate applications one forward pass takes (a user gate counts its body's)

    # --- nodes ----------------------------------------------------------------------------------

    def _add(self, **kw) -> int:
        node = Node(id=len(self.nodes), **kw)
        pos = node.pos
        _check_shape(node.shape, pos, f"'{node.name}'")
        self.total += node.size
        if self.total > MAX_TOTAL_ELEMENTS:
            raise GradShapeError(size_error("all the nodes up to here together", self.total, MAX_TOTAL_ELEMENTS,
                                            name="MAX_TOTAL_ELEMENTS"),
                                 pos.line, pos.col)
        if len(self.nodes) >= MAX_NODES:
            raise GradShapeError(size_error("the graph", len(self.nodes) + 1, MAX_NODES, "nodes", "MAX_NODES"), pos.line, pos.col)
        if node.gate is not None:
            inst = node.gate.instance
            self.work += inst.cost if inst is not None else 1
            if self.work > MAX_GATE_WORK:
                raise GradShapeError(size_error("one forward pass", self.work, MAX_GATE_WORK, "gate applications", "MAX_GATE_WORK")
                                     + " (gates that call gates multiply)", pos.line, pos.col)
        self.nodes.append(node)
        return node.id

    def _leaf(self, name: str, value: np.ndarray, pos: N.Pos, const: bool) -> int:
        if name in self.at:
            value = self.at.pop(name)
        return self._add(name=name, kind="const" if const else "leaf", shape=value.shape, pos=pos, value=value)

    def _literal(self, c: Const) -> int:
        return self._add(name=source_text(self.text, c.pos), kind="literal", shape=c.value.shape,
                         pos=c.pos, value=c.value)

    def _define(self, name: str, pos: N.Pos):
        if name in self.defined_at:
            first = self.defined_at[name]
            raise GradNameError(f"'{name}' is already defined (line {first.line}); pick another name",
                                pos.line, pos.col)
        self.defined_at[name] = pos

    # --- expressions ----------------------------------------------------------------------------

    def expr(self, root, name: str | None = None):
        """Build `root` bottom-up without recursion; returns a node id or a Const."""
        done: dict[int, object] = {}
        stack = [(root, False)]
        while stack:
            expr, expanded = stack.pop()
            if not expanded:
                stack.append((expr, True))
                stack.extend((c, False) for c in reversed(N.children(expr)))
                continue
            top = expr is root
            done[id(expr)] = self._one(expr, [done[id(c)] for c in N.children(expr)], name if top else None)
        return done[id(root)]

    def _one(self, expr, refs, name):
        if isinstance(expr, N.Num):
            _finite_or_raise(expr.value, expr.pos, "this number")
            return Const(expr.value, expr.pos)
        if isinstance(expr, N.Name):
            return self._name(expr)
        if isinstance(expr, N.Array):
            return self._array(expr, refs)
        if isinstance(expr, N.Op):
            return self._op(expr, refs, name)
        if isinstance(expr, N.Call):
            return self._call(expr, refs, name)
        if isinstance(expr, N.Index):
            return self._index(expr, refs, name)
        if isinstance(expr, N.Slice):
            parts = iter(refs)
            return _SliceRef(tuple(None if p is None else (next(parts), p.pos)
                                   for p in (expr.start, expr.stop, expr.step)), expr.pos)
        if isinstance(expr, N.NewAxis):
            return _SliceRef(None, expr.pos)
        if isinstance(expr, N.Comprehension):
            return self._comprehension(expr, refs, name)
        raise GradSyntaxError(f"unexpected {type(expr).__name__}", expr.pos.line, expr.pos.col)

    def _name(self, expr: N.Name):
        if expr.id in self.loop_values:
            return Const(np.asarray(float(self.loop_values[expr.id])), expr.pos)
        if expr.id in self.names:
            return self.names[expr.id]
        if expr.id in self.consts:  # a file const seen from inside a gate: a constant there
            return Const(self.consts[expr.id], expr.pos)
        if expr.id in self.user_gates:
            raise GradNameError(f"'{expr.id}' is a gate; call it as {expr.id}(...)", expr.pos.line, expr.pos.col)
        if self.free_names and expr.id not in CONSTRUCTORS and expr.id not in G.function_names():
            if expr.id in self.at:
                value = self.at.pop(expr.id)
            else:
                value = np.asarray(self.rng.standard_normal())
                self.warnings.append((f"'{expr.id}' has no --at value: checked at a seeded random "
                                      f"{expr.id} = {float(value):.6g} (--at {expr.id}=VALUE sets it)",
                                      expr.pos.line, expr.pos.col))
            self.defined_at[expr.id] = expr.pos
            self.names[expr.id] = self._add(name=expr.id, kind="leaf", shape=value.shape, pos=expr.pos,
                                            value=value)
            return self.names[expr.id]
        if expr.id in G.function_names() or expr.id in CONSTRUCTORS:
            raise GradNameError(f"'{expr.id}' is a function; call it as {expr.id}(...)", expr.pos.line, expr.pos.col)
        raise GradNameError(f"unknown name '{expr.id}'" + did_you_mean(expr.id, self.names),
                            expr.pos.line, expr.pos.col)

    def _array(self, expr: N.Array, refs):
        if not refs:
            raise GradShapeError("an empty array literal", expr.pos.line, expr.pos.col)
        refs = [self._as_const(r) or r for r in refs]
        for item, ref in zip(expr.items, refs):
            if not isinstance(ref, Const):
                raise GradSyntaxError("array literals hold numbers and consts only; combine named values with "
                                      "gates (stack, concatenate)", item.pos.line, item.pos.col)
        shapes = {r.value.shape for r in refs}
        _check_shape((len(refs),) + refs[0].value.shape, expr.pos, "this array literal")
        if len(shapes) != 1:
            bad = next(item for item, r in zip(expr.items, refs) if r.value.shape != refs[0].value.shape)
            raise GradShapeError("the rows of an array literal must all have the same length",
                                 bad.pos.line, bad.pos.col)
        return Const(np.stack([r.value for r in refs]), expr.pos)

    def _op(self, expr: N.Op, refs, name):
        where = expr.op_pos or expr.pos
        if expr.op == ".shape":  # known when the graph is built: a constant vector of sizes
            return Const(np.asarray(self._shape(refs[0]), dtype=float), expr.pos)
        if expr.op == "neg":
            (ref,) = refs
            if isinstance(ref, Const):
                return Const(-ref.value, expr.pos)
            gate, attrs = G.const_form("*", "left", -1.0)
            return self._gate(gate, [ref], {}, attrs, expr, name, where)
        gate = G.operator_gate(expr.op)
        if gate is None:
            raise GradSyntaxError(f"unknown operator '{expr.op}'", where.line, where.col)
        if len(refs) == 2 and not all(isinstance(r, Const) for r in refs):
            for side, c, other in (("left", refs[0], refs[1]), ("right", refs[1], refs[0])):
                if isinstance(c, Const) and c.value.ndim == 0:
                    form = G.const_form(expr.op, side, float(c.value))
                    if form:
                        return self._gate(form[0], [other], {}, form[1], expr, name, where)
        return self._gate(gate, refs, {}, {}, expr, name, where)

    def _call(self, expr: N.Call, refs, name):
        fpos = expr.func_pos
        npos = len(expr.args)
        args, kw_refs = refs[:npos], refs[npos:]
        if expr.func in CONSTRUCTORS:
            args = [self._as_const(r) or r for r in args]
            if expr.kwargs or not all(isinstance(r, Const) for r in args):
                raise GradSyntaxError(f"{expr.func}(...) takes integer sizes", fpos.line, fpos.col)
            try:
                return Const(construct(expr.func, [r.value for r in args], self.rng), expr.pos)
            except ValueError as err:
                raise GradShapeError(str(err), fpos.line, fpos.col) from None
        if expr.func in self.user_gates:
            return self._user_call(expr, args, refs[npos:], name)
        candidates = G.functions(expr.func)
        if not candidates:
            if expr.func in self.names:
                raise GradNameError(f"'{expr.func}' is a value, not a function", fpos.line, fpos.col)
            known = G.function_names() | set(CONSTRUCTORS)
            raise GradNameError(f"unknown function '{expr.func}'" + did_you_mean(expr.func, known),
                                fpos.line, fpos.col)
        gate = next((g for g in candidates if g.arity + len(g.constant_args) == npos), None) or next(
            (g for g in candidates if g.arity < npos <= g.arity + len(g.positional_params)), None) or next(
            (g for g in candidates if g.variadic and npos >= g.arity), None)
        if gate is None:
            counts = sorted({g.arity for g in candidates} | {g.arity + len(g.positional_params) for g in candidates})
            want = " or ".join(str(c) for c in counts)
            raise GradSyntaxError(f"{expr.func}() takes {want} argument{'s' if counts != [1] else ''}, got {npos}",
                                  fpos.line, fpos.col)
        params = {}
        if gate.constant_args:  # call arguments that are parameters: taken out of the operands
            drop = {position for position, _ in gate.constant_args}
            for position, pname in gate.constant_args:
                params[pname] = self._key([args[position]], [expr.args[position]], expr.func_pos)
            expr_args = [e for k, e in enumerate(expr.args) if k not in drop]
            args = [r for k, r in enumerate(args) if k not in drop]
        else:
            expr_args = list(expr.args)
        n_operands = len(args) if gate.variadic else gate.arity
        for pname, ref, apos in zip(gate.positional_params, args[n_operands:], expr_args[n_operands:]):
            params[pname] = self._param(ref, apos.pos, pname)
        for (kname, _e, kpos), ref in zip(expr.kwargs, kw_refs):
            if kname not in gate.params:
                allowed = ", ".join(gate.params) or "none"
                raise GradNameError(f"{expr.func}() has no parameter '{kname}' (parameters: {allowed})",
                                    kpos.line, kpos.col)
            if kname in params:
                raise GradSyntaxError(f"{expr.func}() got '{kname}' twice", kpos.line, kpos.col)
            params[kname] = self._param(ref, kpos, kname)
        return self._gate(gate, list(args[:n_operands]), params, {}, expr, name, fpos)

    COMPREHENSIONS = {"sum": "add", "stack": "stack", "concatenate": "concatenate"}

    def _comprehension(self, expr: N.Comprehension, kw_refs, name):
        """Unroll `f(element for v in range(...) ...)`: the element built once per loop value, then
        added up (sum) or joined (stack, concatenate). Bounded: MAX_UNROLL terms at most."""
        fpos = expr.func_pos
        if expr.func not in self.COMPREHENSIONS:
            raise GradSyntaxError(f"a comprehension goes in sum(...), stack(...) or concatenate(...), "
                                  f"not {expr.func}(...)", fpos.line, fpos.col)
        if expr.func == "sum" and expr.kwargs:
            k = expr.kwargs[0][2]
            raise GradSyntaxError("sum(... for ...) adds its terms and takes no parameters", k.line, k.col)
        outer = dict(self.loop_values)
        terms: list = []
        entered = [0]  # loops started, inner ones once per outer value: bounded even when they add no term

        def unroll(depth: int):
            if depth == len(expr.loops):
                terms.append(self.expr(expr.element))
                return
            loop = expr.loops[depth]
            entered[0] += 1
            if entered[0] > MAX_UNROLL:
                raise GradShapeError(size_error("this comprehension's inner loops", entered[0], MAX_UNROLL,
                                                "starts", "MAX_UNROLL") + " (even when they add no term)",
                                     loop.pos.line, loop.pos.col)
            if loop.var in self.names or loop.var in outer or loop.var in self.consts:
                raise GradNameError(f"the loop variable '{loop.var}' is already a name here; pick another",
                                    loop.pos.line, loop.pos.col)
            values = self._range(loop, len(terms))
            for v in values:
                self.loop_values[loop.var] = v
                unroll(depth + 1)
            self.loop_values.pop(loop.var, None)
            self.loop_values.update(outer)

        unroll(0)
        if not terms:
            loop = expr.loops[0]
            raise GradValueError("the comprehension's ranges are empty: nothing to add up or join",
                                 loop.pos.line, loop.pos.col)
        if expr.func == "sum":
            total = terms[0]
            for k, term in enumerate(terms[1:], 2):
                partial = name if k == len(terms) else None
                if partial is None and k < len(terms):  # the running sums read apart: `sum(...) (first 2 terms)`
                    partial = f"{self._auto_name(expr)} (first {k} terms)"
                total = self._gate(G.REGISTRY["add"], [total, term], {}, {}, expr, partial, fpos)
            return total
        params = {}
        for (kname, _e, kpos), ref in zip(expr.kwargs, kw_refs):
            if kname != "axis":
                raise GradNameError(f"{expr.func}() has no parameter '{kname}' (parameters: axis)", kpos.line, kpos.col)
            params[kname] = self._param(ref, kpos, kname)
        return self._gate(G.REGISTRY[self.COMPREHENSIONS[expr.func]], terms, params, {}, expr, name, fpos)

    def _range(self, loop, terms_so_far: int) -> range:
        """A comprehension loop's `range(...)`: constant integers, a non-zero step, and no more terms
        than MAX_UNROLL with those already made (counted before the range is, as len() overflows)."""
        bounds = [self._integer(self.expr(a), a.pos, "a range bound") for a in loop.args]
        if len(bounds) > 3:
            raise GradSyntaxError("range takes 1 to 3 integers", loop.pos.line, loop.pos.col)
        if len(bounds) == 3 and bounds[2] == 0:
            step = loop.args[2].pos
            raise GradValueError("range's step must not be 0", step.line, step.col)
        values = range(*bounds)
        span, step = values.stop - values.start, values.step
        count = (abs(span) + abs(step) - 1) // abs(step) if span * step > 0 else 0
        if terms_so_far + count > MAX_UNROLL:
            raise GradShapeError(size_error("this comprehension", terms_so_far + count, MAX_UNROLL,
                                            "terms", "MAX_UNROLL"), loop.pos.line, loop.pos.col)
        return values

    def _index(self, expr: N.Index, refs, name):
        key = self._key(refs[1:], expr.items, expr.bracket_pos)
        return self._gate(G.REGISTRY["index"], [refs[0]], {"key": key}, {}, expr, name, expr.bracket_pos)

    def _key(self, refs, items, where) -> tuple:
        """A numpy index from subscript items: ints, slices, None, integer arrays (all constants)."""
        key = []
        for ref, item in zip(refs, items):
            pos = getattr(item, "pos", where)
            if isinstance(ref, _SliceRef):
                if ref.parts is None:
                    key.append(None)
                    continue
                parts = [None if p is None else self._integer(p[0], p[1], "a slice bound") for p in ref.parts]
                if parts[2] == 0:
                    raise GradValueError("a slice step must not be 0", ref.parts[2][1].line, ref.parts[2][1].col)
                key.append(slice(*parts))
                continue
            value = self._constant(ref, pos, "an index")
            if value.size == 0:
                raise GradShapeError("an empty index array", pos.line, pos.col)
            if not np.all(np.isfinite(value)) or not np.all(value == np.round(value)):
                bad = value.ravel()[~(np.isfinite(value.ravel()) & (value.ravel() == np.round(value.ravel())))][0]
                raise GradValueError(f"an index must be an integer, not {bad:g}", pos.line, pos.col)
            key.append(int(value) if value.ndim == 0 else value.astype(np.int64))
        return tuple(key)

    def _integer(self, ref, pos, what) -> int:
        value = self._constant(ref, pos, what)
        if value.ndim != 0 or not np.isfinite(value) or float(value) != round(float(value)):
            raise GradValueError(f"{what} must be an integer, not {np.asarray(value).tolist()}", pos.line, pos.col)
        return int(value)

    def _as_const(self, ref):
        """A Const for a literal value or a `const` node (known when the graph is built), else None."""
        if isinstance(ref, Const):
            return ref
        if isinstance(ref, int) and self.nodes[ref].kind in ("const", "literal"):
            node = self.nodes[ref]
            return Const(np.asarray(node.value, dtype=float), node.pos)
        return None

    def _constant(self, ref, pos, what) -> np.ndarray:
        const = self._as_const(ref)
        if const is None:
            node = self.nodes[ref] if isinstance(ref, int) else None
            kind = "a leaf (its gradient is checked)" if node is not None and node.kind == "leaf" else "computed"
            raise GradValueError(f"{what} must be a constant (a number, a const, arange(...), x.shape[...]); "
                                 f"'{node.name if node else '?'}' is {kind}", pos.line, pos.col)
        return const.value

    def _user_call(self, expr: N.Call, args, kw_refs, name):
        fpos = expr.func_pos
        user = self.user_gates[expr.func]
        if expr.kwargs:
            k = expr.kwargs[0][2]
            raise GradSyntaxError(f"gate '{expr.func}' takes no keyword parameters", k.line, k.col)
        want = len(user.defn.params)
        if len(args) != want:
            raise GradSyntaxError(f"{expr.func}() takes {want} argument{'s' if want != 1 else ''}, got {len(args)}",
                                  fpos.line, fpos.col)
        gate = usergates.instantiate(user, [self._shape(r) for r in args], self.subgraph, self.text)
        constants = [self._as_const(r) for r in args]
        if all(c is not None for c in constants):  # on constants: its body, built with them, folds to one
            value = self._folded(user, [c.value for c in constants])
            _finite_or_raise(value, expr.pos, f"the constant {source_text(self.text, expr.pos)}")
            return Const(value, expr.pos)
        return self._gate(gate, list(args), {}, {}, expr, name, fpos)

    def _folded(self, user, values: list) -> np.ndarray:
        """A user gate's value on constant operands: its forward lines and expression built with the
        parameters as consts, so the builder's own constant folding evaluates them."""
        sub = Builder(self.program, self.source, None, False, 0)
        sub.user_gates, sub.rng = self.user_gates, self.rng
        sub.consts = {**{n: np.asarray(v, dtype=float) for n, v in user.consts.items()},
                      **{p: np.asarray(v, dtype=float) for p, v in zip(user.defn.params, values)}}
        for line in user.defn.body:
            if line.name in user.forward_locals:
                sub.consts[line.name] = sub.expr(line.expr, line.name).value
        return sub.expr(user.defn.expr).value

    def subgraph(self, bindings: list, body, output_expr, failed: dict | None = None, consts: dict | None = None) -> Graph:
        """A user gate's body as a small Graph: `bindings` (name, shape, pos) become its leaves, in order.

        `body` holds named lines built in order; the output is `output_expr`, or else the last line.
        With `failed` (a dict), a line whose shapes or values are wrong is recorded there by name
        instead of raising, and lines that use it are recorded too.
        """
        sub = Builder(self.program, self.source, None, False, 0)
        sub.user_gates, sub.rng = self.user_gates, self.rng
        sub.consts = {n: np.asarray(v, dtype=float) for n, v in (consts or {}).items()}
        for bname, shape, pos in bindings:
            sub.defined_at[bname] = pos
            sub.names[bname] = sub._add(name=bname, kind="leaf", shape=tuple(shape), pos=pos, value=None)
        for line in body:
            sub._define(line.name, line.pos)
            try:
                sub.names[line.name] = sub._ref_node(sub.expr(line.expr, line.name), line.name)
            except (GradShapeError, GradValueError, GradNameError) as err:
                if failed is None or (isinstance(err, GradNameError) and not failed):
                    raise
                failed[line.name] = err
        output = sub._ref_node(sub.expr(output_expr), None) if output_expr is not None else max(sub.names.values())
        return Graph(sub.nodes, output, sub.names, [], self.text, self.source)

    def _ref_node(self, ref, name):
        """A node id for a reference, making a literal node of a constant."""
        if isinstance(ref, Const):
            node = self._literal(ref)
            if name:
                self.nodes[node].name = name
            return node
        return ref

    def _param(self, ref, pos, pname):
        const = self._as_const(ref)
        if const is None:
            raise GradSyntaxError(f"'{pname}' must be a number or a const", pos.line, pos.col)
        return const.value

    def _gate(self, gate, refs, params, attrs, expr, name, where):
        shapes = [self._shape(r) for r in refs]
        try:
            shape, inferred = gate.infer(shapes, params)
        except ValueError as err:
            raise GradShapeError(str(err), where.line, where.col) from None
        except TypeError as err:  # a parameter of the wrong kind that a gate's shape rule did not foresee
            raise GradValueError(f"{gate.call or gate.name}(): {err}", where.line, where.col) from None
        attrs = {**inferred, **attrs}
        _check_shape(tuple(shape), where, f"'{source_text(self.text, expr.pos)}'")
        workspace = gate.workspace(shapes, attrs) if gate.workspace is not None else 0
        if workspace > MAX_ELEMENTS:
            raise GradShapeError(size_error(f"the windows of '{source_text(self.text, expr.pos)}'", workspace,
                                            MAX_ELEMENTS, name="MAX_ELEMENTS"), where.line, where.col)
        constants = [self._as_const(r) for r in refs]
        if all(c is not None for c in constants) and gate.instance is None:  # literals and consts only: folded
            refs = constants
            with np.errstate(all="ignore"):
                value = np.asarray(gate.forward([r.value for r in refs], attrs), dtype=float)
            _finite_or_raise(value, expr.pos, f"the constant {source_text(self.text, expr.pos)}")
            return Const(value, expr.pos)
        inputs = tuple(r if isinstance(r, int) else self._literal(r) for r in refs)
        return self._add(name=name or self._auto_name(expr), kind="gate", shape=tuple(shape),
                         pos=expr.pos, gate=gate, inputs=inputs, attrs=attrs)

    def _auto_name(self, expr) -> str:
        """An unnamed gate's name: its source text, with the loop values inside a comprehension (`x[i] (i=2)`)."""
        text = source_text(self.text, expr.pos)
        if not self.loop_values:
            return text
        return f"{text} ({', '.join(f'{var}={value}' for var, value in self.loop_values.items())})"

    def _shape(self, ref):
        return ref.value.shape if isinstance(ref, Const) else self.nodes[ref].shape

    # --- statements -----------------------------------------------------------------------------

    def build(self) -> Graph:
        output = None
        last_computed = None
        expects = []
        statements = self.program.statements
        for index, st in enumerate(statements):
            if isinstance(st, N.Assign):
                ref = self._assignment(st)
                last_computed = last_computed if ref is None else ref
            elif isinstance(st, N.ExprStmt):
                if index != len(statements) - 1:
                    raise GradSyntaxError("a bare expression is only allowed as the last statement "
                                          "(the output); name it: f = ...", st.pos.line, st.pos.col)
                out_name = "f" if "f" not in self.names else None
                ref = self.expr(st.expr, out_name)
                if isinstance(ref, Const):
                    raise GradValueError("the output is a constant: there is nothing to differentiate",
                                         st.pos.line, st.pos.col)
                if out_name and self.nodes[ref].name == out_name:
                    self.names[out_name] = ref
                last_computed = ref
            elif isinstance(st, N.Output):
                if st.name not in self.names:
                    raise GradNameError(f"unknown name '{st.name}'" + did_you_mean(st.name, self.names),
                                        st.pos.line, st.pos.col)
                output = self.names[st.name]
            elif isinstance(st, N.Expect):
                expects.append(st)
            elif isinstance(st, N.GateDef):
                consts = {n: self.nodes[i].value for n, i in self.names.items() if self.nodes[i].kind == "const"}
                self.user_gates[st.name] = usergates.define(st, self.user_gates, consts)
                self.warnings.extend(self.user_gates[st.name].warnings)
        if self.at:
            bad = next(iter(self.at))
            known = [n.name for n in self.nodes if n.kind in ("leaf", "const")]
            raise GradNameError(f"--at {bad}: no leaf named '{bad}'" + did_you_mean(bad, known))
        if output is None:
            output = last_computed
        if output is None:
            if not statements:
                raise GradSyntaxError("the input is empty: write at least one computed node, e.g. f = x * x", 1, 1)
            st = statements[-1]
            raise GradValueError("nothing to differentiate: no computed node (e.g. f = x * y)",
                                 st.pos.line, st.pos.col)
        return Graph(self.nodes, output, self.names, expects, self.text, self.source, self.warnings)

    def _assignment(self, st: N.Assign) -> int | None:
        """Build `name = expr`; returns the node id when it is computed (not a leaf or an alias)."""
        self._define(st.name, st.pos)
        if st.name in KEYWORDS:
            raise GradNameError(f"'{st.name}' is a keyword", st.pos.line, st.pos.col)
        before = len(self.nodes)
        ref = self.expr(st.expr, st.name)
        if isinstance(ref, int) and ref < before:  # `y = x`: a computed node by the language's rule (the identity)
            ref = self._gate(G.REGISTRY["identity"], [ref], {}, {}, st.expr, st.name, st.pos)
        if isinstance(ref, Const):
            # A value: a leaf, unless it is made of consts only (`n = N * 2`), which makes it a const too.
            of_consts = any(isinstance(e, N.Name) and e.id in self.names for e in N.walk(st.expr))
            self.names[st.name] = self._leaf(st.name, ref.value, st.pos, st.const or of_consts)
            return None
        if st.const:
            raise GradValueError(f"const {st.name} must be a value, but its right side names other nodes",
                                 st.pos.line, st.pos.col)
        self.names[st.name] = ref
        return ref


def build(program: N.Program, source: str = "<expr>", at: dict | None = None,
          free_names: bool = False, seed: int = 0) -> Graph:
    """Build the gate graph of a parsed program. `at` maps leaf names to numpy values."""
    return Builder(program, source, at, free_names, seed).build()
