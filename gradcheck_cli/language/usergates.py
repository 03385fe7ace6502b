"""User `gate` definitions: checked when defined, then made into a `Composite` per set of operand shapes.

The lines under a gate are of two kinds. Lines that use neither `out`, `dout` nor a backward line
are the forward's *locals* (its cache); the forward formula may use them (`where`-style:
`gate bn(x) = gamma * xhat + beta` with `xhat = ...` below). Lines that use `out` or `dout` are the
*backward*: `d<param>` lines give each parameter's VJP, and a `d<local>` line the gradient of a
forward local (staged backprop: `dxhat`, `dvar`, ...), which is then checked on its own too.

A composite's forward and SymPy form come from the forward formula and its locals only (its `body`);
its VJP runs the user's d lines (its `backward`) or, without them, backprop through the body. So a
wrong derivation shows up as a disagreement with the other two oracles; each evaluator runs a
composite's graphs in the one place it tells the two kinds of gate apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import gates
from . import nodes
from ..core.errors import BackwardError, GradNameError, GradSyntaxError, did_you_mean
from .graph import Composite, Graph, Intermediate, applications
from .nodes import walk
from .values import CONSTRUCTORS

RESERVED = ("out", "dout")


@dataclass
class UserGate:
    """A validated `gate` definition and its composites by operand shapes."""
    defn: nodes.GateDef
    d_lines: dict                      # parameter -> its `d` line (nodes.Assign)
    forward_locals: list               # names of the lines the forward formula uses, in order
    intermediates: dict                # forward local -> its `d<local>` line
    warnings: list                     # (message, line, col)
    instances: dict = field(default_factory=dict)  # operand shapes -> its Composite
    consts: dict = field(default_factory=dict)  # file `const`s defined before the gate: name -> value

    @property
    def name(self) -> str:
        return self.defn.name


def _names_in(expr) -> set:
    return {e.id for e in walk(expr) if isinstance(e, nodes.Name)}


def define(defn: nodes.GateDef, user_gates: dict, consts: dict | None = None) -> UserGate:
    """Check a definition without shapes: names, clashes, recursion, its d lines and locals.

    `consts` (name -> value): the file's `const`s defined before the gate, which its lines may use
    as constants (hyper-parameters: eps, alpha, stride)."""
    consts = dict(consts or {})
    pos = defn.pos
    builtin = gates.function_names() | set(CONSTRUCTORS)
    if defn.name in builtin:
        raise GradNameError(f"gate '{defn.name}' clashes with the built-in function of that name", pos.line, pos.col)
    if defn.name in user_gates:
        first = user_gates[defn.name].defn.pos
        raise GradNameError(f"gate '{defn.name}' is already defined (line {first.line})", pos.line, pos.col)
    if not defn.params:
        raise GradSyntaxError(f"gate '{defn.name}' needs at least one parameter", pos.line, pos.col)
    params = set()
    for name, ppos in zip(defn.params, defn.param_pos):
        if name in params or name in RESERVED:
            why = "is reserved for the backward lines" if name in RESERVED else "is repeated"
            raise GradNameError(f"parameter '{name}' {why}", ppos.line, ppos.col)
        params.add(name)
    known_functions = builtin | set(user_gates)
    kind, uses, d_lines, order = {}, {}, {}, []
    for line in defn.body:
        if line.name in params or line.name in RESERVED or line.name in kind:
            raise GradNameError(f"'{line.name}' is already a name in gate '{defn.name}'", line.pos.line, line.pos.col)
        _check_names(defn, line.expr, params | set(RESERVED) | set(kind) | set(consts), known_functions)
        used = _names_in(line.expr)
        is_d_param = line.name.startswith("d") and line.name[1:] in params
        # `dquad = small` forgets dout but is still quad's gradient by its name: a backward line, checked
        is_d_local = line.name.startswith("d") and kind.get(line.name[1:]) == "forward"
        backward_line = (is_d_param or is_d_local or bool(used & set(RESERVED))
                         or any(kind.get(u) == "backward" for u in used))
        kind[line.name] = "backward" if backward_line else "forward"
        uses[line.name] = used
        order.append(line)
        if is_d_param:
            d_lines[line.name[1:]] = line
    forward_names = {n for n, k in kind.items() if k == "forward"}
    _check_header(defn, params, forward_names | set(consts), set(kind) - forward_names, known_functions)
    defn = _named_in_expression(defn, order, kind, uses)
    forward_used = _closure(_names_in(defn.expr) & forward_names, uses, forward_names)
    if d_lines:
        missing = [p for p in defn.params if p not in d_lines]
        if missing:
            raise GradSyntaxError(f"gate '{defn.name}' gives d lines for some parameters but not for "
                                  + ", ".join(missing) + " (give all, or none to differentiate automatically)",
                                  pos.line, pos.col)
    intermediates = {line.name[1:]: line for line in order if kind[line.name] == "backward"
                     and line.name.startswith("d") and line.name[1:] in forward_used}
    needed = _closure({"d" + p for p in d_lines} | {"d" + n for n in intermediates}, uses, set(kind))
    warnings = _unused_lines(defn, order, needed | forward_used, params, kind)
    used_consts = {n for line in order for n in uses[line.name]} | _names_in(defn.expr)
    return UserGate(defn, d_lines, [line.name for line in order if line.name in forward_used],
                    intermediates, warnings, consts={n: v for n, v in consts.items() if n in used_consts})


def _unused_lines(defn: nodes.GateDef, order: list, used: set, params: set, kind: dict) -> list:
    """A warning for each line neither the forward nor any d line uses (a typo'd gradient name hinted)."""
    warnings = []
    for line in order:
        if line.name not in used:
            hint = ""
            if line.name.startswith("d") and line.name[1:] not in params and line.name[1:] not in kind:
                hint = (f" (it is no parameter's gradient: the parameters are {', '.join(defn.params)}"
                        + did_you_mean(line.name, ["d" + p for p in defn.params]) + ")")
            warnings.append((f"line '{line.name}' in gate '{defn.name}' is not used by the forward or by any "
                             f"d line{hint}", line.pos.line, line.pos.col))
    return warnings


def _named_in_expression(defn: nodes.GateDef, order: list, kind: dict, uses: dict) -> nodes.GateDef:
    """`z = x @ W + b` beside `gate g(x, W, b) = relu(x @ W + b)`: a forward line the expression does
    not use but spells out verbatim names that part of it, so `dz` is checked as the gradient of z."""
    expr = defn.expr
    if any(isinstance(e, (nodes.Comprehension, nodes.Loop)) for e in walk(expr)):
        return defn  # loop variables are scoped: leave such expressions alone
    for line in order:
        if kind[line.name] == "forward" and line.name not in _names_in(expr):
            if not any(line.name in uses[other.name] for other in order if kind[other.name] == "backward"):
                continue
            expr = _substitute(expr, _shape(line.expr), line.name)
    return defn if expr is defn.expr else dataclasses.replace(defn, expr=expr)


def _shape(e):
    """An expression without its positions: equal for equal text up to spacing."""
    if isinstance(e, nodes.Pos):
        return None
    if dataclasses.is_dataclass(e):
        return (type(e).__name__,) + tuple(_shape(getattr(e, f.name)) for f in dataclasses.fields(e)
                                           if not f.name.endswith("pos"))
    if isinstance(e, tuple):
        return tuple(_shape(x) for x in e)
    return e


def _substitute(e, shape, name: str):
    """`e` with every sub-expression of this shape replaced by the name."""
    if dataclasses.is_dataclass(e) and not isinstance(e, nodes.Pos):
        if _shape(e) == shape:
            return nodes.Name(name, e.pos)
        changes = {f.name: _substitute(getattr(e, f.name), shape, name) for f in dataclasses.fields(e)
                   if not f.name.endswith("pos")}
        if all(changes[k] is getattr(e, k) for k in changes):
            return e
        return dataclasses.replace(e, **changes)
    if isinstance(e, tuple):
        items = tuple(_substitute(x, shape, name) for x in e)
        return e if all(a is b for a, b in zip(items, e)) else items
    return e


def _closure(start: set, uses: dict, within: set) -> set:
    """`start` and every line of `within` that it uses, transitively."""
    seen, stack = set(), list(start)
    while stack:
        name = stack.pop()
        if name in seen or name not in within:
            continue
        seen.add(name)
        stack.extend(uses.get(name, ()))
    return seen


def _check_header(defn, params: set, forward_names: set, backward_names: set, known_functions: set):
    for e in walk(defn.expr):
        if isinstance(e, nodes.Name) and e.id in backward_names:
            raise GradNameError(f"the forward formula cannot use '{e.id}': it is a backward line "
                                "(it uses dout, out or a d line)", e.pos.line, e.pos.col)
    _check_names(defn, defn.expr, params | forward_names, known_functions)


def _check_names(defn, expr, visible: set, known_functions: set):
    visible = visible | {loop.var for e in walk(expr) if isinstance(e, nodes.Comprehension) for loop in e.loops}
    for e in walk(expr):
        if isinstance(e, nodes.Name) and e.id not in visible:
            if e.id in RESERVED:
                raise GradNameError(f"'{e.id}' is only defined in the indented backward lines",
                                    e.pos.line, e.pos.col)
            raise GradNameError(f"unknown name '{e.id}' in gate '{defn.name}' (it sees its parameters"
                                f"{', out, dout' if RESERVED[0] in visible else ''}, earlier lines and the "
                                f"consts defined before it)"
                                + did_you_mean(e.id, visible), e.pos.line, e.pos.col)
        if isinstance(e, nodes.Call):
            if e.func == defn.name:
                raise GradNameError(f"gate '{defn.name}' calls itself: recursive gates are not allowed",
                                    e.func_pos.line, e.func_pos.col)
            if e.func not in known_functions:
                raise GradNameError(f"unknown function '{e.func}'" + did_you_mean(e.func, known_functions),
                                    e.func_pos.line, e.func_pos.col)


def instantiate(user: UserGate, shapes: list, subgraph, text: str) -> Composite:
    """The Composite for calls of `user` on operands of these shapes (cached).

    `subgraph(bindings, body, expr, failed=, consts=)` builds the body as a small Graph (the caller's
    builder does); `text` is the file's source, for the gate's docs.
    """
    key = tuple(tuple(s) for s in shapes)
    if key in user.instances:
        return user.instances[key]
    defn = user.defn
    bindings = [(p, s, pp) for p, s, pp in zip(defn.params, key, defn.param_pos)]
    lines = [line for line in defn.body if line.name in user.forward_locals]
    body = subgraph(bindings, lines, defn.expr, consts=user.consts)
    out_shape = body.nodes[body.output].shape
    backward, failures, intermediates, depends = None, {}, (), {}
    if user.d_lines:
        extra = [("out", out_shape, defn.pos), ("dout", out_shape, defn.pos)]
        broken: dict = {}
        backward = subgraph(bindings + extra, defn.body, None, failed=broken, consts=user.consts)
        failures = _failures(user, key, backward, broken)
        intermediates = _intermediates(user, body, backward, broken)
        depends = _depends(defn.params, failures, intermediates, backward)
    cost = sum(applications(n.gate) for n in body.nodes if n.gate is not None)
    if backward is not None:
        cost += sum(applications(n.gate) for n in backward.nodes if n.gate is not None)
    composite = Composite(definition=defn, d_lines=dict(user.d_lines), body=body, backward=backward, shapes=key,
                          failures=failures, intermediates=intermediates, depends=depends, cost=max(1, cost),
                          has_kinks=any(n.gate is not None and n.gate.has_kinks for n in body.nodes),
                          **_described(user, text))
    user.instances[key] = composite
    return composite


def _failures(user: UserGate, shapes: tuple, backward: Graph, broken: dict) -> dict:
    """Parameter -> why its d line cannot be computed: it raised while built, or its shape is not the parameter's."""
    defn, failures = user.defn, {}
    for p, shape in zip(defn.params, shapes):
        line = user.d_lines[p]
        err = broken.get("d" + p)
        if err is not None:
            failures[p] = BackwardError(f"gate '{defn.name}': d{p} cannot be computed: {err.message}",
                                        err.line, err.col)
            continue
        got = backward.nodes[backward.names["d" + p]].shape
        if got != shape:
            failures[p] = BackwardError(f"gate '{defn.name}': d{p} has shape {gates.fmt_shape(got)} but {p} has "
                                        f"shape {gates.fmt_shape(shape)}", line.pos.line, line.pos.col)
    return failures


def _intermediates(user: UserGate, body: Graph, backward: Graph, broken: dict) -> tuple:
    """The forward locals with a d<local> line, each with its d line's node (None when it cannot be computed)."""
    found = []
    for local, line in user.intermediates.items():
        node = body.nodes[body.names[local]]
        err = broken.get(line.name)
        bid = None if err is not None else backward.names.get(line.name)
        if bid is not None and backward.nodes[bid].shape != node.shape:
            err = BackwardError(f"gate '{user.defn.name}': {line.name} has shape "
                                f"{gates.fmt_shape(backward.nodes[bid].shape)} but {local} has shape "
                                f"{gates.fmt_shape(node.shape)}", line.pos.line, line.pos.col)
            bid = None
        found.append(Intermediate(local=local, body_id=body.names[local], backward_id=bid, line=line, error=err))
    return tuple(found)


def _depends(params: tuple, failures: dict, intermediates: tuple, backward: Graph) -> dict:
    """A d line's name -> the locals whose d<local> lines it uses (sorted by name). Keyed by name, not
    node: `dp = dd` is the node of `dd`, and uses `dd`'s line, which `dd` itself does not."""
    marks = {m.backward_id: m.local for m in intermediates if m.backward_id is not None}
    depends = {}
    for p in params:
        if p not in failures:
            nid = backward.names["d" + p]
            depends["d" + p] = sorted(marks[a] for a in backward.ancestors(nid) if a in marks)
    for m in intermediates:
        if m.backward_id is not None:
            bid = m.backward_id
            depends["d" + m.local] = sorted(marks[a] for a in backward.ancestors(bid) if a in marks and a != bid)
    return depends


def _described(user: UserGate, text: str) -> dict:
    """What the reports show of the gate: its local gradient, its one-line doc, how it routes gradients."""
    defn = user.defn
    source = text[defn.expr.pos.start:defn.expr.pos.end]
    if user.d_lines:
        local = "; ".join(f"d{p} = {text[line.expr.pos.start:line.expr.pos.end]}" for p, line in user.d_lines.items())
    else:
        local = "differentiated automatically through its body"
    return {"local": local, "doc": f"user gate {defn.name}({', '.join(defn.params)}) = {source}",
            "routes": "by the d lines written for it" if user.d_lines else "through the gates of its body"}
