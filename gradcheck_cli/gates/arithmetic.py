"""Forward, VJP, SymPy form and shape rule of the registry's arithmetic, matmul, reductions,
softmax, logsumexp and norm, and the elementwise functions' derivatives and SymPy forms. The
registry entries that use these are in gates.py.
"""

from __future__ import annotations

import math

import numpy as np

from .tensors import fmt_shape, unbroadcast
from .tensors import sym_sum as _sym_sum


def axes_infer(allow_keepdims=True):
    """Parameter check for reductions: `axis` (int or list of ints) and `keepdims`."""
    def infer(shapes, params):
        shape = tuple(shapes[0])
        nd = len(shape)
        axis = params.get("axis")
        if axis is None:
            axes = tuple(range(-nd, 0))
        else:
            raw = [axis] if np.ndim(axis) == 0 else list(np.ravel(axis))
            given: list[int] = []
            for ax in raw:
                if not float(ax).is_integer():
                    raise ValueError(f"axis must be an integer, not {ax:g}")
                ax = int(ax)
                if not -nd <= ax < nd:
                    raise ValueError(f"axis {ax} is out of range for shape {fmt_shape(shape)}")
                given.append(ax - nd if ax >= 0 else ax)
            if len(set(given)) != len(given):
                raise ValueError("repeated axis")
            axes = tuple(sorted(given))
        keep = bool(params.get("keepdims", 0)) if allow_keepdims else False
        out = tuple(1 if (i - nd) in axes else n for i, n in enumerate(shape)) if keep else \
            tuple(n for i, n in enumerate(shape) if (i - nd) not in axes)
        return out, {"axes": axes, "keepdims": keep, "nd": nd}
    return infer


def expand(g, a):
    """Undo a reduction's dropped axes on a gradient (for the VJP)."""
    return g if a["keepdims"] or not a["axes"] else np.expand_dims(g, a["axes"])


def sym_reduce(x, a, combine):
    """Reduce an object array over `axes` with `combine(list_of_exprs)`; keepdims honoured."""
    axes = tuple(ax + x.ndim for ax in a["axes"])
    moved = np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim))) if axes else x
    lead = moved.shape[: x.ndim - len(axes)]
    flat = moved.reshape(lead + (-1,))
    out = np.empty(lead, dtype=object)
    for idx in np.ndindex(*lead):
        out[idx] = combine(list(flat[idx]))
    if a["keepdims"]:
        out = np.expand_dims(out, axes)
    return out


def matmul_sym_cost(shapes, attrs) -> int:
    """Each output element of A @ B is a sum of as many products as the shared axis is long."""
    shape, _ = matmul_infer(shapes, {})
    return math.prod(shape) * tuple(shapes[0])[-1]


def matmul_infer(shapes, params):
    """numpy's matmul: vectors, matrices, and stacks of matrices (leading axes broadcast)."""
    sa, sb = (tuple(s) for s in shapes)
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError("@ needs vectors or matrices, not scalars; use * to scale")
    inner_a = sa[-1]
    inner_b = sb[0] if len(sb) == 1 else sb[-2]
    if inner_a != inner_b:
        raise ValueError(f"cannot multiply shapes {fmt_shape(sa)} @ {fmt_shape(sb)}: "
                         f"inner sizes {inner_a} and {inner_b} differ")
    try:
        batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    except ValueError:
        raise ValueError(f"cannot multiply shapes {fmt_shape(sa)} @ {fmt_shape(sb)}: their leading (stack) "
                         f"axes {fmt_shape(sa[:-2])} and {fmt_shape(sb[:-2])} do not broadcast") from None
    out = batch + (sa[-2:-1] if len(sa) >= 2 else ()) + (sb[-1:] if len(sb) >= 2 else ())
    return out, {"nd": (len(sa), len(sb)), "batch": len(batch)}


def align(x, core: int, batch: int):
    """Give an operand that carries a leading row axis the full stack rank, so rows line up."""
    lead = x.ndim - core
    missing = batch - (core - 2)
    if lead and missing > 0:
        return x.reshape(x.shape[:lead] + (1,) * missing + x.shape[lead:])
    return x


ONE_THREAD_PRODUCT = 4 * 65536  # m·n·k up to which OpenBLAS runs a product on one thread (its default
                                # GEMM_MULTITHREAD_THRESHOLD × SMP_THRESHOLD_MIN)


def tall_product(A, B, out=None):
    """A @ B for a tall 2-D A (a batch's rows stacked), in blocks of rows small enough that BLAS runs
    each on one thread: the rows are many already, and threads that split a product ten columns wide
    wait on each other more than they work (on a loaded machine, several times over). Each row's sums
    are the same as in one call."""
    m, k = A.shape
    n = B.shape[1]
    out = np.empty((m, n), dtype=np.result_type(A, B)) if out is None else out
    step = max(1, ONE_THREAD_PRODUCT // max(1, k * n))
    if step >= m:
        return np.matmul(A, B, out=out)
    for start in range(0, m, step):
        np.matmul(A[start:start + step], B, out=out[start:start + step])
    return out


def matmul2(A, B):
    """A @ B on 2-D operands that may carry one leading batch axis."""
    if A.ndim == 3 and B.ndim == 2:  # a batch times one matrix: a single tall product
        bt, m, _ = A.shape
        return tall_product(A.reshape(bt * m, A.shape[2]), B).reshape(bt, m, B.shape[1])
    return np.matmul(A, B)


def matmul_forward(args, a):
    A, B = args
    nda, ndb = a["nd"]
    if nda == 1:
        A = A[..., None, :]
    if ndb == 1:
        B = B[..., :, None]
    batch = a.get("batch", 0)
    A, B = align(A, max(nda, 2), batch), align(B, max(ndb, 2), batch)
    out = matmul2(A, B) if batch == 0 else np.matmul(A, B)
    if ndb == 1:
        out = out[..., 0]
    if nda == 1:
        out = out[..., 0] if ndb == 1 else out[..., 0, :]
    return out


def matmul_into(args, a, out):
    """matmul_forward into `out`, for matrices (no vector operands, no stacks): the same products."""
    A, B = args
    if a["nd"] != (2, 2) or a.get("batch", 0):
        out[...] = matmul_forward(args, a)
    elif A.ndim == 3 and B.ndim == 2:  # as matmul2: a batch times one matrix, a single tall product
        bt, m, _ = A.shape
        tall_product(A.reshape(bt * m, A.shape[2]), B, out=out.reshape(bt * m, B.shape[1]))
    else:
        np.matmul(A, B, out=out)
    return out


def matmul_vjp(g, args, out, a):
    A, B = args
    nda, ndb = a["nd"]
    A2 = A[None, :] if nda == 1 else A
    B2 = B[:, None] if ndb == 1 else B
    if nda == 1 and ndb == 1:
        g = g[..., None, None]
    elif nda == 1:
        g = g[..., None, :]
    elif ndb == 1:
        g = g[..., None]
    dA = unbroadcast(np.matmul(g, np.swapaxes(B2, -1, -2)), A2.shape)
    dB = unbroadcast(np.matmul(np.swapaxes(A2, -1, -2), g), B2.shape)
    if nda == 1:
        dA = dA[..., 0, :]
    if ndb == 1:
        dB = dB[..., 0]
    return dA, dB


def matmul_sym(args, a):
    A, B = args
    nda, ndb = a["nd"]
    A2 = A[None, :] if nda == 1 else A
    B2 = B[:, None] if ndb == 1 else B
    batch = tuple(np.broadcast_shapes(A2.shape[:-2], B2.shape[:-2]))
    A2 = np.broadcast_to(A2, batch + A2.shape[-2:])
    B2 = np.broadcast_to(B2, batch + B2.shape[-2:])
    out = np.empty(batch + (A2.shape[-2], B2.shape[-1]), dtype=object)
    for idx in np.ndindex(*out.shape):
        *stack, i, j = idx
        stack = tuple(stack)
        out[idx] = _sym_sum([A2[stack + (i, k)] * B2[stack + (k, j)] for k in range(A2.shape[-1])])
    if ndb == 1:
        out = out[..., 0]
    if nda == 1:
        out = out[..., 0] if ndb == 1 else out[..., 0, :]
    return np.asarray(out, dtype=object)


MATMUL_RULE = "∂(AB)[i,j]/∂A[i,k] = B[k,j], ∂(AB)[i,j]/∂B[k,j] = A[i,k]"


def matmul_jacobian(args, a):
    """A @ B's local Jacobian by its index rule (MATMUL_RULE), per operand (rows, cols, values): flat
    indices into the output and the operand, and the other operand's elements, gathered as they are
    (exact: no arithmetic). Works on object arrays too, which is how SymPy checks it."""
    A, B = np.asarray(args[0]), np.asarray(args[1])
    nda, ndb = a["nd"]
    sa = (1,) + A.shape if nda == 1 else A.shape
    sb = B.shape + (1,) if ndb == 1 else B.shape
    batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    m, k, n = sa[-2], sa[-1], sb[-1]
    ia = np.broadcast_to(np.arange(A.size).reshape(sa), batch + (m, k)).reshape(-1, m, 1, k)
    ib = np.swapaxes(np.broadcast_to(np.arange(B.size).reshape(sb), batch + (k, n)), -1, -2).reshape(-1, 1, n, k)
    full = (ia.shape[0], m, n, k)
    rows = np.broadcast_to(np.arange(ia.shape[0] * m * n).reshape(-1, m, n, 1), full).ravel()
    cols_a, cols_b = np.broadcast_to(ia, full).ravel(), np.broadcast_to(ib, full).ravel()
    return [(rows, cols_a, B.ravel()[cols_b]), (rows, cols_b, A.ravel()[cols_a])]


def transpose_forward(args, a):
    """x.T as numpy has it: all axes reversed (the last `nd`; leading batch axes stay)."""
    x = args[0]
    nd = a["nd"]
    lead = x.ndim - nd
    return np.transpose(x, tuple(range(lead)) + tuple(range(x.ndim - 1, lead - 1, -1)))


def transpose_infer(shapes, params):
    s = tuple(shapes[0])
    return s[::-1], {"nd": len(s)}


def count(a, shape):
    return int(np.prod([shape[ax] for ax in a["axes"]])) if a["axes"] else 1


def sum_vjp(g, args, out, a):
    return (np.broadcast_to(expand(g, a), g.shape[:1] + args[0].shape),)


def mean_forward(args, a):
    x = args[0]
    return x.sum(axis=a["axes"], keepdims=a["keepdims"]) / count(a, x.shape)


def mean_vjp(g, args, out, a):
    x = args[0]
    return (np.broadcast_to(expand(g, a), g.shape[:1] + x.shape) / count(a, x.shape),)


def max_mask(x, a):
    x = np.real(x)  # the real part decides the largest (complex: forward-over-reverse)
    m = x.max(axis=a["axes"], keepdims=True)
    hit = (x == m).astype(float)
    return hit / hit.sum(axis=a["axes"], keepdims=True)


def max_vjp(g, args, out, a):
    x = args[0]
    return (expand(g, a) * max_mask(x, a),)


def max_branch(args, a):
    x = args[0]
    return x == x.max(axis=a["axes"], keepdims=True)


def softmax_np(x, axes):
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


def softmax_vjp(g, args, out, a):
    y = out
    return (y * (g - (g * y).sum(axis=a["axes"], keepdims=True)),)


def lse_forward(args, a):
    x = args[0]
    m = x.max(axis=a["axes"], keepdims=True)
    out = m + np.log(np.exp(x - m).sum(axis=a["axes"], keepdims=True))
    return out if a["keepdims"] else np.squeeze(out, axis=a["axes"])


def lse_vjp(g, args, out, a):
    return (expand(g, a) * softmax_np(args[0], a["axes"]),)


def sym_softmax(args, a):
    import sympy
    x = args[0]
    e = np.asarray(np.frompyfunc(sympy.exp, 1, 1)(x), dtype=object)
    total = sym_reduce(e, dict(a, keepdims=True), _sym_sum)
    return np.asarray(e / total, dtype=object)


def sym_lse(args, a):
    import sympy
    e = np.asarray(np.frompyfunc(sympy.exp, 1, 1)(args[0]), dtype=object)
    return sym_reduce(e, a, lambda items: sympy.log(sympy.Add(*items)))


def vector_pair_infer(name):
    def infer(shapes, params):
        sa, sb = (tuple(s) for s in shapes)
        if len(sa) != 1 or len(sb) != 1:
            raise ValueError(f"{name} takes two vectors, not {fmt_shape(sa)} and {fmt_shape(sb)}; use @ for matrices")
        if sa != sb:
            raise ValueError(f"{name} needs vectors of one length, not {fmt_shape(sa)} and {fmt_shape(sb)}")
        return (), {}
    return infer


def norm_forward(args, a):
    x = args[0]
    return np.sqrt((x * x).sum(axis=a["axes"]))


def norm_vjp(g, args, out, a):
    x = args[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(out > 0, 1.0 / np.where(out > 0, out, 1.0), 0.0)
    return (expand(g, a) * x * expand(scale[None], a)[0],)


def sym_norm(args, a):
    import sympy
    return sym_reduce(args[0], a, lambda items: sympy.sqrt(sympy.Add(*[i * i for i in items])))


def half_step(x):
    """1 where x > 0, 0 where x < 0, 1/2 at a tie: the even split at a kink (the real part decides)."""
    return (np.sign(np.real(x)) + 1.0) / 2.0


# --- on complex operands (the complex step): the kink gates follow the real part ------------------

def abs_complex(x):
    return np.where(np.real(x) >= 0, x, -x)


def relu_complex(x):
    return np.where(np.real(x) > 0, x, 0.0)


def max_complex(a, b):
    return np.where(np.real(a) >= np.real(b), a, b)


def min_complex(a, b):
    return np.where(np.real(a) <= np.real(b), a, b)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def relu_grad(x, out):
    return half_step(x)


def sym_relu(x):
    import sympy
    return sympy.Max(0, x, evaluate=False)


def sym_max(a, b):
    import sympy
    return sympy.Max(a, b, evaluate=False)


def sym_max_all(items):
    """Max of many, unevaluated: evaluating compares every pair under SymPy's assumptions (minutes at ~100)."""
    import sympy
    return items[0] if len(items) == 1 else sympy.Max(*items, evaluate=False)


def sym_min(a, b):
    import sympy
    return sympy.Min(a, b, evaluate=False)


def sp(fname):
    """A SymPy function looked up lazily (sympy is imported only when the symbolic oracle runs)."""
    def call(*args):
        import sympy
        return getattr(sympy, fname)(*args)
    return call


def sym_sigmoid(x):
    import sympy
    return 1 / (1 + sympy.exp(-x))


def pow_grads(a, b, out):
    with np.errstate(divide="ignore", invalid="ignore"):
        da = np.where(b == 0, 0.0, b * np.power(a, b - 1.0))
        db = out * np.log(np.where(a > 0, a, 1.0))
    return da, np.where(a > 0, db, 0.0)
