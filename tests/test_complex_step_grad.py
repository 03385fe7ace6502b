"""The complex step for .grad files (issue 25, parts 1 and 3): a node whose every gate on the way to
the output is complex-analytic gets its numeric column from the complex step, exact to rounding, so
backwards wrong by less than any finite difference resolves fail; nodes behind a kink gate keep the
centered differences; right programs pass at integer-valued inputs and with SymPy off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gradcheck_cli import check

SUBTLE = Path(__file__).resolve().parent.parent / "examples" / "subtle"


def rows(report):
    return {r.name: r for r in report.nodes}


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in line)


@pytest.mark.parametrize("right, wrong", [("gelu.grad", "gelu_rounded.grad"), ("layernorm.grad", "layernorm_no_eps.grad")])
def test_bugs_under_any_finite_difference_fail_with_the_complex_step_and_name_their_d_line(right, wrong):
    for options in ({}, {"symbolic": False}, {"complex_step": False}, {"complex_step": False, "symbolic": False}):
        assert check((SUBTLE / right).read_text(), source=right, **options).passed, options
    bad = check((SUBTLE / wrong).read_text(), source=wrong, symbolic=False)
    assert not bad.passed
    (gate,) = [g for g in bad.gates if g.status == "fail"]
    assert (gate.input, gate.line) == ("dx", line_of(SUBTLE / wrong, "  dx = "))
    assert "by less than any finite difference resolves" in gate.note
    x = rows(bad)["x"]
    assert x.status == "fail" and x.numeric_method == "complex step"
    # the differences alone cannot see it: that is why the complex step is there
    assert check((SUBTLE / wrong).read_text(), source=wrong, symbolic=False, complex_step=False).passed


def test_nodes_behind_a_kink_keep_the_differences_and_the_rest_get_the_complex_step():
    r = rows(check("x = [1.5, -2, 0.5]\nW = [[1, 2], [0, -1], [3, 1]]\nh = relu(x @ W)\nf = sum(tanh(h))\n"))
    assert {n: r[n].numeric_method for n in ("x", "W", "x @ W")} == dict.fromkeys(("x", "W", "x @ W"), "exhaustive")
    assert r["h"].numeric_method == "complex step" and r["tanh(h)"].numeric_method == "complex step"
    assert all(row.status == "pass" for row in r.values())


def test_a_kink_on_the_point_is_still_a_kink():
    r = rows(check("x = [0, 1]\nf = sum(relu(x) * [2, 3])\n"))
    assert r["x"].status == "kink" and r["x"].numeric_method == "exhaustive"
    assert r["relu(x)"].numeric_method == "complex step" and r["relu(x)"].status == "pass"


ANALYTIC = ["tanh({})", "sigmoid({})", "exp(0.2 * {})", "log(1 + ({})^2)", "sin({})", "softmax({}, axis=1)",
            "({}) * ({})", "({})^2", "1 / (2 + ({})^2)", "sqrt(1 + ({})^2)"]


@st.composite
def networks(draw):
    """A random analytic network: x @ W through a few analytic gates, then a loss (logsumexp or mean)."""
    n, d, h = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    integers = draw(st.booleans())  # what real tests use: integer values, exact zeros, ties

    def value(shape):
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
        a = rng.integers(-3, 4, shape) if integers else rng.standard_normal(shape)
        return np.array2string(np.asarray(a, dtype=float), separator=", ", precision=17, threshold=10 ** 6).replace("\n", "")
    body = "x @ W"
    for _ in range(draw(st.integers(1, 4))):
        form = draw(st.sampled_from(ANALYTIC))
        body = form.format(body, body) if form.count("{}") == 2 else form.format(body)
    loss = draw(st.sampled_from(["mean(logsumexp({}, axis=1))", "sum(({}) * ({}))", "mean({})"]))
    loss = loss.format(body, body) if loss.count("{}") == 2 else loss.format(body)
    return f"x = {value((n, d))}\nW = {value((d, h))}\nf = {loss}\n"


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(networks())
def test_right_analytic_networks_pass_with_the_complex_step(text):
    # no false alarm at a tolerance of 1e-9: backprop's own rounding is measured, the complex step's is ε-small
    report = check(text, symbolic=False)
    if report.error is not None:  # an overflow at the drawn point is the input's error, said as one
        assert "overflows" in report.error.message, report.error.format()
        return
    failing = [(r.name, r.status, r.note) for r in report.nodes if r.status in ("fail", "kink")]
    assert not failing, (text, failing)
    # where no intermediate leaves the complex step's linear regime, the leaves get it
    assert {r.numeric_method for r in report.nodes if r.name in ("x", "W")} <= {"complex step", "exhaustive"}


def test_check_takes_no_complex_step(tmp_path):
    run = [sys.executable, "-m", "gradcheck_cli", "check", str(SUBTLE / "gelu_rounded.grad"), "--no-symbolic"]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 1
    done = subprocess.run(run + ["--no-complex-step"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
