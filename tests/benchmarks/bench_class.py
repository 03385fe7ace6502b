"""A class of CS231n's assignment 2 graded as a teacher runs it (run by hand): N submissions of
examples/grading/cs231n_a2.py (15 parts in 8 pairs) — the reference and one-slip edits of it, in
turn — graded by `gradcheck grade -j 2` as one whole process, with the defaults (3 hidden points,
the sandbox where it works). Prints the seconds for the class, per submission, and the projection
for 500 submissions; checks that every submission was graded (one CSV row each).

    python tests/benchmarks/bench_class.py [--students 500] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXERCISE = ROOT / "examples" / "grading" / "cs231n_a2.py"

# one-slip edits (old text -> new text) a class makes; each must be in the reference once
SLIPS = [
    None,  # the reference, right
    ("dw = x.reshape(x.shape[0], -1).T.dot(dout)", "dw = dout.T.dot(x.reshape(x.shape[0], -1))"),
    ("dgamma = (dout * xhat).sum(axis=0)", "dgamma = dout * xhat"),
    ("dx = dout.dot(w.T).reshape(x.shape)", "dx = dout.dot(w.T)"),
    (None, None),  # a missing function (svm_loss)
]


def submission(k: int, reference: str) -> str:
    slip = SLIPS[k % len(SLIPS)]
    if slip is None:
        return reference
    old, new = slip
    if old is None:
        start = reference.index("\ndef svm_loss(")
        end = reference.find("\ndef ", start + 1)
        return reference[:start] + (reference[end:] if end > 0 else "\n")
    assert reference.count(old) == 1, old
    return reference.replace(old, new)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    reference = EXERCISE.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for k in range(args.students):
            path = Path(folder) / f"student{k:04d}.py"
            path.write_text(submission(k, reference), encoding="utf-8")
            files.append(str(path))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "grade", str(EXERCISE), *files, "--secret", "7",
                               "-j", str(args.jobs), "--format", "csv"], capture_output=True, text=True,
                              env={**os.environ, "CI": "1"})
        elapsed = time.perf_counter() - started
    rows = done.stdout.count("\n") - 1
    if done.returncode != 0 or rows != args.students:
        raise SystemExit(f"the grade run failed ({rows} rows): {done.stderr[-800:]}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.students} submissions of {EXERCISE.name}, -j {args.jobs}: {elapsed:.1f} s "
          f"({elapsed / args.students:.2f} s each; 500 would take {elapsed / args.students * 500 / 60:.1f} min)")


if __name__ == "__main__":
    main()
