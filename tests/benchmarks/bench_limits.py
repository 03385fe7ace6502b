"""Each documented limit at its edge (run by hand, not by CI): an input just inside it, timed to the
end of its check, and one just past it, timed to its refusal. The defaults are set so that inside
takes ≤ 60 s and past is refused in ≤ 2 s (issue 22), on this project's 2-core machine.

    python tests/benchmarks/bench_limits.py [--only NAME]

Every figure is a whole `gradcheck check --no-symbolic` process (SymPy's budget skips, never refuses),
timed with time.perf_counter; the limits themselves count work, never seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time


def chain(depth: int) -> str:
    return "x = 0.5\nf = " + "sin(" * depth + "x" + ")" * depth + "\n"


def nested(k: int) -> str:
    src = "gate g0(t) = t * 1.01\n" + "".join(f"gate g{i}(t) = g{i - 1}(g{i - 1}(t))\n" for i in range(1, k + 1))
    return src + f"x = 0.5\nf = g{k}(x)\n"


def statements(n: int) -> str:
    return "".join(f"v{i} = {i % 10}\n" for i in range(n - 1)) + "f = v1 * v2\n"


CASES = {  # limit: (inside, past)
    "MAX_WORK (a chain)": (chain(10_600), chain(10_700)),
    "MAX_WORK (nested gates)": (nested(14), nested(15)),
    "MAX_GATE_WORK": (nested(15), nested(16)),
    "MAX_UNROLL": ("x = randn(10000)\nf = sum(stack(x[i] for i in range(10000)))\n",
                   "x = randn(10001)\nf = sum(stack(x[i] for i in range(10001)))\n"),
    "MAX_ELEMENTS": ("x = randn(2000000)\nf = sum(x)\n", "x = randn(2000001)\nf = sum(x)\n"),
    "MAX_TOTAL_ELEMENTS": ("x = randn(1999998)\nf = sum(x * x)\n", "x = randn(2000000)\nf = sum(x * x)\n"),
    "MAX_JACOBIAN": ("x = randn(1400)\nf = x * 2\n", "x = randn(1500)\nf = x * 2\n"),
    "MAX_STATEMENTS": (statements(20_000), statements(20_001)),
}


def run(source: str) -> tuple:
    with tempfile.NamedTemporaryFile("w", suffix=".grad", delete=False) as f:
        f.write(source)
    try:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", f.name, "--no-symbolic", "-q"],
                              capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
        return time.perf_counter() - start, done.returncode, (done.stdout + done.stderr).strip().splitlines()
    finally:
        os.unlink(f.name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'limit':24} {'inside: s (exit)':>18} {'past: s (exit)':>16}  what refused it")
    for name, (inside, past) in CASES.items():
        if args.only and name != args.only:
            continue
        t_in, rc_in, lines_in = run(inside)
        t_out, rc_out, lines = run(past)
        why = next((line for line in lines if "error:" in line), lines[0] if lines else "")
        print(f"{name:24} {t_in:14.2f} ({rc_in}) {t_out:12.2f} ({rc_out})  {why[why.find('error:'):][:90]}")
        if rc_in == 2:
            other = next((line for line in lines_in if "error:" in line), "")
            print(f"{'':24} inside refused by: {other[other.find('error:'):][:100]}")


if __name__ == "__main__":
    main()
