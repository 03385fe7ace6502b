"""A fuzz campaign (run by hand): many generated programs, valid and broken, each checked and rendered
in every format. Prints how many ran, any exception other than GradcheckError, the slowest input and
the largest resident memory of a worker process.

    python tests/benchmarks/fuzz_campaign.py [--count 5000] [--batch 250]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
HANG = 120  # seconds: an input still running after this is reported as a hang (the campaign goes on)
BRIDGE = 0.2  # the share of inputs that are Python layers (the bridge) rather than .grad programs


def worker(count: int, seed: int, memory: bool = False) -> None:
    """Check `count` programs; print one JSON line: the slowest input, every input's time (or, with
    `memory`, every input's peak of traced allocations in bytes beyond what was held before it: numpy
    reports its arrays to tracemalloc), and any crash."""
    sys.path.insert(0, str(HERE.parent))
    import random
    import signal

    from fuzzing import check_in_every_format, check_layer_in_every_format, programs, python_layers

    class Hang(Exception):
        pass

    def alarm(signum, frame):
        raise Hang(f"still running after {HANG} s")
    signal.signal(signal.SIGALRM, alarm)
    warnings.simplefilter("ignore")
    random.seed(seed)
    strategy, layers = programs(), python_layers()
    worst, worst_text, crashes, spent_all, peaks = 0.0, "", [], [], []
    if memory:
        import tracemalloc
        tracemalloc.start()
    for _ in range(count):
        bridge = random.random() < BRIDGE  # a Python layer through check_function, else a .grad program
        layer = layers.example() if bridge else None
        text = f"python layer {layer[0]} ({layer[4] or 'right'}) at {layer[3].tolist()}" if bridge else strategy.example()
        if memory:
            tracemalloc.reset_peak()
            held = tracemalloc.get_traced_memory()[0]  # what earlier inputs and imports still hold
        start = time.perf_counter()
        signal.alarm(HANG)
        try:
            check_layer_in_every_format(layer) if bridge else check_in_every_format(text)
        except Exception as err:  # noqa: BLE001 - the point is to find any (a Hang too)
            crashes.append((text, f"{type(err).__name__}: {err}"))
        finally:
            signal.alarm(0)
        spent = time.perf_counter() - start
        spent_all.append(spent)
        if memory:
            peaks.append(tracemalloc.get_traced_memory()[1] - held)
        if spent > worst:
            worst, worst_text = spent, text
    print(json.dumps({"worst": worst, "worst_text": worst_text, "crashes": crashes, "times": spent_all,
                      "peaks": peaks}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--memory", action="store_true",
                        help="also trace each input's peak allocations (tracemalloc: times then run slower)")
    parser.add_argument("--worker", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker, memory=args.memory)
    total, worst, worst_text, crashes, rss, times, peaks = 0, 0.0, "", [], 0, [], []
    start = time.perf_counter()
    for seed in range(0, args.count, args.batch):
        n = min(args.batch, args.count - seed)
        command = [sys.executable, __file__, "--worker", str(n), str(seed)] + (["--memory"] if args.memory else [])
        out = subprocess.run(command, capture_output=True, text=True)
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        line = json.loads(out.stdout.strip().splitlines()[-1])
        total += n
        crashes += line["crashes"]
        times += line["times"]
        peaks += line["peaks"]
        if line["worst"] > worst:
            worst, worst_text = line["worst"], line["worst_text"]
    print(f"{total} fuzzed programs in {time.perf_counter() - start:.0f} s")
    print("time per input: " + _distribution(times, lambda t: f"{t * 1000:.0f} ms")
          + (" (with tracemalloc)" if args.memory else ""))
    if peaks:
        print("peak traced memory per input: " + _distribution(peaks, lambda b: f"{b / 2 ** 20:.1f} MB"))
    print(f"exceptions other than GradcheckError: {len(crashes)}")
    for text, err in crashes[:10]:
        print(f"  {err}\n    {text!r}")
    print(f"slowest input: {worst:.2f} s\n    {worst_text!r}")
    print(f"largest worker RSS: {rss / 1024:.0f} MB")


def _distribution(values: list, show) -> str:
    """median, 99th percentile and maximum of `values`, each shown by `show`."""
    ordered = sorted(values)
    if not ordered:
        return "none"
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"median {show(pick(0.5))}, 99th percentile {show(pick(0.99))}, maximum {show(ordered[-1])}"


if __name__ == "__main__":
    main()
