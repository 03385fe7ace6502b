"""Optional: the same gradients from torch.autograd (skipped where PyTorch is not installed)."""

import numpy as np
import pytest

from gradcheck_cli import check, check_file
from conftest import EXPRESSIONS, rows

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")


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
    r = check("x = randn(3, 4)\nconst w = [1, 2, 3, 4]\nf = sum(softmax(x, axis=1) * w) + max(norm(x, axis=0)) + sum(mean(x, 0))")
    t = leaves(r)
    w = torch.tensor([1, 2, 3, 4.0], dtype=torch.float64)
    f = (torch.softmax(t["x"], dim=1) * w).sum() + torch.linalg.norm(t["x"], dim=0).max() + t["x"].mean(dim=0).sum()
    f.backward()
    assert_same(r, t, ["x"])


def test_indexing_slicing_and_moving_gates_match_torch():
    r = check("x = randn(4, 5)\nW = randn(6, 3)\nconst idx = [1, 5, 1, 1]\nconst y = [0, 4, 2, 2]\n"
              "a = x[arange(4), y] * x[:, ::-2][:, 0]\n"
              "b = W[idx] @ reshape(x[:3, :2], 3, 2)[:, 0]\n"
              "c = transpose(stack(x, x * x, axis=0), [2, 1, 0])[1:3]\n"
              "d = concatenate(x, pad(x, 1)[1:-1, 1:], axis=1)\n"
              "f = sum(a) + sum(b * b) + sum(c ^ 3) + sum(d * flip(d, 1)) + sum(where(x > 0, x, 0.1 * x))")
    assert r.error is None and r.passed
    t = leaves(r)
    x, W = t["x"], t["W"]
    idx, y = torch.tensor([1, 5, 1, 1]), torch.tensor([0, 4, 2, 2])
    a = x[torch.arange(4), y] * torch.flip(x, dims=[1])[:, ::2][:, 0]
    b = W[idx] @ x[:3, :2].reshape(3, 2)[:, 0]
    c = torch.stack([x, x * x], dim=0).permute(2, 1, 0)[1:3]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    d = torch.cat([x, padded[1:-1, 1:]], dim=1)
    f = a.sum() + (b * b).sum() + (c ** 3).sum() + (d * torch.flip(d, dims=[1])).sum() + torch.where(x > 0, x, 0.1 * x).sum()
    f.backward()
    assert float(r.value) == pytest.approx(f.item(), rel=1e-12)
    assert_same(r, t, ["x", "W"])


def test_add_at_and_batched_matmul_match_torch():
    r = check("E = randn(5, 3)\nV = randn(4, 3)\nA = randn(2, 3, 4)\nB = randn(4, 2)\nconst idx = [0, 3, 3, 0]\n"
              "f = sum(add_at(E, idx, V) ^ 2) + sum((A @ B) ^ 2) + sum(A @ B[:, 0])")
    assert r.error is None and r.passed
    t = leaves(r)
    out = t["E"].index_add(0, torch.tensor([0, 3, 3, 0]), t["V"])
    f = (out ** 2).sum() + ((t["A"] @ t["B"]) ** 2).sum() + (t["A"] @ t["B"][:, 0]).sum()
    f.backward()
    assert_same(r, t, ["E", "V", "A", "B"])


@pytest.mark.parametrize("stride, pad", [(1, 1), (2, 0), (2, 1)])
def test_conv2d_and_maxpool2d_match_torch(stride, pad):
    r = check(f"x = randn(2, 3, 7, 7)\nw = randn(4, 3, 3, 3)\nb = randn(4)\n"
              f"f = sum(conv2d(x, w, b, stride={stride}, pad={pad}) ^ 2) + sum(maxpool2d(x[:, :, :6, :6], size=2) * x[:, :, :3, :3])")
    assert r.error is None and r.passed, [(n.name, n.status, n.note) for n in r.nodes if n.status != "pass"]
    t = leaves(r)
    conv = torch.nn.functional.conv2d(t["x"], t["w"], t["b"], stride=stride, padding=pad)
    pool = torch.nn.functional.max_pool2d(t["x"][:, :, :6, :6], 2)
    f = (conv ** 2).sum() + (pool * t["x"][:, :, :3, :3]).sum()
    f.backward()
    assert float(r.value) == pytest.approx(f.item(), rel=1e-12)
    assert_same(r, t, ["x", "w", "b"])
