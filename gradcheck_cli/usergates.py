"""User `gate` definitions: checked when defined, then made into an ordinary registry `Gate` per call site.

The instance's forward and SymPy form come from the forward expression only; its VJP runs the
user's `d` lines (or, without them, backprop through the body). So a wrong derivation shows up as
a disagreement with the other two oracles, and autodiff, numeric and symbolic need no new code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import gates as G
from . import nodes as N
from .autodiff import backward, forward, run_graph
from .errors import BackwardError, GradNameError, GradSyntaxError, did_you_mean
from .nodes import walk
from .symbolic import evaluate
from .values import CONSTRUCTORS

RESERVED = ("out", "dout")


@dataclass
class UserGate:
    """A validated `gate` definition and its instances by operand shapes."""
    defn: N.GateDef
    d_lines: dict                      # parameter -> its `d` line (N.Assign)
    instances: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.defn.name


def define(defn: N.GateDef, user_gates: dict) -> UserGate:
    """Check a definition without shapes: names, clashes, recursion, and its `d` lines."""
    pos = defn.pos
    builtin = G.function_names() | set(CONSTRUCTORS)
    if defn.name in builtin:
        raise GradNameError(f"gate '{defn.name}' clashes with the built-in function of that name", pos.line, pos.col)
    if defn.name in user_gates:
        first = user_gates[defn.name].defn.pos
        raise GradNameError(f"gate '{defn.name}' is already defined (line {first.line})", pos.line, pos.col)
    if not defn.params:
        raise GradSyntaxError(f"gate '{defn.name}' needs at least one parameter", pos.line, pos.col)
    seen = set()
    for name, ppos in zip(defn.params, defn.param_pos):
        if name in seen or name in RESERVED:
            why = "is reserved for the backward lines" if name in RESERVED else "is repeated"
            raise GradNameError(f"parameter '{name}' {why}", ppos.line, ppos.col)
        seen.add(name)
    known_functions = builtin | set(user_gates)
    _check_names(defn, defn.expr, set(defn.params), known_functions)
    d_lines, local_names = {}, []
    for line in defn.body:
        if line.name in seen or line.name in RESERVED or line.name in local_names or line.name in d_lines.values():
            raise GradNameError(f"'{line.name}' is already a name in gate '{defn.name}'", line.pos.line, line.pos.col)
        visible = set(defn.params) | set(RESERVED) | set(local_names)
        _check_names(defn, line.expr, visible, known_functions)
        if line.name.startswith("d") and line.name[1:] in defn.params:
            if line.name[1:] in d_lines:
                raise GradNameError(f"'{line.name}' is given twice", line.pos.line, line.pos.col)
            d_lines[line.name[1:]] = line
        local_names.append(line.name)
    _check_unknown_d_lines(defn, d_lines)
    if d_lines:
        missing = [p for p in defn.params if p not in d_lines]
        if missing:
            raise GradSyntaxError(f"gate '{defn.name}' gives d lines for some parameters but not for "
                                  + ", ".join(missing) + " (give all, or none to differentiate automatically)",
                                  pos.line, pos.col)
    return UserGate(defn, d_lines)


def _check_names(defn, expr, visible: set, known_functions: set):
    for e in walk(expr):
        if isinstance(e, N.Name) and e.id not in visible:
            if e.id in RESERVED:
                raise GradNameError(f"'{e.id}' is only defined in the indented backward lines",
                                    e.pos.line, e.pos.col)
            raise GradNameError(f"unknown name '{e.id}' in gate '{defn.name}' (it sees its parameters"
                                f"{', out, dout' if visible - set(defn.params) else ''} and earlier lines)"
                                + did_you_mean(e.id, visible), e.pos.line, e.pos.col)
        if isinstance(e, N.Call):
            if e.func == defn.name:
                raise GradNameError(f"gate '{defn.name}' calls itself: recursive gates are not allowed",
                                    e.func_pos.line, e.func_pos.col)
            if e.func not in known_functions:
                raise GradNameError(f"unknown function '{e.func}'" + did_you_mean(e.func, known_functions),
                                    e.func_pos.line, e.func_pos.col)


def _check_unknown_d_lines(defn: N.GateDef, d_lines: dict):
    """A `d<name>` line that is no parameter's gradient and that nothing uses is a misnamed d line."""
    used = {e.id for line in defn.body for e in walk(line.expr) if isinstance(e, N.Name)}
    for line in defn.body:
        if line.name.startswith("d") and line.name[1:] not in defn.params and line.name not in used:
            raise GradNameError(f"'{line.name}' is not the gradient of a parameter of '{defn.name}' "
                                f"(its parameters: {', '.join(defn.params)})"
                                + did_you_mean(line.name, ["d" + p for p in defn.params]),
                                line.pos.line, line.pos.col)


def instantiate(user: UserGate, shapes: list, builder) -> G.Gate:
    """The registry Gate for calls of `user` on operands of these shapes (cached).

    `builder` is the caller's builder.Builder: it builds the body as a small Graph.
    """
    key = tuple(tuple(s) for s in shapes)
    if key in user.instances:
        return user.instances[key]
    defn = user.defn
    bindings = [(p, s, pp) for p, s, pp in zip(defn.params, key, defn.param_pos)]
    fwd = builder.subgraph(bindings, (), defn.expr)
    out_shape = fwd.nodes[fwd.output].shape
    bwd, failures = None, {}
    if user.d_lines:
        extra = [("out", out_shape, defn.pos), ("dout", out_shape, defn.pos)]
        broken: dict = {}
        bwd = builder.subgraph(bindings + extra, defn.body, None, failed=broken)
        for p, shape in zip(defn.params, key):
            line = user.d_lines[p]
            err = broken.get("d" + p)
            if err is not None:
                failures[p] = BackwardError(f"gate '{defn.name}': d{p} cannot be computed: {err.message}",
                                            err.line, err.col)
                continue
            got = bwd.nodes[bwd.names["d" + p]].shape
            if got != shape:
                failures[p] = BackwardError(f"gate '{defn.name}': d{p} has shape {G.fmt_shape(got)} but {p} has "
                                            f"shape {G.fmt_shape(shape)}", line.pos.line, line.pos.col)
    gate = _make_gate(user, fwd, bwd, failures, key, out_shape, builder.text)
    user.instances[key] = gate
    return gate


def _make_gate(user, fwd, bwd, failures, shapes, out_shape, text) -> G.Gate:
    defn = user.defn
    leaves = [n.id for n in fwd.nodes if n.kind == "leaf"]

    def forward_fn(args, attrs):
        return run_graph(fwd, list(args))

    def vjp(g, args, out, attrs):
        k = g.shape[0]
        if bwd is None:  # no d lines: backprop through the body
            values = forward(fwd, dict(zip(leaves, args)))
            adjoints = backward(fwd, values, seed=g)
            return [adjoints[i] for i in leaves]
        working = [p for p in defn.params if p not in failures]
        results = dict(zip(working, run_graph(bwd, list(args) + [out, g],
                                              outputs=[bwd.names["d" + p] for p in working])))
        grads, problems = [], [failures[p] for p in defn.params if p in failures]
        for p, shape in zip(defn.params, shapes):
            if p in failures:
                grads.append(np.full((k,) + shape, np.nan))
                continue
            r = np.broadcast_to(np.asarray(results[p], dtype=float), (k,) + shape)
            if not np.all(np.isfinite(r)):
                line = user.d_lines[p]
                problems.append(BackwardError(f"gate '{defn.name}': d{p} is not finite at this point",
                                              line.pos.line, line.pos.col))
                r = np.full((k,) + shape, np.nan)
            grads.append(r)
        if problems:
            first = problems[0]
            raise BackwardError("; ".join(e.message for e in problems), first.line, first.col, grads)
        return grads

    def sym(args, attrs):
        return evaluate(fwd, list(args))

    has_kinks = any(n.gate is not None and n.gate.branch is not None for n in fwd.nodes)

    def branch(args, attrs):
        _, branches = run_graph(fwd, list(args), collect_branches=True)
        return np.concatenate(branches, axis=-1)

    source = text[defn.expr.pos.start:defn.expr.pos.end]
    if user.d_lines:
        local = "; ".join(f"d{p} = {text[line.expr.pos.start:line.expr.pos.end]}" for p, line in user.d_lines.items())
        origin = tuple((f"its d line 'd{p}' (line {user.d_lines[p].pos.line})", user.d_lines[p].pos.line,
                        user.d_lines[p].pos.col) for p in defn.params)
    else:
        local = "differentiated automatically through its body"
        origin = ()
    return G.Gate(
        name=defn.name, arity=len(defn.params), forward=forward_fn, vjp=vjp, sym=sym, local=local,
        doc=f"user gate {defn.name}({', '.join(defn.params)}) = {source}",
        routes="by the d lines written for it" if user.d_lines else "through the gates of its body",
        infer=lambda s, p: (out_shape, {}), label=lambda a: defn.name,
        branch=branch if has_kinks else None, backward_source=origin,
        examples=(G.Example(tuple(shapes)),))
