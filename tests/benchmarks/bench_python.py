"""Speed of a Python layer check against CS231n's `eval_numerical_gradient_array` (run by hand).

The issue's target: CS231n's affine layer, x 10×20×3 → 60 (w 60×5, b 5), checked by
`check_layer` in ≤ 10% of the time the CS231n helper takes for the same three inputs, in-process.

    python tests/benchmarks/bench_python.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))

import layers  # noqa: E402

from gradcheck_cli.pycheck import check_layer  # noqa: E402


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """CS231n's helper (assignment 2, gradient_check.py), verbatim."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        pos = f(x).copy()
        x[ix] = oldval - h
        neg = f(x).copy()
        x[ix] = oldval
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def cs231n_way(x, w, b):
    dout = np.random.randn(10, 5)
    dx = eval_numerical_gradient_array(lambda x: layers.affine_forward(x, w, b)[0], x, dout)
    dw = eval_numerical_gradient_array(lambda w: layers.affine_forward(x, w, b)[0], w, dout)
    db = eval_numerical_gradient_array(lambda b: layers.affine_forward(x, w, b)[0], b, dout)
    _, cache = layers.affine_forward(x, w, b)
    layers.affine_backward(dout, cache)
    return dx, dw, db


def gradcheck_way(x, w, b):
    report = check_layer(layers.affine_forward, layers.affine_backward, {"x": x, "w": w, "b": b})
    assert report.passed
    return report


def median_time(fn, *args, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((10, 20, 3)), rng.standard_normal((60, 5)), rng.standard_normal(5)
    gradcheck_way(x, w, b)  # warm-up: imports, caches
    helper = median_time(cs231n_way, x, w, b)
    ours = median_time(gradcheck_way, x, w, b)
    report = gradcheck_way(x, w, b)
    print(f"machine: {platform.machine()}, {platform.python_version()}, numpy {np.__version__}")
    print(f"eval_numerical_gradient_array (x, w, b: 1,810 forward calls): {helper * 1e3:.1f} ms")
    print(f"check_layer (both points, every input, kink-aware): {ours * 1e3:.1f} ms "
          f"→ ratio {ours / helper:.3f} (target ≤ 0.10)")
    print("rows:", ", ".join(f"{r.name} {r.status} ({r.numeric_method})" for r in report.nodes))


if __name__ == "__main__":
    main()
