"""Hand-derived gates, comparisons, const leaves and expectations."""


import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check, check_file
from gradcheck_cli.cli import main
from conftest import EXPRESSIONS, assert_positioned_error, rows


def failing(report):
    return sorted(r.name for r in report.nodes if r.status == "fail")


def mutate(name, old, new):
    text = (EXPRESSIONS / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {name}"
    return check(text.replace(old, new), source=name)


# --- the examples pass, and each injected mistake fails exactly the affected rows ------------------

@pytest.mark.parametrize("name", ["gate_sigmoid.grad", "cs231n_layers.grad", "cs231n_svm_layer.grad",
                                  "cs231n_batchnorm.grad"])
def test_hand_derived_examples_pass_with_symbolic(name):
    r = check_file(EXPRESSIONS / name)
    assert r.error is None and r.passed
    assert all(row.symbolic is not None for row in r.nodes if row.status != "skip")
    assert all(e.status == "pass" for e in r.expects)


def test_sigmoid_wrong_sign():
    r = mutate("gate_sigmoid.grad", "dt = dout * out * (1 - out)", "dt = -dout * out * (1 - out)")
    assert failing(r) == sorted(["w0", "x0", "w1", "x1", "w2", "w0*x0", "w1*x1", "w0*x0 + w1*x1", "dot"])
    assert rows(r)["f"].status == "pass"
    assert "backward of 'f' (sig, line 10): its d line 'dt' (line 4)" in rows(r)["dot"].note
    assert [e.status for e in r.expects] == ["fail", "fail", "fail"]


def test_affine_missing_transpose_fails_only_its_input():
    r = mutate("cs231n_layers.grad", "dx = dout @ W.T", "dx = dout @ W")
    # dx of the second affine (H) is wrong: H and everything upstream of it fail; W2, b2 do not
    assert "W2" not in failing(r) and "b2" not in failing(r) and "S" not in failing(r)
    assert {"H", "W1", "b1"} <= set(failing(r))
    note = rows(r)["H"].note
    assert "gate 'affine': dx cannot be computed" in note and "(4, 3)" in note and "(6, 3)" in note
    assert not r.passed and r.error is None


def test_affine_missing_sum_over_the_batch_fails_only_the_biases():
    r = mutate("cs231n_layers.grad", "db = sum(dout, axis=0)", "db = dout")
    assert failing(r) == ["b1", "b2"]
    assert "db has shape (4, 3) but b has shape (3,)" in rows(r)["b2"].note
    assert "db has shape (4, 6) but b has shape (6,)" in rows(r)["b1"].note


def test_relu_wrong_mask():
    r = mutate("cs231n_layers.grad", "dx = dout * (x > 0)", "dx = dout * (x < 0)")
    assert set(failing(r)) == {"W1", "b1", "affine(X, W1, b1)"}
    assert "its d line 'dx' (line 9)" in rows(r)["affine(X, W1, b1)"].note


def test_softmax_loss_wrong_sign():
    r = mutate("cs231n_layers.grad", "dS = dout * (P - Y)", "dS = dout * (Y - P)")
    assert set(failing(r)) == {"W1", "b1", "W2", "b2", "affine(X, W1, b1)", "H", "S"}
    assert "softmax_loss" in rows(r)["S"].note and "'dS' (line 13)" in rows(r)["S"].note


def test_svm_missing_correct_class_term():
    r = mutate("cs231n_svm_layer.grad", "dS = dout * (M - Y * sum(M, axis=1, keepdims=1))", "dS = dout * M")
    assert set(failing(r)) == {"W", "X @ W"}
    assert "svm_loss" in rows(r)["X @ W"].note


def test_batchnorm_dropped_mean_term():
    r = mutate("cs231n_batchnorm.grad", " - xhat * mean(dout * xhat, axis=0)", "")
    assert failing(r) == ["x"]
    assert "its d line 'dx' (line 7)" in rows(r)["x"].note


def test_batchnorm_missing_sum_for_dgamma():
    r = mutate("cs231n_batchnorm.grad", "dgamma = sum(dout * xhat, axis=0)", "dgamma = dout * xhat")
    assert failing(r) == ["gamma"]


def test_failed_d_line_is_exit_1_not_2(tmp_path):
    p = tmp_path / "bad.grad"
    p.write_text((EXPRESSIONS / "cs231n_layers.grad").read_text().replace("db = sum(dout, axis=0)", "db = dout"))
    result = CliRunner().invoke(main, ["check", str(p)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "db has shape (4, 6) but b has shape (6,)" in result.output  # the d line both calls share: one cause


# --- gates in general ----------------------------------------------------------------------------

def test_gate_without_d_lines_is_differentiated_automatically():
    r = check("gate sq(t) = t * t\nx = 3\nf = sq(x) + sq(2 * x)")
    assert r.passed and float(rows(r)["x"].grad) == 30


def test_gates_call_gates_and_work_on_tensors():
    r = check("gate sq(t) = t * t\n  dt = 2 * t * dout\ngate quad(a, b) = sq(a) + sq(b)\n"
              "x = [1, 2, 3]\ny = [4, 5, 6]\nf = sum(quad(x, y))")
    assert r.passed
    np.testing.assert_allclose(rows(r)["x"].grad, [2, 4, 6])


def test_gate_used_at_two_shapes():
    r = check("gate sq(t) = t * t\n  dt = 2 * t * dout\nx = 3\nv = [1, 2]\nf = sq(x) + sum(sq(v))")
    assert r.passed and float(rows(r)["x"].grad) == 6


def test_a_subgradient_at_a_tie_is_a_kink_not_a_bug():
    # CS231n's mask gives 0 at the tie, the oracles ½: both lie between the one-sided slopes 0 and 2
    r = check("gate r(t) = max(t, 0)\n  dt = dout * (t > 0)\nx = 0\nf = r(x) * 2")
    assert rows(r)["x"].status == "kink" and float(rows(r)["x"].grad) == 0


def test_a_wrong_gradient_at_a_kink_still_fails():
    # 3 is outside [0, 2], the one-sided slopes of 2·relu at 0
    r = check("gate r(t) = max(t, 0)\n  dt = dout * 1.5 * (t >= 0)\nx = 0\nf = r(x) * 2")
    assert rows(r)["x"].status == "fail"
    # near (not at) a kink, backprop must match SymPy
    r = check("gate r(t) = max(t, 0)\n  dt = dout * 0.5\nx = 1e-7\nf = r(x) * 2")
    assert rows(r)["x"].status == "fail"


def test_comparisons_are_constant():
    r = check("x = 0.5\nf = x * (x > 0) + (x < 1) * 3")
    assert float(rows(r)["x"].grad) == 1.0 and r.passed


def test_const_is_frozen():
    r = check("const W = [[1, 2], [3, 4]]\nx = [1, 1]\nf = sum(W @ x)")
    assert rows(r)["W"].status == "skip" and rows(r)["W"].grad is None
    np.testing.assert_array_equal(rows(r)["x"].grad, [4, 6])


# --- definition errors are input errors (exit 2) with positions ----------------------------------

BAD_GATES = [
    ("gate exp(t) = t * 2\nx = 1\nf = exp(x)", "clashes with the built-in", 1, 6),
    ("gate g(t) = t * 2\ngate g(u) = u\nx = 1\nf = g(x)", "already defined (line 1)", 2, 6),
    ("gate g(t) = g(t) * 2\nx = 1\nf = g(x)", "calls itself", 1, 13),
    ("gate g(a, b) = a * b\n  da = dout * b\nx = 1\nf = g(x, x)", "but not for b", 1, 6),
    ("gate g(t) = t * q\nx = 1\nf = g(x)", "unknown name 'q' in gate 'g'", 1, 17),
    ("gate g(t) = t * 2\n  dt = dout * q\nx = 1\nf = g(x)", "unknown name 'q' in gate 'g'", 2, 15),
    ("gate g(t) = out * 2\nx = 1\nf = g(x)", "only defined in the indented backward lines", 1, 13),
    ("gate g(t, t) = t\nx = 1\nf = g(x, x)", "parameter 't' is repeated", 1, 11),
    ("gate g(out) = out\nx = 1\nf = g(x)", "reserved", 1, 8),
    ("gate g() = 1\nx = 1\nf = x", "needs at least one parameter", 1, 6),
    ("gate g(t) = t * 2\n  dt = dout * 2\n  dt = dout\nx = 1\nf = g(x)", "already a name", 3, 3),
    ("gate g(t) = t * 2\nx = 1\nf = g(x, x)", "g() takes 1 argument, got 2", 3, 5),
    ("gate g(t) = t * 2\nx = 1\nf = g(t=x)", "takes no keyword parameters", 3, 7),
    ("gate g(t) = nope(t)\nx = 1\nf = g(x)", "unknown function 'nope'", 1, 13),
    ("gate g(t) = t * 2\nx = 1\nf = g", "'g' is a gate; call it", 3, 5),
    ("x = 1\n  dt = 2\nf = x", "unexpected indentation", 2, 3),
]


def test_an_unused_line_is_a_warning_not_an_error():
    r = check("gate g(t) = t * 2\n  dz = dout * 2\nx = 1\nf = g(x)")
    assert r.error is None and r.passed
    (message, line, col), = r.warnings
    assert (line, col) == (2, 3) and "'dz' in gate 'g' is not used" in message
    assert "no parameter's gradient: the parameters are t" in message


@pytest.mark.parametrize("src,fragment,line,col", BAD_GATES, ids=[b[1][:30] for b in BAD_GATES])
def test_bad_gate_definitions(src, fragment, line, col):
    assert_positioned_error(src, fragment, line, col, name="g.grad")


# --- expectations ---------------------------------------------------------------------------------

def test_expectations_numbers_and_formulas():
    r = check("x = -2; y = 5; z = -4\nq = x + y\nf = q * z\n"
              "expect dx = -4\nexpect dq = z\nexpect dz = x + y\nexpect dy = -4.0\nexpect dq = f / q")
    assert [(e.target, e.status) for e in r.expects] == [("dx", "pass"), ("dq", "pass"), ("dz", "pass"),
                                                         ("dy", "pass"), ("dq", "pass")]
    assert r.expects[1].note == "symbolically equal"
    assert r.passed


def test_wrong_expectation_fails_and_shows_the_answer():
    r = check("x = -2; y = 5; z = -4\nq = x + y\nf = q * z\nexpect dx = 3")
    e = r.expects[0]
    assert e.status == "fail" and e.note == "dx is -4, not 3" and not r.passed


def test_equal_at_the_point_only_is_caught_symbolically():
    r = check("x = -2; y = 5; z = -4\nq = x + y\nf = q * z\nexpect dx = z*z/4 - 8")
    e = r.expects[0]
    assert e.status == "fail" and e.note == "equal at this point only: dx = z"


def test_rounded_expectations_use_the_digits_written():
    assert check("x = 1\nf = sigmoid(x)\nexpect dx = 0.20").passed       # 0.1966 to 2 decimals
    assert not check("x = 1\nf = sigmoid(x)\nexpect dx = 0.200").passed   # not to 3
    assert not check("x = 1\nf = sigmoid(x)\nexpect dx = 0").passed       # integers are exact


def test_tensor_expectation():
    r = check("W = [[0.1, 0.5], [-0.3, 0.8]]\nx = [0.2, 0.4]\nf = sum((W @ x)^2)\n"
              "expect dx = [-0.112, 0.636]\nexpect dW = [[0.088, 0.176], [0.104, 0.208]]")
    assert [e.status for e in r.expects] == ["pass", "pass"]


@pytest.mark.parametrize("src,fragment", [
    ("x = 1\nf = x * 2\nexpect x = 2", "'x' is not the gradient of a named node"),
    ("x = 1\nf = x * 2\nexpect dy = 2", "'dy' is not the gradient of a named node"),
    ("const c = 1\nx = 1\nf = x * c\nexpect dc = 1", "is a const"),
    ("x = 1\nf = x * 2\nexpect dx = q", "unknown name 'q'"),
    ("x = [1, 2]\nf = sum(x)\nexpect dx = [1, 1, 1]", "expected a gradient of shape (2,)"),
])
def test_bad_expectations_are_input_errors(src, fragment):
    err = check(src).error
    assert err is not None and fragment in err.message


def test_expect_json():
    result = CliRunner().invoke(main, ["check", str(EXPRESSIONS / "gate_sigmoid.grad"), "--format", "json"])
    import json
    exp = json.loads(result.stdout)["results"][0]["expects"]
    assert [e["target"] for e in exp] == ["dw0", "dx0", "ddot"]
    assert exp[0] == {"target": "dw0", "expected": -0.2, "actual": pytest.approx(-0.1966, abs=1e-4), "status": "pass",
                      "line": 11, "col": 8, "note": None}


@pytest.mark.parametrize("x, status", [("1.0000000003", "pass"), ("1.000000003", "fail")])
def test_an_integer_expect_matches_to_1e9_held_both_ways(x, status):
    # dx = 4x: 3e-10 off is float rounding (within INTEGER_RTOL), 3e-9 off is not; a formula likewise
    r = check(f"x = {x}\nf = 2*x*x\nexpect dx = 4\n")
    assert r.expects[0].status == status
    if status == "fail":
        assert r.expects[0].note == "dx is 4.000000012, not 4.0"  # digits enough to tell them apart
    formula = check(f"x = 1\ny = {x}\nf = 2*x*x\nexpect dx = 4*y\n", symbolic=False)
    assert formula.expects[0].status == status


def test_a_gate_whose_inner_gate_cannot_be_differentiated_fails_never_a_traceback():
    # g's d line has the wrong shape (it broadcasts to g's output); g2 differentiates through a body
    # that calls g: g's partial gradients are shaped for g, so g2 fails with g's reason, not a
    # broadcasting traceback (found by the fuzz campaign once it wrote gates calling gates)
    src = ("gate g(t) = concatenate(max((1e8 >= t), -1), concatenate(t, t))\n  dt = dout * (-t - tanh(out))\n"
           "gate g2(t) = g(g(t).T)\nz = randn(4, 3)\nh = sum(g2(z))\n")
    report = check(src)
    assert report.error is None and not report.passed
    assert any("gate 'g': dt cannot be computed" in (r.note or "") for r in report.nodes + report.gates)
