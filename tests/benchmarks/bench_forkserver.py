"""check-py called again and again from one process (a notebook, the pytest plugin, a script with click's
CliRunner): the first call and the later ones, with the fork server and without it (run by hand).

    python tests/benchmarks/bench_forkserver.py [--calls 8]

For a numpy layer, a torch Function and a JAX rule (those installed): the wall time of the first call
and the median of the later ones, and the CPU time of all the calls (this process, and the processes
that ran the user's code: a fresh Python's, or the fork server's with the children it reaped). Each
mode runs in a Python of its own, so that neither finds the other's server or imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {
    "numpy layer": (None, ["examples/python/layers.py::affine", "--shape", "x=10,20,3", "--shape", "w=60,5",
                           "--shape", "b=5"]),
    "torch Function": ("torch", ["examples/torch/functions.py::LayerNorm", "--shape", "x=4,6"]),
    "JAX rule": ("jax", ["examples/jax/rules.py::softplus", "--shape", "x=5"]),
}

ONE_MODE = r"""
import json, os, resource, statistics, sys, time
from click.testing import CliRunner
from gradcheck_cli.cli import main
from gradcheck_cli.python import forkserver
args, calls = json.loads(sys.argv[1]), int(sys.argv[2])
walls = []
for _ in range(calls):
    t = time.perf_counter()
    result = CliRunner().invoke(main, ["check-py", *args, "--format", "json"])
    walls.append(time.perf_counter() - t)
    assert result.exit_code == 0, result.output[-800:]
ticks = os.sysconf("SC_CLK_TCK")
servers = 0.0
for s in forkserver._SERVERS.values():  # the server's own time and its reaped children's
    fields = open(f"/proc/{s.process.pid}/stat").read().rsplit(")", 1)[1].split()
    servers += sum(int(v) for v in fields[11:15]) / ticks
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"first": walls[0], "later": statistics.median(walls[1:]), "servers": forkserver.STARTS[0],
                  "cpu": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + servers}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=8)
    calls = parser.parse_args().calls
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}; {calls} calls each, in-process (CliRunner)")
    print(f"{'target':<16} {'server':<7} {'first call':>11} {'later (median)':>15} {'CPU, all calls':>15}  servers")
    for name, (needs, args) in TARGETS.items():
        if needs and subprocess.run([sys.executable, "-c", f"import {needs}"], capture_output=True).returncode:
            print(f"{name:<16} ({needs} not installed)")
            continue
        for mode in ("1", "0"):
            env = {**os.environ, "GRADCHECK_FORKSERVER": mode, "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, "-c", ONE_MODE, json.dumps(args), str(calls)], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            if done.returncode:
                print(f"{name:<16} failed: {done.stderr[-400:]}")
                continue
            r = json.loads(done.stdout.splitlines()[-1])
            print(f"{name:<16} {'on' if mode == '1' else 'off':<7} {r['first']:>10.2f}s {r['later']:>14.2f}s "
                  f"{r['cpu']:>14.1f}s  {r['servers']}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
