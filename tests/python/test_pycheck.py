"""Checks of real Python layers: check_layer, check_function, `check-py`, testing helpers."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)
from click.testing import CliRunner

from gradcheck_cli import check_function, check_layer
from gradcheck_cli.cli import main
from gradcheck_cli.python import pyrunner
from gradcheck_cli.python.pyrunner import FunctionRunner
from gradcheck_cli.testing import assert_function, assert_layer

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "python"
sys.path.insert(0, str(EXAMPLES))

import layers  # noqa: E402
import layers_wrong  # noqa: E402

RNG = np.random.default_rng(7)
CASES = {
    "affine": ({"x": RNG.standard_normal((10, 20, 3)), "w": RNG.standard_normal((60, 5)),
                "b": RNG.standard_normal(5)}, {}),
    "relu": ({"x": RNG.standard_normal((10, 10))}, {}),
    "batchnorm": ({"x": RNG.standard_normal((10, 5)), "gamma": RNG.standard_normal(5),
                   "beta": RNG.standard_normal(5)}, {"bn_param": {"mode": "train"}}),
    "conv": ({"x": RNG.standard_normal((2, 3, 5, 5)), "w": RNG.standard_normal((4, 3, 3, 3)),
              "b": RNG.standard_normal(4)}, {"conv_param": {"stride": 1, "pad": 1}}),
}
WRONG_INPUT = {"affine": "b", "relu": "x", "batchnorm": "x", "conv": "x"}


def pair(module, name):
    suffix = "_naive" if name == "conv" else ""
    return getattr(module, f"{name}_forward{suffix}"), getattr(module, f"{name}_backward{suffix}")


def bug_line(name: str) -> int:
    """The line of `layers_wrong.py` whose returned gradient the bug ends in (the `# bug` comment's
    function, its last assignment of the failing input's gradient)."""
    source = (EXAMPLES / "layers_wrong.py").read_text().splitlines()
    start = next(i for i, text in enumerate(source) if re.match(rf"def {name}_backward", text))
    target = "d" + WRONG_INPUT[name]
    lines = [i + 1 for i, text in enumerate(source[start:], start) if re.match(rf"\s+{target} = ", text)]
    end = next((i for i, text in enumerate(source[start + 1:], start + 1) if text.startswith("def ")), len(source))
    return max(i for i in lines if i <= end)


@pytest.mark.parametrize("name", sorted(CASES))
def test_right_layers_pass_every_input_at_both_points(name):
    inputs, params = CASES[name]
    report = check_layer(*pair(layers, name), inputs, params)
    assert report.error is None and report.passed, [(r.name, r.status, r.note) for r in report.nodes]
    assert [r.name for r in report.nodes] == list(inputs)
    assert {g.point for g in report.gates} == {2} and len(report.gates) == len(inputs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_classic_mistakes_fail_on_the_right_input_and_line(name):
    inputs, params = CASES[name]
    report = check_layer(*pair(layers_wrong, name), inputs, params)
    assert report.error is None and not report.passed
    failing = {r.name for r in report.nodes if r.status == "fail"}
    assert failing == {WRONG_INPUT[name]}
    row = next(r for r in report.nodes if r.status == "fail")
    assert row.line == bug_line(name) and row.culprit == (row.line, row.col)
    assert report.path.endswith("layers_wrong.py")
    assert row.worst_index is not None and len(row.worst_index) == np.ndim(inputs[row.name])


def test_a_backward_that_forgets_dout_fails_although_it_is_right_for_ones():
    # relu_backward without dout is right exactly when dout is all ones: the upstream is random
    x = CASES["relu"][0]["x"]
    dx = layers_wrong.relu_backward(np.ones_like(x), layers_wrong.relu_forward(x)[1])
    assert np.array_equal(dx, layers.relu_backward(np.ones_like(x), x))
    assert not check_layer(*pair(layers_wrong, "relu"), {"x": x}).passed


def test_a_backward_right_only_at_the_given_point_fails_at_the_second():
    def vjp(dout, x):
        return dout * 3 * x ** 2 + (x - 1) ** 3  # the extra term vanishes at x = 1 only
    report = check_function(lambda x: x ** 3, vjp, {"x": np.ones(4)})
    assert report.nodes[0].status == "pass"
    second = [g for g in report.gates if g.point == 2]
    assert second and second[0].status == "fail" and "second, random point (right at the given point" in second[0].note
    assert not report.passed


def test_a_kink_is_told_from_a_bug():
    x = np.array([[0.0, 1.0], [-2.0, 3.0]])  # relu at exactly 0: either one-sided slope is right
    kink = check_layer(layers.relu_forward, layers.relu_backward, {"x": x})
    assert kink.nodes[0].status == "kink" and kink.passed and "one-sided slopes" in kink.nodes[0].note

    def relu_backward_wrong_at_zero(dout, cache):
        return dout * (cache > 0) + 2 * dout * (cache == 0)  # 2·dout at 0: neither slope
    bug = check_layer(layers.relu_forward, relu_backward_wrong_at_zero, {"x": x})
    assert bug.nodes[0].status == "fail" and "outside the one-sided slopes" in bug.nodes[0].note


def test_a_vectorised_forward_is_batched_and_a_row_wise_one_looped():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    u = rng.standard_normal((3, 4))
    tanh = FunctionRunner(lambda a: np.tanh(a[0]), [x], u, np.tanh(x))
    affine = FunctionRunner(lambda a: layers.affine_forward(*a)[0], [x, rng.standard_normal((4, 2)), np.zeros(2)],
                            rng.standard_normal((3, 2)), np.zeros((3, 2)) + layers.affine_forward(
                                x, np.ones((4, 2)), np.zeros(2))[0] * 0)
    assert tanh.batched and not affine.batched
    cross_talk = FunctionRunner(lambda a: a[0] + a[0].sum(), [x], u, x + x.sum())  # sums over the batch axis too
    assert not cross_talk.batched


def test_batched_and_looped_checks_agree():
    x = np.random.default_rng(1).standard_normal(30)
    fast = check_function(np.tanh, lambda dout, x: dout * (1 - np.tanh(x) ** 2), {"x": x})
    slow = check_function(lambda x: np.tanh(np.asarray(x).reshape(-1)[: x.size if x.ndim == 1 else -1]),
                          lambda dout, x: dout * (1 - np.tanh(x) ** 2), {"x": x})
    assert fast.passed and slow.passed
    assert fast.nodes[0].numeric_method == "exhaustive"  # batched: every element, within the budget


def test_the_users_errors_are_reported_not_raised():
    def forward(x):
        raise ValueError("shapes do not align")
    report = check_layer(forward, layers.relu_backward, {"x": np.ones(3)})
    assert report.error is not None and "forward raised ValueError: shapes do not align" in report.error.message
    assert report.error.line == forward.__code__.co_firstlineno + 1

    not_a_pair = check_layer(lambda x: x, layers.relu_backward, {"x": np.ones(3)})
    assert "must return (out, cache)" in not_a_pair.error.message

    def backward_raises(dout, cache):
        raise IndexError("oops")
    raised = check_layer(layers.relu_forward, backward_raises, {"x": np.ones(3)})
    assert raised.error is None and raised.nodes[0].status == "fail"
    assert "backward raised IndexError: oops" in raised.nodes[0].note

    too_few = check_layer(layers.affine_forward, lambda dout, cache: (dout, dout), CASES["affine"][0])
    assert all(r.status == "fail" for r in too_few.nodes) and "must return 3 gradient(s)" in too_few.nodes[0].note

    bad_shape = check_function(np.sin, lambda dout, x: np.cos(x)[:2] * dout[:2], {"x": np.ones(3)})
    assert "has shape (2,), but x has (3,)" in bad_shape.nodes[0].note

    for bad in (np.array([1.0, np.nan]), np.array([]), "abc"):
        assert check_function(np.sin, lambda d, x: d * np.cos(x), {"x": bad}).error is not None


def test_params_are_copied_for_every_call():
    calls = []

    def forward(x, bn_param):
        bn_param["seen"] = bn_param.get("seen", 0) + 1  # a forward that updates its params (running means)
        calls.append(bn_param["seen"])
        return x * 2, None
    params = {"bn_param": {}}
    report = check_layer(forward, lambda dout, cache: dout * 2, {"x": np.ones(3)}, params)
    assert report.passed and params == {"bn_param": {}} and set(calls) == {1}


def test_assert_layer_fails_with_the_table():
    inputs, params = CASES["batchnorm"]
    assert_layer(*pair(layers, "batchnorm"), inputs, params)
    with pytest.raises(AssertionError) as info:
        assert_layer(*pair(layers_wrong, "batchnorm"), inputs, params)
    text = str(info.value)
    assert "fail x" in text and f"line {bug_line('batchnorm')}" in text and "node" in text
    with pytest.raises(AssertionError):
        assert_function(np.sin, lambda d, x: d * np.sin(x), {"x": np.ones(2)})


def test_the_verdict_is_the_same_for_the_same_seed():
    inputs, params = CASES["conv"]
    a = check_layer(*pair(layers, "conv"), inputs, params, seed=3).to_dict()
    b = check_layer(*pair(layers, "conv"), inputs, params, seed=3).to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --- the command line ------------------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(main, list(args))


AFFINE = ["--shape", "x=10,20,3", "--shape", "w=60,5", "--shape", "b=5"]


def test_check_py_finds_the_cs231n_pair_and_sets_the_exit_code():
    good = run("check-py", f"{EXAMPLES}/layers.py::affine", *AFFINE)
    assert good.exit_code == 0, good.output
    bad = run("check-py", f"{EXAMPLES}/layers_wrong.py::affine", *AFFINE)
    assert bad.exit_code == 1 and "fail b" in bad.output
    assert "reproduce: gradcheck check-py" in bad.output
    conv = run("check-py", f"{EXAMPLES}/layers_wrong.py::conv", "--shape", "x=2,3,5,5", "--shape", "w=4,3,3,3",
               "--shape", "b=4", "--param", 'conv_param={"stride": 1, "pad": 1}')
    assert conv.exit_code == 1 and f"(line {bug_line('conv')})" in conv.output


def test_check_py_machine_formats():
    out = run("check-py", f"{EXAMPLES}/layers_wrong.py::affine", *AFFINE, "--format", "json")
    data = json.loads(out.stdout)
    assert data["passed"] is False and [n["status"] for n in data["results"][0]["nodes"]] == ["pass", "pass", "fail"]
    junit = run("check-py", f"{EXAMPLES}/layers_wrong.py::affine", *AFFINE, "--format", "junit")
    ET.fromstring(junit.stdout)
    github = run("check-py", f"{EXAMPLES}/layers_wrong.py::affine", *AFFINE, "--format", "github")
    assert f"layers_wrong.py,line={bug_line('affine')}," in github.stdout


@pytest.mark.parametrize("args, fragment", [
    (["layers.py"], "no such file"),
    (["{ex}/layers.py"], "affine: not checked: give x, w, b"),
    (["::affine", "--shape", "x=2"], "expected FILE.py::NAME"),
    (["nosuch.py::affine", "--shape", "x=2"], "no such file"),
    (["{ex}/layers.py::nosuch", "--shape", "x=2"], "no nosuch_forward/nosuch_backward pair"),
    (["{ex}/layers.py::affine", "--shape", "X=2"], "has no parameter 'X' (its parameters: x, w, b)"),
    (["{ex}/layers.py::affine"], "give each differentiated input's shape"),
    (["{ex}/layers.py::affine", "--shape", "x=2,a"], "expected NAME=D1,D2"),
    (["{ex}/layers.py::affine", "--shape", "x=2", "--param", "w={bad"], "not JSON"),
    (["{ex}/layers.py::affine", "--shape", "x=2,3", "--shape", "w=4,5", "--shape", "b=5"], "forward raised"),
    (["{ex}/layers.py::affine", "--shape", "x=2,3", "--shape", "x=3,4"], "'x' is given twice"),
    (["{ex}/layers.py::affine", "--shape", "x=2,3", "--param", "w=1", "--param", "w=2"], "'w' is given twice"),
    (["{ex}/layers.py::affine", "--shape", "x=\u0662,\u0663"], "expected NAME=D1,D2"),
    (["{ex}/layers.py::affine", "--shape", "x=2,3", "--param", "x=1"], "'x' is given as a --shape and as a --param"),
])
def test_check_py_bad_input_is_exit_2_without_a_traceback(args, fragment):
    result = run("check-py", *[a.replace("{ex}", str(EXAMPLES)) for a in args])
    assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output


def test_an_import_error_points_at_the_users_line(tmp_path):
    (tmp_path / "broken.py").write_text("import numpy as np\n\nBAD = 1 / 0\n")
    result = run("check-py", f"{tmp_path}/broken.py::f", "--shape", "x=2")
    assert result.exit_code == 2 and "broken.py:3:7: error: cannot import" in result.output  # the caret under 1 / 0
    assert "ZeroDivisionError" in result.output and "BAD = 1 / 0" in result.output
    (tmp_path / "syntax.py").write_text("def f(x):\n    return x +\n")
    result = run("check-py", f"{tmp_path}/syntax.py::f", "--shape", "x=2")
    assert result.exit_code == 2 and "syntax.py:2:" in result.output


# Python that looks a class or a function up by its module: the file must be in sys.modules while and after
# its code runs, as an import (and pytest) puts it
BY_ITS_MODULE = '''from __future__ import annotations
import dataclasses, inspect, multiprocessing, pickle
import numpy as np


@dataclasses.dataclass
class Config:
    scale: float = 2.0


def square(v):
    return v * v


def dc_forward(x):
    return Config().scale * x ** 2, x


def dc_backward(dout, cache):
    return 4 * cache * dout


def src_forward(x):
    assert "scale: float" in inspect.getsource(Config)
    return x ** 2, x


def src_backward(dout, cache):
    return 2 * cache * dout


def pk_forward(x):
    assert pickle.loads(pickle.dumps(Config(3.0))).scale == 3.0
    return x ** 2, x


def pk_backward(dout, cache):
    return 2 * cache * dout


def pool_forward(x):
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(square, [1.0, 2.0]) == [1.0, 4.0]
    return x ** 2, x


def pool_backward(dout, cache):
    return 2 * cache * dout
'''


@pytest.mark.parametrize("name", ["dc", "src", "pk", "pool"])
def test_a_file_whose_code_finds_itself_by_its_module_is_checked(tmp_path, name):
    (tmp_path / "mod.py").write_text(BY_ITS_MODULE)
    result = run("check-py", f"{tmp_path}/mod.py::{name}", "--shape", "x=3")
    assert result.exit_code == 0, result.output


def test_a_complex_gradient_fails_its_input_rather_than_lose_its_imaginary_part(tmp_path):
    # right in its real part: cast to float (its imaginary part dropped, numpy's warning hidden) it passed
    (tmp_path / "cplx.py").write_text("def sq_forward(x):\n    return x ** 2, x\n\n\n"
                                      "def sq_backward(dout, cache):\n    return 2 * cache * dout + 5j\n")
    result = run("check-py", f"{tmp_path}/cplx.py::sq", "--shape", "x=5")
    assert result.exit_code == 1 and "returned a complex gradient for x" in result.output, result.output


def test_a_forward_is_never_handed_a_view_of_the_checkers_own_arrays(tmp_path):
    # a forward that wrote into its input in place would move the point the check goes on from: every
    # call gets arrays of its own (at a kink with these values and seed, the analysis output by output ran
    # the forward on a view of the runner's point)
    (tmp_path / "own.py").write_text(
        "import numpy as np\n\n\ndef plain_forward(x, w):\n"
        "    if x.base is not None or w.base is not None:\n        raise ValueError('handed a view')\n"
        "    h = np.maximum(x, 0)\n    a = h @ w\n    return np.maximum(a, 0), (h, w, a)\n\n\n"
        "def plain_backward(dout, cache):\n    h, w, a = cache\n    da = dout * (a > 0)\n"
        "    return (da @ w.T) * (h > 0), h.T @ da\n")
    result = run("check-py", f"{tmp_path}/own.py::plain", "--at", "x=[[1, 1, -1]]", "--at",
                 "w=[[1, -1], [-1, 1], [1, 1]]", "--seed", "6", "-q")
    assert "handed a view" not in result.output and result.exit_code in (0, 1), result.output


def test_a_float32_forward_is_an_error_at_the_forward_not_a_fail(tmp_path):
    # a right layer computed in float32: differenced at float64's steps, its rounding read as its slope,
    # it failed, with notes of kinks that are not there
    (tmp_path / "f32.py").write_text(
        "import numpy as np\n\n\ndef affine_forward(x, w, b):\n"
        "    x, w, b = (a.astype(np.float32) for a in (x, w, b))\n    return x @ w + b, (x, w, b)\n\n\n"
        "def affine_backward(dout, cache):\n    x, w, b = cache\n"
        "    return dout @ w.T, x.T @ dout, dout.sum(axis=0)\n")
    result = run("check-py", f"{tmp_path}/f32.py::affine", "--shape", "x=4,6", "--shape", "w=6,3", "--shape", "b=3")
    assert result.exit_code == 2 and "f32.py:4:1: error: the forward's output is float32" in result.output, result.output
    assert "--dtype float32" in result.output and "kink" not in result.output


def test_a_forward_that_computes_in_float32_inside_is_an_error_at_the_forward_not_a_fail(tmp_path):
    # the same layer returning float64: its values are float32 numbers, and a right backward failed ("beside
    # a kink ... its derivative is 0": steps below float32's spacing gave differences of 0)
    (tmp_path / "f32in.py").write_text(
        "import numpy as np\n\n\ndef affine_forward(x, w, b):\n"
        "    x, w, b = (a.astype(np.float32) for a in (x, w, b))\n"
        "    return (x @ w + b).astype(np.float64), (x, w, b)\n\n\n"
        "def affine_backward(dout, cache):\n    x, w, b = cache\n"
        "    return dout @ w.T, x.T @ dout, dout.sum(axis=0)\n")
    result = run("check-py", f"{tmp_path}/f32in.py::affine", "--shape", "x=4,6", "--shape", "w=6,3", "--shape", "b=3")
    assert result.exit_code == 2 and "f32in.py:4:1: error: the forward computes in float32 and returns float64" \
        in result.output, result.output
    assert "fail" not in result.output and "kink" not in result.output


@pytest.mark.parametrize("forward, backward, x", [
    (lambda x: np.maximum(x, 0.0), lambda d, x: d * (x > 0), [[2.0, -1.0, 0.0], [3.0, 1.0, -2.0]]),  # relu of integers
    (lambda x: np.round(8 * x) / 8, lambda d, x: 0 * d, [[0.3, -1.2, 0.7], [0.1, 2.0, -0.4]]),       # eighths: 4 bits
    (lambda x: np.tanh(x), lambda d, x: d * (1 - np.tanh(x) ** 2), [[0.3, -1.2, 0.7], [0.1, 2.0, -0.4]]),
])
def test_float64_values_that_happen_to_be_float32_numbers_are_not_taken_for_float32(forward, backward, x):
    # FLOAT32_PLAIN: integers, short binary fractions and a 0/1 mask are float32 numbers in float64 too
    report = check_layer(lambda a: (forward(a), a), backward, {"x": np.array(x)})
    assert report.error is None, report.error.message


def test_float32_values_are_told_from_float64_ones():
    assert pyrunner.in_float32(np.tanh(np.float32([0.3, 0.7])).astype(float), np.zeros(2))
    assert not pyrunner.in_float32(np.tanh(np.array([0.3, 0.7])), np.zeros(2))


# a right softplus with the debugging aids people put at the top of a file, set for the whole process
SET_FOR_THE_PROCESS = '''import sys, os, warnings
import numpy as np
np.seterr(all="raise")
warnings.simplefilter("error")


def softplus_forward(x):
    return np.logaddexp(0, x), x


def softplus_backward(dout, cache):
    return dout / (1 + np.exp(-cache))


def streams_forward(x):
    sys.stdout.buffer.write(b"debug\\n")
    os.isatty(sys.stdout.fileno())
    print("x²".encode(sys.stdout.encoding), file=sys.stderr)
    return np.logaddexp(0, x), x


streams_backward = softplus_backward
'''


@pytest.mark.parametrize("name", ["softplus", "streams"])
def test_what_a_file_sets_for_the_process_or_asks_of_its_streams_does_not_fail_a_right_layer(tmp_path, name):
    # np.seterr(all="raise") at import raised in gradcheck's own differences (an underflow at x = -700): exit 2;
    # sys.stdout.buffer, sys.stdout.fileno() and sys.stdout.encoding were missing while the code ran: exit 2
    (tmp_path / "debugging.py").write_text(SET_FOR_THE_PROCESS)
    result = run("check-py", f"{tmp_path}/debugging.py::{name}", "--at", "x=[0.5, -700, 1]", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)  # nothing the code wrote is in it
    assert report["passed"]
    if name == "streams":
        assert "the code printed" in result.output


# A backward that keeps state between its calls: its rerun at a nudged point (which measures its rounding)
# answered otherwise, and the drift, taken for rounding, loosened its tolerance as far: each passed
STATEFUL = '''import numpy as np

_buffer, _calls = {}, [0]


def accumulates(x):
    return np.sin(x)


def accumulates_vjp(dout, x):
    dx = _buffer.setdefault(x.shape, np.zeros(x.shape))  # a gradient buffer never zeroed
    dx += dout * np.cos(x)
    return dx.copy()


def first_call(x):
    return np.sin(x)


def first_call_vjp(dout, x):
    _calls[0] += 1
    dx = dout * np.cos(x)
    return dx * 1.5 if _calls[0] == 1 else dx  # wrong on its first call only (a table filled on first use)
'''


@pytest.mark.parametrize("name", ["accumulates", "first_call"])
def test_a_backward_that_keeps_state_between_calls_fails_at_the_line_it_sets(tmp_path, name):
    (tmp_path / "stateful.py").write_text(STATEFUL)
    result = run("check-py", f"{tmp_path}/stateful.py::{name}", "--shape", "x=3,4")
    said = " ".join(result.output.split())  # the table's notes wrap
    assert result.exit_code == 1 and "gave another dx when called again at the same point" in said, result.output


@pytest.mark.parametrize("times, drift_said", [(1 / 4, False), (4, True)])  # the drift: ½ and 8 × ROUNDING
def test_a_backward_that_alternates_within_rounding_is_not_called_stateful(tmp_path, times, drift_said):
    # wrong by 1% (it fails either way), and alternating call by call by `times` × rounding of itself: the
    # drift is said past that constant only
    rounding = 1024 * 2.0 ** -52  # the documented 1,024 ulps (layouts.ROUNDING), written out: the test holds it
    (tmp_path / "alt.py").write_text(
        "import numpy as np\n\n_calls = [0]\n\n\ndef f(x):\n    return np.sin(x)\n\n\n"
        "def f_vjp(dout, x):\n    _calls[0] += 1\n"
        f"    return 1.01 * dout * np.cos(x) * (1 + (-1) ** _calls[0] * {times * rounding!r})\n")
    result = run("check-py", f"{tmp_path}/alt.py::f", "--shape", "x=3,4")
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and ("called again at the same point" in said) == drift_said, result.output


def test_check_py_with_a_vjp_and_values(tmp_path):
    (tmp_path / "fns.py").write_text(
        "import numpy as np\n\ndef softplus(x):\n    return np.log1p(np.exp(x))\n\n"
        "def softplus_vjp(dout, x):\n    return dout / (1 + np.exp(-x))\n")
    result = run("check-py", f"{tmp_path}/fns.py::softplus", "--at", "x=[0.5, -1, 2]")
    assert result.exit_code == 0, result.output


def test_torch_agrees_with_the_example_layers():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")
    inputs, params = CASES["conv"]
    out, cache = layers.conv_forward_naive(*inputs.values(), **params)
    dout = np.random.default_rng(3).standard_normal(out.shape)
    ours = layers.conv_backward_naive(dout, cache)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    tout = torch.nn.functional.conv2d(t["x"], t["w"], t["b"], stride=1, padding=1)
    np.testing.assert_allclose(tout.detach().numpy(), out, rtol=1e-12, atol=1e-12)
    tout.backward(torch.tensor(dout))
    for k, g in zip(inputs, ours):
        np.testing.assert_allclose(t[k].grad.numpy(), g, rtol=1e-10, atol=1e-12)
    inputs, params = CASES["batchnorm"]
    out, cache = layers.batchnorm_forward(*inputs.values(), **params)
    dout = np.random.default_rng(4).standard_normal(out.shape)
    ours = layers.batchnorm_backward(dout, cache)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    tout = torch.nn.functional.batch_norm(t["x"], None, None, t["gamma"], t["beta"], training=True, eps=1e-5)
    tout.backward(torch.tensor(dout))
    for k, g in zip(inputs, ours):
        np.testing.assert_allclose(t[k].grad.numpy(), g, rtol=1e-8, atol=1e-10)


def _counted(fn, counter: list):
    def run(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)
    return run


def test_a_right_unbatched_layer_costs_eight_differences_a_point_and_no_noise_rerun():
    """Directions whose first difference already agrees get no second step, and the backward's
    noise is measured only where a row does not pass without it (speed)."""
    inputs, _ = CASES["affine"]
    forwards, backwards = [], []
    report = check_layer(_counted(layers.affine_forward, forwards), _counted(layers.affine_backward, backwards), inputs)
    assert report.passed and all(r.numeric_method.startswith("projection") for r in report.nodes)
    # per point: the output (whose cache the backward reuses), 4 directions × ±h; the first point
    # also tries a leading batch axis (one call on two stacked copies, one on the other copy)
    assert len(forwards) == 2 * (1 + 8) + 2
    assert len(backwards) == 2


def test_a_wrong_unbatched_layer_is_refined_rechecked_and_measured_for_noise():
    inputs, _ = CASES["affine"]
    backwards = []
    report = check_layer(layers.affine_forward, _counted(layers_wrong.affine_backward, backwards), inputs)
    b = next(r for r in report.nodes if r.name == "b")
    assert b.status == "fail" and b.numeric_method == "exhaustive"  # the failed projection named its element
    assert [r.status for r in report.nodes if r.name != "b"] == ["pass", "pass"]
    # each point: the backward, then, because a row failed, the backward again at the point itself (does it
    # keep state between calls?) and its noise rerun, and the diagnosis's call at a zero upstream (is the
    # failing gradient scaled by it?)
    assert len(backwards) == 8


@pytest.mark.parametrize("offset, refined", [(0.5, 0), (2.0, 4)])
def test_projected_directions_get_a_second_step_only_when_in_doubt(offset, refined):
    """A direction whose first difference is within REFINE_RTOL·rtol of backprop's projection is
    not refined; one just outside is (so the constant matters both ways)."""
    from gradcheck_cli.oracles import numeric
    x = np.random.default_rng(3).standard_normal(50)
    u = np.random.default_rng(4).standard_normal(7)
    runner = FunctionRunner(lambda a: np.full(7, np.exp(a[0]).sum() / 7), [x], u,
                            np.full(7, np.exp(x).sum() / 7))
    exact = (np.exp(x) * u.sum() / 7)[None, :]
    target = numeric.Target("x", runner.x.copy(), projections=True)
    rtol = 1e-5
    # every projection of the reference is off by `offset` × 0.1 × rtol (REFINE_RTOL's value), relatively
    reference = exact * (1 + offset * 0.1 * rtol)
    result = numeric.differentiate(runner, [target], 6e-6, rtol, 0.0, {"x": reference}, 0)["x"]
    assert result.method == "projection" and result.refined == refined


@pytest.mark.parametrize("on, status", [(True, "pass"), (False, "fail")])
def test_the_backwards_own_rounding_is_measured(monkeypatch, on, status):
    # a backward whose digits jitter with its input (1e-4 relative) is rounding when it jitters as much
    # 4 ulps away; with the pipeline's measurement switched off it would be a bug
    from gradcheck_cli.checking import pipeline
    if not on:
        monkeypatch.setattr(pipeline, "NOISE_STEP", 0.0)
    x = np.array([0.7, -0.3, 1.1])
    report = check_function(np.sin, lambda d, x: d * np.cos(x) * (1 + 1e-4 * np.sin(1e17 * x)), {"x": x})
    assert report.nodes[0].status == status


DROPOUT = '''
import numpy as np


def dropout_forward(x, dropout_param):
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    mask = (np.random.rand(*x.shape) < dropout_param["p"]) / dropout_param["p"]
    return x * mask, mask


def dropout_backward(dout, mask):
    return dout * mask


def affine_forward(x, w, b):
    out = None  # the assignment's stub, not written yet
    return out, (x, w, b)


def affine_backward(dout, cache):
    return None, None, None
'''


def test_a_forward_that_answers_twice_differently_is_an_input_error(tmp_path):
    (tmp_path / "drop.py").write_text(DROPOUT)
    unseeded = run("check-py", f"{tmp_path}/drop.py::dropout", "--shape", "x=4,5", "--param",
                   'dropout_param={"mode": "train", "p": 0.5}')
    assert unseeded.exit_code == 2 and "not deterministic" in unseeded.output and "seed" in unseeded.output
    seeded = run("check-py", f"{tmp_path}/drop.py::dropout", "--shape", "x=4,5", "--param",
                 'dropout_param={"mode": "train", "p": 0.5, "seed": 1}')
    assert seeded.exit_code == 0


def test_an_unwritten_stub_says_it_returned_none(tmp_path):
    (tmp_path / "drop.py").write_text(DROPOUT)
    stub = run("check-py", f"{tmp_path}/drop.py::affine", "--shape", "x=4,5", "--shape", "w=5,3", "--shape", "b=3")
    assert stub.exit_code == 2 and "returned None" in stub.output and "not finite" not in stub.output


def test_a_forward_that_raises_at_a_nudged_point_is_an_input_error_at_its_line():
    # defined at the point, not around it: no gradient to check, and never a traceback
    def picky_forward(x):
        if np.any(x > 0.9999999):
            raise ValueError("too big")  # the line the error points at
        return np.maximum(x, 0), x

    def picky_backward(dout, cache):
        return dout * (cache > 0)
    report = check_layer(picky_forward, picky_backward, {"x": np.array([0.9999999, 0.0, -1.0])})
    assert report.error is not None and "must be defined around the point" in report.error.message
    assert report.error.line == picky_forward.__code__.co_firstlineno + 2


def test_a_losss_rows_show_its_own_gradient_not_one_times_a_hidden_upstream():
    # a loss returning (loss, dx) takes no upstream: the row's backprop is its dx, the differences are the
    # loss's own slopes (the closed form (softmax − onehot)/N, computed here), with no seeded factor
    from gradcheck_cli import check_loss
    x, y = np.array([[1.0, 2.0, 3.0, 1.0], [0.0, 1.0, -1.0, 2.0]]), np.array([1, 0])
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = (p - np.eye(4)[y]) / 2
    import rnn_layers
    (row,) = check_loss(rnn_layers.softmax_loss, {"x": x}, {"y": y}).nodes
    assert row.status == "pass"
    assert np.allclose(row.grad, expected, rtol=1e-12, atol=0) and np.allclose(row.numeric, expected, rtol=1e-6, atol=1e-9)


def test_a_forward_defined_for_positive_inputs_gets_a_second_point_near_zero():
    # log at 1e-5: a move by ~scale·(|v| + 1) leaves the domain at every scale for a draw below 0; a
    # move in proportion to each element keeps it positive. A backward right only at the given point
    # (its input baked in) is caught there
    given = np.array([1e-5, 0.5])

    def log_forward(p):
        return np.log(p), p

    def baked_backward(dout, cache):
        return dout / given
    report = check_layer(log_forward, baked_backward, {"p": given})
    assert report.error is None and not report.passed
    (row,) = report.gates
    assert row.status == "fail" and row.point == 2 and row.note.startswith("wrong at a second, random point"), row
    right = check_layer(log_forward, lambda dout, cache: dout / cache, {"p": given})
    assert right.error is None and right.passed


def test_at_an_all_zero_input_the_second_point_is_another_point():
    # x·√x at zeros: moved by ~scale·(|v| + 1), half the draws leave the domain; moved in proportion, a zero
    # goes to a small positive value (it stayed at 0: the second point was the first, and a slip passed as
    # `warn` there). The slip √x for 1.5·√x is wrong at every x > 0 (closed form)
    zeros = np.zeros((3, 4))

    def forward(x):
        return x * np.sqrt(x), x
    slip = check_layer(forward, lambda dout, x: dout * np.sqrt(x), {"x": zeros})
    assert slip.error is None and not slip.passed
    assert any(g.point == 2 and g.status == "fail" for g in slip.gates), slip.gates
    right = check_layer(forward, lambda dout, x: dout * 1.5 * np.sqrt(x), {"x": zeros})
    assert right.error is None and right.passed


def test_many_tiny_values_differenced_along_random_directions_narrow_past_the_domains_edge():
    # 100 values of ~1e-8 (past the element budget: random directions, each moving every element by h =
    # 6e-6, below 0): narrowed, √x's slip dout/√x (for dout/(2√x)) fails and the right one passes
    x = (np.abs(np.random.default_rng(3).standard_normal(100)) + 0.1) * 1e-8

    def forward(x):
        y = np.sqrt(x)
        return y, y
    slip = check_layer(forward, lambda dout, y: dout / y, {"x": x})
    assert slip.error is None and [r.status for r in slip.nodes] == ["fail"], [(r.status, r.note) for r in slip.nodes]
    right = check_layer(forward, lambda dout, y: dout / (2 * y), {"x": x})
    assert right.error is None and right.passed and [r.status for r in right.nodes] == ["pass"]


def test_a_forward_defined_at_the_given_point_alone_is_an_error_that_names_the_second_point():
    given = np.array([1.0, 2.0])

    def only_here_forward(x):
        return (x.copy() if np.array_equal(x, given) else np.full(x.shape, np.nan)), None

    report = check_layer(only_here_forward, lambda dout, cache: dout, {"x": given})
    assert report.error is not None
    assert report.error.message.startswith("at a second point near the given one (every input moved by 0.4% to 10%")
    assert "not finite" in report.error.message


@pytest.mark.parametrize("n, named", [(7_000, True), (7_200, False)])
def test_a_python_layer_is_rechecked_element_by_element_up_to_its_policys_work(n, named):
    # the Python policy's recheck_work (2·10⁸: 4·inputs·(inputs + outputs) for a forward that takes a
    # batch axis, ~7,070 inputs here) held at its value: inside, a failed projection is redone
    # element by element and names the element; past it, the row fails by its projections
    def vjp(dout, x):
        g = 2 * x * dout
        g[2] *= 1.5
        return g
    x = np.random.default_rng(0).standard_normal(n)
    report = check_function(lambda x: (x ** 2).sum(axis=-1), vjp, {"x": x}, budget=8)
    row = report.nodes[0]
    assert row.status == "fail" and row.numeric_method.startswith("exhaustive") == named


def test_check_py_on_a_file_checks_its_loss_functions_too(tmp_path):
    # a loss returning (loss, gradient) is checked with the layers when its inputs are given
    result = run("check-py", f"{EXAMPLES}/rnn_layers.py", "--shape", "x=4,5", "--param", "y=[0, 1, 2, 3]",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    checked = sorted(r["source"].rpartition("::")[2] for r in data["results"])
    assert checked == ["softmax_loss", "svm_loss"]
    skipped = {s["source"].rpartition("::")[2]: s for s in data["skipped"]}
    assert "temporal_softmax_loss" in skipped  # it needs a mask: said, not silently left out
    table = run("check-py", f"{EXAMPLES}/rnn_layers.py", "--shape", "x=4,5", "--param", "y=[0, 1, 2, 3]")
    # the table wraps a long token (the file's absolute path, as long as the checkout's) wherever the width
    # falls: compared without its whitespace, so that the test holds in a checkout at any path
    assert "rnn_layers.py::temporal_softmax_loss:notchecked:givemask" in "".join(table.stdout.split())
    # a wrong loss gradient beside a right layer fails the run
    (tmp_path / "m.py").write_text("def scale_forward(x):\n    return 2 * x, None\n\n\n"
                                   "def scale_backward(dout, cache):\n    return 2 * dout\n\n\n"
                                   "def l2_loss(x):\n    return (x ** 2).sum(), x  # should be 2 * x\n")
    result = run("check-py", str(tmp_path / "m.py"), "--shape", "x=3")
    assert result.exit_code == 1 and "2 layers: 1 passed, 1 failed" in result.stdout, result.output


def test_a_kink_note_shows_negative_zero_as_0():
    # relu's backward at x = 0 with a negative upstream gives -0.0: the note says 0
    result = run("check-py", f"{EXAMPLES}/layers.py::relu", "--at", "x=[0, 0, 0, 1]")
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0 and "kink" in text
    assert "backprop's 0 is between them" in text and "-0 " not in text and "-0)" not in text


def test_a_raised_error_puts_its_caret_at_the_code_not_at_column_1(tmp_path):
    (tmp_path / "bad.py").write_text("def bad_forward(x):\n    if x.shape[0] > 1:\n        raise ValueError('too big')\n"
                                     "    return x, None\n\n\ndef bad_backward(dout, cache):\n    return dout\n")
    result = run("check-py", f"{tmp_path}/bad.py::bad", "--shape", "x=3")
    assert result.exit_code == 2 and "bad.py:3:9: error: the forward raised ValueError: too big" in result.output
    lines = result.output.splitlines()
    shown = next(i for i, line in enumerate(lines) if "raise ValueError('too big')" in line)
    assert lines[shown + 1].index("^") == lines[shown].index("raise")
    # where Python knows the expression that raised, the caret is under it: the matmul's left operand
    result = run("check-py", f"{EXAMPLES}/layers.py::affine", "--shape", "x=2,3", "--shape", "w=4,5", "--shape", "b=5")
    lines = result.output.splitlines()
    shown = next(i for i, line in enumerate(lines) if "out = x.reshape" in line)
    assert result.exit_code == 2 and lines[shown + 1].index("^") == lines[shown].index("x.reshape")


def test_each_input_is_judged_at_its_own_scale():
    """One input's huge gradient does not loosen another's tolerance: a dy wrong by 30% beside a dx of
    1e15 is not a pass (the differences cannot resolve it under the big terms' rounding: warn). One
    tolerance for the row passed it."""
    def f(x, y):
        return np.concatenate([1e15 * x, np.sin(y)])

    def vjp(dout, x, y):
        return 1e15 * dout[:3], dout[3:] * np.cos(y) * 1.3
    inputs = {"x": np.array([1.0, 2.0, 3.0]), "y": np.array([0.5, -0.2])}
    status = {r.name: r.status for r in check_function(f, vjp, inputs).nodes}
    assert status["x"] == "pass" and status["y"] in ("warn", "fail")


def test_a_name_the_forward_has_no_parameter_for_is_an_error_at_its_def():
    result = run("check-py", f"{EXAMPLES}/layers.py::affine", "--shape", "x=2,3", "--shape", "ww=3,4")
    assert result.exit_code == 2
    assert f"layers.py:{bug_line_of_def('affine_forward')}:1: error: affine_forward has no parameter 'ww' " \
           "(did you mean 'w'?)" in result.output
    assert "def affine_forward(x, w, b):\n  ^" in result.output


def bug_line_of_def(name: str) -> int:
    lines = (EXAMPLES / "layers.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines) if line.startswith(f"def {name}(")) + 1


BRANCHY = '''import numpy as np


def scale_forward(x, mode):
    return (2 * x if mode == "train" else 3 * x), (x, mode)


def scale_backward(dout, cache):
    x, mode = cache
    if mode == "train":
        dx = {train} * dout
    else:
        dx = {test} * dout
    return dx
'''


@pytest.mark.parametrize("mode, train, test, wrong", [("train", "2.5", "3", "dx = 2.5"), ("test", "2", "3.5", "dx = 3.5"),
                                                       ("train", "2", "3", None)])
def test_a_gradient_written_in_branches_is_blamed_on_the_branch_that_ran(tmp_path, mode, train, test, wrong):
    path = tmp_path / "branchy.py"
    path.write_text(BRANCHY.format(train=train, test=test))
    result = run("check-py", f"{path}::scale", "--shape", "x=3,4", "--param", f'mode="{mode}"', "--format", "json")
    report = json.loads(result.output)["results"][0]
    (node,) = report["nodes"]
    if wrong is None:
        assert result.exit_code == 0 and node["status"] == "pass"
        return
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(wrong))
    assert result.exit_code == 1 and node["status"] == "fail" and node["line"] == line
    # the gradient is wrong where the differences say: the branch's own factor, not the forward's
    assert abs(float(wrong.split()[-1]) - (2 if mode == "train" else 3)) > 0.4


def _affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def _affine_backward_mean_db(dout, cache):
    x, w, b = cache
    dx = dout @ w.T
    dw = x.T @ dout
    db = np.mean(dout, axis=0)  # the slip: a sum
    return dx, dw, db


def test_a_joint_projections_failure_is_only_the_inputs_that_fail_alone():
    # 50×100 + 100×50 + 50 elements, a forward that takes no batch axis: the differences run along random
    # directions over every input at once, and one wrong db failed x and w too, each at its own right line
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((50, 100)), rng.standard_normal((100, 50)), rng.standard_normal(50)
    dout = rng.standard_normal((50, 50))
    dx, dw, db = _affine_backward_mean_db(dout, (x, w, b))

    def slope(k, direction):  # the oracle: central differences along one direction, in float64, by hand
        h = 1e-6
        moved = [[x, w, b][i] + (h * direction if i == k else 0) for i in range(3)]
        back = [[x, w, b][i] - (h * direction if i == k else 0) for i in range(3)]
        return float(np.sum(dout * (_affine_forward(*moved)[0] - _affine_forward(*back)[0])) / (2 * h))
    for k, (given, g) in enumerate(zip((x, w, b), (dx, dw, db))):
        d = rng.standard_normal(given.shape)
        assert (abs(slope(k, d) - float(np.sum(g * d))) < 1e-6 * abs(slope(k, d))) == (k < 2)  # only db is wrong
    report = check_layer(_affine_forward, _affine_backward_mean_db, {"x": x, "w": w, "b": b},
                         name="affine_mean_db")
    assert {r.name: r.status for r in report.nodes} == {"x": "pass", "w": "pass", "b": "fail"}
    assert "within b alone" in next(r.numeric_method for r in report.nodes if r.name == "b")


def _layernorm_forward(x, gamma, beta):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    return gamma * xhat + beta, (xhat, gamma, var)


def _layernorm_backward_without_eps(dout, cache):  # right but for eps: its error is ~1e-5 relative, everywhere
    xhat, gamma, var = cache
    std = np.sqrt(var)  # the slip: var + 1e-5
    dxhat = dout * gamma
    dx = (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / std
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def test_a_joint_failure_no_input_shows_alone_still_fails_every_input():
    # the slip's error is spread thin over every input: the projections over all of them see it, no
    # input's own directions do; the check must not pass for that
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((50, 100)), "gamma": rng.standard_normal(100), "beta": rng.standard_normal(100)}
    report = check_layer(_layernorm_forward, _layernorm_backward_without_eps, inputs, name="layernorm_no_eps")
    assert not report.passed


def test_an_array_inside_a_param_object_arrives_as_a_numpy_array(tmp_path):
    (tmp_path / "bn.py").write_text(
        "import numpy as np\n\n\ndef shift_forward(x, bn_param):\n"
        "    return x - 0.5 * bn_param['running_mean'], None\n\n\ndef shift_backward(dout, cache):\n    return dout\n")
    result = run("check-py", f"{tmp_path}/bn.py::shift", "--shape", "x=3,2", "--param",
                 'bn_param={"mode": "test", "running_mean": [0.5, -1.0]}')
    assert result.exit_code == 0, result.output
