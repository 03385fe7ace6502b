"""The default path, side by side (run by hand): `gradcheck check` as users run it (SymPy on) against
torch.autograd.gradcheck on the reference network, and 1,000-gate graphs, whole processes.

    python tests/benchmarks/bench_default.py [--repeat 5] [--reference-only] [--torch-default-threads]

Every command runs once untimed first (its bytecode written, as an installation has it). Each repetition runs every command once, one after the other, so a load that comes and goes touches
both sides of a ratio alike; the script prints each command's median and the median of the
per-repetition ratios, of wall time and of CPU time (user + system: what a load shares out between
the two sides least unevenly). Torch runs with OMP_NUM_THREADS=1 (with its default threads too on request: on a
loaded 2-core machine they contend, and a run takes minutes). The workloads: the reference network of bench_tensor.py (9,600 parameters),
bench_core.py's random formula of 1,000 gates (a tree), and a comprehension of 1,000 terms over one
vector (`sum(stack(sin(x[i]) * x[i] for i in range(1000)))`).
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import expression_file  # noqa: E402
from bench_tensor import TORCH, WORKLOAD  # noqa: E402

COMPREHENSION = "x = randn(1000)\nf = sum(stack(sin(x[i]) * x[i] for i in range(1000)))\n"


# as a user's installation runs: with its bytecode cached (a run with PYTHONDONTWRITEBYTECODE set would
# compile gradcheck's modules afresh each time, and not torch's, which pip compiled); a warm-up run writes it
AS_INSTALLED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ONE_THREAD = {**AS_INSTALLED, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def timed(cmd: list) -> tuple[float, int, float]:
    """Wall seconds, exit code, and CPU seconds (user + system) of one run of `cmd`."""
    env = AS_INSTALLED
    if cmd and cmd[0] == "env1":  # torch on one thread: on a loaded 2-core machine its default threads contend
        cmd, env = cmd[1:], ONE_THREAD
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, code, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="leave torch's side out")
    ap.add_argument("--reference-only", action="store_true", help="only the reference network's commands")
    ap.add_argument("--torch-default-threads", action="store_true",
                    help="also time torch with its default threads (on a loaded machine: minutes a run)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, text in (("reference.grad", WORKLOAD), ("tree1000.grad", expression_file(1000)),
                           ("comprehension1000.grad", COMPREHENSION)):
            files[name] = os.path.join(tmp, name)
            Path(files[name]).write_text(text, encoding="utf-8")
        commands = {
            "reference network, gradcheck check (default: SymPy on)": [py, "-m", "gradcheck_cli", "check", files["reference.grad"]],
            "reference network, --no-symbolic": [py, "-m", "gradcheck_cli", "check", files["reference.grad"], "--no-symbolic"],
            "reference network, torch.autograd.gradcheck": [py, "-c", TORCH],
            "reference network, torch.autograd.gradcheck, OMP_NUM_THREADS=1": ["env1", py, "-c", TORCH],
            "1,000-gate random formula (a tree), default": [py, "-m", "gradcheck_cli", "check", files["tree1000.grad"]],
            "1,000-term comprehension over a vector, default": [py, "-m", "gradcheck_cli", "check", files["comprehension1000.grad"]],
        }
        if args.no_torch:
            commands = {k: v for k, v in commands.items() if "torch" not in k}
        if not args.torch_default_threads:
            del commands["reference network, torch.autograd.gradcheck"]
        if args.reference_only:
            commands = {k: v for k, v in commands.items() if k.startswith("reference network")}
        times: dict = {k: [] for k in commands}
        cpu: dict = {k: [] for k in commands}
        codes: dict = {}
        for cmd in commands.values():  # the warm-up: bytecode written, files in the page cache
            timed(cmd)
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                t, codes[name], c = timed(cmd)
                times[name].append(t)
                cpu[name].append(c)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for name, ts in times.items():
        print(f"{name}: {statistics.median(ts):.2f} s (median of {len(ts)}; exit {codes[name]}; "
              f"runs {', '.join(f'{t:.2f}' for t in ts)}); CPU time {statistics.median(cpu[name]):.2f} s")
    for torch_name in ("reference network, torch.autograd.gradcheck",
                       "reference network, torch.autograd.gradcheck, OMP_NUM_THREADS=1"):
        if torch_name not in times:
            continue
        for name in ("reference network, gradcheck check (default: SymPy on)", "reference network, --no-symbolic"):
            ratios = [a / b for a, b in zip(times[name], times[torch_name])]
            cpu_ratios = [a / b for a, b in zip(cpu[name], cpu[torch_name])]
            print(f"ratio {name.split(', ', 1)[1]} / {torch_name.split(', ', 1)[1]}: {statistics.median(ratios):.2f} "
                  f"(median of per-repetition ratios; target ≤ 0.5 for the default); "
                  f"of CPU time {statistics.median(cpu_ratios):.2f}")


if __name__ == "__main__":
    main()
