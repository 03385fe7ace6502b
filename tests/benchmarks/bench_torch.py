"""A custom torch.autograd.Function with ~10,000 input elements (a 2-layer MLP as one Function),
fully checked by gradcheck_cli.torch.check and by torch.autograd.gradcheck, in-process and as whole
processes (run by hand; issue 24's speed target: ≤ 0.25× torch's time, fast mode ≤ 2× torch's
fast_mode=True).

    python tests/benchmarks/bench_torch.py
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import torch


class MLP(torch.autograd.Function):
    """relu(x @ W1 + b1) @ W2 + b2, squared and summed; backward by hand."""

    @staticmethod
    def forward(ctx, x, W1, b1, W2, b2):
        h = x @ W1 + b1
        a = h.clamp(min=0)
        y = a @ W2 + b2
        ctx.save_for_backward(x, W1, W2, h, a, y)
        return (y * y).sum()

    @staticmethod
    def backward(ctx, g):
        x, W1, W2, h, a, y = ctx.saved_tensors
        dy = 2 * y * g
        dW2 = a.transpose(-1, -2) @ dy
        db2 = dy.sum(-2)
        da = dy @ W2.transpose(-1, -2)
        dh = da * (h > 0)
        dW1 = x.transpose(-1, -2) @ dh
        db1 = dh.sum(-2)
        dx = dh @ W1.transpose(-1, -2)
        return dx, dW1, db1, dW2, db2


class MLPVmap(torch.autograd.Function):
    """The same in torch's newer style (forward without ctx, setup_context, a generated vmap rule):
    torch.func.vmap runs it over the engine's rows in one call."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x, W1, b1, W2, b2):
        h = x @ W1 + b1
        a = h.clamp(min=0)
        y = a @ W2 + b2
        return (y * y).sum(), h, a, y

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, W1, b1, W2, b2 = inputs
        _, h, a, y = output
        ctx.save_for_backward(x, W1, W2, h, a, y)
        ctx.mark_non_differentiable(h, a, y)

    @staticmethod
    def backward(ctx, g, gh, ga, gy):
        return MLP.backward(ctx, g)


def loss_vmap(*args):
    return MLPVmap.apply(*args)[0]


def inputs():
    g = torch.Generator().manual_seed(0)
    shapes = [(32, 64), (64, 64), (64,), (64, 48), (48,)]
    return tuple(torch.randn(*s, generator=g, dtype=torch.float64).mul_(0.3).requires_grad_() for s in shapes)


FUNCTIONS = {"ctx": MLP.apply, "vmap": loss_vmap}
OURS = {"ctx": MLP, "vmap": loss_vmap}  # the Function itself: its forward is run on a stand-in ctx for the rows


def ours(fast: bool = False, style: str = "ctx"):
    from gradcheck_cli.torch import check
    report = check(OURS[style], inputs(), budget=1 if fast else 10_000)
    assert report.passed, [(r.name, r.status, r.note) for r in report.nodes]
    assert all(r.numeric_method == ("projection (4 random directions)" if fast else "exhaustive") or fast
               for r in report.nodes), [r.numeric_method for r in report.nodes]


def theirs(fast: bool = False, style: str = "ctx"):
    assert torch.autograd.gradcheck(FUNCTIONS[style], inputs(), fast_mode=fast)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main():
    if len(sys.argv) > 1:  # a whole process: one of the eight
        {"ours": ours, "theirs": theirs}[sys.argv[1]](sys.argv[2] == "fast", sys.argv[3])
        return
    n = sum(t.numel() for t in inputs())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}; {n:,} input elements")
    for style in ("ctx", "vmap"):
        for mode in ("full", "fast"):
            fast = mode == "fast"
            a, b = timed(ours, fast, style), timed(theirs, fast, style)
            pa = timed(subprocess.run, [sys.executable, __file__, "ours", mode, style], True)
            pb = timed(subprocess.run, [sys.executable, __file__, "theirs", mode, style], True)
            print(f"{style:4} {mode:4}: in-process gradcheck_cli {a:6.2f} s, torch {b:6.2f} s (ratio {a / b:.2f}); "
                  f"whole processes {pa:6.2f} s vs {pb:6.2f} s (ratio {pa / pb:.2f})")


if __name__ == "__main__":
    main()
