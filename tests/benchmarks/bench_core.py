"""Core speed benchmark (run by hand, not by CI): start-up, and the per-node check vs. gate count.

    python tests/benchmarks/bench_core.py [--sizes 250,500,1000,2000] [--repeat 5]

Every figure is a whole `gradcheck` process, as a user runs it, timed with time.perf_counter. The
scaling table puts side by side, per size n, the random formula of n gates (a tree) and the
comprehension of n terms over one vector (`sum(stack(sin(x[i]) * x[i] for i in range(n)))`), each
command once per repetition in turn (a load that comes and goes touches every size alike), with the
ratio to the previous size: about 2 for each doubling where the cost is linear.
Every command runs once untimed first (its bytecode written, as an installation has it, and SymPy's
partials of the elementwise gates kept in a cache folder of the benchmark's own: the runs timed are
warm). Then the 1,000-gate formula (the largest size up to 1,000) is timed cold (an empty partials
cache: SymPy imported, the partials made and written), warm, and with the cache off
(GRADCHECK_NO_CACHE=1). Last, the smallest formula's full check is timed again with the interpreter
torn down normally (the CLI run by a `python -c` that lets it exit the ordinary way) instead of the
console script's `os._exit`: the difference is what tearing down costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

UNARY = ["sin({})", "cos({})", "tanh({})", "sigmoid({})", "exp(-{})", "0.5 * {}", "{} + 0.25"]
BINARY = ["{} + {}", "{} - {}", "{} * {}", "max({}, {})", "0.5 * ({} + {})"]


def expression_file(n_gates: int, seed: int = 0, leaves: int = 10) -> str:
    """A random formula of `n_gates` gates over `leaves` leaves, one statement per gate.

    The formula is a random expression tree (sizes split uniformly at every binary gate), so its
    depth grows like log n and every leaf reaches the output along many paths: a big formula,
    not a chain.
    """
    rng = random.Random(seed)
    lines = [f"x{i} = {rng.uniform(0.5, 1.5):.6f}" for i in range(leaves)]
    counter = [0]
    stack = [(n_gates, None)]  # (gates in this subtree, parent slot) built without recursion
    built: dict = {}
    order = []
    while stack:
        size, slot = stack.pop()
        order.append((size, slot))
        if size >= 2 and rng.random() < 0.7:
            left = rng.randrange(0, size - 1)
            stack.append((left, (len(order) - 1, 0)))
            stack.append((size - 1 - left, (len(order) - 1, 1)))
        elif size >= 1:
            stack.append((size - 1, (len(order) - 1, 0)))
    children: dict = {}
    for index, (_size, slot) in enumerate(order):
        if slot is not None:
            children.setdefault(slot[0], {})[slot[1]] = index
    for index in reversed(range(len(order))):
        kids = children.get(index, {})
        if not kids:
            built[index] = f"x{rng.randrange(leaves)}"
            continue
        name = f"n{counter[0]}"
        counter[0] += 1
        if len(kids) == 2:
            expr = rng.choice(BINARY).format(built[kids[0]], built[kids[1]])
        else:
            expr = rng.choice(UNARY).format(built[kids[0]])
        lines.append(f"{name} = {expr}")
        built[index] = name
    return "\n".join(lines) + "\n"


NORMAL_EXIT = """\
import gc, sys
gc.set_threshold(20_000, 20, 20)  # as the console script sets it
from gradcheck_cli.cli import main
sys.argv[0] = "gradcheck"
main()  # click exits with SystemExit: the interpreter then tears down as usual
"""


def comprehension_file(n_terms: int) -> str:
    """A comprehension of `n_terms` terms, each indexing one vector twice."""
    return f"x = randn({n_terms})\nf = sum(stack(sin(x[i]) * x[i] for i in range({n_terms})))\n"


def count_gates(path: str) -> int:
    from gradcheck_cli import load
    with open(path, encoding="utf-8") as f:
        graph = load(f.read())
    return sum(1 for n in graph.nodes if n.kind == "gate")


def timed(cmd: list, repeat: int, env: dict | None = None) -> tuple[float, int]:
    times = []
    code = None
    for _ in range(repeat):
        t = time.perf_counter()
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode
        times.append(time.perf_counter() - t)
    return statistics.median(times), code


def timed_cpu(cmd: list, env: dict | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, _ = timed(cmd, 1, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def partials_cache(exe: list, path: str, repeat: int) -> None:
    """The formula at `path` cold (an empty partials cache each time), warm, and with the cache off."""
    runs: dict = {"cold": [], "warm": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            cold = {**os.environ, "GRADCHECK_CACHE_DIR": os.path.join(tmp, f"cold{r}")}
            runs["cold"].append(timed_cpu(exe + ["check", path], cold))
            runs["warm"].append(timed_cpu(exe + ["check", path], cold))
            runs["off"].append(timed_cpu(exe + ["check", path], {**os.environ, "GRADCHECK_NO_CACHE": "1"}))
    shown = ", ".join(f"{k} {statistics.median(w for w, _ in v):.2f} s ({statistics.median(c for _, c in v):.2f} s CPU)"
                      for k, v in runs.items())
    print(f"SymPy's partials cache, {count_gates(path):,}-gate formula: {shown}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="250,500,1000,2000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    exe = [sys.executable, "-m", "gradcheck_cli"]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installation runs: bytecode cached
    own_cache = tempfile.TemporaryDirectory()
    os.environ["GRADCHECK_CACHE_DIR"] = own_cache.name
    os.environ.pop("GRADCHECK_NO_CACHE", None)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")

    click_t, _ = timed([sys.executable, "-c", "import click"], 15)
    help_t, _ = timed(exe + ["--help"], 15)
    version_t, _ = timed(exe + ["--version"], 15)
    print(f"start-up: python -c 'import click' {click_t*1000:.0f} ms · gradcheck --help {help_t*1000:.0f} ms "
          f"({help_t/click_t:.2f}×) · --version {version_t*1000:.0f} ms ({version_t/click_t:.2f}×)")

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        commands, gates = {}, {}
        for size in sizes:
            tree = os.path.join(tmp, f"tree_{size}.grad")
            comp = os.path.join(tmp, f"comprehension_{size}.grad")
            with open(tree, "w", encoding="utf-8") as f:
                f.write(expression_file(size))
            with open(comp, "w", encoding="utf-8") as f:
                f.write(comprehension_file(size))
            gates[size] = (count_gates(tree), count_gates(comp))
            commands[size, "tree"] = exe + ["check", tree]
            commands[size, "tree fast"] = exe + ["check", tree, "--no-symbolic"]
            commands[size, "comprehension"] = exe + ["check", comp]
        times: dict = {k: [] for k in commands}
        cpu: dict = {k: [] for k in commands}
        codes: dict = {}
        for cmd in commands.values():
            timed(cmd, 1)  # bytecode written, SymPy's partials kept: the runs timed are warm
        load = os.getloadavg()[0]
        for _ in range(args.repeat):
            for key, cmd in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t, codes[key] = timed(cmd, 1)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                times[key].append(t)
                cpu[key].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; medians of {args.repeat}, "
              "whole processes: wall-clock seconds (the CPU seconds the process used)")
        print(f"{'n':>6} | {'tree gates':>10} {'full (s)':>15} {'×':>5} {'--no-symbolic':>15} {'×':>5} | "
              f"{'comprehension gates':>19} {'full (s)':>15} {'×':>5} | exit")
        med = {k: statistics.median(v) for k, v in times.items()}
        mcpu = {k: statistics.median(v) for k, v in cpu.items()}
        prev = None
        for size in sizes:
            row = [med[size, k] for k in ("tree", "tree fast", "comprehension")]
            shown = [f"{med[size, k]:.2f} ({mcpu[size, k]:.2f})" for k in ("tree", "tree fast", "comprehension")]
            ratio = [f"{a / b:5.2f}" if prev else "    -" for a, b in zip(row, prev or row)]
            print(f"{size:>6} | {gates[size][0]:>10} {shown[0]:>15} {ratio[0]} {shown[1]:>15} {ratio[1]} | "
                  f"{gates[size][1]:>19} {shown[2]:>15} {ratio[2]} | "
                  + "/".join(str(codes[size, k]) for k in ("tree", "tree fast", "comprehension")))
            prev = row
        largest = max([n for n in sizes if n <= 1000] or sizes[:1])
        partials_cache(exe, os.path.join(tmp, f"tree_{largest}.grad"), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "teardown.grad")
        with open(path, "w", encoding="utf-8") as f:
            f.write(expression_file(int(args.sizes.split(",")[0])))
        quick, _ = timed(exe + ["check", path], args.repeat + 2)
        slow, code = timed([sys.executable, "-c", NORMAL_EXIT, "check", path], args.repeat + 2)
        print(f"teardown: full check of the smallest formula {quick:.2f} s with os._exit, {slow:.2f} s with a normal "
              f"exit (exit {code}): tearing down costs {slow - quick:.2f} s")


if __name__ == "__main__":
    main()
