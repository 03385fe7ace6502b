"""A custom torch.autograd.Function with ~10,000 input elements (a 2-layer MLP as one Function),
fully checked by gradcheck_cli.torch.check and by torch.autograd.gradcheck, in-process and as whole
processes (run by hand; issue 24's speed target: ≤ 0.25× torch's time, fast mode ≤ 2× torch's
fast_mode=True).

Modes: `full` — every element against autograd through the forward, differences along random
directions and at any element where the two disagree (the default); `differences` — every element
differenced one by one at both points (reference=False: torch's way); `fast` — fast=True (torch's
fast_mode: the given point only, along random directions and, for a Function, every element against
the reference); each also with one element of dW1 wrong by 1%, which must fail naming W1[3, 5].

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
OURS = {"ctx": MLP, "vmap": loss_vmap}  # the Function itself (its forward run on a stand-in ctx for the rows), a function


class Wrong(MLP):
    """dW1[3, 5] off by 1%."""

    @staticmethod
    def backward(ctx, g):
        grads = list(MLP.backward(ctx, g))
        grads[1] = grads[1].clone()
        grads[1][3, 5] *= 1.01
        return tuple(grads)


def ours(mode: str = "full", style: str = "ctx", wrong: bool = False):
    from gradcheck_cli.torch import check
    options = {"full": {}, "differences": {"reference": False}, "fast": {"fast": True}}[mode]
    report = check(Wrong if wrong else OURS[style], inputs(), **options)
    if wrong:
        failing = [(r.name, r.worst_index) for r in report.nodes if r.status == "fail"]
        assert failing == [("W1", (3, 5))], failing
        return
    assert report.passed, [(r.name, r.status, r.note) for r in report.nodes]
    # a plain function of tensors has no reference (its autograd runs the very backward under test)
    plain = style == "vmap"
    expected = ("exhaustive" if mode == "differences" or (plain and mode == "full") else
                "projection" if plain else "every element against autodiff")
    assert all(r.numeric_method.startswith(expected) for r in report.nodes), [r.numeric_method for r in report.nodes]


def theirs(mode: str = "full", style: str = "ctx", wrong: bool = False):
    passed = torch.autograd.gradcheck(Wrong.apply if wrong else FUNCTIONS[style], inputs(), fast_mode=mode == "fast",
                                      raise_exception=False)
    assert passed != wrong


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main():
    if len(sys.argv) > 1:  # a whole process: one of the runs
        {"ours": ours, "theirs": theirs}[sys.argv[1]](sys.argv[2], sys.argv[3], sys.argv[4] == "wrong")
        return
    n = sum(t.numel() for t in inputs())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}; {n:,} input elements")
    timed(ours), timed(theirs)  # warm: imports and first calls are the whole-process figures' business
    runs = [(s, m, False) for s in ("ctx", "vmap") for m in ("full", "differences", "fast")]
    runs += [("ctx", m, True) for m in ("full", "fast")]
    for style, mode, wrong in runs:
        a = min(timed(ours, mode, style, wrong) for _ in range(3))
        b = min(timed(theirs, mode, style, wrong) for _ in range(3))
        tail = [mode, style, "wrong" if wrong else "right"]
        pa = timed(subprocess.run, [sys.executable, __file__, "ours", *tail], check=True)
        pb = timed(subprocess.run, [sys.executable, __file__, "theirs", *tail], check=True)
        print(f"{style:4} {mode:11} {tail[2]:5}: in-process gradcheck_cli {a:6.3f} s, torch {b:6.3f} s "
              f"(ratio {a / b:.3f}); whole processes {pa:5.2f} s vs {pb:5.2f} s (ratio {pa / pb:.2f})")


if __name__ == "__main__":
    main()
