"""Second order for .grad files: `check --order 2` checks a Hessian-vector
product at every leaf — forward-over-reverse through the backward graph, the d lines included —
against the forward's own exact second derivatives and the differences of the gradient; a gate
whose d line is right in value but wrong in derivative fails at its line. `explain --order 2`
teaches a Newton step. Oracles: SymPy's Hessian of the same function, and the minimum of a quadratic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import gradcheck_in_process
import sympy

from gradcheck_cli import check
from gradcheck_cli.language.frontend import load
from gradcheck_cli.checking.hvp import newton

ROOT = Path(__file__).resolve().parent.parent.parent
RIGHT = "gate cube(t) = t^3\n  dt = 3 * dout * t^2\nx = 1.5\ny = 0.7\nf = cube(x) * sin(y)\n"
# right in value at x = 1.5 only (3·1.5² = 6.75): its derivative is 0, not 6·t
WRONG = "gate cube(t) = t^3\n  dt = dout * 6.75\nx = 1.5\ny = 0.7\nf = cube(x) * sin(y)\n"


def cli(*args):
    return gradcheck_in_process(*args)


def test_a_d_line_right_in_value_but_wrong_in_derivative_fails_at_its_line():
    assert check(RIGHT, order=2).passed
    bad = check(WRONG, order=2)
    assert {r.name: r.status for r in bad.nodes} == {"x": "fail", "y": "pass"}
    (gate,) = [g for g in bad.gates if g.status == "fail"]
    assert (gate.input, gate.line) == ("dt", 2) and "wrong in derivative" in gate.note
    assert bad.nodes[0].culprit == (2, 3) and "disagrees with SymPy's" in bad.nodes[0].note
    # without SymPy the leaf rows compare with the forward's own H·v (the gate bodies differentiated,
    # the d lines left out), and the gate's own check still fails at the line
    plain = check(WRONG, order=2, symbolic=False)
    assert [g.input for g in plain.gates if g.status == "fail"] == ["dt"]
    assert {r.name: r.status for r in plain.nodes} == {"x": "fail", "y": "pass"} and "forward's own" in plain.nodes[0].note
    assert check(RIGHT, order=2, symbolic=False).passed
    # at first order it is right at the given point: only the second point sees it
    first = check(WRONG)
    assert all(r.status == "pass" for r in first.nodes) and [g.point for g in first.gates if g.status == "fail"] == [2]


def test_the_hessian_is_sympys():
    # the whole Hessian, a column of forward-over-reverse per element, against SymPy's exact one
    text = "gate cube(t) = t^3\n  dt = 3 * dout * t^2\nx = 1.5\ny = 0.7\nz = -0.4\nf = cube(x) * sin(y) + exp(x * z) / (1 + y^2)\n"
    step = newton(load(text, "h.grad", None, 0, False))
    x, y, z = sympy.symbols("x y z")
    f = x ** 3 * sympy.sin(y) + sympy.exp(x * z) / (1 + y ** 2)
    exact = np.array(sympy.hessian(f, (x, y, z)).subs({x: 1.5, y: 0.7, z: -0.4}).evalf(), dtype=float)
    np.testing.assert_allclose(step.hessian, exact, rtol=1e-12, atol=1e-12)


def test_every_example_passes_at_second_order():
    for path in sorted((ROOT / "expressions").glob("*.grad")):
        report = check(path.read_text(encoding="utf-8"), source=str(path), order=2)
        assert report.error is None and report.passed, (path.name, [(r.name, r.status, r.note) for r in report.nodes])


# x³y: dx = 3x²y and dy = x³ everywhere; 2xy is not dx at the point, 6xy equals 3x²y at x = 2 only
EXPECTS = "x = 2\ny = -0.5\nf = x * x * x * y\nexpect dx = 2 * x * y\nexpect dy = x * x * x\nexpect dx = 3 * x * x * y\n" \
          "expect dx = 6 * x * y\n"


def test_expect_lines_are_judged_at_second_order_as_at_first():
    """An `expect` line states a first derivative, whatever order the check is at: under --order 2 a wrong
    one fails the file as it does at first order (backprop's gradient at the point, SymPy's everywhere)."""
    first, second = check(EXPECTS), check(EXPECTS, order=2)
    rows = [(e.target, e.status, e.note) for e in second.expects]
    assert rows == [("dx", "fail", "dx is -6, not -2"), ("dy", "pass", "symbolically equal"),
                    ("dx", "pass", "symbolically equal"), ("dx", "fail", "equal at this point only: dx = 3*x**2*y")]
    assert rows == [(e.target, e.status, e.note) for e in first.expects]
    assert not second.passed and check(EXPECTS.split("expect")[0] + "expect dy = x * x * x\n", order=2).passed


def test_a_kink_has_no_second_derivative():
    report = check("x = [0.0, 1.5]\nf = sum(relu(x) * x)\n", order=2)
    assert [r.status for r in report.nodes] == ["kink"] and "no second derivative" in report.nodes[0].note


def test_check_order_2_on_the_command_line_and_in_json():
    path = ROOT / "examples" / "mistakes" / "sq_forgot_2.grad"
    done = cli("check", str(path), "--order", "2", "--format", "json")
    data = json.loads(done.stdout)
    assert done.returncode == 1 and data["results"][0]["nodes"][0]["numeric_method"].startswith("Hessian-vector")
    assert cli("check", str(path), "--order", "3").returncode == 2
    assert "--order 2" in cli("check", str(path), "--order", "2").stdout  # the reproduce line keeps it


def test_explain_order_2_takes_a_newton_step_to_a_quadratics_minimum():
    done = cli("explain", "-e", "(x - 1)^2 + 3 * (y + 2)^2 + x * y", "--at", "x=0", "--at", "y=0", "--order", "2")
    assert done.returncode == 0, done.stderr
    # the minimum solves 2(x - 1) + y = 0 and 6(y + 2) + x = 0
    want = np.linalg.solve([[2.0, 1.0], [1.0, 6.0]], [2.0, -12.0])
    assert f"x 0 → {want[0]:.6g}" in done.stdout and f"y 0 → {want[1]:.6g}" in done.stdout
    assert "positive definite" in done.stdout and "predicted -3.36364" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["-e", "x * [1, 2]", "--at", "x=1"], "takes a scalar output"),
    (["-e", "sum(x * x)", "--at", "x=randn(17)"], "at most 16, and this has 17"),
])
def test_explain_order_2_refuses_what_it_cannot_show(args, message):
    done = cli("explain", *args, "--order", "2")
    assert done.returncode == 2 and message in done.stderr and "^" in done.stderr and "Traceback" not in done.stderr
    assert cli("explain", *args, "--order", "2", "--format", "json").returncode == 2


def test_second_order_costs_no_more_than_predicted_and_is_refused_past_the_limit(monkeypatch):
    from gradcheck_cli.checking import cost
    from gradcheck_cli.core.meter import Meter
    for text in (RIGHT, WRONG, (ROOT / "expressions" / "cs231n_lstm_step.grad").read_text(encoding="utf-8")):
        with Meter() as meter:
            report = check(text, order=2)
        assert meter.units <= report.work.total, (meter.counts, report.work.parts)
    monkeypatch.setattr(cost, "MAX_WORK", 1000)
    refused = check(RIGHT, order=2)
    assert refused.error is not None and "GRADCHECK_MAX_WORK" in refused.error.message and refused.error.line == 5


def test_the_hessian_is_torchs():
    # a peer as the oracle: torch.autograd.functional.hessian of the same forward (skipped without torch)
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")
    text = ("x = [0.3, -1.2]\nW = [[0.5, -0.4, 1.1], [0.9, 0.2, -0.7]]\n"
            "f = logsumexp(tanh(x @ W) * 2) + 0.1 * sum(W * W) * sum(x * x)\n")
    ours = newton(load(text, "t.grad", None, 0, False)).hessian

    def f(flat):
        x, W = flat[:2], flat[2:].reshape(2, 3)
        return torch.logsumexp(torch.tanh(x @ W) * 2, 0) + 0.1 * (W * W).sum() * (x * x).sum()
    point = torch.tensor([0.3, -1.2, 0.5, -0.4, 1.1, 0.9, 0.2, -0.7], dtype=torch.float64)
    np.testing.assert_allclose(ours, torch.autograd.functional.hessian(f, point).numpy(), rtol=1e-11, atol=1e-12)


def test_fuzzed_programs_at_second_order_never_raise_and_render_every_format():
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    from fuzzing import _render_every_format, programs
    from gradcheck_cli.core.errors import GradcheckError
    from gradcheck_cli.core.meter import Meter

    @hsettings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(programs())
    def run(text):
        with Meter() as meter:
            report = check(text, source="fuzz.grad", order=2)
        assert report.error is None or isinstance(report.error, GradcheckError)
        if report.error is None:
            assert meter.units <= report.work.total, (meter.counts, report.work.parts)
        _render_every_format(report)
    run()


def test_the_differences_of_the_gradient_take_the_plans_rows(monkeypatch):
    from gradcheck_cli.checking import hvp
    from gradcheck_cli.oracles import autodiff, plan
    moves: list = []

    def forward(graph, overrides=None):
        moves.append(float(next(iter(overrides.values()))[0] - 0.5))
        return autodiff.forward(graph, overrides)
    monkeypatch.setattr(hvp, "forward", forward)
    graph = load("x = [0.5, 2.0]\nf = sum(x * x * x)", "t.grad", {}, 0, False)
    leaf = graph.nodes[graph.names["x"]]
    v = {leaf.id: np.array([1.0, -1.0])}
    num = hvp._differences(graph, autodiff.forward(graph), [leaf], v, np.ones((1,)), 1e-4)[leaf.id]
    # one forward (and backward) per row of the plan, at its offsets along v: ±ε, then ±ε·REFINE
    np.testing.assert_allclose(moves, plan.PLAN.offsets(2e-4), rtol=1e-9)
    np.testing.assert_allclose(num.value[0], 6 * np.array([0.5, 2.0]) * v[leaf.id], rtol=1e-7)  # H·v of Σ x³
