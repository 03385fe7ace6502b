"""The language for real layers: indexing, slicing, shape moves, conv and pooling, consts
in gates; the CS231n layers in expressions/ with their classic mistakes; the new constructs' bad forms."""

import re

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check
from gradcheck_cli.cli import main
from conftest import EXPRESSIONS, assert_positioned_error, rows

LAYERS = ["cs231n_conv_layer", "cs231n_conv_naive", "cs231n_maxpool", "cs231n_word_embedding", "cs231n_rnn_step", "cs231n_lstm_step",
          "cs231n_svm_labels", "cs231n_softmax_labels", "cs231n_temporal_softmax", "cs231n_spatial_batchnorm"]


def annotations(text: str, name: str = "bug.grad"):
    """(line, title) of each GitHub annotation of checking `text`."""
    report = check(text, source=name)
    assert report.error is None, report.error.format()
    from gradcheck_cli.render.github import render_github
    from gradcheck_cli.core.report import RunReport
    out = render_github(RunReport([report]))
    return report, [(int(m.group(1)), m.group(2)) for m in re.finditer(r"::error file=[^,]*,line=(\d+),col=\d+,title=([^:]*)::", out)]


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_passes_with_full_symbolic_coverage(name):
    report = check((EXPRESSIONS / f"{name}.grad").read_text(), source=name)
    assert report.error is None and report.passed, [(r.name, r.status, r.note) for r in report.nodes]
    assert report.symbolic_coverage == 1.0
    hand = [g for g in report.gates if g.input.startswith("d")]
    assert hand and all(g.status in ("pass", "kink") for g in hand)  # the hand-derived backward, on its own


def _mutate(name: str, old: str, new: str) -> str:
    text = (EXPRESSIONS / f"{name}.grad").read_text()
    assert old in text, old
    return text.replace(old, new)


def _line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(start))


@pytest.mark.parametrize("name, old, new, line_start", [
    # conv: the kernel not turned 180° in dx's full convolution
    ("cs231n_conv_layer", "wflip = flip(transpose(w, [1, 0, 2, 3]), [2, 3])", "wflip = transpose(w, [1, 0, 2, 3])",
     "wflip ="),
    # conv: dx's padding not cropped back (the full convolution padded by HH - 1 instead of HH - 1 - pad)
    ("cs231n_conv_layer", "pad=w.shape[2] - 1 - pad)", "pad=w.shape[2] - 1)", "dx ="),
    # naive conv: the padding not cropped off dx, then the shifted slices padded on the wrong sides
    ("cs231n_conv_naive", "dx = dxpad[:, :, pad:-pad, pad:-pad]", "dx = dxpad", "dx ="),
    ("cs231n_conv_naive", "[di, HH - 1 - di], [dj, WW - 1 - dj]", "[HH - 1 - di, di], [WW - 1 - dj, dj]", "dxpad ="),
    # max-pool: the gradient to every element of a tied window, not shared
    ("cs231n_maxpool", "dx = reshape(share * ", "dx = reshape(hit * ", "dx ="),
    # embedding: `=` instead of a scatter-add for the repeated words
    ("cs231n_word_embedding", "dW = add_at(0 * W, words, dout)", "dW = set_at(0 * W, words, dout)", "dW ="),
    # LSTM: the forget and output gates' slices swapped in the backward
    ("cs231n_lstm_step", "df * f * (1 - f), do * o * (1 - o)", "do * o * (1 - o), df * f * (1 - f)", "da ="),
    # LSTM: the gradient arriving on next_c forgotten
    ("cs231n_lstm_step", "dcn = dnext_c + dnext_h", "dcn = dnext_h", "dcn ="),
    # SVM: the correct class's term forgotten
    ("cs231n_svm_labels", "dS = dout * (positive - Y * sum(positive, axis=1, keepdims=1)) / N",
     "dS = dout * positive / N", "dS ="),
    # temporal softmax: the mask forgotten in the backward
    ("cs231n_temporal_softmax", "dxf = dout * (P - eye(V)[yf]) * m[:, None] / N", "dxf = dout * (P - eye(V)[yf]) / N",
     "dxf ="),
    # spatial batchnorm: the mean of dxhat·xhat term dropped
    ("cs231n_spatial_batchnorm", " - xhat * mean(dxhat * xhat, axis=0)", "", "dxf ="),
])
def test_a_classic_mistake_is_named_at_its_own_line_and_nowhere_else(name, old, new, line_start):
    text = _mutate(name, old, new)
    if name == "cs231n_maxpool":  # the mistake shows only where a window ties
        text = text.replace("[[[[1.0, 3.0, 0.5, 0.6], [2.0, -1.0, 0.4, 0.2],", TIED)
    wflip_is_a_forward_local = line_start == "wflip ="  # wflip only feeds dx: the mistake shows at dx
    want = _line_of(text, "dx =" if wflip_is_a_forward_local else line_start)
    report, found = annotations(text)
    assert not report.passed
    assert [line for line, _ in found] == [want], found


def test_the_conv_layer_matches_the_textbook_shapes_and_torch_where_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")
    report = check((EXPRESSIONS / "cs231n_conv_layer.grad").read_text())
    r = rows(report)
    t = {n: torch.tensor(np.asarray(r[n].value, dtype=float), dtype=torch.float64, requires_grad=n in "xwb")
         for n in ("x", "w", "b", "u")}
    out = torch.nn.functional.conv2d(t["x"], t["w"], t["b"], padding=1)
    (out * t["u"]).sum().backward()
    for n in "xwb":
        np.testing.assert_allclose(r[n].grad, t[n].grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["cs231n_word_embedding", "cs231n_softmax_labels", "cs231n_temporal_softmax",
                                  "cs231n_lstm_step", "cs231n_spatial_batchnorm", "cs231n_maxpool",
                                  "cs231n_svm_labels", "cs231n_rnn_step", "cs231n_conv_naive"])
def test_layer_golden_values_match_torch(name):
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")
    F = torch.nn.functional
    report = check((EXPRESSIONS / f"{name}.grad").read_text())
    r = rows(report)

    def leaf(n, grad=True):
        return torch.tensor(np.asarray(r[n].value, dtype=float), dtype=torch.float64, requires_grad=grad)

    if name == "cs231n_word_embedding":
        W, u = leaf("W"), leaf("u", False)
        words = torch.tensor([[0, 3, 1], [3, 3, 0]])
        loss, inputs = (torch.tanh(F.embedding(words, W)) * u).sum(), {"W": W}
    elif name == "cs231n_softmax_labels":
        S = leaf("S")
        loss, inputs = F.cross_entropy(S, torch.tensor([1, 0, 2, 2, 1])), {"S": S}
    elif name == "cs231n_temporal_softmax":
        x = leaf("x")
        y, mask = torch.tensor([[1, 3, 0], [2, 2, 1]]), torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.float64)
        per = F.cross_entropy(x.reshape(6, 4), y.reshape(6), reduction="none")
        loss, inputs = (per * mask.reshape(6)).sum() / 2, {"x": x}
    elif name == "cs231n_lstm_step":
        inputs = {n: leaf(n) for n in ("x", "h0", "c0", "Wx", "Wh", "b")}
        a = inputs["x"] @ inputs["Wx"] + inputs["h0"] @ inputs["Wh"] + inputs["b"]
        i, f, o, g = torch.sigmoid(a[:, :3]), torch.sigmoid(a[:, 3:6]), torch.sigmoid(a[:, 6:9]), torch.tanh(a[:, 9:])
        cn = f * inputs["c0"] + i * g
        loss = (o * torch.tanh(cn) * leaf("u", False)).sum() + (cn * leaf("v", False)).sum()
    elif name == "cs231n_spatial_batchnorm":
        inputs = {n: leaf(n) for n in ("x", "gamma", "beta")}
        y = F.batch_norm(inputs["x"], None, None, inputs["gamma"], inputs["beta"], training=True, eps=1e-5)
        loss = (y * leaf("u", False)).sum()
    elif name == "cs231n_svm_labels":
        S = leaf("S")
        y = torch.tensor([0, 2, 1, 2])
        correct = S[torch.arange(4), y][:, None]
        margins = torch.relu(S - correct + 1) * (1 - F.one_hot(y, 3).double())
        loss, inputs = margins.sum() / 4, {"S": S}
    elif name == "cs231n_rnn_step":
        inputs = {n: leaf(n) for n in ("x", "h0", "Wx", "Wh", "b")}
        h1 = torch.tanh(inputs["x"] @ inputs["Wx"] + inputs["h0"] @ inputs["Wh"] + inputs["b"])
        loss = (h1 * leaf("u", False)).sum()
    elif name == "cs231n_conv_naive":
        inputs = {n: leaf(n) for n in ("x", "w", "b")}
        loss = (F.conv2d(inputs["x"], inputs["w"], inputs["b"], padding=1) * leaf("u", False)).sum()
    else:
        x = leaf("x")
        loss, inputs = (F.max_pool2d(x, 2) * leaf("u", False)).sum(), {"x": x}
    loss.backward()
    assert float(report.value) == pytest.approx(loss.item(), rel=1e-10)
    for n, t in inputs.items():
        np.testing.assert_allclose(r[n].grad, t.grad.numpy(), rtol=1e-9, atol=1e-12)


TIED = "[[[[1.0, 3.0, 0.5, 0.5], [2.0, -1.0, 0.5, 0.2],"  # the top right window ties three ways


def test_the_naive_conv_loops_give_the_built_in_conv2d_and_its_gradients():
    naive = check((EXPRESSIONS / "cs231n_conv_naive.grad").read_text())
    r = rows(naive)
    at = {n: np.asarray(r[n].value) for n in ("x", "w", "b", "u")}
    built_in = check("x = randn(2, 3, 4, 4)\nw = randn(2, 3, 3, 3)\nb = randn(2)\nconst u = randn(2, 2, 4, 4)\n"
                     "f = sum(conv2d(x, w, b, pad=1) * u)", at=at)
    assert naive.passed and built_in.passed
    assert float(naive.value) == pytest.approx(float(built_in.value), rel=1e-12)
    for n in "xwb":
        np.testing.assert_allclose(r[n].grad, rows(built_in)[n].grad, rtol=1e-11, atol=1e-13)


def test_a_comprehension_unrolls_in_order_with_nested_ranges():
    report = check("x = randn(3, 3)\nf = sum(stack(x[i, j] * (i + 1) for i in range(3) for j in range(i + 1)) * [1, 2, 3, 4, 5, 6])",
                   at={"x": np.arange(9.0).reshape(3, 3)})
    # terms in loop order: (0,0)·1, (1,0)·2, (1,1)·2, (2,0)·3, (2,1)·3, (2,2)·3, weighted 1..6
    want = np.zeros((3, 3))
    for k, (i, j) in enumerate([(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]):
        want[i, j] += (i + 1) * (k + 1)
    np.testing.assert_allclose(rows(report)["x"].grad, want)
    assert report.passed


def test_a_max_pool_tie_is_a_kink_and_its_gradient_is_split():
    text = (EXPRESSIONS / "cs231n_maxpool.grad").read_text()
    report = check(text.replace("[[[[1.0, 3.0, 0.5, 0.6], [2.0, -1.0, 0.4, 0.2],", TIED))
    x = rows(report)["x"]
    assert x.status == "kink"
    g = np.asarray(x.grad)
    # the window [[0.5, 0.5], [0.5, 0.2]] (channel 0, top right) ties three ways: each gets a third of u = -2
    np.testing.assert_allclose(g[0, 0, :2, 2:], [[-2 / 3, -2 / 3], [-2 / 3, 0.0]])


def test_indexing_semantics_follow_numpy():
    x = np.arange(24.0).reshape(2, 3, 4) / 10
    w = np.linspace(-1, 1, 12).reshape(2, 3, 2)
    report = check("x = randn(2, 3, 4)\nconst i = [1, 0, 1]\nconst w = randn(2, 3, 2)\n"
                   "f = sum(x[:, i, ::-2] * w) + sum(x[-1, None, :2, 1:3].T ^ 2)", at={"x": x, "w": w})
    assert report.error is None and report.passed
    want = np.zeros_like(x)
    np.add.at(want, (slice(None), [1, 0, 1], slice(None, None, -2)), w)  # the repeated row 1 adds up
    want[-1, :2, 1:3] += 2 * x[-1, :2, 1:3]
    np.testing.assert_allclose(rows(report)["x"].grad, want)


def test_shape_access_and_consts_feed_parameters_and_gates():
    report = check("const k = 2\nconst alpha = 0.1\nx = randn(4, 6)\n"
                   "gate leaky(t) = where(t > 0, t, alpha * t)\n  dt = dout * where(t > 0, 1, alpha)\n"
                   "f = sum(leaky(reshape(x, x.shape[0] * k, -1)) * arange(3)) + sum(x, axis=k - 1)[0]")
    assert report.error is None and report.passed
    assert [g.status for g in report.gates if g.input == "dt"] == ["pass", "pass"]
    # the d line uses 0.2 where the forward's const says 0.1: its own check fails, at its line
    wrong = check("const alpha = 0.1\nx = randn(3)\ngate leaky(t) = where(t > 0, t, alpha * t)\n"
                  "  dt = dout * where(t > 0, 1, 0.2)\nf = sum(leaky(x))", at={"x": "[-1, 2, -3]"})
    assert not wrong.passed and {g.line for g in wrong.gates if g.status == "fail"} == {4}


BAD = [
    ("x = randn(3, 4)\nconst y = [0, 4, 1]\nf = sum(x[arange(3), y])", "index 4 is out of bounds for axis 1 with size 4", 3, 10),
    ("x = randn(3)\nf = sum(x[1.5])", "an index must be an integer, not 1.5", 2, 11),
    ("x = randn(3)\ni = randn(2)\nf = sum(x[i])", "an index must be a constant", 3, 11),
    ("x = randn(3)\nf = sum(x[0, 1])", "2 indices for an array of shape (3,)", 2, 10),
    ("x = randn(3)\nf = sum(x[::0])", "a slice step must not be 0", 2, 13),
    ("x = randn(3)\nf = sum(x[0:1.5])", "a slice bound must be an integer", 2, 13),
    ("x = randn(3, 4, 5)\nconst i = [0, 1]\nf = sum(x[i, :, i])", "index arrays separated by a slice", 3, 10),
    ("x = randn(3, 4)\nconst i = [[0, 1], [1, 2], [0, 0]]\nconst j = [0, 1, 2]\nf = sum(x[i, j])", "do not broadcast", 4, 10),
    ("x = randn(3, 4)\nf = sum(reshape(x, 5, -1))", "cannot reshape (3, 4) (12 elements)", 2, 9),
    ("x = randn(3, 4)\nf = sum(reshape(x, -1, -1))", "at most one -1", 2, 9),
    ("x = randn(3, 4)\nf = sum(transpose(x, [0, 0]))", "must name each of the 2 axes once", 2, 9),
    ("a = randn(3, 4)\nb = randn(2, 5)\nf = sum(concatenate(a, b))", "cannot concatenate shapes (3, 4), (2, 5)", 3, 9),
    ("a = randn(3)\nb = randn(4)\nf = sum(stack(a, b))", "stack needs arrays of one shape", 3, 9),
    ("x = randn(3)\nf = sum(pad(x, -1))", "pad widths must not be negative", 2, 9),
    ("x = randn(1, 2, 5, 5)\nw = randn(3, 3, 3, 3)\nb = randn(3)\nf = sum(conv2d(x, w, b))",
     "x has 2 channels but w expects 3", 4, 9),
    ("x = randn(1, 2, 6, 6)\nw = randn(3, 2, 3, 3)\nb = randn(3)\nf = sum(conv2d(x, w, b, stride=2))",
     "stride 2 does not tile the 6×6 padded input", 4, 9),
    ("x = randn(1, 2, 5, 5)\nw = randn(3, 2, 3, 3)\nb = randn(3)\nf = sum(conv2d(x, w, b, stride=0))",
     "stride must be positive, not 0", 4, 9),
    ("x = randn(1, 2, 5, 5)\nw = randn(3, 2, 3, 3)\nb = randn(3)\nf = sum(conv2d(x, w, b, stride=1.5))",
     "stride must be an integer, not 1.5", 4, 9),
    ("x = randn(2, 5)\nw = randn(3, 2, 3, 3)\nb = randn(3)\nf = sum(conv2d(x, w, b))", "conv2d(x, w, b) takes x (N, C, H, W)", 4, 9),
    ("x = randn(1, 1, 5, 5)\nf = sum(maxpool2d(x, size=2))", "2×2 windows with stride 2 do not tile a 5×5 input", 2, 9),
    ("x = randn(4)\nf = sum(add_at(x, [0, 7], [1, 2]))", "index 7 is out of bounds", 2, 9),
    ("x = randn(4)\nf = sum(add_at(x, [0, 1], [1, 2, 3]))", "do not fit", 2, 9),
    ("A = randn(2, 3, 4)\nB = randn(3, 4, 2)\nf = sum(A @ B)", "leading (stack) axes (2,) and (3,) do not broadcast", 3, 11),
    ("x = randn(3)\nf = sum(x[arange(0)])", "arange(0,) is empty", 2, 11),
    ("x = randn(3)\nf = sum(x[arange(1e9)])", "arange(...) would have 1,000,000,000 elements", 2, 11),
    ("x = randn(3)\nf = sum(x[None, None, 0, 0])", "2 indices for an array of shape (3,)", 2, 10),
    ("x = randn(4)\nf = sum(x[i] for i in range(0))", "the comprehension's ranges are empty", 2, 14),
    ("x = randn(4)\nf = sum(x[i] for x in range(3))", "the loop variable 'x' is already a name", 2, 14),
    ("x = randn(4)\nf = sum(x[i] for i in range(100000))", "would have 100,000 terms (at most 10,000", 2, 14),
    ("x = randn(4)\nf = exp(x[i] for i in range(3))", "a comprehension goes in sum(...), stack(...)", 2, 5),
    ("x = randn(4)\nf = sum(x[i] for i in range(1.5))", "a range bound must be an integer, not 1.5", 2, 29),
    ("x = randn(4)\nf = sum(x[i] for i in range(4), axis=0)", "sum(... for ...) adds its terms and takes no parameters", 2, 33),
    ("x = randn(4)\nf = sum(x[i] for i in range(1, 2, 3, 4))", "range takes 1 to 3 integers", 2, 14),
    ("x = randn(4)\nf = sum(x[i] for i in range(x[0]))", "a range bound must be a constant", 2, 29),
    ("x = 2\nf = pad(x, 1) * x", "pad takes an array, not a scalar", 2, 5),
    ("x = randn(3)\nf = sum(argmax(x, [1, 0]) * x)", "axis must be one integer", 2, 9),
    ("x = randn(3)\nf = x.size", "attributes are not part of the language (the postfixes are '.T' and '.shape')", 2, 6),
]


@pytest.mark.parametrize("source, fragment, line, col", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_forms_of_the_new_constructs_are_positioned_errors(source, fragment, line, col):
    assert_positioned_error(source, fragment, line, col)


def test_a_bad_index_exits_2_on_the_command_line(tmp_path):
    (tmp_path / "bad.grad").write_text("x = randn(3)\nf = sum(x[5])\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "bad.grad")])
    assert result.exit_code == 2 and f"{tmp_path / 'bad.grad'}:2:10: error: index 5 is out of bounds" in result.output


def test_a_value_made_of_consts_is_a_const_and_an_alias_of_a_const_too():
    report = check("const y = randn(3)\nconst N = 2\nh = y\nn = N * 3\nx = randn(3)\nf = sum(x * h) * n")
    assert report.error is None and report.passed
    status = {r.name: r.status for r in report.nodes}
    assert status["h"] == "skip" and status["n"] == "skip" and status["x"] == "pass"
    np.testing.assert_allclose(rows(report)["x"].grad, 6 * np.asarray(rows(report)["y"].value))


def test_a_random_or_literal_constructor_sized_by_consts_makes_a_leaf(tmp_path):
    # randn(N) with a const N is a value of its own, as randn(3) is: a leaf whose gradient is checked
    (tmp_path / "n.grad").write_text("const N = 3\nx = randn(N)\nb = 0.1 * zeros(N, 2)\nf = sum(x * x) + sum(b)\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "n.grad"), "--format", "json"])
    assert result.exit_code == 0, result.output
    import json
    nodes = {n["name"]: n for n in json.loads(result.output)["results"][0]["nodes"]}
    assert nodes["x"]["op"] == "input" and nodes["x"]["status"] == "pass" and nodes["x"]["shape"] == [3]
    assert nodes["b"]["op"] == "input" and nodes["b"]["shape"] == [3, 2]
    assert nodes["N"]["op"] == "const"
    # a value computed from consts (no constructor) stays a const, and an index made by arange(N) too
    report = check("const N = 3\nn = N * 2\ni = arange(N)\nx = randn(N)\nf = sum(x[i]) * n")
    assert report.error is None and report.passed
    status = {r.name: r.status for r in report.nodes}
    assert status["n"] == "skip" and status["i"] == "skip" and status["x"] == "pass"


def test_a_file_made_of_consts_only_says_which_value_is_a_const_and_why(tmp_path):
    (tmp_path / "c.grad").write_text("const N = 3\nx = N * 2\nf = x * x\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "c.grad")])
    assert result.exit_code == 2
    assert "'x' is a const: it is computed from consts only (N)" in result.output
    assert "x = 6" in result.output
