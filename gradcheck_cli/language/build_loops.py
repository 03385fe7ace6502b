"""Builder, comprehension unrolling: `sum(f(i) for i in range(n))` built term by term, bounded before the work."""

from __future__ import annotations

from .. import gates
from . import nodes
from ..core.errors import GradNameError, GradShapeError, GradSyntaxError, GradValueError
from ..core.limits import MAX_UNROLL, size_error


class LoopsMixin:
    """Part of builder.Builder."""

    def _comprehension(self, expr: nodes.Comprehension, kw_refs, name):
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
                total = self._gate(gates.REGISTRY["add"], [total, term], {}, {}, expr, partial, fpos)
            return total
        params = {}
        for (kname, _e, kpos), ref in zip(expr.kwargs, kw_refs):
            if kname != "axis":
                raise GradNameError(f"{expr.func}() has no parameter '{kname}' (parameters: axis)", kpos.line, kpos.col)
            params[kname] = self._param(ref, kpos, kname)
        return self._gate(gates.REGISTRY[self.COMPREHENSIONS[expr.func]], terms, params, {}, expr, name, fpos)

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
