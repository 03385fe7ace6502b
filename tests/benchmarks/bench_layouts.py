"""The layouts and the repeated runs (python/torch_layouts.py) against today's check: each Function
checked by gradcheck_cli.torch.check with layouts="none" and with every layout (the default), in turn,
15 times in-process: the median CPU seconds of each (the process's own: other load on the machine
stays out) and the median of the ratios (the target: at most 1.5×).

    python tests/benchmarks/bench_layouts.py
"""

from __future__ import annotations

import statistics
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


def seconds(fn, inputs) -> tuple[float, float, float]:
    """The median seconds of layouts="none" and of every layout, and the median of their ratios, the
    two run in turn REPEATS times (a loaded machine slows both alike)."""
    none, every, ratios = [], [], []
    for _ in range(REPEATS):
        pair = []
        for layouts in ("none", "all"):
            started = time.process_time()
            report = check(fn, inputs, layouts=layouts)
            pair.append(time.process_time() - started)
            assert report.error is None and report.passed, (fn, report.gates, report.warnings)
        none.append(pair[0])
        every.append(pair[1])
        ratios.append(pair[1] / pair[0])
    return statistics.median(none), statistics.median(every), statistics.median(ratios)


def main() -> None:
    torch.set_num_threads(1)
    check(FusedGELU, CASES[0][2])  # warm-up: imports, first calls
    print(f"{'Function':<16} {'layouts=none':>13} {'layouts=all':>12} {'ratio':>6}")
    ratios = []
    for label, fn, inputs in CASES:
        before, after, ratio = seconds(fn, inputs)
        ratios.append(ratio)
        print(f"{label:<16} {before:>12.4f}s {after:>11.4f}s {ratio:>5.2f}×")
    print(f"largest ratio {max(ratios):.2f}× (medians of {REPEATS} runs each, in turn, CPU time, one thread)")


if __name__ == "__main__":
    main()
