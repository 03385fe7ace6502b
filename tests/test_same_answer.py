"""One answer on any machine: every figure a face shows is the same under any BLAS kernel.

OpenBLAS picks a kernel for the CPU it runs on (Haswell, SkylakeX, ...), and each sums a matrix
product in its own order, so raw floats differ in their last bits from one machine to another.
Nothing shown may depend on those bits: statuses, notes, culprits, worst-element indices and every
rounded figure. Here the examples' JSON, their table at 140 columns and every console block of the
README and the docs run under at least three kernels this CPU can execute (OPENBLAS_CORETYPE, set for
those processes only) and must come out identical: JSON floats agreeing to 6 significant digits,
error figures at their rounding level (`*_error_at_rounding`) aside, others to the one digit every
face shows at least.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from test_readme import CASES, missing_extra, normalise, pattern, run


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


def kernels() -> list:
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


KERNELS = kernels()
pytestmark = pytest.mark.skipif(
    len(KERNELS) < 3, reason="needs numpy on OpenBLAS and an x86-64 CPU that runs three of its kernels "
                             f"(found: {', '.join(KERNELS) or 'none'})")


def _threads() -> int:
    """How many kernels run at once: the cores this test has, with pytest-xdist's other workers
    (PYTEST_XDIST_WORKER_COUNT) each taking one; at least one."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, min(len(KERNELS), (os.cpu_count() or 1) // workers))


def _under_each_kernel(command: str) -> dict:
    """The normalised output of a console command under each kernel (as many at a time as `_threads`)."""
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        outputs = pool.map(lambda k: normalise(run(f"export OPENBLAS_CORETYPE={k}\n{command}")), KERNELS)
    return dict(zip(KERNELS, outputs))


def _cli(args: list, kernel: str, columns: int = 80) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADCHECK_", "GITHUB_"))}
    env.update(OPENBLAS_CORETYPE=kernel, COLUMNS=str(columns), NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600).stdout


def _shown(value, key: str = "", row: dict | None = None):
    """A JSON value as far as it is defined on every machine (see the module's docstring): error
    figures as faces show them, other floats kept for `_same`."""
    if isinstance(value, dict):
        return {k: _shown(v, k, value) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v, key, row) for v in value]
    if isinstance(value, float) and key in ("numeric_error", "symbolic_error") and row is not None:
        return "rounding" if row.get(f"{key}_at_rounding") else f"{value:.0e}"
    return value


def _flat(value) -> list:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def _same(a, b, where: str = "", floor: float = 1e-12) -> str | None:
    """Where two shown JSON values differ (None: nowhere): floats must agree to 6 significant digits,
    everything else exactly. A finite difference resolves its column to its own rounding, about 1e-9
    of the function's scale, so a `numeric` tensor's elements are compared at its largest element's."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            scale = max((abs(x) for x in _flat(a[k]) if isinstance(x, float)), default=0.0) \
                if k == "numeric" and isinstance(a[k], list) else 0.0
            if (d := _same(a[k], b[k], f"{where}.{k}", max(floor, 1e-6 * scale))):
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _same(x, y, f"{where}[{i}]", floor))), None)
    if isinstance(a, float) and isinstance(b, float):
        return None if abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + floor else f"{where}: {a!r} vs {b!r}"
    return None if a == b else f"{where}: {a!r} vs {b!r}"


LAYERS = ["--shape", "x=10,20,3", "--shape", "w=60,5", "--shape", "b=5", "--format", "json"]


@pytest.mark.parametrize("args, least", [
    (["check", "expressions/", "examples/", "--format", "json"], 100),
    (["check-py", "examples/python/layers_wrong.py::affine", *LAYERS], 3),      # db wrong by the same in every element
    (["check-py", "examples/python/layers.py::affine_relu", *LAYERS], 3),
    (["check-py", "examples/python/layers_wrong.py::affine_relu", *LAYERS], 3),
], ids=["grad files", "wrong affine layer", "affine-relu layer", "wrong affine-relu layer"])
def test_the_examples_json_is_the_same_under_every_kernel(args, least):
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        shown = list(pool.map(lambda k: _shown(json.loads(_cli(args, k))), KERNELS))
    nodes = [n for r in shown[0]["results"] for n in r["nodes"]]
    assert len(nodes) >= least  # and a failing tensor row always names its worst element:
    assert all(n["worst_index"] for n in nodes if n["status"] == "fail" and n["shape"])
    for kernel, other in zip(KERNELS[1:], shown[1:]):
        assert _same(shown[0], other) is None, f"{kernel} and {KERNELS[0]} disagree at {_same(shown[0], other)}"


def test_the_examples_table_is_the_same_under_every_kernel_at_140_columns():
    args = ["check", "expressions/", "examples/"]
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        tables = list(pool.map(lambda k: _cli(args, k, columns=140), KERNELS))
    assert "num err" in tables[0] and "at " in tables[0]  # the wide faces: errors and worst elements shown
    for kernel, table in zip(KERNELS[1:], tables[1:]):
        assert table == tables[0], f"{kernel} and {KERNELS[0]} disagree"


TIMINGS = re.compile(r"\b\d+(\.\d+)?\s?m?s\b")  # a wall-clock time is not a figure of the check


@pytest.mark.parametrize("path, line, runs", CASES, ids=[f"{p.name}:{n}" for p, n, _ in CASES])
def test_every_console_example_prints_the_same_under_every_kernel(path, line, runs):
    if missing_extra(path, line):
        pytest.skip(f"needs {missing_extra(path, line)}, an optional extra")
    for command, expected in runs:
        outputs = _under_each_kernel(command)
        want = pattern([e for e in "\n".join(expected).rstrip().splitlines()])
        first = TIMINGS.sub("<time>", outputs[KERNELS[0]])
        for kernel, output in outputs.items():
            assert want.fullmatch(output), f"{path.name}:{line}: `$ {command}` under {kernel} printed\n{output}"
            assert TIMINGS.sub("<time>", output) == first, f"`{command}` under {kernel}:\n{output}\nunder {KERNELS[0]}:\n{first}"
