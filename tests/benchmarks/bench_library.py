"""The library in-process, side by side (run by hand): `gradcheck_cli.check(text)` with its defaults
(SymPy on) and with `symbolic=False`, against `torch.autograd.gradcheck` called in-process, on the
reference network of bench_tensor.py.

    python tests/benchmarks/bench_library.py [--repeat 5]

Each measurement runs in a fresh Python process that first imports gradcheck_cli, numpy and torch
(not timed), then times the call twice: the first call (what a script, a notebook cell or a test
pays once: SymPy's import and the parser's tables included) and a second one (a session's later
calls). No allocator or thread setting is made for gradcheck; torch is timed with its default
threads set to one (`torch.set_num_threads(1)`), as bench_default.py times it with OMP_NUM_THREADS=1:
on a loaded 2-core machine torch's default threads contend, and a call then takes minutes
(`--torch-default-threads` times that too). Each repetition runs every measurement once, one after the other, so a load that
comes and goes touches both sides of a ratio alike; the script prints medians and the median of the
per-repetition ratios, of wall time and of CPU time (the process's, every thread's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tensor import TORCH, WORKLOAD  # noqa: E402

CHILD = textwrap.dedent("""\
    import json, sys, time
    import numpy, gradcheck_cli
    try:
        import torch
    except ImportError:
        torch = None
    what = sys.argv[1]
    text = {workload!r}
    torch_source = {torch!r}
    def run():
        if what == "defaults":
            assert gradcheck_cli.check(text).passed
        elif what == "no-symbolic":
            assert gradcheck_cli.check(text, symbolic=False).passed
        else:
            if what == "torch-1":
                torch.set_num_threads(1)
            exec(torch_source, {{}})
    times, cpu = [], []
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(json.dumps(times + cpu))
""").format(workload=WORKLOAD, torch=TORCH)

NAMES = {
    "defaults": "check(text), defaults (SymPy on)",
    "no-symbolic": "check(text, symbolic=False)",
    "torch": "torch.autograd.gradcheck, default threads",
    "torch-1": "torch.autograd.gradcheck, torch.set_num_threads(1)",
}


AS_INSTALLED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as bench_default.py


def timed(what: str) -> list:
    done = subprocess.run([sys.executable, "-c", CHILD, what], capture_output=True, text=True, env=AS_INSTALLED)
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--torch-default-threads", action="store_true", help="also time torch with its default threads")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    try:
        import torch  # noqa: F401
        names = [n for n in NAMES if n != "torch" or args.torch_default_threads]
    except ImportError:
        print("torch: not installed — only gradcheck's side is timed")
        names = ["defaults", "no-symbolic"]
    first: dict = {n: [] for n in names}
    again: dict = {n: [] for n in names}
    first_cpu: dict = {n: [] for n in names}
    again_cpu: dict = {n: [] for n in names}
    for n in names:  # the warm-up: bytecode written, files in the page cache
        timed(n)
    for _ in range(args.repeat):
        for n in names:
            a, b, ca, cb = timed(n)
            first[n].append(a)
            again[n].append(b)
            first_cpu[n].append(ca)
            again_cpu[n].append(cb)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for label, times, cpu in (("first call", first, first_cpu), ("second call", again, again_cpu)):
        for n in names:
            print(f"{label}, {NAMES[n]}: {statistics.median(times[n]):.2f} s (median of {len(times[n])}; "
                  f"runs {', '.join(f'{t:.2f}' for t in times[n])}); CPU time {statistics.median(cpu[n]):.2f} s")
        for theirs in ("torch", "torch-1"):
            if theirs not in names:
                continue
            for ours, target in (("defaults", "≤ 1"), ("no-symbolic", "≤ 0.5")):
                ratios = [a / b for a, b in zip(times[ours], times[theirs])]
                cpu_ratios = [a / b for a, b in zip(cpu[ours], cpu[theirs])]
                print(f"ratio, {label}: {NAMES[ours]} / {NAMES[theirs]}: {statistics.median(ratios):.2f} "
                      f"(median of per-repetition ratios; target {target}); of CPU time {statistics.median(cpu_ratios):.2f}")


if __name__ == "__main__":
    main()
