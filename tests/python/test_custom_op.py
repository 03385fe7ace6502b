"""A `torch.library.custom_op` with `register_autograd`, checked as a Function is (python/custom_op.py):
examples/kernels/softplus_op.py right and wrong. The labels are torch's own: autograd through
`torch.nn.functional.softplus`, an independent forward (not the op, nor its registered backward).
Skipped without PyTorch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import gradcheck_in_process
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")

from gradcheck_cli.core.errors import GradcheckError  # noqa: E402
from gradcheck_cli.torch import check, gradcheck  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
KERNELS = ROOT / "examples" / "kernels"
sys.path.insert(0, str(KERNELS))
import softplus_op  # noqa: E402


def x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).requires_grad_()


def line_of(function: str, text: str) -> int:
    lines = (KERNELS / "softplus_op.py").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def autograd_label(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The right vector-Jacobian product: autograd through torch's own softplus."""
    a = a.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(torch.nn.functional.softplus(a), a, g)
    return grad


def registered(op, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    a = a.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(op(a), a, g)
    return grad


def test_the_labels_tell_the_right_op_from_the_wrong_one():
    a, g = x(4, 5), torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    label = autograd_label(a, g)
    assert torch.allclose(registered(softplus_op.softplus, a, g), label, rtol=1e-12, atol=0)
    assert torch.allclose(registered(softplus_op.softplus_numpy, a, g), label, rtol=1e-12, atol=0)
    assert not torch.allclose(registered(softplus_op.softplus_wrong, a, g), label, rtol=1e-2, atol=0)


def test_the_right_op_passes_against_autograd_of_its_forward():
    report = check(softplus_op.softplus, (x(4, 5),))
    assert report.error is None and report.passed
    (row,) = report.nodes
    assert row.numeric_method.startswith("every element against autodiff through the forward")


def test_the_wrong_op_fails_at_the_line_of_its_registered_backward():
    report = check(softplus_op.softplus_wrong, (x(4, 5),))
    assert report.error is None and not report.passed
    (row,) = report.nodes
    assert row.status == "fail" and row.line == line_of("softplus_wrong_backward", "dx = ")
    assert report.path.endswith("softplus_op.py")


def test_a_forward_that_leaves_torch_is_judged_by_differences_alone():
    report = check(softplus_op.softplus_numpy, (x(4, 5),))
    assert report.error is None and report.passed
    assert report.nodes[0].numeric_method == "exhaustive"  # no autograd reference through numpy


def test_an_op_without_a_backward_is_an_error_at_its_forward():
    @torch.library.custom_op("gradcheck_tests::no_backward", mutates_args=())
    def no_backward(t: torch.Tensor) -> torch.Tensor:
        return t * 2

    with pytest.raises(GradcheckError, match="has no backward to check: register one with no_backward.register_autograd"):
        check(no_backward, (x(3),))


def test_the_drop_in_raises_for_the_wrong_op_with_its_line():
    assert gradcheck(softplus_op.softplus, (x(3, 2),))
    with pytest.raises(GradcheckError, match=f"line {line_of('softplus_wrong_backward', 'dx = ')}"):
        gradcheck(softplus_op.softplus_wrong, (x(3, 2),))


def check_py(*args):
    return gradcheck_in_process("check-py", *args, cwd=ROOT)


def test_check_py_finds_the_ops_of_a_file_and_by_name():
    whole = check_py("examples/kernels/softplus_op.py", "--shape", "x=4,5", "--format", "json")
    assert whole.returncode == 1, whole.stderr
    results = {r["source"]: r["passed"] for r in json.loads(whole.stdout)["results"]}
    assert results == {"examples/kernels/softplus_op.py::softplus": True,
                       "examples/kernels/softplus_op.py::softplus_wrong": False,
                       "examples/kernels/softplus_op.py::softplus_numpy": True}
    one = check_py("examples/kernels/softplus_op.py::softplus", "--shape", "x=4,5")
    assert one.returncode == 0, one.stdout + one.stderr


def test_blame_reads_the_registered_backward_swapped_gradients_and_an_unused_upstream():
    @torch.library.custom_op("gradcheck_tests::mul_sq", mutates_args=())
    def mul_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b * b

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def swapped(ctx, grad):
        a, b = ctx.saved_tensors
        da = grad * b * b
        db = grad * 2 * a * b
        return db, da
    mul_sq.register_autograd(swapped, setup_context=setup)
    report = check(mul_sq, (x(3, 4), x(3, 4, seed=1)))
    assert {r.name: r.status for r in report.nodes} == {"a": "fail", "b": "fail"}
    assert "the gradients are returned in the wrong order (db where da goes)" in report.nodes[0].note

    @torch.library.custom_op("gradcheck_tests::softplus_unscaled", mutates_args=())
    def softplus_unscaled(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(t)

    def keep(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    def unscaled(ctx, grad):
        (t,) = ctx.saved_tensors
        return torch.sigmoid(t)
    softplus_unscaled.register_autograd(unscaled, setup_context=keep)
    (row,) = check(softplus_unscaled, (x(3, 4),)).nodes
    assert row.status == "fail" and row.note.startswith("not scaled by the upstream gradient: dt is the same "
                                                        "whatever the upstream (grad is not used)")
