"""AST → Graph: names resolved, constants folded, shapes checked, gates chosen from the registry."""

from __future__ import annotations

import numpy as np

from .. import gates
from . import nodes
from . import usergates
from .build_calls import CallsMixin
from .build_common import KEYWORDS, _check_shape, _finite_or_raise, _SliceRef
from .build_index import IndexMixin
from .build_loops import LoopsMixin
from ..core.errors import GradNameError, GradShapeError, GradSyntaxError, GradValueError, did_you_mean
from .graph import Const, Graph, Node, applications, source_text
from ..core.limits import MAX_GATE_WORK, MAX_NODES, MAX_TOTAL_ELEMENTS, size_error
from ..core.meter import count
from ..gates.tensors import fmt_note
from .values import CONSTRUCTORS

VALUE_CONSTRUCTORS = {"randn", "rand", "zeros", "ones", "eye"}  # arange stays a constant: it makes indices


class Builder(CallsMixin, LoopsMixin, IndexMixin):
    """Turns a parsed Program into a Graph; one instance per program."""

    def __init__(self, program: nodes.Program, source: str, at: dict | None, free_names: bool, seed: int):
        self.program = program
        self.text = program.text
        self.source = source
        self.at = dict(at or {})
        self.free_names = free_names
        self._seed, self._rng = seed, None  # `rng`: made at the first draw (most programs draw nothing)
        self.nodes: list[Node] = []
        self.names: dict[str, int] = {}
        self.defined_at: dict[str, nodes.Pos] = {}
        self.user_gates: dict = {}
        self.consts: dict = {}   # in a gate's body: the file consts it may use, name -> value
        self.loop_values: dict = {}  # inside a comprehension: its loop variables' current values
        self.made_of_consts: dict = {}  # name -> (the names it is made of, its value): a value folded to a const
        self.warnings: list = []
        self.total = 0   # elements in all nodes so far
        self.work = 0    # gate applications one forward pass takes (a user gate counts its body's)

    @property
    def rng(self) -> np.random.Generator:
        """`default_rng(seed)` of the program's randn(...) values, made when first drawn from."""
        if self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        return self._rng

    @rng.setter
    def rng(self, rng: np.random.Generator) -> None:
        self._rng = rng

    # --- nodes ----------------------------------------------------------------------------------

    def _add(self, **kw) -> int:
        count("build")
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
            self.work += applications(node.gate)
            if self.work > MAX_GATE_WORK:
                raise GradShapeError(size_error("one forward pass", self.work, MAX_GATE_WORK, "gate applications", "MAX_GATE_WORK")
                                     + " (gates that call gates multiply)", pos.line, pos.col)
        self.nodes.append(node)
        return node.id

    def _leaf(self, name: str, value: np.ndarray, pos: nodes.Pos, const: bool) -> int:
        if name in self.at:
            value = self.at.pop(name)
        return self._add(name=name, kind="const" if const else "leaf", shape=value.shape, pos=pos, value=value)

    def _literal(self, c: Const) -> int:
        return self._add(name=source_text(self.text, c.pos), kind="literal", shape=c.value.shape,
                         pos=c.pos, value=c.value)

    def _define(self, name: str, pos: nodes.Pos):
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
                stack.extend((c, False) for c in reversed(nodes.children(expr)))
                continue
            top = expr is root
            done[id(expr)] = self._one(expr, [done[id(c)] for c in nodes.children(expr)], name if top else None)
        return done[id(root)]

    def _one(self, expr, refs, name):
        if isinstance(expr, nodes.Num):
            _finite_or_raise(expr.value, expr.pos, "this number")
            return Const(expr.value, expr.pos)
        if isinstance(expr, nodes.Name):
            return self._name(expr)
        if isinstance(expr, nodes.Array):
            return self._array(expr, refs)
        if isinstance(expr, nodes.Op):
            return self._op(expr, refs, name)
        if isinstance(expr, nodes.Call):
            return self._call(expr, refs, name)
        if isinstance(expr, nodes.Index):
            return self._index(expr, refs, name)
        if isinstance(expr, nodes.Slice):
            parts = iter(refs)
            return _SliceRef(tuple(None if p is None else (next(parts), p.pos)
                                   for p in (expr.start, expr.stop, expr.step)), expr.pos)
        if isinstance(expr, nodes.NewAxis):
            return _SliceRef(None, expr.pos)
        if isinstance(expr, nodes.Comprehension):
            return self._comprehension(expr, refs, name)
        raise GradSyntaxError(f"unexpected {type(expr).__name__}", expr.pos.line, expr.pos.col)

    def _name(self, expr: nodes.Name):
        if expr.id in self.loop_values:
            return Const(np.asarray(float(self.loop_values[expr.id])), expr.pos)
        if expr.id in self.names:
            return self.names[expr.id]
        if expr.id in self.consts:  # a file const seen from inside a gate: a constant there
            return Const(self.consts[expr.id], expr.pos)
        if expr.id in self.user_gates:
            raise GradNameError(f"'{expr.id}' is a gate; call it as {expr.id}(...)", expr.pos.line, expr.pos.col)
        # With -e every free name is a leaf; anywhere, a name only `--at NAME=VALUE` gives a value is one too.
        if ((self.free_names or expr.id in self.at)
                and expr.id not in CONSTRUCTORS and expr.id not in gates.function_names()):
            if expr.id in self.at:
                value = self.at.pop(expr.id)
            else:
                value = np.asarray(self.rng.standard_normal())
                self.warnings.append((f"'{expr.id}' has no --at value: checked at a seeded random "
                                      f"{expr.id} = {fmt_note(value)} (--at {expr.id}=VALUE sets it)",
                                      expr.pos.line, expr.pos.col))
            self.defined_at[expr.id] = expr.pos
            self.names[expr.id] = self._add(name=expr.id, kind="leaf", shape=value.shape, pos=expr.pos,
                                            value=value)
            return self.names[expr.id]
        if expr.id in gates.function_names() or expr.id in CONSTRUCTORS:
            raise GradNameError(f"'{expr.id}' is a function; call it as {expr.id}(...)", expr.pos.line, expr.pos.col)
        raise GradNameError(f"unknown name '{expr.id}'" + did_you_mean(expr.id, self.names),
                            expr.pos.line, expr.pos.col)

    def _array(self, expr: nodes.Array, refs):
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

    def _op(self, expr: nodes.Op, refs, name):
        where = expr.op_pos or expr.pos
        if expr.op == ".shape":  # known when the graph is built: a constant vector of sizes
            return Const(np.asarray(self._shape(refs[0]), dtype=float), expr.pos)
        if expr.op == "neg":
            (ref,) = refs
            if isinstance(ref, Const):
                return Const(-ref.value, expr.pos)
            gate, attrs = gates.const_form("*", "left", -1.0)
            return self._gate(gate, [ref], {}, attrs, expr, name, where)
        gate = gates.operator_gate(expr.op)
        if gate is None:
            raise GradSyntaxError(f"unknown operator '{expr.op}'", where.line, where.col)
        if len(refs) == 2 and not all(isinstance(r, Const) for r in refs):
            for side, c, other in (("left", refs[0], refs[1]), ("right", refs[1], refs[0])):
                if isinstance(c, Const) and c.value.ndim == 0:
                    form = gates.const_form(expr.op, side, float(c.value))
                    if form:
                        return self._gate(form[0], [other], {}, form[1], expr, name, where)
        return self._gate(gate, refs, {}, {}, expr, name, where)


    COMPREHENSIONS = {"sum": "add", "stack": "stack", "concatenate": "concatenate"}






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




    def _shape(self, ref):
        return ref.value.shape if isinstance(ref, Const) else self.nodes[ref].shape

    # --- statements -----------------------------------------------------------------------------

    def build(self) -> Graph:
        output = None
        last_computed = None
        expects = []
        statements = self.program.statements
        for index, st in enumerate(statements):
            if isinstance(st, nodes.Assign):
                ref = self._assignment(st)
                last_computed = last_computed if ref is None else ref
            elif isinstance(st, nodes.ExprStmt):
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
            elif isinstance(st, nodes.Output):
                if st.name not in self.names:
                    raise GradNameError(f"unknown name '{st.name}'" + did_you_mean(st.name, self.names),
                                        st.pos.line, st.pos.col)
                output = self.names[st.name]
            elif isinstance(st, nodes.Expect):
                expects.append(st)
            elif isinstance(st, nodes.GateDef):
                consts = {n: self.nodes[i].value for n, i in self.names.items() if self.nodes[i].kind == "const"}
                self.user_gates[st.name] = usergates.define(st, self.user_gates, consts)
                self.warnings.extend(self.user_gates[st.name].warnings)
        if self.at:
            raise GradNameError(self._no_leaf(next(iter(self.at))))
        if output is None:
            output = last_computed
        if output is None:
            if not statements:
                raise GradSyntaxError("the input is empty: write at least one computed node, e.g. f = x * x", 1, 1)
            st = statements[-1]
            raise GradValueError("nothing to differentiate: no computed node (e.g. f = x * y)" + self._consts_hint(),
                                 st.pos.line, st.pos.col)
        return Graph(self.nodes, output, self.names, expects, self.text, self.source, self.warnings)

    def _no_leaf(self, bad: str, shown: int = 20) -> str:
        """Why `--at bad=...` sets nothing, with the leaves it could set (the first `shown` of them)."""
        def listed(names):
            return ", ".join(names[:shown]) + (f", … ({len(names)} in all)" if len(names) > shown else "")
        leaves = [n.name for n in self.nodes if n.kind == "leaf"]
        consts = [n.name for n in self.nodes if n.kind == "const"]
        if bad in self.names:  # named, but neither a leaf nor a const: those would have taken the value
            message = f"--at {bad}: '{bad}' is a computed node, not a leaf (--at sets leaves)"
        else:
            message = f"--at {bad}: no leaf named '{bad}'" + did_you_mean(bad, leaves + consts)
        message += f"; the leaves are: {listed(leaves)}" if leaves else "; there are no leaves"
        return message + (f" (consts: {listed(consts)})" if consts else "")

    def _consts_hint(self) -> str:
        """Why a value the user may have meant as a leaf is a const: the first one made of declared consts."""
        for name, (used, value) in self.made_of_consts.items():
            if not any(u in self.made_of_consts for u in used):
                value = np.asarray(value)
                literal = (fmt_note(value) if value.ndim == 0
                           else f"randn({', '.join(str(d) for d in value.shape)})")
                return (f"; '{name}' is a const: it is computed from consts only ({', '.join(used)}); "
                        f"to check its gradient, give it a value of its own ({name} = {literal})")
        return ""

    def _assignment(self, st: nodes.Assign) -> int | None:
        """Build `name = expr`; returns the node id when it is computed (not a leaf or an alias)."""
        self._define(st.name, st.pos)
        if st.name in KEYWORDS:
            raise GradNameError(f"'{st.name}' is a keyword", st.pos.line, st.pos.col)
        before = len(self.nodes)
        ref = self.expr(st.expr, st.name)
        if isinstance(ref, int) and ref < before:  # `y = x`: a computed node by the language's rule (the identity)
            ref = self._gate(gates.REGISTRY["identity"], [ref], {}, {}, st.expr, st.name, st.pos)
        if isinstance(ref, Const):
            # A value: a leaf, unless it is made of consts only (`n = N * 2`), which makes it a const too.
            # A value constructor's sizes do not count: `randn(N)` is a value of its own, as `randn(3)` is.
            sizes = {id(e) for c in nodes.walk(st.expr) if isinstance(c, nodes.Call) and c.func in VALUE_CONSTRUCTORS
                     for e in nodes.walk(c)}
            of_consts = sorted({e.id for e in nodes.walk(st.expr)
                                if isinstance(e, nodes.Name) and e.id in self.names and id(e) not in sizes})
            self.names[st.name] = self._leaf(st.name, ref.value, st.pos, st.const or bool(of_consts))
            if of_consts and not st.const:
                self.made_of_consts[st.name] = (of_consts, ref.value)
            return None
        if st.const:
            raise GradValueError(f"const {st.name} must be a value, but its right side names other nodes",
                                 st.pos.line, st.pos.col)
        self.names[st.name] = ref
        return ref


def build(program: nodes.Program, source: str = "<expr>", at: dict | None = None,
          free_names: bool = False, seed: int = 0) -> Graph:
    """Build the gate graph of a parsed program. `at` maps leaf names to numpy values."""
    return Builder(program, source, at, free_names, seed).build()
