"""Forward, VJP, SymPy form and shape rule of the CS231n layers as built-in gates: a 2-d convolution
`conv2d(x, w, b, stride=, pad=)` and max pooling `maxpool2d(x, size=, stride=)`, vectorised.

Layouts are CS231n's: x (N, C, H, W), w (F, C, HH, WW), b (F,). Any operand may carry extra leading
batch axes (the finite differences' rows). The registry entries are in gates.py.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .tensors import by_real_max, fmt_shape, integer


def _positive(params, key, default, what) -> int:
    v = integer(params.get(key, default), what)
    if v < (0 if key == "pad" else 1):
        raise ValueError(f"{what} must be {'non-negative' if key == 'pad' else 'positive'}, not {v}")
    return v


def conv_infer(shapes, params):
    sx, sw, sb = (tuple(s) for s in shapes)
    if len(sx) != 4 or len(sw) != 4 or len(sb) != 1:
        raise ValueError(f"conv2d(x, w, b) takes x (N, C, H, W), w (F, C, HH, WW) and b (F,), not "
                         f"{fmt_shape(sx)}, {fmt_shape(sw)}, {fmt_shape(sb)}")
    stride, pad = _positive(params, "stride", 1, "stride"), _positive(params, "pad", 0, "pad")
    n, c, h, w_ = sx
    f, cw, hh, ww = sw
    if c != cw:
        raise ValueError(f"conv2d: x has {c} channels but w expects {cw} (x {fmt_shape(sx)}, w {fmt_shape(sw)})")
    if sb[0] != f:
        raise ValueError(f"conv2d: b has {sb[0]} entries but w has {f} filters")
    hp, wp = h + 2 * pad, w_ + 2 * pad
    if hh > hp or ww > wp:
        raise ValueError(f"conv2d: a {hh}×{ww} filter does not fit a {hp}×{wp} padded input")
    if (hp - hh) % stride or (wp - ww) % stride:
        raise ValueError(f"conv2d: stride {stride} does not tile the {hp}×{wp} padded input with a {hh}×{ww} "
                         f"filter ((H + 2·pad - HH) must be a multiple of the stride)")
    ho, wo = (hp - hh) // stride + 1, (wp - ww) // stride + 1
    return (n, f, ho, wo), {"stride": stride, "pad": pad, "out": (ho, wo), "filter": (hh, ww)}


def window_workspace(shapes, a) -> int:
    """Elements of the windows a conv2d or maxpool2d call lays out (every receptive field copied for
    one matrix product, or masked in the backward): N·C·Ho·Wo·HH·WW."""
    n, c = tuple(shapes[0])[:2]
    (ho, wo), (hh, ww) = a["out"], a["filter"]
    return n * c * ho * wo * hh * ww


def _padded(x, pad):
    if not pad:
        return x
    return np.pad(x, ((0, 0),) * (x.ndim - 2) + ((pad, pad), (pad, pad)))


def _windows(x, a):
    """(..., N, C, Ho, Wo, HH, WW): every receptive field, a view (nothing copied)."""
    s = a["stride"]
    win = sliding_window_view(_padded(x, a["pad"]), a["filter"], axis=(-2, -1))
    return win[..., ::s, ::s, :, :]


def conv_forward(args, a):
    x, w, b = args
    win = _windows(x, a)
    if w.ndim == 4:  # one filter bank: a single matrix product over all windows (BLAS)
        cols = np.moveaxis(win, -5, -3)  # (..., N, Ho, Wo, C, HH, WW)
        cols = cols.reshape(cols.shape[:-3] + (-1,))
        out = cols @ w.reshape(w.shape[0], -1).T  # (..., N, Ho, Wo, F)
        out = np.moveaxis(out, -1, -3)
    else:
        out = np.einsum("...nchwij,...fcij->...nfhw", win, w, optimize=True)
    lead = b.ndim - 1  # the rows' axis, if b carries one, goes before N
    return out + b.reshape(b.shape[:lead] + (1, b.shape[-1], 1, 1))


def conv_vjp(g, args, out, a):
    x, w, b = args
    s, pad = a["stride"], a["pad"]
    hh, ww = a["filter"]
    ho, wo = a["out"]
    win = _windows(x, a)  # (N, C, Ho, Wo, HH, WW)
    db = g.sum(axis=(1, 3, 4))
    dw = np.einsum("knfhw,nchwij->kfcij", g, win, optimize=True)
    dxp = np.zeros(g.shape[:1] + x.shape[:2] + (x.shape[2] + 2 * pad, x.shape[3] + 2 * pad),
                   dtype=np.result_type(g, w, float))  # complex: forward-over-reverse
    for i in range(hh):
        for j in range(ww):
            dxp[..., i:i + s * ho:s, j:j + s * wo:s] += np.einsum("knfhw,fc->knchw", g, w[:, :, i, j], optimize=True)
    dx = dxp[..., pad:pad + x.shape[2], pad:pad + x.shape[3]] if pad else dxp
    return dx, dw, db


def conv_sym(args, a):
    """Each output as one unevaluated sum of products (SymPy's canonical ordering of ~30,000 terms
    costs seconds and changes nothing: the partials are read off the same terms); padding adds none."""
    import sympy
    x, w, b = (np.asarray(v, dtype=object) for v in args)
    pad, s = a["pad"], a["stride"]
    n, c, h, wd = x.shape
    f = w.shape[0]
    hh, ww = a["filter"]
    ho, wo = a["out"]
    out = np.empty((n, f, ho, wo), dtype=object)
    for i, k, r, q in np.ndindex(n, f, ho, wo):
        terms = []
        for ch, di, dj in np.ndindex(c, hh, ww):
            row, col = r * s + di - pad, q * s + dj - pad
            if 0 <= row < h and 0 <= col < wd:
                terms.append(sympy.Mul(x[i, ch, row, col], w[k, ch, di, dj], evaluate=False))
        out[i, k, r, q] = sympy.Add(*terms, b[k], evaluate=False)
    return out


def pool_infer(shapes, params):
    (sx,) = (tuple(s) for s in shapes)
    if len(sx) != 4:
        raise ValueError(f"maxpool2d takes x (N, C, H, W), not {fmt_shape(sx)}")
    size = _positive(params, "size", 2, "size")
    stride = _positive(params, "stride", size, "stride")
    h, w = sx[2:]
    if size > h or size > w or (h - size) % stride or (w - size) % stride:
        raise ValueError(f"maxpool2d: {size}×{size} windows with stride {stride} do not tile a {h}×{w} input")
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    return sx[:2] + (ho, wo), {"stride": stride, "pad": 0, "filter": (size, size), "out": (ho, wo)}


def pool_forward(args, a):
    return _windows(args[0], a).max(axis=(-2, -1))


def pool_forward_complex(args, a):
    """On complex operands: each window's largest element by its real part (the complex step)."""
    return by_real_max(_windows(args[0], a), (-2, -1))


def _pool_share(x, a):
    """Per window element: its share of the window's gradient (1 for the max, 1/k at a k-way tie)."""
    win = np.real(_windows(x, a))  # the real part decides the largest (complex: forward-over-reverse)
    hit = (win == win.max(axis=(-2, -1), keepdims=True)).astype(float)
    return hit / hit.sum(axis=(-2, -1), keepdims=True)


def pool_vjp(g, args, out, a):
    x = args[0]
    s = a["stride"]
    k, _ = a["filter"]
    ho, wo = a["out"]
    share = _pool_share(x, a)  # (N, C, Ho, Wo, k, k)
    dx = np.zeros(g.shape[:1] + x.shape, dtype=np.result_type(g, float))
    for i in range(k):
        for j in range(k):
            dx[..., i:i + s * ho:s, j:j + s * wo:s] += g * share[..., i, j]
    return (dx,)


def pool_branch(args, a):
    win = _windows(args[0], a)
    return win == win.max(axis=(-2, -1), keepdims=True)


def pool_sym(args, a):
    import sympy
    x = np.asarray(args[0], dtype=object)
    s = a["stride"]
    k, _ = a["filter"]
    ho, wo = a["out"]
    out = np.empty(x.shape[:2] + (ho, wo), dtype=object)
    for idx in np.ndindex(*out.shape):
        i, c, r, q = idx
        items = list(x[i, c, r * s:r * s + k, q * s:q * s + k].ravel())
        out[idx] = sympy.Max(*items, evaluate=False)
    return out
