"""Forward, VJP, SymPy form and shape rule of the gates that move elements: indexing and slicing,
reshape, transpose, flip, pad, concatenate, stack, where, outer, argmax, add_at.

Each operand may carry extra *leading* batch axes (the finite differences' rows), so every function
addresses axes from the end, or counts the leading ones from `nd` (the operand's own rank).
The registry entries that use these are in gates.py.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.limits import MAX_ELEMENTS
from .tensors import axis_of, fmt_shape, lead, unbroadcast




# --- indexing and slicing -----------------------------------------------------------------------

def _advanced(key) -> list:
    """Positions of the advanced (array) indices; integers count too once an array is present."""
    arrays = [i for i, k in enumerate(key) if isinstance(k, np.ndarray)]
    if not arrays:
        return []
    return [i for i, k in enumerate(key) if isinstance(k, (np.ndarray, int))]


def index_infer(shapes, params):
    shape, key = tuple(shapes[0]), tuple(params["key"])
    used = sum(1 for k in key if k is not None)
    if used > len(shape):
        raise ValueError(f"{used} indices for an array of shape {fmt_shape(shape)}")
    advanced = _advanced(key)
    if advanced and advanced != list(range(advanced[0], advanced[-1] + 1)):
        raise ValueError("index arrays separated by a slice are not supported (numpy moves their axes to the "
                         "front); index in two steps")
    if advanced:
        try:
            joint = np.broadcast_shapes(*[np.shape(key[i]) for i in advanced])
        except ValueError:
            raise ValueError("the index arrays' shapes " + " and ".join(fmt_shape(np.shape(key[i])) for i in advanced)
                             + " do not broadcast") from None
        rest = [n for i, n in enumerate(_dims_of(key, shape)) if i not in advanced]
        bound = math.prod(joint) * math.prod(n for n in rest if n is not None)
        if bound > MAX_ELEMENTS:
            raise ValueError(f"this index would gather {bound:,} elements (at most {MAX_ELEMENTS:,})")
    view = np.broadcast_to(np.zeros((), dtype=bool), shape)
    try:
        out = view[key]
    except IndexError as err:
        raise ValueError(str(err)) from None
    return out.shape, {"key": key, "nd": len(shape)}


def _dims_of(key, shape) -> list:
    """Per key entry, the size of the axis it indexes (None for a new axis)."""
    dims: list[int | None] = []
    axis = 0
    for k in key:
        if k is None:
            dims.append(None)
        else:
            dims.append(shape[axis] if axis < len(shape) else 1)
            axis += 1
    return dims + list(shape[axis:])


def index_label(a) -> str:
    """The gate column's text for an index: `[:, :3]`, `[0, idx]`."""
    def item(k):
        if k is None:
            return "None"
        if isinstance(k, slice):
            text = ":".join("" if v is None else str(v) for v in (k.start, k.stop, k.step))
            return text[:-1] if text.endswith(":") and k.step is None else text
        if isinstance(k, np.ndarray):
            return "[…]"
        return str(k)
    return "[" + ", ".join(item(k) for k in a.get("key", ())) + "]"


def index_forward(args, a):
    x = args[0]
    return x[lead(x, a["nd"]) + a["key"]]


def index_reads(shapes, a):
    """The flat elements of the operand that the index picks, sorted, each once."""
    shape = tuple(shapes[0])
    picked = index_forward([np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)], a)
    return np.unique(np.ravel(picked))


def index_vjp(g, args, out, a):
    x = args[0]
    dx = np.zeros(g.shape[:1] + x.shape, dtype=np.result_type(g, float))
    np.add.at(dx, (slice(None),) + a["key"], g)  # repeated indices add up (numpy's scatter-add)
    return (dx,)


def index_sym(args, a):
    return np.asarray(np.asarray(args[0], dtype=object)[a["key"]], dtype=object)


def add_at_infer(shapes, params):
    sa, sv = (tuple(s) for s in shapes)
    target, _ = index_infer([sa], {"key": params["index"]})
    try:
        np.broadcast_shapes(target, sv)
        if np.broadcast_shapes(target, sv) != tuple(target):
            raise ValueError
    except ValueError:
        raise ValueError(f"add_at: values of shape {fmt_shape(sv)} do not fit the {fmt_shape(target)} "
                         f"elements the index selects") from None
    return sa, {"key": params["index"], "nd": len(sa), "nd_v": len(sv)}


def _placed(args, a):
    """For add_at/set_at: a fresh copy of the base (with any rows' axis), where the index lands in
    it, and v shaped to fit there (its own axes right-aligned with what the index selects)."""
    base, v = args
    lead = np.broadcast_shapes(base.shape[: base.ndim - a["nd"]], v.shape[: v.ndim - a["nd_v"]])
    out = np.array(np.broadcast_to(base, lead + base.shape[base.ndim - a["nd"]:]), dtype=np.result_type(base, v, float))
    where = (slice(None),) * len(lead) + a["key"]
    selected = out[where].shape
    if lead:
        v_lead = v.ndim - a["nd_v"]
        v = v.reshape(v.shape[:v_lead] + (1,) * (len(lead) - v_lead)
                      + (1,) * (len(selected) - len(lead) - a["nd_v"]) + v.shape[v_lead:])
    return out, where, np.broadcast_to(v, selected)


def add_at_forward(args, a):
    out, where, v = _placed(args, a)
    np.add.at(out, where, v)
    return out


def add_at_vjp(g, args, out, a):
    base, v = args
    picked = g[(slice(None),) + a["key"]]  # what each added value reached
    return g, unbroadcast(picked, v.shape)


def add_at_sym(args, a):
    import sympy
    out = np.array(np.asarray(args[0], dtype=object), dtype=object)
    values = np.broadcast_to(np.asarray(args[1], dtype=object), out[a["key"]].shape)
    flat_index = np.arange(out.size).reshape(out.shape)[a["key"]]
    added: dict = {}
    for i, v in zip(np.ravel(flat_index), np.ravel(values)):
        added.setdefault(int(i), []).append(v)
    flat = out.reshape(-1)
    for i, terms in added.items():  # one sum per place: adding one term at a time re-flattens it (quadratic)
        flat[i] = sympy.Add(flat[i], *terms)
    return flat.reshape(out.shape)


def _winners(shape, key) -> np.ndarray:
    """For a[key] = v: which of the selected places' writes stay (at a repeated index, numpy's last)."""
    ids = np.full(shape, -1, dtype=np.int64)
    order = np.arange(math.prod(ids[key].shape)).reshape(ids[key].shape)
    ids[key] = order
    return ids[key] == order


def set_at_forward(args, a):
    out, where, v = _placed(args, a)
    out[where] = v
    return out


def set_at_vjp(g, args, out, a):
    base, v = args
    da = np.array(g)
    da[(slice(None),) + a["key"]] = 0.0  # overwritten: a's old values there do not reach the output
    picked = g[(slice(None),) + a["key"]] * _winners(base.shape, a["key"])
    return da, unbroadcast(picked, v.shape)


def set_at_sym(args, a):
    out = np.array(np.asarray(args[0], dtype=object), dtype=object)
    out[a["key"]] = np.broadcast_to(np.asarray(args[1], dtype=object), out[a["key"]].shape)
    return out


# --- where, outer, argmax ----------------------------------------------------------------------

def where_infer(shapes, params):
    try:
        return tuple(np.broadcast_shapes(*shapes)), {}
    except ValueError:
        raise ValueError("where(cond, a, b): shapes " + ", ".join(fmt_shape(s) for s in shapes)
                         + " do not broadcast") from None


def where_vjp(g, args, out, a):
    cond, x, y = args
    take = np.asarray(np.real(cond) != 0, dtype=float)
    return unbroadcast(g * 0.0, cond.shape), unbroadcast(g * take, x.shape), unbroadcast(g * (1 - take), y.shape)


def where_sym(args, a):
    import sympy

    def pick(c, x, y):  # 1 where c ≠ 0: a step in c, constant for differentiation as the comparison is
        chosen = sympy.Heaviside(c, 0) + sympy.Heaviside(-c, 0)
        return chosen * x + (1 - chosen) * y
    return np.asarray(np.frompyfunc(pick, 3, 1)(*args), dtype=object)


def outer_infer(shapes, params):
    sa, sb = (tuple(s) for s in shapes)
    if len(sa) != 1 or len(sb) != 1:
        raise ValueError(f"outer takes two vectors, not {fmt_shape(sa)} and {fmt_shape(sb)}")
    return (sa[0], sb[0]), {}


def outer_forward(args, a):
    u, v = args
    return u[..., :, None] * v[..., None, :]


def outer_vjp(g, args, out, a):
    u, v = args
    return g @ v, np.einsum("kij,i->kj", g, u)


def outer_sym(args, a):
    u, v = (np.asarray(x, dtype=object) for x in args)
    return np.asarray(u[:, None] * v[None, :], dtype=object)


def argmax_infer(shapes, params):
    shape = tuple(shapes[0])
    nd = len(shape)
    if params.get("axis") is None:
        return (), {"axis": None, "nd": nd}
    ax = axis_of(params["axis"], nd)
    return tuple(n for i, n in enumerate(shape) if i - nd != ax), {"axis": ax, "nd": nd}


def argmax_forward(args, a):
    x = np.real(args[0])  # on complex operands: the real part decides (an index is constant)
    if a["axis"] is None:
        flat = x.reshape(x.shape[: x.ndim - a["nd"]] + (-1,))
        return np.argmax(flat, axis=-1).astype(float)
    return np.argmax(x, axis=a["axis"]).astype(float)


def argmax_branch(args, a):
    x = args[0]
    if a["axis"] is None:
        return x == x.reshape(x.shape[: x.ndim - a["nd"]] + (-1,)).max(axis=-1).reshape(
            x.shape[: x.ndim - a["nd"]] + (1,) * a["nd"])
    return x == x.max(axis=a["axis"], keepdims=True)


def argmax_sym_cost(shapes, a) -> int:
    """argmax's form compares every element with every other of its row: rows × n² factors."""
    shape = tuple(shapes[0])
    n = math.prod(shape) if a["axis"] is None else shape[a["axis"]]
    return (math.prod(shape) // max(n, 1)) * n * n


def argmax_sym(args, a):
    """The first largest element's index as a sum of steps: constant for differentiation."""
    import sympy
    x = np.asarray(args[0], dtype=object)
    moved = x.reshape(1, -1) if a["axis"] is None else np.moveaxis(x, a["axis"] + x.ndim, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    out = []
    for row in flat:
        total = 0
        for i, xi in enumerate(row):
            first = sympy.Mul(*[sympy.Heaviside(xi - xj, 0) for xj in row[:i]],
                              *[sympy.Heaviside(xi - xj, 1) for xj in row[i + 1:]])
            total = total + i * first
        out.append(total)
    return np.asarray(out, dtype=object).reshape(() if a["axis"] is None else moved.shape[:-1])
