"""One answer on any machine: every figure a face shows is the same under any BLAS kernel.

OpenBLAS picks a kernel for the CPU it runs on (Haswell, SkylakeX, ...), and each sums a matrix
product in its own order, so raw floats differ in their last bits from one machine to another.
Nothing shown may depend on those bits: statuses, notes, culprits, worst-element indices and every
rounded figure. Here the examples' JSON and their table at 140 columns run under at least three
kernels this CPU can execute (OPENBLAS_CORETYPE, set for those processes only: `blas_kernels.py`) and must
come out identical: JSON floats agreeing to 6 significant digits, error figures at their rounding
level (`*_error_at_rounding`) aside, others to the one digit every face shows at least. Every console
block of the README and the docs is run under those kernels too, by `test_readme.py`, and must print
the same under each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT
from blas_kernels import ENOUGH, KERNELS, WHY_NOT, threads

pytestmark = pytest.mark.skipif(not ENOUGH, reason=WHY_NOT)


# Every command below under one kernel, in one process: the kernel is picked as a process starts, so each
# kernel needs a process of its own, but not one per command (what is compared is what each command prints,
# not how the process starts or ends: test_cli.py holds those). Each runs as `python -m gradcheck_cli`
# runs it: its own COLUMNS, its output what it writes to standard output. Two commands that check the same
# files with the same settings but for the face (the examples' JSON, then their table) share one check:
# the second renders the first's reports (what is compared is each face of this kernel's check; one check
# of every example is ~1 s of CPU).
_RUN_EACH = """
import contextlib, dataclasses, io, json, os, sys
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
from gradcheck_cli.cli import main
import gradcheck_cli.checking.files as files_module
checked, check_files = {}, files_module.check_files
def once(files, settings, exitfirst=False, on_file=None, at=None):
    key = (tuple(map(str, files)), dataclasses.replace(settings, format="table"), exitfirst, repr(at))
    if key not in checked:
        checked[key] = check_files(files, settings, exitfirst=exitfirst, on_file=on_file, at=at)
    return checked[key]
files_module.check_files = once
printed = []
for args, columns in json.loads(sys.argv[1]):
    os.environ["COLUMNS"] = str(columns)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(args)
        except SystemExit:
            pass
    printed.append(out.getvalue())
forks = sys.modules.get("gradcheck_cli.python.forkserver")
if forks is not None:
    forks.shutdown()
sys.stdout.write(json.dumps(printed))
sys.stdout.flush()
os._exit(0)
"""


def _cli(commands: list, kernel: str) -> list:
    """What each of `commands` ((args, columns) pairs) prints under `kernel`."""
    env = {k: v for k, v in os.environ.items() if k == "GRADCHECK_CACHE_DIR" or not k.startswith(("GRADCHECK_", "GITHUB_"))}
    env.update(OPENBLAS_CORETYPE=kernel, NO_COLOR="1", TERM="dumb")
    done = subprocess.run([sys.executable, "-c", _RUN_EACH, json.dumps(commands)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


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
JSON = {  # id: the command, how many nodes its results have at least
    "grad files": (["check", "expressions/", "examples/", "--format", "json"], 100),
    "wrong affine layer": (["check-py", "examples/python/layers_wrong.py::affine", *LAYERS], 3),  # db wrong by the same in every element
    "affine-relu layer": (["check-py", "examples/python/layers.py::affine_relu", *LAYERS], 3),
    "wrong affine-relu layer": (["check-py", "examples/python/layers_wrong.py::affine_relu", *LAYERS], 3),
}
TABLE = ["check", "expressions/", "examples/"]


@pytest.fixture(scope="module")
def printed() -> dict:
    """What each command prints under each kernel (as many kernels at a time as `threads`): its name
    (a JSON id, or "table") -> one output per kernel, in KERNELS' order."""
    commands = [(args, 80) for args, _ in JSON.values()] + [(TABLE, 140)]
    with ThreadPoolExecutor(max_workers=threads()) as pool:
        per_kernel = list(pool.map(lambda k: _cli(commands, k), KERNELS))
    return {name: [outputs[i] for outputs in per_kernel] for i, name in enumerate([*JSON, "table"])}


@pytest.mark.parametrize("name", list(JSON))
def test_the_examples_json_is_the_same_under_every_kernel(name, printed):
    shown = [_shown(json.loads(out)) for out in printed[name]]
    nodes = [n for r in shown[0]["results"] for n in r["nodes"]]
    assert len(nodes) >= JSON[name][1]  # and a failing tensor row always names its worst element:
    assert all(n["worst_index"] for n in nodes if n["status"] == "fail" and n["shape"])
    for kernel, other in zip(KERNELS[1:], shown[1:]):
        assert _same(shown[0], other) is None, f"{kernel} and {KERNELS[0]} disagree at {_same(shown[0], other)}"


def test_the_examples_table_is_the_same_under_every_kernel_at_140_columns(printed):
    tables = printed["table"]
    assert "num err" in tables[0] and "at " in tables[0]  # the wide faces: errors and worst elements shown
    for kernel, table in zip(KERNELS[1:], tables[1:]):
        assert table == tables[0], f"{kernel} and {KERNELS[0]} disagree"
