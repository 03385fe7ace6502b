"""Tensor benchmark (run by hand): the reference workload against torch.autograd.gradcheck.

    python tests/benchmarks/bench_tensor.py [--repeat 3]

The workload (issue 3): a 2-layer ReLU net, 9,600 parameters, every leaf element differenced.
Each side is timed as a whole Python process, as a user runs it; peak memory is the child's
maximum resident set size. Also printed: the floor of 2 × 9,600 plain numpy forward passes.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

WORKLOAD = """\
const X = randn(32, 64)
W1 = 0.1 * randn(64, 128)
b1 = 0.1 * randn(128)
W2 = 0.1 * randn(128, 10)
S = relu(X @ W1 + b1) @ W2
L = mean(logsumexp(S, axis=1))
"""

TORCH = textwrap.dedent("""\
    import torch
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 64, dtype=torch.float64, generator=g)
    W1 = (0.1 * torch.randn(64, 128, dtype=torch.float64, generator=g)).requires_grad_()
    b1 = (0.1 * torch.randn(128, dtype=torch.float64, generator=g)).requires_grad_()
    W2 = (0.1 * torch.randn(128, 10, dtype=torch.float64, generator=g)).requires_grad_()
    def f(W1, b1, W2):
        S = torch.relu(X @ W1 + b1) @ W2
        return torch.logsumexp(S, dim=1).mean()
    assert torch.autograd.gradcheck(f, (W1, b1, W2), eps=1e-6, atol=1e-5, rtol=1e-3)
""")

NUMPY_FLOOR = textwrap.dedent("""\
    import time, numpy as np
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 64)); W1 = 0.1 * rng.standard_normal((64, 128))
    b1 = 0.1 * rng.standard_normal(128); W2 = 0.1 * rng.standard_normal((128, 10))
    def f(W1, b1, W2):
        S = np.maximum(X @ W1 + b1, 0) @ W2
        m = S.max(axis=1, keepdims=True)
        return float(np.mean(m[:, 0] + np.log(np.exp(S - m).sum(axis=1))))
    t = time.perf_counter()
    for _ in range(2 * 9600):
        f(W1, b1, W2)
    print(time.perf_counter() - t)
""")


def run(cmd, repeat):
    """Median wall time of `cmd` as a process, and the largest child peak RSS in MB."""
    times, code = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(times), code, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "reference.grad")
        with open(path, "w", encoding="utf-8") as f:
            f.write(WORKLOAD)
        ours, code, peak = run([sys.executable, "-m", "gradcheck_cli", "check", path, "--no-symbolic"], args.repeat)
        print(f"gradcheck check --no-symbolic: {ours:.2f} s (exit {code}), peak RSS {peak:.0f} MB")
        floor = float(subprocess.run([sys.executable, "-c", NUMPY_FLOOR], capture_output=True, text=True).stdout)
        print(f"floor, 2 × 9,600 plain numpy forward passes: {floor:.2f} s (in-process, no start-up)")
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch: not installed (pip install torch==2.13.0) — comparison skipped")
            return
        theirs, tcode, _ = run([sys.executable, "-c", TORCH], args.repeat)
        print(f"torch.autograd.gradcheck (float64), whole process: {theirs:.2f} s (exit {tcode})")
        print(f"ratio gradcheck / torch: {ours / theirs:.2f} (target ≤ 0.33)")


if __name__ == "__main__":
    main()
