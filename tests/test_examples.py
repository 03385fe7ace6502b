"""Every example in expressions/ passes, and reproduces the numbers published in the seeds' notes."""

import numpy as np
import pytest

from gradcheck_cli import check_file
from conftest import EXPRESSIONS, grad, rows

EXAMPLES = sorted(EXPRESSIONS.glob("*.grad"))


AT_KINKS = {"cs231n_conv_relu_zeros.grad"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes(path):
    report = check_file(path)
    assert report.error is None, report.error and report.error.format()
    assert report.passed, [(r.name, r.status, r.note) for r in report.nodes if r.status != "pass"]
    statuses = {r.status for r in report.nodes}
    if path.name in AT_KINKS:  # checked at exact zeros on purpose: kinks, each a valid chain rule
        assert "kink" in statuses and statuses <= {"pass", "skip", "kink"}
    else:
        assert statuses <= {"pass", "skip"}


def test_cs231n_circuit_published_numbers():
    r = check_file(EXPRESSIONS / "cs231n_circuit.grad")
    assert float(r.value) == -12.0
    assert grad(r, "x") == pytest.approx(-4)
    assert grad(r, "y") == pytest.approx(-4)
    assert grad(r, "z") == pytest.approx(3)
    assert grad(r, "q") == pytest.approx(-4)


@pytest.mark.parametrize("name", ["cs231n_sigmoid.grad", "cs231n_sigmoid_gate.grad"])
def test_sigmoid_neuron_published_numbers(name):
    r = check_file(EXPRESSIONS / name)
    assert float(r.value) == pytest.approx(0.73, abs=0.005)
    published = {"w0": -0.20, "x0": 0.39, "w1": -0.39, "x1": -0.59, "w2": 0.20, "dot": 0.20}
    for node, value in published.items():
        assert grad(r, node) == pytest.approx(value, abs=0.005), node


def test_sigmoid_written_out_shows_the_notes_chain():
    r = check_file(EXPRESSIONS / "cs231n_sigmoid.grad")
    by_name = rows(r)
    chain = [(n, by_name[n].op) for n in ("-dot", "exp(-dot)", "1 + exp(-dot)", "f")]
    assert chain == [("-dot", "*-1"), ("exp(-dot)", "exp"), ("1 + exp(-dot)", "+1"), ("f", "1/x")]
    assert grad(r, "1 + exp(-dot)") == pytest.approx(-0.53, abs=0.005)
    assert grad(r, "exp(-dot)") == pytest.approx(-0.53, abs=0.005)
    assert grad(r, "-dot") == pytest.approx(-0.20, abs=0.005)
    assert grad(r, "dot") == pytest.approx(0.20, abs=0.005)


def test_cs224n_max_published_numbers():
    r = check_file(EXPRESSIONS / "cs224n_max.grad")
    assert float(r.value) == 6
    assert (grad(r, "x"), grad(r, "y"), grad(r, "z")) == (2, 5, 0)


def test_patterns_in_backward_flow_published_numbers():
    r = check_file(EXPRESSIONS / "cs231n_patterns.grad")
    assert float(r.value) == -20
    assert [float(grad(r, n)) for n in "xyzw"] == [-8, 6, 2, 0]


def test_norm_wx_published_numbers():
    r = check_file(EXPRESSIONS / "cs231n_norm_wx.grad")
    assert float(r.value) == pytest.approx(0.116)
    np.testing.assert_allclose(grad(r, "W"), [[0.088, 0.176], [0.104, 0.208]], atol=1e-12)
    np.testing.assert_allclose(grad(r, "x"), [-0.112, 0.636], atol=1e-12)


def test_matmul_rule_dW_is_dD_Xt_and_dX_is_Wt_dD():
    """D = W @ X has a 5×3 output: the Jacobian pulled back along any dD gives dD·Xᵀ and Wᵀ·dD."""
    r = check_file(EXPRESSIONS / "cs231n_matmul.grad")
    by_name = rows(r)
    W, X = (np.asarray(by_name[n].value) for n in "WX")
    JW, JX = grad(r, "W"), grad(r, "X")
    assert JW.shape == (5, 3, 5, 10) and JX.shape == (5, 3, 10, 3)
    dD = np.random.default_rng(1).standard_normal((5, 3))
    np.testing.assert_allclose(np.tensordot(dD, JW, axes=2), dD @ X.T, atol=1e-12)
    np.testing.assert_allclose(np.tensordot(dD, JX, axes=2), W.T @ dD, atol=1e-12)


def test_cs224n_network_formulas():
    """s = uᵀ σ(Wx + b): ds/db = u ∘ σ'(z) = δ, ds/dW = δ xᵀ, ds/dx = Wᵀ δ."""
    r = check_file(EXPRESSIONS / "cs224n_network.grad")
    v = {n: np.asarray(row.value) for n, row in rows(r).items()}
    sig = 1 / (1 + np.exp(-v["z"]))
    delta = v["u"] * sig * (1 - sig)
    np.testing.assert_allclose(grad(r, "b"), delta, rtol=1e-12)
    np.testing.assert_allclose(grad(r, "W"), np.outer(delta, v["x"]), rtol=1e-12)
    np.testing.assert_allclose(grad(r, "x"), v["W"].T @ delta, rtol=1e-12)


def test_two_layer_net_and_svm_have_frozen_labels():
    for name in ("two_layer_softmax.grad", "svm_loss.grad"):
        r = check_file(EXPRESSIONS / name)
        assert rows(r)["Y"].status == "skip" and rows(r)["X"].status == "skip"
        assert rows(r)["Y"].grad is None


@pytest.mark.parametrize("path", sorted(EXPRESSIONS.glob("*.grad")), ids=lambda p: p.name)
def test_symbolic_covers_every_example(path):
    report = check_file(path)
    assert report.symbolic_coverage is not None and report.symbolic_coverage >= 0.95
