"""Optional: the same gradients from torch.autograd (skipped where PyTorch is not installed)."""

import numpy as np
import pytest

from gradcheck_cli import check, check_file
from conftest import EXPRESSIONS, rows

torch = pytest.importorskip("torch")


def leaves(report):
    return {r.name: torch.tensor(np.asarray(r.value, dtype=float), dtype=torch.float64, requires_grad=r.op == "input")
            for r in report.nodes if r.op in ("input", "const")}


def assert_same(report, t, names):
    for name in names:
        np.testing.assert_allclose(np.asarray(rows(report)[name].grad), t[name].grad.numpy(), rtol=1e-10, atol=1e-13)


def test_two_layer_softmax_matches_torch():
    r = check_file(EXPRESSIONS / "two_layer_softmax.grad")
    t = leaves(r)
    H = torch.relu(t["X"] @ t["W1"] + t["b1"])
    S = H @ t["W2"] + t["b2"]
    L = (torch.logsumexp(S, dim=1) - (S * t["Y"]).sum(dim=1)).mean()
    L.backward()
    assert float(r.value) == pytest.approx(L.item(), rel=1e-12)
    assert_same(r, t, ["W1", "b1", "W2", "b2"])


def test_svm_loss_matches_torch():
    r = check_file(EXPRESSIONS / "svm_loss.grad")
    t = leaves(r)
    S = t["X"] @ t["W"]
    correct = (S * t["Y"]).sum(dim=1, keepdim=True)
    L = (torch.relu(S - correct + 1) * (1 - t["Y"])).sum(dim=1).mean()
    L.backward()
    assert_same(r, t, ["W"])


def test_cs224n_network_matches_torch():
    r = check_file(EXPRESSIONS / "cs224n_network.grad")
    t = leaves(r)
    s = t["u"] @ torch.sigmoid(t["W"] @ t["x"] + t["b"])
    s.backward()
    assert_same(r, t, ["W", "x", "b", "u"])


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "^"])
def test_broadcasting_matches_torch(op):
    r = check(f"a = rand(7, 6) + 0.5\nb = rand(1, 6) + 0.5\nc = rand(6) + 0.5\nf = sum(exp((a {op} b) {op} c) * 0.1)")
    t = leaves(r)
    fn = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "^": torch.pow}[op]
    (torch.exp(fn(fn(t["a"], t["b"]), t["c"])) * 0.1).sum().backward()
    assert_same(r, t, ["a", "b", "c"])


def test_reductions_and_softmax_match_torch():
    r = check("x = randn(3, 4)\nf = sum(softmax(x, axis=1) * [1, 2, 3, 4]) + max(norm(x, axis=0)) + mean(x, 0)[0] * 0")
    assert r.error is not None  # indexing is not part of the language
    r = check("x = randn(3, 4)\nconst w = [1, 2, 3, 4]\nf = sum(softmax(x, axis=1) * w) + max(norm(x, axis=0)) + sum(mean(x, 0))")
    t = leaves(r)
    w = torch.tensor([1, 2, 3, 4.0], dtype=torch.float64)
    f = (torch.softmax(t["x"], dim=1) * w).sum() + torch.linalg.norm(t["x"], dim=0).max() + t["x"].mean(dim=0).sum()
    f.backward()
    assert_same(r, t, ["x"])
