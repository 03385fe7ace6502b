"""Grading a class: each submission in a process of its own, with a time and a memory limit, several
at once (`-j`); a submission that does not parse, raises, loops or runs out of memory gets 0 for
what it broke, with the reason, and never stops the run. (A limit, not a sandbox: run code you do
not trust in a container.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .exercise import Exercise
from .grading import Graded, PartResult, zero

FILE_BYTES = 1 << 20  # a submission's process may write files of at most this many bytes


@dataclass(frozen=True)
class Limits:
    seconds: float = 60.0     # wall-clock time per submission
    memory_mb: int = 2_000    # address space per submission


def students(paths: list) -> list:
    """(student name, path) for each submission: its file's stem, or its folder's name when the file
    is named like the others (alice/affine.py, bob/affine.py); duplicates get their relative path."""
    stems = [Path(p).stem for p in paths]
    names = [Path(p).parent.name if stems.count(Path(p).stem) > 1 and Path(p).parent.name else Path(p).stem
             for p in paths]
    return [(n if names.count(n) == 1 else str(p), str(p)) for n, p in zip(names, paths)]


def grade_class(exercise: Exercise, submissions: list, secret: int, hidden: int, jobs: int = 1,
                limits: Limits = Limits(), on_done=None) -> list:
    """Graded for every submission, in their order. `on_done(graded)` is told as each finishes."""
    def one(item):
        student, path = item
        graded = _isolated(exercise, path, student, secret, hidden, limits)
        if on_done is not None:
            on_done(graded)
        return graded
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, os.cpu_count() or 1))) as pool:
        return list(pool.map(one, students(submissions)))


def _limit(limits: Limits):
    def apply():  # in the child, before it runs anything
        import resource
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = int(limits.seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _isolated(exercise: Exercise, path: str, student: str, secret: int, hidden: int, limits: Limits) -> Graded:
    request = json.dumps({"exercise": os.path.abspath(exercise.path), "submission": os.path.abspath(path),
                          "student": student, "secret": secret, "hidden": hidden})
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="gradcheck-grade-") as cwd:  # whatever it writes is thrown away
        # its standard error goes to a file under the same size limit (a flood is cut, not held in memory)
        with open(os.path.join(cwd, ".stderr"), "w+", encoding="utf-8", errors="replace") as err:
            try:
                done = subprocess.run([sys.executable, "-m", "gradcheck_cli.teaching.grade_worker"], input=request,
                                      stdout=subprocess.PIPE, stderr=err, text=True, timeout=limits.seconds,
                                      cwd=cwd, env=env, preexec_fn=_limit(limits))
            except subprocess.TimeoutExpired:
                return zero(exercise, student, path, f"ran out of time ({limits.seconds:g} s): an endless loop?")
            err.seek(max(0, os.path.getsize(err.name) - 4096))
            stderr = err.read()
    if done.returncode == 0:
        try:
            data = json.loads(done.stdout.strip().splitlines()[-1])
            return Graded(data["student"], data["source"], [PartResult(**p) for p in data["parts"]])
        except (ValueError, KeyError, TypeError, IndexError):
            pass
    tail = stderr.strip().splitlines()[-1:] or [""]
    if "MemoryError" in tail[0] or done.returncode in (-9, 137):
        why = f"ran out of memory ({limits.memory_mb:,} MB)"
    elif done.returncode in (-25, 153):  # SIGXFSZ: the file size limit
        why = f"wrote a file past {FILE_BYTES:,} bytes"
    elif done.returncode in (-24, 152):  # SIGXCPU: the CPU limit
        why = f"ran out of time ({limits.seconds:g} s of CPU): an endless loop?"
    else:
        why = f"its process ended with code {done.returncode}" + (f": {tail[0][:200]}" if tail[0] else "")
    return zero(exercise, student, path, why)
