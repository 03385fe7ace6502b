"""Speed of the full three-way check with SymPy on ordinary networks (issue 10). Run by hand:

    python tests/benchmarks/bench_verdicts.py [--repeat 5] [--hog]

Each workload is timed twice: as a whole `gradcheck check` process (what a user waits for,
including importing Python, numpy, lark, rich and SymPy), and in-process (the check itself,
imports already done). With --hog, the whole processes are timed again while a busy loop
(`while True: pass` in another process) keeps one core busy. The 83-parameter net and the RNN step
are also timed at second order (`check --order 2`), both ways. Also prints each example's symbolic
coverage.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NET = """# a 2-layer tanh net, softmax cross-entropy and L2: 83 parameters, X 8×4
const X = randn(8, 4)
const Y = [[1,0,0],[0,1,0],[0,0,1],[1,0,0],[0,1,0],[0,0,1],[1,0,0],[0,1,0]]
W1 = 0.5 * randn(4, 10)
b1 = 0.1 * randn(10)
W2 = 0.5 * randn(10, 3)
b2 = 0.1 * randn(3)
H = tanh(X @ W1 + b1)
S = H @ W2 + b2
loss = mean(logsumexp(S, axis=1) - sum(S * Y, axis=1))
L = loss + 0.01 * (sum(W1 * W1) + sum(W2 * W2))
"""

RNN = """# a vanilla RNN step with its hand-derived backward, and L2 on Wh
gate rnn(x, h, Wx, Wh, b) = tanh(x @ Wx + h @ Wh + b)
  dz = dout * (1 - out * out)
  dx = dz @ Wx.T
  dh = dz @ Wh.T
  dWx = x.T @ dz
  dWh = h.T @ dz
  db = sum(dz, axis=0)
gate l2(W) = 0.5 * sum(W * W)
  dW = dout * W
const x = randn(3, 4)
h0 = randn(3, 5)
Wx = 0.3 * randn(4, 5)
Wh = 0.3 * randn(5, 5)
b = 0.1 * randn(5)
h1 = rnn(x, h0, Wx, Wh, b)
L = sum(h1 * h1) + 0.01 * l2(Wh)
"""

SOFTMAX2 = "X = randn(32)\nf = sum(softmax(softmax(X)))\n"


def expects30() -> str:
    lines = ["x = 0.7", "y = -1.3", "z = 0.4", "q = x * y + sin(z)", "f = q * exp(x) + z * z"]
    forms = ["expect dq = exp(x)", "expect dz = exp(x) * cos(z) + 2 * z", "expect dx = y * exp(x) + q * exp(x)"]
    return "\n".join(lines + [forms[i % 3] for i in range(30)]) + "\n"


WORKLOADS = [("83-parameter net", NET, 2.0), ("RNN step", RNN, 1.0), ("sum(softmax(softmax(X))), 32", SOFTMAX2, 2.0),
             ("30 expect lines", expects30(), 5.0)]


def whole_process(path: Path, repeat: int, extra: tuple = ()) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", str(path), *extra], capture_output=True)
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    return statistics.median(times)


def in_process(text: str, repeat: int, **options) -> float:
    from gradcheck_cli import check
    check(text, **options)  # warm: imports and SymPy's caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        report = check(text, **options)
        times.append(time.perf_counter() - start)
        assert report.passed
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hog", action="store_true", help="also time the whole processes with one core kept busy")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}")
    imports = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sympy, numpy, lark, rich.table, click"], check=True)
        imports.append(time.perf_counter() - start)
    print(f"importing sympy, numpy, lark, rich, click: {statistics.median(imports):.2f} s (whole process, median)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, target in WORKLOADS:
            path = Path(tmp) / "w.grad"
            path.write_text(text)
            whole = whole_process(path, args.repeat)
            inner = in_process(text, args.repeat)
            print(f"{name:32s} whole process {whole:5.2f} s   in-process {inner:5.2f} s   (target ≤ {target:g} s)")
        for name, text, _ in WORKLOADS[:2]:
            path = Path(tmp) / "w.grad"
            path.write_text(text)
            whole = whole_process(path, args.repeat, ("--order", "2"))
            inner = in_process(text, args.repeat, order=2)
            print(f"{name:32s} --order 2: whole process {whole:5.2f} s   in-process {inner:5.3f} s")
        if args.hog:
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.5)
                for name, text, _ in WORKLOADS:
                    path = Path(tmp) / "w.grad"
                    path.write_text(text)
                    print(f"{name:32s} whole process, one core busy: {whole_process(path, args.repeat):5.2f} s")
            finally:
                hog.kill()
                hog.wait()
    from gradcheck_cli import check_file
    for path in sorted((ROOT / "expressions").glob("*.grad")):
        report = check_file(path)
        print(f"  symbolic coverage {report.symbolic_coverage:6.1%}  {path.name}")


if __name__ == "__main__":
    main()
