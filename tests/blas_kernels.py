"""The OpenBLAS kernels this machine can run, for the tests that hold every figure shown to be the same
under each (`test_same_answer.py`, and the console blocks of `test_readme.py`).

OpenBLAS picks a kernel for the CPU it runs on (Haswell, SkylakeX, ...), and each sums a matrix product in
its own order, so raw floats differ in their last bits from one machine to another. `OPENBLAS_CORETYPE`,
set for a process only, makes it use another kernel this CPU can execute.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np


def _cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def _numpy_uses_openblas() -> bool:
    try:
        config = np.show_config(mode="dicts")
    except TypeError:  # numpy < 1.26 prints instead
        return False
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return "openblas" in str(blas.get("name", "")).lower()


def runnable() -> list:
    """The OpenBLAS kernels this CPU can run, oldest first."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not _numpy_uses_openblas():
        return []
    flags = _cpu_flags()
    found = ["Prescott"]
    if "avx" in flags:
        found.append("Sandybridge")
    if {"avx2", "fma"} <= flags:
        found.append("Haswell")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        found.append("SkylakeX")
    return found


def kernels() -> list:
    """Three kernels this CPU runs, where it runs three or more (what the docs promise): the oldest (SSE3,
    no fused multiply-add) and the two newest (the CPU's own among them, as OpenBLAS picks it for users
    here). Each sums a product in its own order; a fourth would cost one more run of every command."""
    found = runnable()
    return found if len(found) <= 3 else [found[0], *found[-2:]]


KERNELS = kernels()
ENOUGH = len(KERNELS) >= 3  # three kernels: the same-answer tests run; fewer, they skip with the reason
WHY_NOT = ("needs numpy on OpenBLAS and an x86-64 CPU that runs three of its kernels "
           f"(found: {', '.join(KERNELS) or 'none'})")


def threads() -> int:
    """How many kernels run at once: the cores this test has, with pytest-xdist's other workers
    (PYTEST_XDIST_WORKER_COUNT) each taking one; at least one."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, min(len(KERNELS), (os.cpu_count() or 1) // workers))


@functools.cache
def own() -> str | None:
    """The kernel OpenBLAS picks by itself on this CPU (no `OPENBLAS_CORETYPE`), as it names it when
    `OPENBLAS_VERBOSE=2` (`Core: SkylakeX`); None where it does not say."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OPENBLAS_VERBOSE"] = "2"
    done = subprocess.run([sys.executable, "-c", "import numpy"], env=env, capture_output=True, text=True, timeout=120)
    found = re.search(r"^Core: (\w+)", done.stdout + done.stderr, re.MULTILINE)
    return found.group(1) if found else None


def others() -> list:
    """The kernels of `KERNELS` other than the one OpenBLAS picks by itself (all of them where it picks
    another, or does not say which)."""
    return [k for k in KERNELS if k != own()]
