"""The complex step's cost (run by hand; issue 25, part 5): the numeric column of the reference
network (tests/benchmarks/bench_tensor.py) and of the conv layer (bench_conv.py), with the complex
step (the default) and without (--no-complex-step), in-process, SymPy off (and glibc's allocator
set as the CLI sets it). The numeric column is the time inside the finite-difference engine and the
complex step (both wrapped with timers here); the whole check is timed too, and as whole processes. Best of --repeat runs.

    python tests/benchmarks/bench_complex_step.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_conv import LAYER  # noqa: E402
from bench_tensor import WORKLOAD  # noqa: E402

from gradcheck_cli import check  # noqa: E402
from gradcheck_cli.oracles import numeric  # noqa: E402
from gradcheck_cli.checking import checker
from gradcheck_cli.oracles import complexstep

SPENT = [0.0]


def timed(fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[0] += time.perf_counter() - start
    return wrapper


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    checker.numeric.differentiate = timed(numeric.differentiate)  # the node rows' numeric column only
    checker.complexstep.exact_columns = timed(complexstep.exact_columns)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; best of {args.repeat}")
    for name, text in (("reference network (9,600 parameters)", WORKLOAD), ("conv layer (496 inputs)", LAYER)):
        figures = {}
        for mode, options in (("complex step", {}), ("differences", {"complex_step": False})):
            columns, totals, methods = [], [], None
            for _ in range(args.repeat):
                SPENT[0] = 0.0
                start = time.perf_counter()
                report = check(text, symbolic=False, **options)
                totals.append(time.perf_counter() - start)
                columns.append(SPENT[0])
                assert report.passed, [(r.name, r.status, r.note) for r in report.nodes if r.status != "pass"]
                methods = sorted({f"{r.name}: {r.numeric_method}" for r in report.nodes if r.numeric_method})
            figures[mode] = min(columns), min(totals)
            print(f"{name}, {mode:12}: numeric column {figures[mode][0]:.3f} s, whole check {figures[mode][1]:.3f} s")
            print("    " + "; ".join(methods))
        print(f"    ratio (complex step / differences): numeric column {figures['complex step'][0] / figures['differences'][0]:.2f}, "
              f"whole check {figures['complex step'][1] / figures['differences'][1]:.2f} (target ≤ 1.5)")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.grad"
            path.write_text(text, encoding="utf-8")
            cmd = [sys.executable, "-m", "gradcheck_cli", "check", str(path), "--no-symbolic"]
            on = min(_process(cmd) for _ in range(args.repeat))
            off = min(_process(cmd + ["--no-complex-step"]) for _ in range(args.repeat))
            print(f"    whole processes: {on:.2f} s with the complex step, {off:.2f} s without (ratio {on / off:.2f})")


def _process(cmd: list) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
