"""The gate registry: one record per gate — forward, VJP, SymPy form, kink test, formula, doc.

Conventions every entry follows, so autodiff, numeric and symbolic need no gate-specific code:
- `forward(args, attrs)`: numpy float64 arrays that may carry extra *leading* (batch) axes;
  gates address axes from the end (negative axes) so batching is free.
- `vjp(g, args, out, attrs)`: `g` has one leading axis (the rows of the Jacobian being pulled
  back); `args`/`out` are unbatched. Returns one array per input, shaped `(K, *input.shape)`.
- `sym(args, attrs)`: the same function on numpy object arrays of SymPy expressions.
- `branch(args, attrs)`: for gates with kinks, a boolean array that flips when the gate switches
  branch (`a > b` for max). A value at a tie flips under one of the ±h nudges, so ties are
  caught too. None for smooth gates.
- `infer(shapes, params)`: checks operand shapes and parameters, returns `(out_shape, attrs)`;
  raises ValueError with a message for the user.
"""

from __future__ import annotations

import math

import numpy as np

from . import arrays as array_gates
from . import conv as conv_gates
from . import shapes as shape_gates
from . import arithmetic as arithmetic_gates
from .record import ConstForm, Example, Gate, IndexRule, Operation  # noqa: F401 - the record, here with its table
from .tensors import by_real_max, fmt_shape, unbroadcast
from .tensors import sym_sum as _sym_sum


# --- helpers ------------------------------------------------------------------------------------

def _broadcast_infer(shapes, params):
    try:
        return tuple(np.broadcast_shapes(*shapes)), {}
    except ValueError:
        raise ValueError("shapes " + " and ".join(fmt_shape(s) for s in shapes)
                         + " do not broadcast") from None


def _same_infer(shapes, params):
    return tuple(shapes[0]), {}


def sym_number(c):
    """A literal as a SymPy number: an Integer when it is one, else a Float."""
    import sympy
    if float(c).is_integer() and abs(c) < 2 ** 53:
        return sympy.Integer(int(c))
    return sympy.Float(float(c))


def _cfmt(c) -> str:
    return f"{c:g}"


def _ew(fn):
    """Apply a SymPy function elementwise over object arrays (with broadcasting)."""
    uf = np.frompyfunc(fn, 1, 1)
    return lambda args, a: np.asarray(uf(args[0]), dtype=object)


def _ew2(fn):
    uf = np.frompyfunc(fn, 2, 1)
    return lambda args, a: np.asarray(uf(args[0], args[1]), dtype=object)


def _into1(fwd):
    """A numpy ufunc's forward into a given array (None for any other function)."""
    return (lambda args, a, out: fwd(args[0], out=out)) if isinstance(fwd, np.ufunc) else None


def _unary(name, *, fwd, dfdx, sym_fn, local, doc, routes, domain=None, branch=None,
           low=-2.0, high=2.0, label=None, analytic=True, complex_fwd=None, into=None):
    """An elementwise one-input gate from its forward and its derivative f'(x, out)."""
    return Gate(analytic=analytic, complex_forward=None if complex_fwd is None else lambda args, a: complex_fwd(args[0]),
        name=name, arity=1, call=name,
        forward=lambda args, a: fwd(args[0]), forward_into=_into1(fwd) if into is None else into,
        vjp=lambda g, args, out, a: (g * dfdx(args[0], out),),
        sym=_ew(sym_fn), local=local, doc=doc, routes=routes, infer=_same_infer,
        elementwise=True, domain=domain, branch=branch, label=label,
        examples=(Example(((),), low=low, high=high), Example(((3,),), low=low, high=high)),
    )


# --- elementwise binary -------------------------------------------------------------------------

def _binary(name, *, operator, fwd, grads, sym_fn, local, doc, routes, branch=None, domain=None,
            function=False, low=-2.0, high=2.0, const_forms=(), analytic=True, complex_fwd=None):
    """An elementwise two-input gate; `grads(a, b, out)` gives the two local derivatives."""
    def vjp(g, args, out, attrs):
        da, db = grads(args[0], args[1], out)
        return unbroadcast(g * da, args[0].shape), unbroadcast(g * db, args[1].shape)
    shapes = (((), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)))
    return Gate(name=name, arity=2, operator=operator, call=name if function else None,
                forward=lambda args, a: fwd(args[0], args[1]), vjp=vjp, sym=_ew2(sym_fn),
                forward_into=(lambda args, a, out: fwd(args[0], args[1], out=out)) if isinstance(fwd, np.ufunc) else None,
                local=local, doc=doc, routes=routes, infer=_broadcast_infer, elementwise=True,
                branch=branch, domain=domain, const_forms=const_forms, analytic=analytic,
                complex_forward=None if complex_fwd is None else lambda args, a: complex_fwd(args[0], args[1]),
                examples=tuple(Example(s, low=low, high=high) for s in shapes))


def _const_gate(name, *, label, fwd, dfdx, sym_fn, local, doc, routes, forms, domain=None,
                branch=None, attr_example=2.0, low=-2.0, high=2.0, ufunc=None):
    """A one-input gate with a literal `c` folded in: the CS231n `+c`, `*a`, `1/x` forms."""
    return Gate(name=name, arity=1, label=label, analytic=True,
                forward=lambda args, a: fwd(args[0], a["c"]),
                forward_into=None if ufunc is None else lambda args, a, out: ufunc(args[0], a["c"], out=out),
                vjp=lambda g, args, out, a: (g * dfdx(args[0], a["c"], out),),
                sym=lambda args, a: np.asarray(np.frompyfunc(lambda x: sym_fn(x, sym_number(a["c"])), 1, 1)(args[0]),
                                               dtype=object),
                local=local, doc=doc, routes=routes, infer=_same_infer, elementwise=True,
                const_forms=forms, domain=domain, branch=branch,
                examples=(Example(((),), {"c": attr_example}, low, high),
                          Example(((3,),), {"c": attr_example}, low, high)))


def _cmp(name, op, fn, h0_sym):
    """A comparison: 0.0 or 1.0, constant for differentiation (so `dout * (x > 0)` can be written)."""
    def sym(args, a):
        import sympy
        uf = np.frompyfunc(lambda x, y: h0_sym(sympy, x, y), 2, 1)
        return np.asarray(uf(args[0], args[1]), dtype=object)
    return Gate(name=name, arity=2, operator=op,
                forward=lambda args, a: fn(np.real(args[0]), np.real(args[1])).astype(float),  # real parts decide
                vjp=lambda g, args, out, a: (unbroadcast(g * 0.0, args[0].shape),
                                             unbroadcast(g * 0.0, args[1].shape)),
                sym=sym, local="0 (a comparison is constant)", doc=f"1 where a {op} b, else 0",
                routes="blocks the gradient: a comparison is a constant",
                infer=_broadcast_infer, elementwise=True,
                branch=lambda args, a: fn(args[0], args[1]),
                examples=(Example(((), ())), Example(((3,), (3,)))))


# Max/Min are built unevaluated: SymPy's simplification search on them costs far more than the
# derivative, which stays exact (Heaviside, ½ at a tie: the even split).


# --- the registry -------------------------------------------------------------------------------

_GATES = [
    _binary("add", operator="+", fwd=np.add, grads=lambda a, b, o: (1.0, 1.0), sym_fn=lambda a, b: a + b,
            local="∂(a+b)/∂a = 1, ∂(a+b)/∂b = 1", doc="a + b",
            routes="add distributes: each input gets the upstream gradient unchanged"),
    _binary("sub", operator="-", fwd=np.subtract, grads=lambda a, b, o: (1.0, -1.0), sym_fn=lambda a, b: a - b,
            local="∂(a-b)/∂a = 1, ∂(a-b)/∂b = -1", doc="a - b",
            routes="passes the upstream gradient to a, and its negative to b"),
    _binary("mul", operator="*", fwd=np.multiply, grads=lambda a, b, o: (b, a), sym_fn=lambda a, b: a * b,
            local="∂(ab)/∂a = b, ∂(ab)/∂b = a", doc="a * b (elementwise)",
            routes="mul switches: each input gets the upstream gradient times the other input"),
    _binary("div", operator="/", fwd=np.divide, grads=lambda a, b, o: (1.0 / b, -a / (b * b)), sym_fn=lambda a, b: a / b,
            local="∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = -a/b²", doc="a / b (elementwise)",
            routes="a gets upstream/b; b gets -upstream·a/b²", domain="b ≠ 0", low=0.5, high=2.0),
    _binary("pow", operator="^", fwd=np.power, grads=arithmetic_gates.pow_grads, sym_fn=lambda a, b: a ** b,
            local="∂(aᵇ)/∂a = b·aᵇ⁻¹, ∂(aᵇ)/∂b = aᵇ·ln a", doc="a ^ b (elementwise; also **)",
            routes="a gets upstream·b·aᵇ⁻¹; b gets upstream·aᵇ·ln a", domain="a > 0", low=0.5, high=2.0),
    _binary("max", operator=None, fwd=np.maximum, grads=lambda a, b, o: (arithmetic_gates.half_step(a - b), arithmetic_gates.half_step(b - a)),
            sym_fn=arithmetic_gates.sym_max, local="∂max(a,b)/∂a = 1 if a > b else 0 (½ at a tie)", doc="the larger of a and b",
            routes="max routes: the whole gradient goes to the larger input (split evenly at a tie)",
            branch=lambda args, a: args[0] > args[1], function=True, analytic=False, complex_fwd=arithmetic_gates.max_complex),
    _binary("min", operator=None, fwd=np.minimum, grads=lambda a, b, o: (arithmetic_gates.half_step(b - a), arithmetic_gates.half_step(a - b)),
            sym_fn=arithmetic_gates.sym_min, local="∂min(a,b)/∂a = 1 if a < b else 0 (½ at a tie)", doc="the smaller of a and b",
            routes="min routes: the whole gradient goes to the smaller input (split evenly at a tie)",
            branch=lambda args, a: args[0] < args[1], function=True, analytic=False, complex_fwd=arithmetic_gates.min_complex),

    _const_gate("+c", label=lambda a: f"+{_cfmt(a['c'])}" if a["c"] >= 0 else f"-{_cfmt(-a['c'])}",
                fwd=lambda x, c: x + c, ufunc=np.add, dfdx=lambda x, c, o: 1.0, sym_fn=lambda x, c: x + c,
                local="∂(x+c)/∂x = 1", doc="adds a constant c", routes="passes the upstream gradient through unchanged",
                forms=(ConstForm("+", "either"), ConstForm("-", "right", lambda c: -c))),
    _const_gate("c-x", label=lambda a: f"{_cfmt(a['c'])}-x", fwd=lambda x, c: c - x, dfdx=lambda x, c, o: -1.0,
                sym_fn=lambda x, c: c - x, local="∂(c-x)/∂x = -1", doc="a constant minus x",
                routes="passes the negated upstream gradient", forms=(ConstForm("-", "left"),)),
    _const_gate("*a", label=lambda a: f"*{_cfmt(a['c'])}", fwd=lambda x, c: x * c, ufunc=np.multiply, dfdx=lambda x, c, o: c,
                sym_fn=lambda x, c: x * c, local="∂(ax)/∂x = a", doc="multiplies by a constant a (-x is *-1)",
                routes="scales the upstream gradient by a",
                forms=(ConstForm("*", "either"), ConstForm("/", "right", lambda c: 1.0 / c, lambda c: c != 0))),
    _const_gate("c/x", label=lambda a: "1/x" if a["c"] == 1 else f"{_cfmt(a['c'])}/x",
                fwd=lambda x, c: c / x, dfdx=lambda x, c, o: -c / (x * x), sym_fn=lambda x, c: c / x,
                local="∂(c/x)/∂x = -c/x² (the 1/x gate: -1/x²)", doc="a constant over x: 1/x when c = 1",
                routes="multiplies the upstream gradient by -c/x²", forms=(ConstForm("/", "left"),),
                domain="x ≠ 0", attr_example=1.0, low=0.5, high=2.0),
    _const_gate("^c", label=lambda a: f"^{_cfmt(a['c'])}", fwd=lambda x, c: np.power(x, c),
                dfdx=lambda x, c, o: 0.0 * x if c == 0 else c * np.power(x, c - 1.0), sym_fn=lambda x, c: x ** c,
                local="∂(xᶜ)/∂x = c·xᶜ⁻¹", doc="x to a constant power c",
                routes="multiplies the upstream gradient by c·xᶜ⁻¹", forms=(ConstForm("^", "right"),),
                domain="x ≥ 0 unless c is an integer", low=0.5, high=2.0),
    _const_gate("c^x", label=lambda a: f"{_cfmt(a['c'])}^x", fwd=lambda x, c: np.power(c, x),
                dfdx=lambda x, c, o: o * math.log(c) if c > 0 else np.nan * o, sym_fn=lambda x, c: c ** x,
                local="∂(cˣ)/∂x = cˣ·ln c", doc="a positive constant to the power x",
                routes="multiplies the upstream gradient by cˣ·ln c", forms=(ConstForm("^", "left"),),
                domain="c > 0"),

    _unary("exp", fwd=np.exp, dfdx=lambda x, o: o, sym_fn=arithmetic_gates.sp("exp"), local="∂eˣ/∂x = eˣ", doc="eˣ",
           routes="multiplies the upstream gradient by eˣ (its own output)"),
    _unary("log", fwd=np.log, dfdx=lambda x, o: 1.0 / x, sym_fn=arithmetic_gates.sp("log"), local="∂ln x/∂x = 1/x", doc="the natural logarithm",
           routes="multiplies the upstream gradient by 1/x", domain="x > 0", low=0.5, high=2.0),
    _unary("sqrt", fwd=np.sqrt, dfdx=lambda x, o: 0.5 / o, sym_fn=arithmetic_gates.sp("sqrt"), local="∂√x/∂x = 1/(2√x)", doc="the square root",
           routes="multiplies the upstream gradient by 1/(2√x)", domain="x ≥ 0 (and x > 0 for the gradient)",
           low=0.5, high=2.0),
    _unary("abs", fwd=np.abs, dfdx=lambda x, o: np.sign(np.real(x)), sym_fn=arithmetic_gates.sp("Abs"), local="∂|x|/∂x = sign(x) (0 at 0)",
           doc="the absolute value", routes="passes the gradient with the sign of x (0 at a tie)",
           branch=lambda args, a: args[0] > 0, analytic=False, complex_fwd=arithmetic_gates.abs_complex),
    _unary("sin", fwd=np.sin, dfdx=lambda x, o: np.cos(x), sym_fn=arithmetic_gates.sp("sin"), local="∂sin x/∂x = cos x", doc="the sine",
           routes="multiplies the upstream gradient by cos x"),
    _unary("cos", fwd=np.cos, dfdx=lambda x, o: -np.sin(x), sym_fn=arithmetic_gates.sp("cos"), local="∂cos x/∂x = -sin x", doc="the cosine",
           routes="multiplies the upstream gradient by -sin x"),
    _unary("tan", fwd=np.tan, dfdx=lambda x, o: 1.0 + o * o, sym_fn=arithmetic_gates.sp("tan"), local="∂tan x/∂x = 1 + tan² x", doc="the tangent",
           routes="multiplies the upstream gradient by 1 + tan² x", low=-1.2, high=1.2),
    _unary("tanh", fwd=np.tanh, dfdx=lambda x, o: 1.0 - o * o, sym_fn=arithmetic_gates.sp("tanh"), local="∂tanh x/∂x = 1 - tanh² x",
           doc="the hyperbolic tangent", routes="multiplies the upstream gradient by 1 - tanh² x"),
    _unary("sigmoid", fwd=arithmetic_gates.sigmoid, dfdx=lambda x, o: o * (1.0 - o), sym_fn=arithmetic_gates.sym_sigmoid, local="∂σ(x)/∂x = σ(x)(1 - σ(x))",
           doc="the logistic sigmoid 1/(1+e⁻ˣ)", routes="multiplies the upstream gradient by σ(1-σ)"),
    _unary("identity", fwd=lambda x: np.array(x, dtype=np.result_type(x, float)), dfdx=lambda x, o: np.ones_like(o), sym_fn=lambda x: x,
           local="∂x/∂x = 1", doc="the value itself: what `y = x` makes, so the alias is a node of its own",
           routes="passes the upstream gradient through unchanged", label=lambda a: "id"),
    _unary("relu", fwd=lambda x: np.maximum(x, 0.0), into=lambda args, a, out: np.maximum(args[0], 0.0, out=out), dfdx=arithmetic_gates.relu_grad, sym_fn=arithmetic_gates.sym_relu,
           local="∂relu(x)/∂x = 1 if x > 0 else 0 (½ at 0)", doc="max(x, 0)",
           routes="routes the gradient where x > 0, blocks it where x < 0",
           branch=lambda args, a: args[0] > 0, analytic=False, complex_fwd=arithmetic_gates.relu_complex),

    Gate(analytic=True, name="matmul", arity=2, operator="@", label=lambda a: "@",
         forward=arithmetic_gates.matmul_forward, forward_into=arithmetic_gates.matmul_into, vjp=arithmetic_gates.matmul_vjp, sym=arithmetic_gates.matmul_sym, infer=arithmetic_gates.matmul_infer, sym_cost=arithmetic_gates.matmul_sym_cost,
         index_rule=IndexRule(text=arithmetic_gates.MATMUL_RULE, jacobian=arithmetic_gates.matmul_jacobian),
         local="∂(AB)/∂A: dA = dD·Bᵀ, dB = Aᵀ·dD", doc="matrix product A @ B (vectors allowed)",
         routes="dA = upstream @ Bᵀ and dB = Aᵀ @ upstream: the shapes tell you the order",
         examples=(Example(((2, 3), (3, 4))), Example(((3,), (3, 2))), Example(((2, 3), (3,))),
                   Example(((3,), (3,))), Example(((2, 2, 3), (3, 2))), Example(((2, 3), (2, 3, 2))),
                   Example(((2, 1, 2, 3), (3, 3, 2))), Example(((2, 2, 3), (3,))))),
    Gate(analytic=True, name="transpose", arity=1, operator=".T", label=lambda a: ".T",
         forward=arithmetic_gates.transpose_forward, vjp=lambda g, args, out, a: (arithmetic_gates.transpose_forward([g], a),),
         sym=lambda args, a: np.transpose(args[0]), infer=arithmetic_gates.transpose_infer,
         local="d(xᵀ) = (dout)ᵀ", doc="the transpose x.T (all axes reversed, as numpy's)",
         routes="transposes the upstream gradient",
         examples=(Example(((2, 3),)), Example(((3,),)), Example(((2, 3, 4),)))),
    Gate(analytic=True, name="sum", arity=1, call="sum", params=("axis", "keepdims"), positional_params=("axis",),
         forward=lambda args, a: args[0].sum(axis=a["axes"], keepdims=a["keepdims"]),
         vjp=arithmetic_gates.sum_vjp, sym=lambda args, a: arithmetic_gates.sym_reduce(args[0], a, _sym_sum),
         infer=arithmetic_gates.axes_infer(), local="∂(Σx)/∂xᵢ = 1", doc="sum of the elements (optional axis, keepdims)",
         routes="copies the upstream gradient to every summed element",
         examples=(Example(((3,),)), Example(((2, 3),), {"axis": 1}), Example(((2, 3),), {"axis": 0, "keepdims": 1}))),
    Gate(analytic=True, name="mean", arity=1, call="mean", params=("axis", "keepdims"), positional_params=("axis",),
         forward=arithmetic_gates.mean_forward, vjp=arithmetic_gates.mean_vjp,
         sym=lambda args, a: arithmetic_gates.sym_reduce(args[0], a, lambda items: _sym_sum(items) / len(items)),
         infer=arithmetic_gates.axes_infer(), local="∂(mean x)/∂xᵢ = 1/n", doc="mean of the elements (optional axis)",
         routes="shares the upstream gradient evenly: 1/n to each element",
         examples=(Example(((3,),)), Example(((2, 3),), {"axis": 1}))),
    Gate(name="reduce_max", arity=1, call="max", params=("axis", "keepdims"),
         complex_forward=lambda args, a: by_real_max(args[0], a["axes"], a["keepdims"]),
         forward=lambda args, a: args[0].max(axis=a["axes"], keepdims=a["keepdims"]),
         vjp=arithmetic_gates.max_vjp, sym=lambda args, a: arithmetic_gates.sym_reduce(args[0], a, arithmetic_gates.sym_max_all),
         infer=arithmetic_gates.axes_infer(), branch=arithmetic_gates.max_branch,
         local="∂(max x)/∂xᵢ = 1 for the largest element, else 0", doc="largest element (axis= by keyword)",
         routes="max routes: the gradient goes to the largest element (split evenly at a tie)",
         examples=(Example(((3,),)), Example(((2, 3),), {"axis": 1}))),
    Gate(analytic=True, name="dot", arity=2, call="dot",
         forward=lambda args, a: (args[0] * args[1]).sum(axis=-1),
         vjp=lambda g, args, out, a: (g[..., None] * args[1], g[..., None] * args[0]),
         sym=lambda args, a: np.asarray(_sym_sum(list(np.ravel(args[0] * args[1]))), dtype=object),
         infer=arithmetic_gates.vector_pair_infer("dot"), local="∂(a·b)/∂a = b, ∂(a·b)/∂b = a",
         doc="dot product of two vectors", routes="each vector gets upstream times the other",
         examples=(Example(((3,), (3,))),)),
    Gate(name="norm", arity=1, call="norm", params=("axis",),
         forward=arithmetic_gates.norm_forward, vjp=arithmetic_gates.norm_vjp, sym=arithmetic_gates.sym_norm, infer=arithmetic_gates.axes_infer(allow_keepdims=False),
         local="∂‖x‖/∂x = x/‖x‖", doc="Euclidean (Frobenius) norm (optional axis)",
         routes="passes upstream·x/‖x‖ (undefined at 0)", domain="x ≠ 0 for the gradient",
         branch=lambda args, a: np.sign(np.abs(args[0]).sum(axis=a["axes"])),
         examples=(Example(((3,),)), Example(((2, 3),), {"axis": 1}))),
    Gate(analytic=True, name="softmax", arity=1, call="softmax", params=("axis",),
         forward=lambda args, a: arithmetic_gates.softmax_np(args[0], a["axes"]), vjp=arithmetic_gates.softmax_vjp, sym=arithmetic_gates.sym_softmax,
         infer=lambda shapes, p: (tuple(shapes[0]), arithmetic_gates.axes_infer(False)(shapes, p)[1] | {"keepdims": False}),
         local="∂yᵢ/∂xⱼ = yᵢ(δᵢⱼ - yⱼ)", doc="softmax (over all elements, or along axis)",
         routes="dx = y ∘ (upstream - Σ upstream·y)",
         examples=(Example(((3,),)), Example(((2, 3),), {"axis": 1}))),
    Gate(analytic=True, name="logsumexp", arity=1, call="logsumexp", params=("axis", "keepdims"),
         forward=arithmetic_gates.lse_forward, vjp=arithmetic_gates.lse_vjp, sym=arithmetic_gates.sym_lse, infer=arithmetic_gates.axes_infer(),
         local="∂ logΣeˣ/∂xᵢ = softmax(x)ᵢ", doc="log Σ exp(x), computed stably (optional axis)",
         routes="spreads the upstream gradient by softmax(x)",
         examples=(Example(((3,),)), Example(((2, 3),), {"axis": 1}))),

    Gate(analytic=True, name="index", arity=1, operator="x[...]", label=array_gates.index_label, params=("key",),
         forward=array_gates.index_forward, vjp=array_gates.index_vjp, sym=array_gates.index_sym, infer=array_gates.index_infer,
         reads=array_gates.index_reads,
         local="∂x[i]/∂x[j] = 1 where i picks j (repeats add up)",
         doc="x[...]: numpy indexing and slicing (integers, start:stop:step, None, constant integer arrays)",
         routes="scatters the upstream gradient back to the picked elements (np.add.at: repeats add up)",
         examples=(Example(((4,),), {"key": (1,)}), Example(((3, 4),), {"key": (slice(None), slice(1, None, 2))}),
                   Example(((3, 4),), {"key": (np.array([0, 2, 0]), np.array([1, 3, 1]))}),
                   Example(((3, 4),), {"key": (slice(None, None, -1), None, -1)}),
                   Example(((5, 3),), {"key": (np.array([4, 0, 4, 4]),)}))),
    Gate(analytic=True, name="add_at", arity=2, call="add_at", constant_args=((1, "index"),),
         forward=array_gates.add_at_forward, vjp=array_gates.add_at_vjp, sym=array_gates.add_at_sym, infer=array_gates.add_at_infer,
         local="∂/∂a = 1; ∂/∂v = 1 at each place v is added",
         doc="add_at(a, index, v): a copy of a with v added at a[index], repeats adding up (numpy's np.add.at)",
         routes="a gets the upstream gradient; v gets it gathered from the places it was added",
         examples=(Example(((5, 2), (3, 2)), {"index": (np.array([1, 4, 1]),)}),
                   Example(((4,), ()), {"index": (slice(1, 3),)}))),
    Gate(analytic=True, name="set_at", arity=2, call="set_at", constant_args=((1, "index"),),
         forward=array_gates.set_at_forward, vjp=array_gates.set_at_vjp, sym=array_gates.set_at_sym, infer=array_gates.add_at_infer,
         local="∂/∂a = 1 except where overwritten; ∂/∂v = 1 where its write stays",
         doc="set_at(a, index, v): a copy of a with a[index] = v (numpy assignment: at a repeat, one write stays)",
         routes="a gets the upstream gradient outside the index; v only where its write survived",
         examples=(Example(((5, 2), (3, 2)), {"index": (np.array([1, 4, 1]),)}),
                   Example(((4,), ()), {"index": (slice(1, 3),)}))),
    Gate(analytic=True, name="reshape", arity=1, call="reshape", params=("shape",) + tuple(f"d{i}" for i in range(8)),
         positional_params=tuple(f"d{i}" for i in range(8)),
         forward=shape_gates.reshape_forward, vjp=shape_gates.reshape_vjp, sym=lambda args, a: np.reshape(args[0], a["shape"]),
         infer=shape_gates.reshape_infer, local="∂y/∂x = 1 (the same elements, in another shape)",
         doc="reshape(x, 4, 3) or reshape(x, [N, -1]): the elements in a new shape (C order, one -1 allowed)",
         routes="reshapes the upstream gradient back to x's shape",
         examples=(Example(((2, 6),), {"d0": 3, "d1": -1}), Example(((2, 3, 2),), {"shape": np.array([12.0])}))),
    Gate(analytic=True, name="permute", arity=1, call="transpose", params=("axes",), positional_params=("axes",),
         label=lambda a: "transpose", forward=shape_gates.permute_forward, vjp=shape_gates.permute_vjp, sym=shape_gates.permute_sym,
         infer=shape_gates.permute_infer, local="d(x permuted) = dout permuted back",
         doc="transpose(x, [0, 2, 1]): the axes in a new order (all reversed without axes, as x.T)",
         routes="permutes the upstream gradient back",
         examples=(Example(((2, 3, 4),), {"axes": np.array([2.0, 0.0, 1.0])}), Example(((2, 3),)))),
    Gate(analytic=True, name="flip", arity=1, call="flip", params=("axis",), positional_params=("axis",),
         forward=shape_gates.flip_forward, vjp=shape_gates.flip_vjp, sym=lambda args, a: shape_gates.flip_forward([np.asarray(args[0], dtype=object)], a),
         infer=shape_gates.flip_infer, local="d(flip x) = flip(dout)",
         doc="flip(x, axis): the elements in reverse order along axis (all axes without one)",
         routes="flips the upstream gradient back",
         examples=(Example(((3, 4),), {"axis": 1}), Example(((2, 2, 3),), {"axis": np.array([-1.0, -2.0])}))),
    Gate(analytic=True, name="pad", arity=1, call="pad", params=("width", "value"), positional_params=("width",),
         forward=shape_gates.pad_forward, vjp=shape_gates.pad_vjp, sym=shape_gates.pad_sym, infer=shape_gates.pad_infer,
         local="∂pad(x)/∂x = 1 inside, nothing for the padding",
         doc="pad(x, width, value=0): a border of a constant, width = n, [before, after] or one pair per axis",
         routes="crops the upstream gradient back to x (the border gets none)",
         examples=(Example(((2, 3),), {"width": 1}), Example(((1, 2, 3),), {"width": np.array([[0, 0], [1, 0], [2, 1]],
                                                                                              dtype=float)}))),
    Gate(analytic=True, name="concatenate", arity=1, variadic=True, call="concatenate", params=("axis",),
         forward=shape_gates.concat_forward, vjp=shape_gates.concat_vjp, sym=shape_gates.concat_sym, infer=shape_gates.concat_infer,
         local="∂/∂(each part) = 1 on its own stretch", doc="concatenate(a, b, ..., axis=0): arrays joined along an axis",
         routes="cuts the upstream gradient into the parts' stretches",
         examples=(Example(((2, 3), (1, 3))), Example(((2, 3), (2, 2), (2, 1)), {"axis": 1}))),
    Gate(analytic=True, name="stack", arity=1, variadic=True, call="stack", params=("axis",),
         forward=shape_gates.stack_forward, vjp=shape_gates.stack_vjp, sym=shape_gates.stack_sym, infer=shape_gates.stack_infer,
         local="∂/∂(each part) = 1 on its own slice", doc="stack(a, b, ..., axis=0): arrays of one shape along a new axis",
         routes="gives each part its slice of the upstream gradient",
         examples=(Example(((3,), (3,))), Example(((2, 3), (2, 3), (2, 3)), {"axis": -1}))),
    Gate(name="where", arity=3, call="where",
         forward=lambda args, a: np.where(np.real(args[0]) != 0, args[1], args[2]), vjp=array_gates.where_vjp, analytic=True, sym=array_gates.where_sym,
         infer=array_gates.where_infer, elementwise=True, local="∂/∂a = 1 where cond, ∂/∂b = 1 elsewhere (cond is constant)",
         doc="where(cond, a, b): a where cond ≠ 0, else b (cond is constant for differentiation)",
         routes="where routes: the gradient goes to a where cond holds, to b elsewhere",
         examples=(Example(((3,), (3,), (3,)), low=-2, high=2), Example(((2, 1), (2, 3), ())),
                   Example(((), (), (2,)), low=-2, high=2))),  # operands of different ranks (found by fuzzing)
    _unary("sign", fwd=lambda x: np.sign(np.real(x)), analytic=False, dfdx=lambda x, o: 0.0 * x, sym_fn=arithmetic_gates.sp("sign"), local="∂sign(x)/∂x = 0 (a step at 0)",
           doc="-1, 0 or 1: the sign of x (constant for differentiation)", routes="blocks the gradient: a sign is a constant",
           branch=lambda args, a: args[0] > 0),
    Gate(analytic=True, name="outer", arity=2, call="outer", forward=array_gates.outer_forward, vjp=array_gates.outer_vjp, sym=array_gates.outer_sym,
         infer=array_gates.outer_infer, local="∂(uvᵀ)/∂u = v, ∂(uvᵀ)/∂v = u", doc="outer(u, v): the matrix uᵢvⱼ of two vectors",
         routes="du = upstream @ v, dv = upstreamᵀ @ u", examples=(Example(((3,), (2,))),)),
    Gate(name="argmax", arity=1, call="argmax", params=("axis",), positional_params=("axis",),
         forward=array_gates.argmax_forward, vjp=lambda g, args, out, a: (np.zeros(g.shape[:1] + args[0].shape),),
         sym=array_gates.argmax_sym, infer=array_gates.argmax_infer, branch=array_gates.argmax_branch, sym_cost=array_gates.argmax_sym_cost,
         local="0 (an index is constant)", doc="argmax(x, axis): the index of the largest element (the first at a tie)",
         routes="blocks the gradient: an index is a constant",
         examples=(Example(((4,),)), Example(((2, 3),), {"axis": 1}))),
    Gate(analytic=True, name="conv2d", arity=3, call="conv2d", params=("stride", "pad"),
         forward=conv_gates.conv_forward, vjp=conv_gates.conv_vjp, sym=conv_gates.conv_sym, infer=conv_gates.conv_infer, workspace=conv_gates.window_workspace,
         local="dx = dout ⋆ flipped w; dw = x ⋆ dout; db = Σ dout",
         doc="conv2d(x, w, b, stride=1, pad=0): CS231n's convolution, x (N,C,H,W), w (F,C,HH,WW), b (F,)",
         routes="each input pixel gets the upstream gradient of every window it is in, times the filter weight",
         examples=(Example(((1, 2, 4, 4), (3, 2, 3, 3), (3,)), {"pad": 1}),
                   Example(((2, 1, 5, 5), (2, 1, 3, 3), (2,)), {"stride": 2}))),
    Gate(name="maxpool2d", arity=1, call="maxpool2d", params=("size", "stride"),
         forward=conv_gates.pool_forward, vjp=conv_gates.pool_vjp, sym=conv_gates.pool_sym, infer=conv_gates.pool_infer, branch=conv_gates.pool_branch,
         complex_forward=conv_gates.pool_forward_complex,
         workspace=conv_gates.window_workspace,
         local="1 for each window's largest, else 0 (½ at a tie)",
         doc="maxpool2d(x, size=2, stride=size): the largest element of each window, x (N,C,H,W)",
         routes="max routes: each window's gradient goes to its largest element",
         examples=(Example(((1, 2, 4, 4),)), Example(((1, 1, 5, 5),), {"size": 3, "stride": 2}))),

    _cmp("lt", "<", np.less, lambda s, x, y: s.Heaviside(y - x, 0)),
    _cmp("le", "<=", np.less_equal, lambda s, x, y: s.Heaviside(y - x, 1)),
    _cmp("gt", ">", np.greater, lambda s, x, y: s.Heaviside(x - y, 0)),
    _cmp("ge", ">=", np.greater_equal, lambda s, x, y: s.Heaviside(x - y, 1)),
    _cmp("eq", "==", np.equal, lambda s, x, y: 1 - s.Heaviside(x - y, 0) - s.Heaviside(y - x, 0)),
]

REGISTRY: dict[str, Gate] = {g.name: g for g in _GATES}
assert len(REGISTRY) == len(_GATES), "duplicate gate names"


def functions(name: str) -> list[Gate]:
    """Gates callable as `name(...)` in the language (several may share a name, by arity)."""
    return [g for g in REGISTRY.values() if g.call == name]


def function_names() -> set[str]:
    return {g.call for g in REGISTRY.values() if g.call}


def operator_gate(op: str) -> Gate | None:
    """The gate for an operator with no literal operand."""
    for g in REGISTRY.values():
        if g.operator == op:
            return g
    return None


def const_form(op: str, side: str, c: float) -> tuple[Gate, dict] | None:
    """The constant-folded gate for `c OP x` (side 'left') or `x OP c` (side 'right'), if any."""
    for g in REGISTRY.values():
        for form in g.const_forms:
            if form.operator == op and form.side in (side, "either") and form.accepts(c):
                return g, {"c": float(form.to_attr(c))}
    return None
