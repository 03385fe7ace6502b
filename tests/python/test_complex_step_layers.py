"""The complex step for Python layers: backwards wrong by less than any finite
difference resolves fail with it (and pass without it: that is why it is there), right ones pass with
it at integer inputs, ties and zeros too, and code that is not complex-safe is said so and judged by
the differences alone — never a wrong verdict."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import gradcheck_in_process
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from gradcheck_cli import check_function, check_layer

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "examples" / "python"))
import subtle  # noqa: E402

X = np.random.default_rng(0).standard_normal((4, 8))


def line_of(fn, text: str) -> int:
    lines = (ROOT / "examples" / "python" / "subtle.py").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {fn.__name__}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


@pytest.mark.parametrize("forward, right, wrong, scale", [
    (subtle.gelu, subtle.gelu_vjp, subtle.gelu_rounded_vjp, 1.0),         # √(2/π) rounded to 7 digits
    (subtle.layernorm, subtle.layernorm_vjp, subtle.layernorm_no_eps_vjp, 30.0),  # eps missing from one term
    (subtle.softmax, subtle.softmax_vjp, subtle.softmax_float32_vjp, 1.0),  # through float32
])
def test_bugs_under_any_finite_difference_fail_with_the_complex_step(forward, right, wrong, scale):
    x = X * scale
    assert check_function(forward, right, {"x": x}, complex_step=True).passed
    assert check_function(forward, wrong, {"x": x}).passed  # finite differences cannot see it
    report = check_function(forward, wrong, {"x": x}, complex_step=True)
    (row,) = report.nodes
    assert row.status == "fail" and "complex-step derivative" in row.note and row.line == line_of(wrong, "dx = ")


def test_a_bug_of_a_few_parts_in_ten_billion_fails_and_right_code_with_a_hidden_abs_falls_back():
    # RTOL held from above: √(2/π) rounded to 9 digits moves the gradient by ~1e-10 of its value
    def rounded9(g, x):
        t = np.tanh(subtle.SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.797884561 * (1 + 3 * 0.044715 * x ** 2))
    assert not check_function(subtle.gelu, rounded9, {"x": X}, complex_step=True).passed
    # AGREE held from above: a term through abs (invisible to the complex step) of 1e-6 makes the
    # complex step disagree with the differences by 1e-6: not complex-safe, so the right backward passes
    report = check_function(lambda x: x ** 2 + 1e-6 * np.abs(x), lambda g, x: g * (2 * x + 1e-6 * np.sign(x)),
                            {"x": X}, complex_step=True)
    assert report.passed and "complex step not used" in report.nodes[0].note


@pytest.mark.parametrize("forward, backward, why", [
    (lambda x: np.abs(x) * x, lambda g, x: g * 2 * np.abs(x), "disagrees with the finite differences"),
    (lambda x: np.asarray(x, dtype=float) ** 2, lambda g, x: g * 2 * x, "raised ComplexWarning"),
    (lambda x: np.array([float(v) for v in x.ravel()]).reshape(x.shape) ** 2, lambda g, x: g * 2 * x, "raised"),
])
def test_code_that_is_not_complex_safe_falls_back_to_the_differences(forward, backward, why):
    report = check_function(forward, backward, {"x": X}, complex_step=True)
    assert report.passed and "complex step not used" in report.nodes[0].note and why in report.nodes[0].note
    wrong = check_function(forward, lambda g, x: backward(g, x) * 1.01, {"x": X}, complex_step=True)
    assert not wrong.passed  # the differences still judge it


def test_kinks_at_zeros_are_left_to_the_differences_and_the_rest_is_exact():
    x = np.array([[0.0, 1.0, -2.0], [3.0, 0.0, 0.0]])
    assert check_function(lambda x: np.maximum(x, 0), lambda g, x: g * (x > 0), {"x": x}, complex_step=True).passed
    slightly = check_function(lambda x: np.maximum(x, 0) * x, lambda g, x: g * 2 * np.maximum(x, 0) * (1 + 1e-7),
                              {"x": x}, complex_step=True)
    assert not slightly.passed


def test_a_cs231n_layer_with_the_complex_step():
    sys.path.insert(0, str(ROOT / "examples" / "python"))
    import layers
    rng = np.random.default_rng(1)
    inputs = {"x": rng.standard_normal((3, 2, 2)), "w": rng.standard_normal((4, 5)), "b": rng.standard_normal(5)}
    report = check_layer(layers.affine_forward, layers.affine_backward, inputs, complex_step=True)
    assert report.passed and all("complex step agrees" in r.note for r in report.nodes)


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(__import__("fuzzing").python_layers())
def test_right_fuzzed_layers_pass_with_the_complex_step_at_integer_inputs(layer):
    name, forward, vjp, x, slip = layer
    report = check_function(forward, vjp, {"x": x}, name=name, complex_step=True)
    if report.error is None and slip is None:
        assert report.passed, (name, x.tolist(), [(r.status, r.note) for r in report.nodes])
    elif report.error is None and slip in ("raise", "nan", "shape"):
        assert not report.passed


def test_check_py_takes_complex_step(tmp_path):
    (tmp_path / "subtle.py").write_text((ROOT / "examples" / "python" / "subtle.py").read_text(encoding="utf-8"),
                                        encoding="utf-8")
    module = tmp_path / "layer.py"
    module.write_text("from subtle import gelu, gelu_rounded_vjp as gelu_vjp  # noqa: F401\n", encoding="utf-8")
    run = ["check-py", f"{module}::gelu", "--shape", "x=4,8"]
    assert gradcheck_in_process(*run).returncode == 0
    done = gradcheck_in_process(*run, "--complex-step")
    assert done.returncode == 1 and "complex-step" in done.stdout and "--complex-step" in done.stdout


def test_a_row_whose_complex_step_derivative_is_zero_shows_absolute_figures():
    """Where the complex step's derivative is 0 on the whole row there is no relative figure: the note
    says so and gives the absolute gap (it showed 5.6e+283 "of the row's largest")."""
    import numpy as np
    from gradcheck_cli import check_function

    def f(x):
        return np.array([np.sum(x / (3 + x * x) - x / (3 + x * x))])
    wrong = check_function(f, lambda d, x: d[0] * (0 * x + 1e-12), {"x": np.array([0.03125, 0.5])}, complex_step=True)
    assert wrong.nodes[0].status == "fail" and "0 on the whole row, by 1" in wrong.nodes[0].note
    assert "e+2" not in wrong.nodes[0].note
    right = check_function(f, lambda d, x: d[0] * 0 * x, {"x": np.array([0.03125, 0.5])}, complex_step=True)
    assert right.nodes[0].status == "pass" and right.nodes[0].note == "complex step agrees"
