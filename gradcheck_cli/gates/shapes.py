"""Forward, VJP, SymPy form and shape rule of the gates that rearrange elements: reshape, permute
(transpose), flip, pad, concatenate, stack. Each operand may carry extra leading batch axes (see
array_gates.py); the registry entries that use these are in gates.py.
"""

from __future__ import annotations

import math

import numpy as np

from .tensors import axis_of, fmt_shape, integer


# --- reshape, transpose, flip, pad ----------------------------------------------------------------

def reshape_infer(shapes, params):
    shape = tuple(shapes[0])
    dims = [params[k] for k in sorted((k for k in params if k[0] == "d" and k[1:].isdigit()), key=lambda k: int(k[1:]))]
    if "shape" in params:
        if dims:
            raise ValueError("give the new shape once: reshape(x, [4, 3]) or reshape(x, 4, 3)")
        dims = [params["shape"]]
    if len(dims) == 1 and np.ndim(dims[0]) == 1:
        dims = list(np.ravel(dims[0]))
    if not dims or any(np.ndim(d) for d in dims):
        raise ValueError("reshape(x, ...) takes the new shape: integers, or one list of them")
    new = [integer(d, "a size") for d in dims]
    size = math.prod(shape)
    if new.count(-1) > 1 or any(n < -1 or n == 0 for n in new):
        raise ValueError("reshape: sizes are positive integers, with at most one -1 (the rest)")
    if -1 in new:
        known = math.prod(n for n in new if n != -1)
        if size % known:
            raise ValueError(f"cannot reshape {fmt_shape(shape)} ({size} elements) into {fmt_shape(tuple(new))}")
        new[new.index(-1)] = size // known
    if math.prod(new) != size:
        raise ValueError(f"cannot reshape {fmt_shape(shape)} ({size} elements) into {fmt_shape(tuple(new))} "
                         f"({math.prod(new)} elements)")
    return tuple(new), {"shape": tuple(new), "old": shape}


def reshape_forward(args, a):
    x = args[0]
    return x.reshape(x.shape[: x.ndim - len(a["old"])] + a["shape"])


def reshape_vjp(g, args, out, a):
    return (g.reshape(g.shape[:1] + a["old"]),)


def permute_infer(shapes, params):
    shape = tuple(shapes[0])
    nd = len(shape)
    if params.get("axes") is None:
        axes = tuple(range(-1, -nd - 1, -1))
    else:
        raw = np.ravel(params["axes"])
        axes = tuple(axis_of(v, nd) for v in raw)
        if sorted(axes) != list(range(-nd, 0)):
            raise ValueError(f"axes {[int(v) for v in raw]} must name each of the {nd} axes once")
    return tuple(shape[ax] for ax in axes), {"axes": axes, "nd": nd}


def permute_forward(args, a):
    x = args[0]
    lead = x.ndim - a["nd"]
    return np.transpose(x, tuple(range(lead)) + tuple(ax + x.ndim for ax in a["axes"]))


def permute_vjp(g, args, out, a):
    nd = a["nd"]
    inverse = np.argsort([ax + nd for ax in a["axes"]])
    return (np.transpose(g, (0,) + tuple(int(i) + 1 for i in inverse)),)


def permute_sym(args, a):
    x = np.asarray(args[0], dtype=object)
    return np.transpose(x, tuple(ax + x.ndim for ax in a["axes"]))


def flip_infer(shapes, params):
    shape = tuple(shapes[0])
    nd = len(shape)
    if params.get("axis") is None:
        axes = tuple(range(-nd, 0))
    else:
        axes = tuple(sorted({axis_of(v, nd) for v in np.ravel(params["axis"])}))
    return shape, {"axes": axes}


def flip_forward(args, a):
    return np.flip(args[0], axis=a["axes"]) if a["axes"] else args[0]


def flip_vjp(g, args, out, a):
    return (np.flip(g, axis=a["axes"]) if a["axes"] else g,)


def pad_infer(shapes, params):
    shape = tuple(shapes[0])
    nd = len(shape)
    if nd == 0:
        raise ValueError("pad takes an array, not a scalar")
    width = np.asarray(params.get("width", 0), dtype=float)
    given: list[tuple]  # (before, after) per axis, as written
    if width.ndim == 0:
        given = [(width, width)] * nd
    elif width.shape == (2,):
        given = [tuple(width)] * nd
    elif width.shape == (nd, 2):
        given = [tuple(p) for p in width]
    else:
        raise ValueError(f"pad width: one number, [before, after], or one pair per axis ({nd} pairs), "
                         f"not an array of shape {fmt_shape(width.shape)}")
    pairs = tuple((integer(b, "a pad width"), integer(e, "a pad width")) for b, e in given)
    if any(b < 0 or e < 0 for b, e in pairs):
        raise ValueError("pad widths must not be negative")
    fill = np.asarray(params.get("value", 0.0), dtype=float)
    if fill.ndim != 0:
        raise ValueError(f"pad's value must be one number, not an array of shape {fmt_shape(fill.shape)}")
    value = float(fill)
    return tuple(n + b + e for n, (b, e) in zip(shape, pairs)), {"pairs": pairs, "value": value}


def pad_forward(args, a):
    x = args[0]
    lead = ((0, 0),) * (x.ndim - len(a["pairs"]))
    return np.pad(x, lead + a["pairs"], mode="constant", constant_values=a["value"])


def pad_vjp(g, args, out, a):
    crop = tuple(slice(b, n - e) for (b, e), n in zip(a["pairs"], g.shape[1:]))
    return (g[(slice(None),) + crop],)


def pad_sym(args, a):
    import sympy
    x = np.asarray(args[0], dtype=object)
    out = np.full(tuple(n + b + e for n, (b, e) in zip(x.shape, a["pairs"])), sympy.Float(a["value"]), dtype=object)
    out[tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, a["pairs"]))] = x
    return out


# --- concatenate and stack (any number of operands) -----------------------------------------------

def concat_infer(shapes, params):
    shapes = [tuple(s) for s in shapes]
    nd = len(shapes[0])
    if nd == 0:
        raise ValueError("concatenate joins arrays along an axis, not scalars (use stack)")
    ax = axis_of(params.get("axis", 0), nd)
    for s in shapes[1:]:
        if len(s) != nd or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i - nd != ax):
            raise ValueError(f"cannot concatenate shapes {', '.join(fmt_shape(x) for x in shapes)} along axis {ax}")
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    return tuple(out), {"axis": ax, "nds": tuple(len(s) for s in shapes), "sizes": tuple(s[ax] for s in shapes)}


def _common_lead(args, nds):
    return np.broadcast_shapes(*{a.shape[: a.ndim - nd] for a, nd in zip(args, nds)})  # the few distinct ones


def concat_forward(args, a):
    lead = _common_lead(args, a["nds"])
    parts = [np.broadcast_to(x, lead + x.shape[x.ndim - nd:]) for x, nd in zip(args, a["nds"])]
    return np.concatenate(parts, axis=a["axis"])


def concat_vjp(g, args, out, a):
    bounds = np.cumsum((0,) + a["sizes"])
    return tuple(np.take(g, np.arange(lo, hi), axis=a["axis"]) for lo, hi in zip(bounds[:-1], bounds[1:]))


def concat_sym(args, a):
    return np.concatenate([np.asarray(x, dtype=object) for x in args], axis=a["axis"])


def stack_infer(shapes, params):
    shapes = [tuple(s) for s in shapes]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"stack needs arrays of one shape, not {', '.join(fmt_shape(s) for s in shapes)}")
    nd = len(shapes[0]) + 1
    ax = axis_of(params.get("axis", 0), nd)
    out = list(shapes[0])
    out.insert(ax + nd, len(shapes))
    return tuple(out), {"axis": ax, "nds": tuple(len(s) for s in shapes)}


def stack_forward(args, a):
    """np.stack of the parts broadcast to their common leading (batch) axes, written into the result by
    assignment, which broadcasts them: the parts of one kind (leading axes and dtype) at once (a
    comprehension stacks hundreds of parts, most of them the point's, a few one row's: a part at a
    time cost ~1 µs each, a view made per part more)."""
    args = [np.asarray(x) for x in args]
    nd = a["nds"][0]  # every part's (stack_infer: the parts have one shape, leading axes aside)
    groups: dict = {}  # (shape, dtype) -> the parts' places: the few distinct kinds, each written at once
    for k, x in enumerate(args):
        groups.setdefault((x.shape, x.dtype), []).append(k)
    lead = np.broadcast_shapes(*{s[: len(s) - nd] for s, _ in groups})
    shape = lead + args[0].shape[args[0].ndim - nd:]
    out = np.empty(shape[: len(shape) + 1 + a["axis"]] + (len(args),) + shape[len(shape) + 1 + a["axis"]:],
                   dtype=np.result_type(*{dtype for _, dtype in groups}))
    slices = np.moveaxis(out, a["axis"], 0)
    for (own, dtype), places in groups.items():
        if len(places) == 1 or dtype.kind == "O":
            for k in places:
                slices[k] = args[k]
        else:  # the kind's parts as one array, a part per leading index, broadcast over the axes they lack
            parts = np.array([args[k] for k in places])
            slices[np.array(places)] = parts.reshape((len(places),) + (1,) * (len(shape) - len(own)) + own)
    return out


def stack_vjp(g, args, out, a):
    return tuple(np.take(g, k, axis=a["axis"]) for k in range(len(args)))


def stack_sym(args, a):
    return np.stack([np.asarray(x, dtype=object) for x in args], axis=a["axis"])
