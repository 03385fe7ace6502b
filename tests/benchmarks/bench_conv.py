"""Conv-layer benchmark (issue 12, run by hand): the exhaustive check of a convolutional layer,
x 2×3×8×8, w 4×3×3×3, b 4 (496 inputs, every element differenced), against
torch.autograd.gradcheck on the same layer. Both are whole Python processes, as a user runs them.

    python tests/benchmarks/bench_conv.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LAYER = """\
const pad = 1
gate conv(x, w, b) = conv2d(x, w, b, stride=1, pad=pad)
  wflip = flip(transpose(w, [1, 0, 2, 3]), [2, 3])
  dx = conv2d(dout, wflip, zeros(x.shape[1]), pad=w.shape[2] - 1 - pad)
  xpad = pad(x, [[0, 0], [0, 0], [pad, pad], [pad, pad]])
  dw = transpose(conv2d(transpose(xpad, [1, 0, 2, 3]), transpose(dout, [1, 0, 2, 3]), zeros(w.shape[0])), [1, 0, 2, 3])
  db = sum(dout, axis=[0, 2, 3])
x = randn(2, 3, 8, 8)
w = randn(4, 3, 3, 3)
b = randn(4)
const u = randn(2, 4, 8, 8)
f = sum(conv(x, w, b) * u)
"""

TORCH = textwrap.dedent("""\
    import torch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(4, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: torch.nn.functional.conv2d(x, w, b, padding=1), (x, w, b))
""")


def whole(cmd: list, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {args.repeat} runs each (medians)")
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "conv.grad"
        layer.write_text(LAYER)
        ours = whole([sys.executable, "-m", "gradcheck_cli", "check", str(layer)], args.repeat)
        plain = whole([sys.executable, "-m", "gradcheck_cli", "check", str(layer), "--no-symbolic"], args.repeat)
        print(f"gradcheck check (three oracles, per-gate checks, both points): {ours:.2f} s (target ≤ 2 s)")
        print(f"gradcheck check --no-symbolic:                                {plain:.2f} s")
        if importlib.util.find_spec("torch") is None:
            print("torch is not installed: pip install torch==2.13.0 for the comparison")
            return
        script = Path(tmp) / "torch_gradcheck.py"
        script.write_text(TORCH)
        theirs = whole([sys.executable, str(script)], args.repeat)
        print(f"torch.autograd.gradcheck (float64, whole process):           {theirs:.2f} s")
        print(f"ratio {ours / theirs:.2f} (target ≤ 0.5); without SymPy {plain / theirs:.2f}")


if __name__ == "__main__":
    main()
