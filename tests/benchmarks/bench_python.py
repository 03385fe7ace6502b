"""Speed of a Python layer check against CS231n's `eval_numerical_gradient_array` (run by hand).

The issue's target: CS231n's affine layer, x 10×20×3 → 60 (w 60×5, b 5), checked by
`check_layer` in ≤ 10% of the time the CS231n helper takes for the same three inputs, in-process.

    python tests/benchmarks/bench_python.py [--repeat 41]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))

import layers  # noqa: E402

from gradcheck_cli.python.pycheck import check_layer  # noqa: E402


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


def timings(fns: list, repeat: int) -> list:
    """Per function, every run's time; the functions take turns, so a burst of load hits both."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for k, (fn, args) in enumerate(fns):
            t = time.perf_counter()
            fn(*args)
            times[k].append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=41)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((10, 20, 3)), rng.standard_normal((60, 5)), rng.standard_normal(5)
    gradcheck_way(x, w, b)  # warm-up: imports, caches
    report = gradcheck_way(x, w, b)
    print(f"machine: {platform.machine()}, {platform.python_version()}, numpy {np.__version__}, {repeat} runs each")
    # Each alone (caches warm with its own code), then taking turns (each starts with the other's
    # caches: nearer a single call inside a test suite). Both are figures; the turns are the stricter.
    alone = [timings([(cs231n_way, (x, w, b))], repeat)[0], timings([(gradcheck_way, (x, w, b))], repeat)[0]]
    turns = timings([(cs231n_way, (x, w, b)), (gradcheck_way, (x, w, b))], repeat)
    for mode, (helper, ours) in (("alone", alone), ("in turns", turns)):
        for label, stat in (("median", statistics.median), ("fastest", min)):
            h, o = stat(helper), stat(ours)
            print(f"{mode:8s} {label:7s}  eval_numerical_gradient_array (1,810 forward calls) {h * 1e3:5.2f} ms   "
                  f"check_layer (both points) {o * 1e3:5.2f} ms   ratio {o / h:.3f} (target ≤ 0.10)")
    slept = []
    for _ in range(repeat):  # a short burst of work after a pause: what taking turns sees
        time.sleep(0.008)
        t = time.perf_counter()
        gradcheck_way(x, w, b)
        slept.append(time.perf_counter() - t)
    print(f"after an 8 ms sleep median   check_layer (both points) {statistics.median(slept) * 1e3:5.2f} ms")
    print("rows:", ", ".join(f"{r.name} {r.status} ({r.numeric_method})" for r in report.nodes))


if __name__ == "__main__":
    main()
