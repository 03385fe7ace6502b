"""Kinks on real code: a backward is right at a kink when it is a valid chain rule of valid local
subgradients, and wrong when some local choice lies outside.

Integer-valued inputs give what real tests give: ties in most max-pool windows and exact zeros
before a ReLU. Every correct convention (first, last or even routing at ties; relu′(0) = 0 or 1)
is a `kink`, never a `fail`; every choice outside the subdifferential fails.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check, check_function, check_layer
from gradcheck_cli.oracles import numeric, subgradients
from gradcheck_cli.cli import main

POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}


def _verdict(row) -> str:
    """`kink` for a row a valid choice explains; the midpoint of the one-sided slopes (relu′(0) = ½,
    an even split) is the centred difference itself and may simply pass."""
    return "kink" if row.status == "pass" and row.numeric_error is not None else row.status


def pool_forward(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    n, c, h, w = x.shape
    out = np.zeros((n, c, 1 + (h - ph) // s, 1 + (w - pw) // s))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, i * s:i * s + ph, j * s:j * s + pw].max(axis=(2, 3))
    return out, (x, pool_param)


def _pool_backward(route):
    def backward(dout, cache):
        x, p = cache
        ph, pw, s = p["pool_height"], p["pool_width"], p["stride"]
        dx = np.zeros_like(x)
        for a, b, i, j in np.ndindex(*dout.shape):
            window = x[a, b, i * s:i * s + ph, j * s:j * s + pw]
            dx[a, b, i * s:i * s + ph, j * s:j * s + pw] += route(window) * dout[a, b, i, j]
        return dx
    return backward


def _first(window):
    m = np.zeros(window.size)
    m[np.argmax(window)] = 1  # np.argmax: the first maximum, CS231n's usual answer
    return m.reshape(window.shape)


def _last(window):
    m = np.zeros(window.size)
    m[window.size - 1 - np.argmax(window.ravel()[::-1])] = 1
    return m.reshape(window.shape)


def _even(window):
    m = window == window.max()
    return m / m.sum()


def _every(window):
    return (window == window.max()).astype(float)  # every tied element gets the whole gradient: wrong


def _tied_x():
    x = np.random.default_rng(0).integers(0, 3, size=(2, 2, 4, 4)).astype(float)
    windows = x.reshape(2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4)
    assert ((windows == windows.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum() >= 6  # ties in most windows
    return x


@pytest.mark.parametrize("route, status", [(_first, "kink"), (_last, "kink"), (_even, "kink"), (_every, "fail")])
def test_max_pool_at_ties_every_valid_routing_is_a_kink_and_the_whole_gradient_to_each_fails(route, status):
    report = check_layer(pool_forward, _pool_backward(route), {"x": _tied_x()}, {"pool_param": POOL})
    row = report.nodes[0]
    assert row.status == status, row.note
    if status == "fail":
        assert "at a tie of" in row.note and "moving them together" in row.note
    else:
        assert report.passed


def test_max_pool_first_max_through_check_py(tmp_path):
    # the command line, on a student-style file: it was `fail x: backprop disagrees`
    (tmp_path / "pool.py").write_text(
        "import numpy as np\n\n"
        "def max_pool_forward_naive(x, pool_param):\n"
        "    ph, pw, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']\n"
        "    n, c, h, w = x.shape\n"
        "    out = np.zeros((n, c, 1 + (h - ph) // s, 1 + (w - pw) // s))\n"
        "    for i in range(out.shape[2]):\n"
        "        for j in range(out.shape[3]):\n"
        "            out[:, :, i, j] = x[:, :, i*s:i*s+ph, j*s:j*s+pw].max(axis=(2, 3))\n"
        "    return out, (x, pool_param)\n\n"
        "def max_pool_backward_naive(dout, cache):\n"
        "    x, pool_param = cache\n"
        "    ph, pw, s = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']\n"
        "    dx = np.zeros_like(x)\n"
        "    for a, b, i, j in np.ndindex(*dout.shape):\n"
        "        window = x[a, b, i*s:i*s+ph, j*s:j*s+pw]\n"
        "        k = np.argmax(window)\n"
        "        dx[a, b, i*s + k // pw, j*s + k % pw] += dout[a, b, i, j]\n"
        "    return dx\n")
    result = CliRunner().invoke(main, ["check-py", str(tmp_path / "pool.py") + "::max_pool",
                                       "--param", "pool_param=" + json.dumps(POOL),
                                       "--at", "x=" + json.dumps(_tied_x().tolist())])
    assert result.exit_code == 0, result.output
    assert "kink" in result.output and "a tie of" in result.output


def affine_relu_forward(x, w, b):
    z = x @ w + b
    return np.maximum(z, 0), (x, w, z)


def _affine_relu_backward(at_zero):
    def backward(dout, cache):
        x, w, z = cache
        dz = dout * ((z > 0) + at_zero * (z == 0))
        return dz @ w.T, x.T @ dz, dz.sum(axis=0)
    return backward


AFFINE = {"x": np.array([[1., 0, -1], [2, 1, 0], [0, 0, 1], [1, -1, 1]]),
          "w": np.array([[1., -1], [0, 1], [1, 1]]), "b": np.zeros(2)}


@pytest.mark.parametrize("at_zero, status", [(0.0, "kink"), (1.0, "kink"), (0.5, "kink"), (2.0, "fail"),
                                             (-1.0, "fail")])
def test_relu_inside_an_affine_layer_at_exact_zeros(at_zero, status):
    assert np.sum(AFFINE["x"] @ AFFINE["w"] == 0) >= 1  # a pre-activation exactly 0
    report = check_layer(affine_relu_forward, _affine_relu_backward(at_zero), AFFINE)
    worst = max(report.nodes, key=lambda r: {"pass": 0, "kink": 1, "fail": 2}[r.status])
    assert _verdict(worst) == status, worst.note


def test_a_backward_wrong_at_the_nearby_smooth_points_fails_at_the_kink_too():
    def backward(dout, cache):
        x, w, z = cache
        dz = 0.9 * dout * (z > 0)  # wrong everywhere, not only at the kink
        return dz @ w.T, x.T @ dz, dz.sum(axis=0)
    report = check_layer(affine_relu_forward, backward, AFFINE)
    assert not report.passed and all(r.status == "fail" for r in report.nodes)


@pytest.mark.parametrize("slope_at_zero, status", [(1.0, "kink"), (0.1, "kink"), (0.55, "kink"), (-0.1, "fail")])
def test_leaky_relu_at_zero(slope_at_zero, status):
    x = np.array([0.0, 1.0, -2.0, 0.0, 3.0])

    def vjp(dout, x):
        return dout * np.where(x > 0, 1.0, np.where(x < 0, 0.1, slope_at_zero))
    report = check_function(lambda x: np.maximum(x, 0.1 * x), vjp, {"x": x})
    assert _verdict(report.nodes[0]) == status, report.nodes[0].note


@pytest.mark.parametrize("at_zero, status", [(0.0, "kink"), (1.0, "kink"), (-1.0, "kink"), (3.0, "fail")])
def test_abs_at_zero(at_zero, status):
    x = np.array([0.0, 1.5, -2.0])
    report = check_function(np.abs, lambda d, x: d * np.where(x == 0, at_zero, np.sign(x)), {"x": x})
    assert _verdict(report.nodes[0]) == status, report.nodes[0].note


def _svm(x, y):
    margins = np.maximum(0, x - x[np.arange(len(y)), y][:, None] + 1)
    margins[np.arange(len(y)), y] = 0
    return margins.sum() / len(y)


def _svm_grad(on_zero):
    def vjp(dout, x):
        y = np.array([1, 0])
        m = x - x[np.arange(2), y][:, None] + 1
        pos = (m > 0) + on_zero * (m == 0)
        pos[np.arange(2), y] = 0
        dx = pos.astype(float)
        dx[np.arange(2), y] -= pos.sum(axis=1)
        return dout * dx / 2
    return vjp


@pytest.mark.parametrize("on_zero, status", [(0, "kink"), (1, "kink"), (3, "fail")])
def test_svm_margins_exactly_zero(on_zero, status):
    x = np.array([[1.0, 2.0, 3.0, 1.0], [0.0, 1.0, -1.0, 2.0]])  # margins of 0 at [0, 0], [0, 3], [1, 1]
    report = check_function(lambda x: _svm(x, np.array([1, 0])), _svm_grad(on_zero), {"x": x})
    assert report.nodes[0].status == status, report.nodes[0].note


def _top2(x):
    return np.sort(x, axis=1)[:, -2:].sum(axis=1)


@pytest.mark.parametrize("to_all_ties, status", [(False, "kink"), (True, "fail")])
def test_top_k_routing_at_ties(to_all_ties, status):
    x = np.array([[3.0, 1.0, 3.0, 3.0], [2.0, 2.0, 0.0, 1.0]])  # three-way tie for the top two in row 0

    def vjp(dout, x):
        dx = np.zeros_like(x)
        for r in range(x.shape[0]):
            if to_all_ties:
                dx[r] = dout[r] * (x[r] >= np.sort(x[r])[-2])
            else:
                dx[r, np.argsort(-x[r], kind="stable")[:2]] = dout[r]
        return dx
    report = check_function(_top2, vjp, {"x": x})
    assert report.nodes[0].status == status, report.nodes[0].note


CONV_RELU = """const pad = 1
gate conv_relu(x, w, b) = relu(conv2d(x, w, b, stride=1, pad=pad))
  z = conv2d(x, w, b, stride=1, pad=pad)
  dz = dout * (z > 0){extra}
  wflip = flip(transpose(w, [1, 0, 2, 3]), [2, 3])
  dx = conv2d(dz, wflip, zeros(x.shape[1]), pad=w.shape[2] - 1 - pad)
  xpad = pad(x, [[0, 0], [0, 0], [pad, pad], [pad, pad]])
  dw = transpose(conv2d(transpose(xpad, [1, 0, 2, 3]), transpose(dz, [1, 0, 2, 3]), zeros(w.shape[0])), [1, 0, 2, 3])
  db = sum(dz, axis=[0, 2, 3])
x = {x}
w = {w}
b = [0, 0, 0, 0]
const u = randn(2, 4, 5, 5)
f = sum(conv_relu(x, w, b) * u)
"""


def _conv_relu(extra=""):
    rng = np.random.default_rng(0)
    return CONV_RELU.format(extra=extra, x=json.dumps(rng.integers(-1, 2, (2, 3, 5, 5)).tolist()),
                            w=json.dumps(rng.integers(-1, 2, (4, 3, 3, 3)).tolist()))


@pytest.mark.parametrize("symbolic", [True, False])
def test_conv_relu_gate_with_relu_backward_at_exact_zeros_is_a_valid_chain_rule(symbolic):
    # the case: moving one weight moves many pre-activations across 0, so the composite's
    # one-sided slopes are the wrong yardstick; the d lines are the chain rule with relu'(0) = 0
    report = check(_conv_relu(), symbolic=symbolic)
    assert report.passed, [(r.name, r.status, r.note) for r in report.nodes + report.gates if r.status == "fail"]
    noted = [r.note for r in report.nodes + report.gates if r.status == "kink" and r.note]
    assert any("chain rule with the left slope at every kink (relu′(0) = 0" in n for n in noted)


def test_conv_relu_gate_with_a_derivative_outside_the_subdifferential_fails_at_its_line():
    report = check(_conv_relu(" + 2 * dout * (z == 0)"), symbolic=False)  # relu'(0) = 3: outside [0, 1]
    assert not report.passed
    failing = {(g.input, g.line) for g in report.gates if g.status == "fail"}
    assert ("dz", 4) in failing  # the line that is wrong, checked as the gradient of z


def test_a_forward_line_spelled_out_in_the_expression_is_that_local():
    # `z = x @ W + b` beside `relu(x @ W + b)`: a wrong dz is named at its own line, not at dx, dW, db
    src = ("gate affine_relu(x, W, b) = relu(x @ W + b)\n  z = x @ W + b\n  dz = dout * (z > 0) * 0.5\n"
           "  dx = dz @ W.T\n  dW = x.T @ dz\n  db = sum(dz, axis=0)\n"
           "x = randn(4, 3)\nW = randn(3, 2)\nb = randn(2)\nf = sum(affine_relu(x, W, b) ^ 2)\n")
    report = check(src)
    culprits = {r.culprit for r in report.nodes if r.status == "fail"}
    assert culprits == {(3, 3)}, culprits


def test_backprops_rounding_is_not_measured_across_a_kink():
    # nudged by 4 ulps to measure rounding, a pre-activation at exactly 0 may flip its branch: that
    # jump is the branch, not rounding, and must not widen the tolerance (relu'(0) = 3 hid behind it)
    src = ("gate affine_relu(x, W, b) = relu(z)\n  z = x @ W + b\n  dz = dout * (z > 0) + 2 * dout * (z == 0)\n"
           "  dx = dz @ W.T\n  dW = x.T @ dz\n  db = sum(dz, axis=0)\n"
           "x = [[1, 0, -1], [2, 1, 0], [0, 0, 1], [1, -1, 1]]\nW = [[1, -1], [0, 1], [1, 1]]\nb = [0, 0]\n"
           "const u = randn(4, 2)\nf = sum(affine_relu(x, W, b) * u)\n")
    report = check(src, symbolic=False)
    assert not report.passed
    assert {g.input for g in report.gates if g.status == "fail"} >= {"dz"}


@pytest.mark.parametrize("d_b, status", [("dout * (a < b)", True), ("dout * (b >= a)", False)])
def test_max_of_two_at_a_tie(d_b, status):
    src = (f"gate mx(a, b) = max(a, b)\n  da = dout * (a >= b)\n  db = {d_b}\n"
           "a = [1, 2, 3, 0]\nb = [1, 0, 3, 2]\nconst u = [0.5, -1.5, 2.0, 0.7]\nf = sum(mx(a, b) * u)\n")
    assert check(src, symbolic=False).passed == status


def test_the_nudge_takes_each_side_and_breaks_ties_by_position():
    relu_in = [np.array([0.0, -1.0, 2.0])]
    left, right = subgradients.nudged(relu_in, -1, -1)[0], subgradients.nudged(relu_in, 1, 1)[0]
    assert left[0] < 0 < right[0] and left[1] < 0 and left[2] > 0
    tie = [np.array([2.0, 2.0, 2.0])]
    first, last = subgradients.nudged(tie, 1, -1)[0], subgradients.nudged(tie, 1, 1)[0]
    assert np.argmax(first) == 0 and np.argmax(last) == 2
    assert np.all(np.abs(first - 2.0) < 1e-8)  # a nudge, not a move


def test_opaque_code_tells_a_kink_from_curvature():
    # x² has no kink but its one-sided slopes differ by 2h; |x| has a jump of 2 that does not shrink
    from gradcheck_cli.python.pyrunner import FunctionRunner
    x = np.array([0.0, 0.5])
    for f, kinked in ((lambda a: a[0] ** 2, [False, False]), (lambda a: np.abs(a[0]), [True, False])):
        u = np.ones(2)
        runner = FunctionRunner(f, [x], u, f([x]))
        wrong = np.full((1, 2), 7.0)  # a reference far off puts every element in doubt
        res = numeric.differentiate(runner, [numeric.Target("x", x.copy())], 6e-6, 1e-5, 0.0, {"x": wrong}, 0)["x"]
        assert list(res.kink) == kinked


def test_the_nudge_resolves_ties_among_many_elements_and_leaves_near_ties_alone():
    # NUDGE must separate a tie across 100,000 elements in float64, yet never reorder values that
    # differ by 1e-7 (they are not tied: the function is smooth there at this scale)
    many = subgradients.nudged([np.full(100_000, 3.0)], 1, -1)[0]
    assert np.all(np.diff(many) < 0)
    near = subgradients.nudged([np.array([1.0, 1.0 + 1e-7])], 1, -1)[0]
    assert np.argmax(near) == 1


@pytest.mark.parametrize("f, x0, kinked", [
    (lambda a: np.sin(3e4 * a[0]), 0.3, False),      # smooth but fast: the jump halves with the step, to 1e-3
    (lambda a: 1e8 + a[0] ** 2, 0.7, False),          # smooth, rounding-dominated: a jump of noise is no kink
    (lambda a: 1e5 + 0.01 * np.abs(a[0]), 0.0, True),  # a small kink on a large value stands above rounding
])
def test_the_slope_jump_thresholds(f, x0, kinked):
    # SMOOTH_RATIO (how exactly a smooth jump halves) and JUMP_ROUNDING (how far above rounding a jump
    # must stand), each held both ways by these three functions
    from gradcheck_cli.python.pyrunner import FunctionRunner
    x = np.array([x0])
    runner = FunctionRunner(f, [x], np.ones(1), f([x]))
    far = np.full((1, 1), 7.0)  # a reference far off puts the element in doubt, so it is examined
    res = numeric.differentiate(runner, [numeric.Target("x", x.copy())], 6e-6, 1e-5, 0.0, {"x": far}, 0)["x"]
    assert bool(res.kink[0]) == kinked


CONV_PARAM = {"stride": 1, "pad": 1}


def _numpy_conv_relu(at_zero: float):
    """CS231n's naive conv and relu_backward composed (relu'(0) = at_zero), and ±1 inputs with a zero
    bias, whose pre-activations are often exactly 0."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "examples" / "python"))
    import layers

    def forward(x, w, b, conv_param):
        z, conv_cache = layers.conv_forward_naive(x, w, b, conv_param)
        return np.maximum(z, 0), (conv_cache, z)

    def backward(dout, cache):
        conv_cache, z = cache
        return layers.conv_backward_naive(dout * ((z > 0) + at_zero * (z == 0)), conv_cache)
    rng = np.random.default_rng(0)
    inputs = {"x": np.sign(rng.standard_normal((2, 2, 4, 4))), "w": np.sign(rng.standard_normal((3, 2, 3, 3))),
              "b": np.zeros(3)}
    assert np.sum(layers.conv_forward_naive(*inputs.values(), CONV_PARAM)[0] == 0) >= 5
    return forward, backward, inputs


@pytest.mark.parametrize("at_zero, passed", [(0.0, True), (1.0, True), (0.5, True), (2.0, False), (3.0, False),
                                             (-1.0, False)])
def test_numpy_conv_relu_at_plus_minus_one_inputs_and_a_zero_bias(at_zero, passed):
    # the same layer as the .grad conv + ReLU, through check-py's path. Moving one weight moves many
    # pre-activations across 0, so only the output-by-output analysis tells relu'(0) in [0, 1]
    # (right) from 2, 3 or -1 (wrong); before it, every one of them passed (the rounding rerun had
    # flipped the zeros' branches and its "noise" hid the difference)
    forward, backward, inputs = _numpy_conv_relu(at_zero)
    report = check_layer(forward, backward, inputs, {"conv_param": CONV_PARAM})
    assert report.passed == passed, [(r.name, r.status, r.note) for r in report.nodes]
    if passed and at_zero != 0.5:
        assert any("output by output" in (r.note or "") for r in report.nodes)


@pytest.mark.parametrize("d_line, passed", [("where(x > 0, 1, alpha)", True), ("where(x >= 0, 1, alpha)", True),
                                            ("where(x > 0, 1, -alpha)", False)])
def test_leaky_relu_gate_at_exact_zeros(d_line, passed):
    src = (f"const alpha = 0.1\ngate leaky(x) = max(x, alpha * x)\n  dx = dout * {d_line}\n"
           "x = [0, 1, -2, 0]\nconst u = [0.5, -1.5, 2.0, 0.7]\nf = sum(leaky(x) * u)\n")
    for symbolic in (True, False):
        assert check(src, symbolic=symbolic).passed == passed


@pytest.mark.parametrize("limit, status", [(1_000, "kink"), (1, "warn")])
def test_past_the_output_analysis_limit_a_composite_kink_is_undecided_not_a_false_alarm(monkeypatch, limit, status):
    # MAX_KINKED held: with it, the textbook conv + ReLU is explained; past it, the element is `warn`
    # (outside the composite's one-sided slopes proves nothing when several kinks move at once)
    from gradcheck_cli.checking import per_output
    monkeypatch.setattr(per_output, "MAX_KINKED", limit)
    forward, backward, inputs = _numpy_conv_relu(0.0)
    report = check_layer(forward, backward, inputs, {"conv_param": CONV_PARAM})
    statuses = {r.status for r in report.nodes}
    assert "fail" not in statuses and ("warn" in statuses) == (status == "warn")


@pytest.mark.parametrize("v, ok", [(-3e-10, True), (-3e-9, False), (-1e-7, True)])
def test_beside_a_kink_the_backward_must_be_the_derivative_there(v, ok):
    # `dout * (x > -1e-8)`: at -3e-10 the kink is within 10⁻⁴·h (and within the conventions' nudge):
    # a valid choice; at -3e-9 the function is flat at v, so 1 is wrong (.grad and Python agree);
    # at -1e-7 the threshold excludes v: right. The secant slopes from v are biased by the kink's offset
    # (5e-5 at -3e-10): the slopes beyond it bound the one-sided limits instead
    x = np.array([v, 1.0, -2.0])
    report = check_function(lambda x: np.maximum(x, 0), lambda d, x: d * (x > -1e-8), {"x": x})
    assert report.passed == ok, report.nodes[0].note
    if not ok:
        assert "beside a kink but not on it" in report.nodes[0].note
    src = (f"gate r(t) = relu(t)\n  dt = dout * (t > -1e-8)\nx = [{v!r}, 1.0, -2.0]\n"
           "const u = [0.7, -1.2, 0.4]\nf = sum(r(x) * u)\n")
    assert check(src, symbolic=False).passed == ok


@pytest.mark.parametrize("f, kinked, on_point", [
    (lambda a: np.abs(a[0]) + 300 * a[0] ** 2, True, True),  # on the point, curved beside it: KEPT lowered misses it
    (lambda a: np.abs(a[0] - 1e-6), True, False),            # within the step, 1e-6 away: KEPT raised would say on it
])
def test_a_kink_on_the_point_is_told_from_one_within_the_step(f, kinked, on_point):
    from gradcheck_cli.python.pyrunner import FunctionRunner
    x = np.array([0.0])
    runner = FunctionRunner(f, [x], np.ones(1), f([x]))
    far = np.full((1, 1), 7.0)
    res = numeric.differentiate(runner, [numeric.Target("x", x.copy())], 6e-6, 1e-5, 0.0, {"x": far}, 0)["x"]
    assert (bool(res.kink[0]), bool(res.at_kink[0])) == (kinked, on_point)


@pytest.mark.parametrize("share, passed", [("hit / sum(hit, axis=[3, 5], keepdims=1)", True), ("hit", False)])
def test_max_pool_gate_at_integer_inputs(share, passed):
    # expressions/cs231n_maxpool.grad's hand-derived gate at inputs in {0, 1, 2}: ties in most windows.
    # The even split is a valid choice; every tied element getting the whole gradient is not.
    from conftest import ROOT
    src = (ROOT / "expressions" / "cs231n_maxpool.grad").read_text()
    src = src.replace("  share = hit / sum(hit, axis=[3, 5], keepdims=1)", f"  share = {share}")
    x = np.random.default_rng(0).integers(0, 3, size=(1, 2, 4, 4)).tolist()
    for symbolic in (True, False):
        report = check(src, at={"x": json.dumps(x)}, symbolic=symbolic)
        assert report.error is None and report.passed == passed, [(r.name, r.status, r.note) for r in report.nodes]


def _gelu_pair():
    import math
    c = math.sqrt(2 / math.pi)

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(c * (x + 0.044715 * x * x * x)))

    def gelu_vjp(g, x):
        t = np.tanh(c * (x + 0.044715 * x * x * x))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x ** 2))
    return gelu, gelu_vjp


GELU_X = np.random.default_rng(2).standard_normal((64, 32)).astype(np.float32).astype(float)


def test_a_smooth_layer_whose_sum_cancels_is_never_a_kink_and_a_wrong_one_fails():
    # a tanh-GELU over 2,048 float32-valued inputs (as a torch Function's are): a row whose slope is
    # tiny next to its curvature has one-sided slopes whose jump at h and at h/2 differ mostly by
    # rounding in Σ upstream ⊙ outputs, a sum of 2,048 terms that cancels; the differences are rounded
    # at the size of those terms (the runner's `terms`), not of the sum, so at no seed is the smooth
    # row called a kink (it was at 3 seeds of 12 when rounding followed the sum); 0.1% off still fails
    from gradcheck_cli import check_function
    gelu, gelu_vjp = _gelu_pair()
    statuses = [check_function(gelu, gelu_vjp, {"x": GELU_X}, seed=seed).nodes[0].status for seed in range(6)]
    assert statuses == ["pass"] * 6, statuses
    wrong = check_function(gelu, lambda g, x: gelu_vjp(g, x) * (1 + 1e-3 * (x < -0.7)), {"x": GELU_X})
    assert [r.status for r in wrong.nodes] == ["fail"]


def _norm_forward(x):
    n = np.sqrt(np.sum(x ** 2, axis=1))
    return n, (x, n)


def _norm_backward_ones_at_zero(dout, cache):  # at x = 0 it returns all ones: no subgradient of ‖x‖ is that long
    x, n = cache
    safe = np.where(n == 0, 1.0, n)
    return dout[:, None] * np.where(n[:, None] == 0, 1.0, x / safe[:, None])


@pytest.mark.xfail(strict=True, reason="a kink that jumps along every direction (‖x‖ at 0) is judged element by "
                                       "element: each 1 lies between its own one-sided slopes ±1; a test along "
                                       "backprop's own direction fails right conv + ReLU composites (not convex)")
def test_a_gradient_too_long_for_a_cones_apex_fails():
    x = np.zeros((1, 10))
    # the oracle: along d = (1, ..., 1)/√10 the slope of ‖x‖ at 0 is 1, backprop's is √10
    d = np.ones(10) / np.sqrt(10)
    assert np.sqrt(np.sum((1e-6 * d) ** 2)) / 1e-6 < float(np.ones(10) @ d)
    report = check_layer(_norm_forward, _norm_backward_ones_at_zero, {"x": x})
    assert not report.passed
