"""Calibrates the cost model (run by hand, not by CI): checks inputs of every shape the limits
bound, each under the work meter, and prints what each predicted, what it metered and how long it
took. The meter's constants (meter.py) are set so that seconds per unit is about the same for every
shape; MAX_WORK (limits.py) is 60 s at the slowest rate printed here, halved for a slower machine.

    python tests/benchmarks/bench_cost.py [--only SHAPE] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from gradcheck_cli import check
from gradcheck_cli.core.meter import PRICES, Meter


def chain(n):
    return "x = 0.5\nf = " + "sin(" * n + "x" + ")" * n + "\n"


def wide(n):
    return f"x = randn({n})\nw = randn({n})\nf = sum(tanh(x * w + x))\n"


def net(n):
    return (f"x = randn({n}, 64)\nW1 = randn(64, 64) * 0.1\nb1 = randn(64)\nh = relu(x @ W1 + b1)\n"
            "W2 = randn(64, 10) * 0.1\ns = h @ W2\nf = sum(s * s)\n")


def nested(k):
    src = "gate g0(t) = t * 1.0001\n" + "".join(f"gate g{i}(t) = g{i - 1}(g{i - 1}(t))\n" for i in range(1, k + 1))
    return src + f"x = 0.5\nf = g{k}(x)\n"


def terms(n):
    return f"x = randn({n})\nf = sum(stack(x[i] * x[i] for i in range({n})))\n"


def conv(n):
    return (f"x = randn(2, 3, {n}, {n})\nw = randn(4, 3, 3, 3)\nb = randn(4)\n"
            "f = sum(maxpool2d(relu(conv2d(x, w, b, stride=1, pad=1)), size=2, stride=2))\n")


def leaves(n):
    return "".join(f"v{i} = {i % 10}\n" for i in range(n)) + "f = v1 * v2\n"


def hand_gates(n):
    return ("gate sq(t) = t * t\n  dt = 2 * t * dout\n"
            f"x = randn({n})\nf = sum(stack(sq(x[i]) for i in range({n})))\n")


SHAPES = {  # name: (source maker, sizes, symbolic)
    "chain": (chain, [500, 2000, 4000], False),
    "wide": (wide, [20_000, 100_000, 400_000], False),
    "net": (net, [8, 64, 256], False),
    "nested": (nested, [8, 10, 12], False),
    "terms": (terms, [300, 1000, 2000], False),
    "conv": (conv, [8, 16, 32], False),
    "leaves": (leaves, [1000, 5000, 19000], False),
    "hand_gates": (hand_gates, [100, 300, 1000], False),
    "chain+sympy": (chain, [100, 300, 1000], True),
    "net+sympy": (net, [2, 4, 8], True),
}


def measure(source: str, symbolic: bool) -> tuple:
    start = time.perf_counter()
    with Meter() as m:
        report = check(source, symbolic=symbolic)
    seconds = time.perf_counter() - start
    return seconds, m, report.work.total if report.work else 0, report.error


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"{'shape':12} {'size':>8} {'seconds':>8} {'metered':>15} {'predicted':>15} {'ns/unit':>8}  counts")
    runs = []
    for name, (make, sizes, symbolic) in SHAPES.items():
        if args.only and name != args.only:
            continue
        for size in sizes:
            size = max(1, int(size * args.scale))
            seconds, m, pred, error = measure(make(size), symbolic)
            rate = 1e9 * seconds / max(m.units, 1)
            counts = " ".join(f"{k}={v:,}" for k, v in sorted(m.counts.items()))
            flag = f"  REFUSED: {error.message[:70]}" if error else ""
            print(f"{name:12} {size:>8} {seconds:8.2f} {m.units:>15,} {pred:>15,} {rate:8.2f}  {counts}{flag}")
            if not error:
                runs.append((name, seconds, m.counts, m.units, pred))
    fit(runs)


def fit(runs):
    """Least squares of seconds on the counts (each run weighted by 1/seconds: relative error)."""
    kinds = list(PRICES)
    a = np.array([[r[2].get(k, 0) for k in kinds] for r in runs], dtype=float)
    t = np.array([r[1] for r in runs])
    w = 1.0 / np.maximum(t, 0.05)
    used = a.any(axis=0)
    coef = np.zeros(len(kinds))
    coef[used] = np.linalg.lstsq(a[:, used] * w[:, None], t * w, rcond=None)[0]
    print("fitted ns per count: " + ", ".join(f"{k}={1e9 * c:.2f}" for k, c in zip(kinds, coef)))
    element = coef[kinds.index("element")]
    if element > 0:
        print("prices relative to an element: " + ", ".join(f"{k}={c / element:,.0f}" for k, c in zip(kinds, coef)))
    rates = [1e9 * r[1] / max(r[3], 1) for r in runs if r[1] > 0.5]  # below: imports and start-up dominate
    slow = max(rates) if rates else 0.0
    print(f"ns per unit with today's prices (runs over 0.5 s): median {np.median(rates):.2f}, slowest {slow:.2f}; "
          f"60 s is {60e9 / max(slow, 1e-9):,.0f} units at the slowest")
    over = [r[0] for r in runs if r[3] > r[4]]
    print(f"runs whose metered work exceeded the prediction: {over or 'none'}")


if __name__ == "__main__":
    main()
