"""A graph's nodes compared side by side (`pipeline.compare_many`: one `evidence` over their rows joined)
give what comparing them one by one (`pipeline.compare`) gives, field for field and bit for bit: statuses,
notes, worst elements, every figure. On files that pass, warn, fail, sit at kinks and ties, with the complex
step on and off, with SymPy and without."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck_cli import check
from gradcheck_cli.checking import pipeline

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
from bench_core import expression_file  # noqa: E402

FILES = sorted((ROOT / "examples" / "mistakes").glob("*.grad")) + sorted((ROOT / "examples" / "subtle").glob("*.grad")) \
    + sorted((ROOT / "expressions").glob("*.grad"))
TIES = """\
x = [1.0, 1.0, 2.0, 0.0]
y = 0.0
f = max(x) + relu(y) + abs(y) + sum(relu(x - 1))
"""


def _one_by_one(targets, settings, policy):
    return [pipeline.compare(t, settings, policy) for t in targets]


def _raw(x):
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _raw(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [_raw(v) for v in x]
    if isinstance(x, float):
        return ("float", x.hex())
    return repr(x)


def _report(text: str, **settings):
    r = check(text, **settings)
    return {"nodes": _raw(r.nodes), "gates": _raw(r.gates), "error": repr(r.error), "warnings": repr(r.warnings)}


@pytest.mark.parametrize("settings", [{}, {"complex_step": False}, {"symbolic": False}], ids=["default", "no-cstep", "no-sympy"])
def test_side_by_side_is_one_by_one(settings, monkeypatch):
    texts = [p.read_text() for p in FILES] + [TIES, expression_file(150, seed=7)]
    together = [_report(t, **settings) for t in texts]
    monkeypatch.setattr(pipeline, "compare_many", _one_by_one)
    alone = [_report(t, **settings) for t in texts]
    statuses = {n["status"] for r in alone for n in r["nodes"]}
    assert {"<Status.PASS: 'pass'>", "<Status.FAIL: 'fail'>"} <= statuses
    for path, a, b in zip(FILES + ["ties", "tree"], together, alone):
        assert a == b, path
