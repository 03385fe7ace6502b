"""What sealing costs a class (run by hand): `gradcheck grade` on a class of Python submissions (the
three of examples/grading/submissions, copied N times), as whole processes, one submission at a time
(-j 1) and two at once (-j 2): in bubblewrap's sandbox (the default where it works), sealed without
the sandbox (GRADCHECK_SANDBOX=off), and, with --baseline DIR, an older checkout of gradcheck (its
package folder's parent) measured side by side in the same run. Best of --repeat runs; seconds per
submission.

    python tests/benchmarks/bench_grading.py [--copies 8] [--repeat 3] [--baseline /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXERCISE = ROOT / "examples" / "grading" / "affine.py"
SUBMISSIONS = sorted((ROOT / "examples" / "grading" / "submissions").glob("*.py"))


def run(files: list, jobs: int, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "grade", str(EXERCISE), *files, "--secret", "7",
                           "-j", str(jobs), "--format", "csv"], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or done.stdout.count("\n") != len(files) + 1:
        raise SystemExit(f"the grade run failed: {done.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="an older checkout to measure beside this one (PYTHONPATH)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    files = []
    for k in range(args.copies):
        for path in SUBMISSIONS:
            target = folder / f"{path.stem}{k}.py"
            shutil.copy(path, target)
            files.append(str(target))
    base = {k: v for k, v in os.environ.items() if k not in ("GRADCHECK_SANDBOX", "PYTHONPATH")}
    setups = {"sandboxed": {**base, "GRADCHECK_SANDBOX": "auto"}, "sealed, no sandbox": {**base, "GRADCHECK_SANDBOX": "off"}}
    if args.baseline:
        setups["baseline"] = {**base, "PYTHONPATH": args.baseline}
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(files)} submissions, best of {args.repeat}")
    results: dict = {}
    for jobs in (1, 2):
        for _ in range(args.repeat):  # interleaved: each setup sees the same machine
            for name, env in setups.items():
                seconds = run(files, jobs, env) / len(files)
                results[(name, jobs)] = min(results.get((name, jobs), float("inf")), seconds)
    for jobs in (1, 2):
        line = ", ".join(f"{name} {results[(name, jobs)]:.3f} s" for name in setups)
        ratio = (f"; sandboxed / baseline {results[('sandboxed', jobs)] / results[('baseline', jobs)]:.2f}"
                 if args.baseline else "")
        print(f"-j {jobs}: per submission: {line}{ratio}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
