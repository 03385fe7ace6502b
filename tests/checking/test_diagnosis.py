"""One root cause, one line: the culprit of a failing gate or layer is the first line whose
own value is wrong; a line that is wrong only because it uses a wrong one is folded into it, in
`.grad` files and Python layers alike. Two independent mistakes stay two."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli import check, check_layer, check_loss
from gradcheck_cli.checking.diagnosis import causes

SMOOTH_L1 = """const beta = 2.0
gate smooth_l1(x) = sum(where(small, quad, lin))
  small = abs(x) < beta
  quad = 0.5 * x^2 / beta
  lin = abs(x) - 0.5 * beta
  dquad = dout * small
  dlin = dout * (1 - small)
  dx = dquad * x / beta + dlin * sign(x)
x = [0.5, -3.0, 1.5, 4.0]
f = 3 * smooth_l1(x)
"""

LAYERNORM = """const eps = 1e-5
gate layernorm(x, gamma, beta) = gamma * xhat + beta
  mu = mean(x, axis=1, keepdims=1)
  xc = x - mu
  var = mean(xc ^ 2, axis=1, keepdims=1)
  std = sqrt(var + eps)
  xhat = xc / std
  doutT = dout.T
  dxhatT = doutT * reshape(gamma, [3, 1])
  xhatT = xhat.T
  dxT = (dxhatT - mean(dxhatT, axis=0) - xhatT * mean(dxhatT * xhatT, axis=0)) / std.T
  dx = dxT.T
  dgamma = sum(doutT * xhatT, axis=1)
  dbeta = sum(doutT, axis=1)
x = randn(3, 3)
gamma = randn(3)
beta = randn(3)
const u = randn(3, 3)
f = sum(layernorm(x, gamma, beta) * u)
"""


def _lines(report) -> list:
    """The lines the report annotates: one per root cause."""
    return sorted(line for _, (line, _), *_ in causes(report))


@pytest.mark.parametrize("source", [SMOOTH_L1, LAYERNORM])
def test_the_right_gates_pass(source):
    assert check(source).passed


@pytest.mark.parametrize("old, new, line", [
    ("  dquad = dout * small", "  dquad = small", 6),                             # dout forgotten: named at its line,
    ("  dx = dquad * x / beta + dlin * sign(x)", "  dx = dquad * x + dlin * sign(x)", 8),  # not at dx; / beta missing
])
def test_smooth_l1_mistakes_are_named_at_their_own_line(old, new, line):
    report = check(SMOOTH_L1.replace(old, new))
    assert not report.passed and _lines(report) == [line]


def test_a_line_named_for_a_locals_gradient_is_checked_even_without_dout():
    report = check(SMOOTH_L1.replace("  dquad = dout * small", "  dquad = small"))
    assert any(g.input == "dquad" and g.status == "fail" for g in report.gates)


def test_a_missing_transpose_feeding_three_lines_is_one_cause_at_its_line():
    report = check(LAYERNORM.replace("  doutT = dout.T", "  doutT = dout"))
    assert not report.passed and _lines(report) == [8]
    assert any("use 'doutT' (line 8)" in (r.note or "") for r in report.nodes)


def test_two_independent_mistakes_stay_two_causes():
    src = LAYERNORM.replace("  dx = dxT.T", "  dx = dxT.T * 2").replace(
        "  dgamma = sum(doutT * xhatT, axis=1)", "  dgamma = sum(doutT * xhatT, axis=1) * 2")
    assert _lines(check(src)) == [12, 13]


def scale_shift_forward(x, gamma, beta):
    return gamma * x + beta, (x, gamma)


def scale_shift_backward_no_transpose(dout, cache):
    x, gamma = cache
    doutT = dout  # the .T forgotten: dx, dgamma and dbeta all go wrong through it
    dx = (doutT * gamma[:, None]).T
    dgamma = (doutT * x.T).sum(axis=1)
    dbeta = doutT.sum(axis=1)
    return dx, dgamma, dbeta


def scale_shift_backward_two_slips(dout, cache):
    x, gamma = cache
    doutT = dout.T
    dx = 2 * (doutT * gamma[:, None]).T
    dgamma = 2 * (doutT * x.T).sum(axis=1)
    dbeta = doutT.sum(axis=1)
    return dx, dgamma, dbeta


def _source_line(fn, text: str) -> int:
    import inspect
    lines, start = inspect.getsourcelines(fn)
    return start + next(k for k, line in enumerate(lines) if text in line)


def test_python_a_line_every_failing_gradient_uses_is_the_one_cause():
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 3)), "gamma": rng.standard_normal(3), "beta": rng.standard_normal(3)}
    report = check_layer(scale_shift_forward, scale_shift_backward_no_transpose, inputs)
    assert all(r.status == "fail" for r in report.nodes)
    assert {r.culprit for r in report.nodes} == {(_source_line(scale_shift_backward_no_transpose, "doutT = dout"), 5)}
    assert len(causes(report)) == 1


def test_python_two_slips_are_two_causes():
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 3)), "gamma": rng.standard_normal(3), "beta": rng.standard_normal(3)}
    report = check_layer(scale_shift_forward, scale_shift_backward_two_slips, inputs)
    lines = {r.name: r.culprit for r in report.nodes if r.status == "fail"}
    assert lines == {"x": (_source_line(scale_shift_backward_two_slips, "dx = 2"), 5),
                     "gamma": (_source_line(scale_shift_backward_two_slips, "dgamma = 2"), 5)}


def mse_loss_wrong(x, t):
    loss = np.mean((x - t) ** 2)
    dx = (x - t) / x.size  # the 2 forgotten
    return loss, dx


def test_a_loss_is_annotated_where_its_gradient_is_assigned():
    report = check_loss(mse_loss_wrong, {"x": np.array([0.5, 1.5, -2.0])}, {"t": np.zeros(3)})
    assert report.nodes[0].status == "fail"
    assert report.nodes[0].line == _source_line(mse_loss_wrong, "dx = (x - t)")
