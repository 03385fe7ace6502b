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


@pytest.fixture(scope="module")
def together():
    """_report as the tool runs (side by side), kept for the module: both tests below compare it, each
    against its own one-by-one run, for the same files and settings."""
    kept: dict = {}

    def report(text: str, **settings):
        key = (text, tuple(sorted(settings.items())))
        if key not in kept:
            kept[key] = _report(text, **settings)
        return kept[key]
    return report


@pytest.fixture(scope="module")
def apart():
    """_report with every comparison one by one (`pipeline.compare` for the nodes, `gatecheck.check_gate`
    for each gate call), kept for the module: the tests below compare it against the side-by-side run,
    one for the nodes' comparisons (compare_many), one for the gate calls' (check_gates)."""
    from gradcheck_cli.checking import gatecheck
    kept: dict = {}

    def report(text: str, **settings):
        key = (text, tuple(sorted(settings.items())))
        if key not in kept:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(pipeline, "compare_many", _one_by_one)
                patch.setattr(gatecheck, "check_gates", _gates_one_by_one)
                kept[key] = _report(text, **settings)
        return kept[key]
    return report


@pytest.mark.parametrize("settings", [{}, {"complex_step": False}, {"symbolic": False}], ids=["default", "no-cstep", "no-sympy"])
def test_side_by_side_is_one_by_one(settings, together, apart):
    texts = [p.read_text() for p in FILES] + [TIES, expression_file(150, seed=7)]
    joined = [together(t, **settings) for t in texts]
    alone = [apart(t, **settings) for t in texts]
    statuses = {n["status"] for r in alone for n in r["nodes"]}
    assert {"<Status.PASS: 'pass'>", "<Status.FAIL: 'fail'>"} <= statuses
    for path, a, b in zip(FILES + ["ties", "tree"], joined, alone):
        assert a == b, path


# --- the gate calls' own checks, side by side (gatecheck.check_gates) ---------------------------------

A_WRONG_D_LOCAL = """\
gate g(a, b) = s * s
  s = a * b
  ds = dout * s
  da = ds * b
  db = ds * a

x = 1.5
y = -0.5
f = g(x, y) + g(y, x) + g(x, y)
"""
KINKS = """\
x = [0.0, 1.0, -2.0]
y = 0.0
f = sum(relu(x)) + abs(y) * max(y, 0) + sum(max(x, y))
"""
WRONG_AND_RIGHT = """\
gate sq(t) = t^2
  dt = 2 * dout * t
gate cube(t) = t^3
  dt = 2 * dout * t * t
x = 1.5
y = [0.5, -1.0, 2.0]
f = sq(x) * cube(x) + sum(sq(y)) + sum(cube(y) * tanh(y)) + max(x, sin(x))
"""

PROJECTED_AND_INFINITE = """\
gate root(t) = sqrt(t)
  dt = dout / (2 * sqrt(t))
W = randn(9, 9)
v = randn(9)
z = 0.0
f = sum(tanh(W @ v)) + sum(relu(W)) + root(z) + root(v[0] * v[0] + 1)
"""


def _gates_one_by_one(graph, values, nodes, settings, point=1, jacobians=None, memo=None):
    from gradcheck_cli.checking import gatecheck
    return [c for node in nodes for c in gatecheck.check_gate(graph, values, node, settings, point, jacobians, memo)]


@pytest.mark.parametrize("settings", [{}, {"complex_step": False}, {"symbolic": False},
                                      {"complex_step": False, "symbolic": False}],
                         ids=["default", "no-cstep", "no-sympy", "neither"])
def test_gate_checks_side_by_side_are_one_by_one(settings, together, apart):
    # Every GateRow and node row equal field for field, bit for bit: the calls compared in one evidence
    # and their differences run side by side (runners.Each) give what each call checked alone gives.
    texts = [p.read_text() for p in FILES] + [TIES, A_WRONG_D_LOCAL, KINKS, WRONG_AND_RIGHT, PROJECTED_AND_INFINITE,
                                              expression_file(150, seed=7), expression_file(60, seed=3)]
    names = [str(p) for p in FILES] + ["ties", "d local", "kinks", "wrong and right", "projected and infinite",
                                       "tree150", "tree60"]
    joined = [together(t, **settings) for t in texts]
    alone = [apart(t, **settings) for t in texts]
    statuses = {g["status"] for r in alone for g in r["gates"]}
    assert {"<Status.PASS: 'pass'>", "<Status.FAIL: 'fail'>"} <= statuses  # both kinds of gate row are compared
    assert any(len(r["gates"]) > 100 for r in alone)  # a tree whose gate calls are batched
    for name, a, b in zip(names, joined, alone):
        assert a["gates"] == b["gates"], name
        assert a == b, name


def test_differences_side_by_side_are_each_alone():
    # runners.Each: several gate calls' element-by-element differences in one run of the engine, each
    # the bits of differencing that call alone (its own centre, terms and rows), kinks and ties included
    from gradcheck_cli.checking import gatecheck
    from gradcheck_cli.core.settings import Settings
    from gradcheck_cli.language.frontend import load
    from gradcheck_cli.oracles import autodiff, numeric, runners
    graph = load("x = [1.0, 1.0, 0.0, -2.0]\ny = 0.5\nz = 3.0\nf = sum(max(x, 1.0)) * relu(y) + max(y, z) + abs(z - 3)\n")
    values = autodiff.forward(graph)
    settings = Settings()
    calls = []
    for node in graph.nodes:
        if node.gate is None or not gatecheck.checkable_slots(graph, node):
            continue
        slots = gatecheck.checkable_slots(graph, node)
        p = gatecheck._prepare(graph, values, node, settings, 1, None, slots, [values[i] for i in node.inputs])
        calls.append(p.target)
    assert len(calls) >= 4
    found = numeric.differentiate(runners.Each({c.elements.id: c.runner for c in calls}), [c.elements for c in calls],
                                  settings.h, settings.rtol, settings.atol, {c.elements.id: c.backprop for c in calls})
    kinked = 0
    for c in calls:
        alone = numeric.differentiate(c.runner, [c.elements], settings.h, settings.rtol, settings.atol,
                                      {c.elements.id: c.backprop})[c.elements.id]
        assert _raw(found[c.elements.id]) == _raw(alone), graph.nodes[c.elements.id].label
        kinked += int(np.sum(alone.kink))
    assert kinked >= 2  # the ties and kinks of max/relu/abs are among them
