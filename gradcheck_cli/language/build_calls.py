"""Builder, call resolution: a function name to a registry gate, a user gate or a constructor, with
its operands, parameters and checks."""

from __future__ import annotations

import numpy as np

from .. import gates
from . import nodes
from . import usergates
from .build_common import _check_shape, _finite_or_raise
from ..core.errors import GradNameError, GradShapeError, GradSyntaxError, GradValueError, did_you_mean
from .graph import Const, source_text
from ..core.limits import MAX_ELEMENTS, size_error
from .values import CONSTRUCTORS, construct


class CallsMixin:
    """Part of builder.Builder."""

    def _call(self, expr: nodes.Call, refs, name):
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
        candidates = gates.functions(expr.func)
        if not candidates:
            if expr.func in self.names:
                raise GradNameError(f"'{expr.func}' is a value, not a function", fpos.line, fpos.col)
            known = gates.function_names() | set(CONSTRUCTORS)
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

    def _user_call(self, expr: nodes.Call, args, kw_refs, name):
        fpos = expr.func_pos
        user = self.user_gates[expr.func]
        if expr.kwargs:
            k = expr.kwargs[0][2]
            raise GradSyntaxError(f"gate '{expr.func}' takes no keyword parameters", k.line, k.col)
        want = len(user.defn.params)
        if len(args) != want:
            raise GradSyntaxError(f"{expr.func}() takes {want} argument{'s' if want != 1 else ''}, got {len(args)}",
                                  fpos.line, fpos.col)
        composite = usergates.instantiate(user, [self._shape(r) for r in args], self.subgraph, self.text)
        constants = [self._as_const(r) for r in args]
        if all(c is not None for c in constants):  # on constants: its body, built with them, folds to one
            value = self._folded(user, [c.value for c in constants])
            _finite_or_raise(value, expr.pos, f"the constant {source_text(self.text, expr.pos)}")
            return Const(value, expr.pos)
        shape = composite.body.nodes[composite.body.output].shape
        _check_shape(tuple(shape), fpos, lambda: f"'{source_text(self.text, expr.pos)}'")
        inputs = tuple(r if isinstance(r, int) else self._literal(r) for r in args)
        return self._add(name=name or self._auto_name(expr), kind="gate", shape=tuple(shape),
                         pos=expr.pos, gate=composite, inputs=inputs, attrs={})

    def _folded(self, user, values: list) -> np.ndarray:
        """A user gate's value on constant operands: its forward lines and expression built with the
        parameters as consts, so the builder's own constant folding evaluates them."""
        sub = type(self)(self.program, self.source, None, False, 0)
        sub.user_gates, sub.rng = self.user_gates, self.rng
        sub.consts = {**{n: np.asarray(v, dtype=float) for n, v in user.consts.items()},
                      **{p: np.asarray(v, dtype=float) for p, v in zip(user.defn.params, values)}}
        for line in user.defn.body:
            if line.name in user.forward_locals:
                sub.consts[line.name] = sub.expr(line.expr, line.name).value
        return sub.expr(user.defn.expr).value

    def _param(self, ref, pos, pname):
        const = self._as_const(ref)
        if const is None:
            raise GradSyntaxError(f"'{pname}' must be a number or a const", pos.line, pos.col)
        return const.value

    def _gate(self, gate: gates.Gate, refs, params, attrs, expr, name, where):
        shapes = [self._shape(r) for r in refs]
        try:
            shape, inferred = gate.infer(shapes, params)
        except ValueError as err:
            raise GradShapeError(str(err), where.line, where.col) from None
        except TypeError as err:  # a parameter of the wrong kind that a gate's shape rule did not foresee
            raise GradValueError(f"{gate.call or gate.name}(): {err}", where.line, where.col) from None
        attrs = {**inferred, **attrs}
        _check_shape(tuple(shape), where, lambda: f"'{source_text(self.text, expr.pos)}'")
        workspace = gate.workspace(shapes, attrs) if gate.workspace is not None else 0
        if workspace > MAX_ELEMENTS:
            raise GradShapeError(size_error(f"the windows of '{source_text(self.text, expr.pos)}'", workspace,
                                            MAX_ELEMENTS, name="MAX_ELEMENTS"), where.line, where.col)
        constants = [self._as_const(r) for r in refs]
        if all(c is not None for c in constants):  # literals and consts only: folded
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
