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


def worker(count: int, seed: int) -> None:
    """Check `count` programs; print one JSON line: the slowest input, its time, and any crash."""
    sys.path.insert(0, str(HERE.parent))
    import random
    import signal

    from fuzzing import check_in_every_format, programs

    class Hang(Exception):
        pass

    def alarm(signum, frame):
        raise Hang(f"still running after {HANG} s")
    signal.signal(signal.SIGALRM, alarm)
    warnings.simplefilter("ignore")
    random.seed(seed)
    strategy = programs()
    worst, worst_text, crashes = 0.0, "", []
    for _ in range(count):
        text = strategy.example()
        start = time.perf_counter()
        signal.alarm(HANG)
        try:
            check_in_every_format(text)
        except Exception as err:  # noqa: BLE001 - the point is to find any (a Hang too)
            crashes.append((text, f"{type(err).__name__}: {err}"))
        finally:
            signal.alarm(0)
        spent = time.perf_counter() - start
        if spent > worst:
            worst, worst_text = spent, text
    print(json.dumps({"worst": worst, "worst_text": worst_text, "crashes": crashes}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--worker", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    total, worst, worst_text, crashes, rss = 0, 0.0, "", [], 0
    start = time.perf_counter()
    for seed in range(0, args.count, args.batch):
        n = min(args.batch, args.count - seed)
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), str(seed)], capture_output=True, text=True)
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        line = json.loads(out.stdout.strip().splitlines()[-1])
        total += n
        crashes += line["crashes"]
        if line["worst"] > worst:
            worst, worst_text = line["worst"], line["worst_text"]
    print(f"{total} fuzzed programs in {time.perf_counter() - start:.0f} s")
    print(f"exceptions other than GradcheckError: {len(crashes)}")
    for text, err in crashes[:10]:
        print(f"  {err}\n    {text!r}")
    print(f"slowest input: {worst:.2f} s\n    {worst_text!r}")
    print(f"largest worker RSS: {rss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
