"""Every convention of CS231n's `layers.py` and `rnn_layers.py` is checkable as written:
several outputs then the cache, an index argument given with --param, losses returning their own
gradient. The layers are examples/python/rnn_layers.py (written here, in the assignments' conventions)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check_layer, check_loss
from gradcheck_cli.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))
import rnn_layers  # noqa: E402

LSTM = ["--shape", "x=3,4", "--shape", "prev_h=3,5", "--shape", "prev_c=3,5", "--shape", "Wx=4,20",
        "--shape", "Wh=5,20", "--shape", "b=20"]


def _run(*args):
    return CliRunner().invoke(main, ["check-py", *args])


def test_several_outputs_then_the_cache_with_an_upstream_gradient_for_each():
    result = _run(str(EXAMPLES / "rnn_layers.py") + "::lstm_step", *LSTM)
    assert result.exit_code == 0, result.output
    assert "6 of 6 pass" in result.output or result.output.count("pass") >= 6


def test_a_wrong_gradient_of_one_of_several_outputs_fails_at_its_line():
    def wrong(dnext_h, dnext_c, cache):
        dx, dprev_h, dprev_c, dWx, dWh, db = rnn_layers.lstm_step_backward(dnext_h, dnext_c, cache)
        dprev_c = dnext_c * cache[6]  # the path through next_h forgotten
        return dx, dprev_h, dprev_c, dWx, dWh, db
    rng = np.random.default_rng(0)
    shapes = {"x": (3, 4), "prev_h": (3, 5), "prev_c": (3, 5), "Wx": (4, 20), "Wh": (5, 20), "b": (20,)}
    report = check_layer(rnn_layers.lstm_step_forward, wrong, {k: rng.standard_normal(s) for k, s in shapes.items()})
    status = {r.name: r.status for r in report.nodes}
    assert status["prev_c"] == "fail" and all(s == "pass" for k, s in status.items() if k != "prev_c"), status
    line = next(r.line for r in report.nodes if r.name == "prev_c")
    assert "dprev_c = dnext_c * cache[6]" in Path(__file__).read_text().splitlines()[line - 1]


def test_an_index_argument_arrives_as_an_integer_array():
    seen = []

    def embed_forward(x, W):
        seen.append((type(x), x.dtype.kind, x.shape))  # a correct layer reads x.shape
        return rnn_layers.word_embedding_forward(x, W)
    report = check_layer(embed_forward, rnn_layers.word_embedding_backward, {"W": np.ones((5, 3))},
                         {"x": np.array([[4, 3, 3], [4, 2, 3]])})
    assert report.passed and seen[0] == (np.ndarray, "i", (2, 3))
    result = _run(str(EXAMPLES / "rnn_layers.py") + "::word_embedding", "--param", "x=[[4, 3, 3], [4, 2, 3]]",
                  "--shape", "W=5,3")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("loss, extra", [
    ("svm_loss", ["--param", "y=[1, 0, 4, 2]"]),
    ("softmax_loss", ["--param", "y=[1, 0, 4, 2]"]),
])
def test_losses_that_return_their_own_gradient(loss, extra):
    result = _run(str(EXAMPLES / "rnn_layers.py") + "::" + loss, "--shape", "x=4,5", *extra)
    assert result.exit_code == 0, result.output


def test_temporal_softmax_loss_with_a_mask():
    result = _run(str(EXAMPLES / "rnn_layers.py") + "::temporal_softmax_loss", "--shape", "x=2,3,4",
                  "--param", "y=[[1, 0, 3], [2, 2, 0]]", "--param", "mask=[[1, 1, 0], [1, 0, 1]]")
    assert result.exit_code == 0, result.output


def test_a_wrong_loss_gradient_fails():
    def softmax_loss_unscaled(x, y):
        loss, dx = rnn_layers.softmax_loss(x, y)
        return loss, dx * x.shape[0]  # the 1/N forgotten
    x = np.random.default_rng(1).standard_normal((4, 5))
    report = check_loss(softmax_loss_unscaled, {"x": x}, {"y": np.array([1, 0, 4, 2])})
    assert report.nodes[0].status == "fail"
    right = check_loss(rnn_layers.softmax_loss, {"x": x}, {"y": np.array([1, 0, 4, 2])})
    assert right.passed


def test_a_loss_that_returns_no_gradient_is_an_input_error(tmp_path):
    (tmp_path / "m.py").write_text("import numpy as np\n\ndef bad_loss(x):\n    return float(np.sum(x ** 2))\n")
    result = _run(str(tmp_path / "m.py") + "::bad_loss", "--shape", "x=3")
    assert result.exit_code == 2
    assert "must return (loss, gradient)" in result.output and "Traceback" not in result.output


def test_a_gradient_of_another_shape_is_named_with_the_convention_it_was_read_by():
    def two_outputs(x):  # read as (loss, gradient): a second value of another shape than x's
        return x * 2, x[:2] * 3

    def scalar_loss(x, y):  # a real loss whose dx lost a column
        loss, dx = rnn_layers.softmax_loss(x, y)
        return loss, dx[:, :-1]
    x = np.random.default_rng(2).standard_normal((4, 5))
    for function, wrong, right in ((two_outputs, (2, 5), (4, 5)), (scalar_loss, (4, 4), (4, 5))):
        params = {"y": np.array([1, 0, 4, 2])} if function is scalar_loss else None
        (row,) = check_loss(function, {"x": x}, params).nodes
        assert row.status == "fail"
        assert (f"{function.__name__} is read as (loss, gradient): its gradient for x has shape {wrong}, "
                f"but x has {right}") in row.note, row.note
        assert "broadcast" not in row.note


def test_an_unknown_name_lists_what_could_be_meant(tmp_path):
    (tmp_path / "m.py").write_text("x_forward = None\n")
    result = _run(str(tmp_path / "m.py") + "::nosuch", "--shape", "x=3")
    assert result.exit_code == 2 and "returning (loss, gradient)" in result.output


def test_a_forward_returning_one_item_is_refused_clearly(tmp_path):
    (tmp_path / "m.py").write_text("def a_forward(x):\n    return (x,)\n\ndef a_backward(d, c):\n    return d\n")
    result = _run(str(tmp_path / "m.py") + "::a", "--shape", "x=3")
    assert result.exit_code == 2
    assert "must return (out, cache), or several outputs and then the cache" in result.output


@pytest.mark.parametrize("spec", ["rnn", "rnn_forward"])  # ::NAME or the forward's own name
def test_a_sequence_layer_and_its_step(spec):
    shapes = ["--shape", "x=2,3,4", "--shape", "h0=2,5", "--shape", "Wx=4,5", "--shape", "Wh=5,5", "--shape", "b=5"]
    assert _run(str(EXAMPLES / "rnn_layers.py") + "::" + spec, *shapes).exit_code == 0
    step = ["--shape", "x=2,4", "--shape", "prev_h=2,5", "--shape", "Wx=4,5", "--shape", "Wh=5,5", "--shape", "b=5"]
    assert _run(str(EXAMPLES / "rnn_layers.py") + "::rnn_step", *step).exit_code == 0


@pytest.mark.parametrize("value", ["[[1, 2], [3]]", '["a", 1]'])
def test_a_ragged_or_mixed_param_is_passed_as_written_never_a_traceback(value):
    # arrays of numbers become numpy arrays; anything else reaches the layer as the JSON list it is
    # (here the layer cannot index with it: an input error at its line, exit 2, no traceback)
    result = _run(str(EXAMPLES / "rnn_layers.py") + "::word_embedding", "--param", f"x={value}", "--shape", "W=5,3")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "rnn_layers.py" in result.output
