"""The layouts and the repeated runs (python/torch_layouts.py) against today's check: each Function
checked by gradcheck_cli.torch.check with layouts="none" and with every layout (the default), the
fastest of 15 runs in-process (the machine's noise is one-sided), side by side with the ratio (the target: at most 1.5×).

    python tests/benchmarks/bench_layouts.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "examples" / "torch"), str(ROOT / "tests" / "benchmarks")]

from bench_torch import MLP  # noqa: E402
from functions import FusedGELU, LayerNorm, Softmax  # noqa: E402
from gradcheck_cli.torch import check  # noqa: E402

REPEATS = 15


class Conv(torch.autograd.Function):
    """A 3×3 convolution (4-d: channels-last applies), backward by autograd's functional calls."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return torch.nn.functional.conv2d(x, w, padding=1)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dx = torch.nn.grad.conv2d_input(x.shape, w, g, padding=1)
        dw = torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1)
        return dx, dw


def _randn(*shape):
    return torch.randn(*shape, dtype=torch.float64, generator=GEN, requires_grad=True)


GEN = torch.Generator().manual_seed(0)
CASES = [
    ("FusedGELU 4×6", FusedGELU, (_randn(4, 6),)),
    ("LayerNorm 4×6", LayerNorm, (_randn(4, 6),)),
    ("Softmax 64×128", Softmax, (_randn(64, 128),)),
    ("MLP 5 inputs", MLP, (_randn(8, 16), _randn(16, 32), _randn(32), _randn(32, 4), _randn(4))),
    ("Conv 2×3×6×6", Conv, (_randn(2, 3, 6, 6), _randn(4, 3, 3, 3))),
]


def seconds(fn, inputs, layouts: str) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        report = check(fn, inputs, layouts=layouts)
        times.append(time.perf_counter() - started)
        assert report.error is None and report.passed, (fn, report.gates, report.warnings)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    check(FusedGELU, CASES[0][2])  # warm-up: imports, first calls
    print(f"{'Function':<16} {'layouts=none':>13} {'layouts=all':>12} {'ratio':>6}")
    ratios = []
    for label, fn, inputs in CASES:
        before, after = seconds(fn, inputs, "none"), seconds(fn, inputs, "all")
        ratios.append(after / before)
        print(f"{label:<16} {before:>12.3f}s {after:>11.3f}s {after / before:>5.2f}×")
    print(f"largest ratio {max(ratios):.2f}× (fastest of {REPEATS} runs each, one thread)")


if __name__ == "__main__":
    main()
