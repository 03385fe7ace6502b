"""Culprits on the line actually wrong, and notes that say what is wrong, for torch Functions written
the way real code is (tests/python/torch_slips.py: one slip each, on the line marked `# slip`): a
backward under once_differentiable, custom_bwd or the user's own functools.wraps decorator annotated
in the user's file; in-place updates followed to their line; a swapped `return` blamed on the return
line and said to be one; a backward that forgets grad_output said to be unscaled; second-order slips
blamed in the Function that holds them and said to be second order. Which inputs fail is golden:
autograd through an independent forward, never this project's output."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

from conftest import gradcheck_in_process
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torch_slips as S  # noqa: E402

from gradcheck_cli.python.pysource import display  # noqa: E402
from gradcheck_cli.torch import check  # noqa: E402

SLIPS = display(str(HERE / "torch_slips.py"))


def slip_line(cls) -> int:
    lines, start = inspect.getsourcelines(cls)
    return next(start + k for k, text in enumerate(lines) if "# slip" in text)


def line_in(cls, text: str) -> int:
    """The line of `cls` that is `text` (stripped) or, for a comment, ends with it."""
    lines, start = inspect.getsourcelines(cls)
    return next(start + k for k, line in enumerate(lines) if line.strip() == text or line.rstrip().endswith(text))


def inputs(case: S.Case, seed: int = 0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    return tuple((torch.rand(s, generator=generator, dtype=torch.float64) + 0.5).requires_grad_() for s in case.shapes)


def golden_failing(case: S.Case) -> set:
    """The rows that must fail: where the Function's gradients (first or second order) differ from
    autograd's through the independent forward, at the check's point and along random weights."""
    xs = inputs(case)
    generator = torch.Generator().manual_seed(7)
    u = torch.randn(tuple(case.reference(*xs).shape), generator=generator, dtype=torch.float64, requires_grad=True)
    names = list(inspect.signature(case.function.forward).parameters)[1:1 + len(xs)]  # after ctx
    if case.order == 1:
        want = torch.autograd.grad(case.reference(*xs), xs, u)
        got = torch.autograd.grad(case.function.apply(*xs), xs, u)
        return {n for n, w, g in zip(names, want, got) if not torch.allclose(w, g)}
    ws = [torch.randn(x.shape, generator=generator, dtype=torch.float64) for x in xs]

    def second(f):
        first = torch.autograd.grad(f(*xs), xs, u, create_graph=True)
        got = torch.autograd.grad(first, xs + (u,), ws, allow_unused=True)
        return [torch.zeros_like(t) if g is None else g for g, t in zip(got, xs + (u,))]
    return {n for n, w, g in zip(names + ["grad_out"], second(case.reference), second(case.function.apply))
            if not torch.allclose(w, g)}


def failing_rows(report) -> list:
    return [r for r in report.nodes + report.gates if r.status == "fail"]


def row_name(row) -> str:
    return getattr(row, "input", None) if hasattr(row, "gate") else row.name


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.function.__name__, marks=[pytest.mark.xfail(
        strict=True, reason="a slip in an intermediate is blamed on the line that assigns the returned gradient")]
        if c.intermediate else []) for c in S.CASES])
def test_the_culprit_is_the_line_of_the_slip(case):
    report = check(case.function, inputs(case), order=case.order)
    assert report.error is None, report.error.format()
    rows = failing_rows(report)
    assert {row_name(r) for r in rows} == golden_failing(case) != set()
    assert report.path == SLIPS
    want = slip_line(case.holder or case.function)
    assert [(row_name(r), r.line) for r in rows] == [(row_name(r), want) for r in rows], [r.note for r in rows]


@pytest.mark.parametrize("function, note", [
    (S.Hypot, "the gradients are returned in the wrong order (db where da goes)"),
    (S.Lerp, "the gradients are returned in the wrong order (dw where db goes)"),
    (S.SquareNoUpstream, "not scaled by the upstream gradient: dx is the same whatever the upstream "
                         "(grad_output is not used); it is the gradient for an all-ones upstream"),
    (S.MulNoUpstream, "not scaled by the upstream gradient: da is the same whatever the upstream "
                      "(grad_output is not multiplied into it); it is the gradient for an all-ones upstream"),
])
def test_the_note_says_what_is_wrong(function, note):
    case = next(c for c in S.CASES if c.function is function)
    report = check(function, inputs(case))
    first = next(r for r in report.nodes if r.status == "fail")
    assert first.note.startswith(note), first.note


def test_other_slips_get_no_diagnosis_they_do_not_have():
    for function in (S.Sigmoid, S.QuadraticGate, S.MulOnce):
        case = next(c for c in S.CASES if c.function is function)
        for row in failing_rows(check(function, inputs(case))):
            assert "wrong order" not in row.note and "not scaled" not in row.note, row.note

    class TwoSlips(torch.autograd.Function):  # both wrong, neither the other's gradient: no swap
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return grad * b * 2, grad * a * 3
    report = check(TwoSlips, inputs(S.CASES[0]))
    assert [r.status for r in report.nodes] == ["fail", "fail"]
    assert all("wrong order" not in r.note and "not scaled" not in r.note for r in report.nodes)


def test_second_order_failures_say_so_on_every_face():
    case = next(c for c in S.CASES if c.function is S.MulDetached)
    report = check(S.MulDetached, inputs(case), order=2)
    (row,) = [r for r in report.nodes if r.status == "fail"]
    assert row.note.startswith("the double backward (second order) disagrees with finite differences")
    assert "the derivative of db along a is wrong" in row.note
    assert all(g.name == "MulDetached.backward (double backward)" for g in report.gates)
    nested = check(S.Cube, inputs(next(c for c in S.CASES if c.function is S.Cube)), order=2)
    (row,) = [r for r in nested.nodes if r.status == "fail"]
    assert f"it runs CubeGrad.backward, whose dx is wrong (line {slip_line(S.CubeGrad)}" in row.note
    done = gradcheck_in_process("check-py", f"{HERE / 'torch_slips.py'}::MulDetached", "--shape", "a=3", "--shape", "b=3",
                                "--order", "2", "--format", "github")
    assert done.returncode == 1
    assert f"line={slip_line(S.MulDetached)}," in done.stdout and "the double backward (second order)" in done.stdout


def test_recording_a_nested_function_puts_its_forward_back():
    before = {cls: cls.__dict__["forward"] for cls in (S.CubeGrad, S.SinGrad, S.ExpGrad)}
    for function in (S.Cube, S.SinPlusExp):
        assert not check(function, inputs(next(c for c in S.CASES if c.function is function)), order=2).passed
    assert {cls: cls.__dict__["forward"] for cls in before} == before


def test_a_once_differentiable_backward_at_order_2_is_an_error_at_its_decorator():
    report = check(S.MulOnce, inputs(S.CASES[0]), order=2)
    err = report.error
    assert err is not None and "once_differentiable" in err.message and "no double backward" in err.message
    assert (err.source, err.line, err.col) == (SLIPS, line_in(S.MulOnce, "@once_differentiable"), 5)


def test_an_exception_in_a_decorated_backward_is_placed_in_the_users_file():
    class Raises(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        @S.once_differentiable
        def backward(ctx, grad):
            return grad.reshape(7, 7)  # raises
    report = check(Raises, (torch.ones(3, dtype=torch.float64, requires_grad=True),))
    (row,) = report.nodes
    assert row.status == "fail" and "the backward raised RuntimeError" in row.note
    assert report.path == display(__file__) and row.line == line_in(Raises, "# raises")


def test_numpy_layers_get_the_same_diagnoses():
    import numpy as np
    from gradcheck_cli import check_layer

    def relu_forward(x):
        return np.maximum(0, x), x

    def relu_backward(dout, cache):
        dx = (cache > 0).astype(float)  # dout forgotten
        return dx

    def scale_forward(x, w):
        return x * w, (x, w)

    def scale_backward(dout, cache):
        x, w = cache
        dx = dout * w
        dw = dout * x
        return dw, dx  # swapped
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    (row,) = check_layer(relu_forward, relu_backward, {"x": x}).nodes
    assert row.status == "fail" and row.line == here("# dout forgotten")
    assert row.note.startswith("not scaled by the upstream gradient: dx is the same whatever the upstream (dout is not used)")
    rows = check_layer(scale_forward, scale_backward, {"x": x, "w": w}).nodes
    assert [(r.status, r.line) for r in rows] == [("fail", here("# swapped"))] * 2
    assert rows[0].note.startswith("the gradients are returned in the wrong order (dw where dx goes)")


def here(text: str) -> int:
    return next(i for i, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), 1)
                if text in line and "here(" not in line)


def test_gradients_torch_refuses_are_blamed_on_the_return():
    class AffineSwap(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w)
            return x @ w + b

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            dx = g @ w.t()
            dw = x.t() @ g
            db = g.sum(0)
            return dx, db, dw  # wrong order, wrong shapes
    generator = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(s, generator=generator, dtype=torch.float64, requires_grad=True) for s in [(3, 4), (4, 2), (2,)])
    report = check(AffineSwap, args)
    assert [(r.status, r.line) for r in report.nodes] == [("fail", line_in(AffineSwap, "# wrong order, wrong shapes"))] * 3
    assert "returned an invalid gradient" in report.nodes[0].note


def test_a_second_order_slip_in_another_file_is_annotated_there(tmp_path):
    (tmp_path / "inner.py").write_text(
        "import torch\n\n\nclass CubeGrad(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x, g):\n        ctx.save_for_backward(x, g)\n        return 3 * x * x * g\n\n"
        "    @staticmethod\n    def backward(ctx, gg):\n        x, g = ctx.saved_tensors\n"
        "        dx = gg * 3 * x * g  # slip: 6\n        dg = gg * 3 * x * x\n        return dx, dg\n")
    (tmp_path / "outer.py").write_text(
        "import torch\nfrom inner import CubeGrad\n\n\nclass Cube(torch.autograd.Function):\n"
        "    @staticmethod\n    def forward(ctx, x):\n        ctx.save_for_backward(x)\n        return x ** 3\n\n"
        "    @staticmethod\n    def backward(ctx, grad):\n        (x,) = ctx.saved_tensors\n"
        "        return CubeGrad.apply(x, grad)\n")
    done = gradcheck_in_process("check-py", "outer.py::Cube", "--shape", "x=3", "--order", "2", "--format", "github",
                                cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("::error file=inner.py,line=13,col=9,title=gradcheck fail%3A x::the double backward")
