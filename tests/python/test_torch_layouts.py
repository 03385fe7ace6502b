"""A torch Function's backward in the memory layouts real graphs give it, and run twice at the same
point (python/torch_layouts.py): examples/kernels/ right and wrong. Each wrong one is first shown
wrong by torch itself (autograd through a graph that gives that layout), so the verdict is held to an
independent oracle; torch.autograd.gradcheck passes each of them (its contiguous grad_outputs).
Skipped without PyTorch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import gradcheck_in_process

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")

from gradcheck_cli.python.layouts import ROUNDING, RUNS  # noqa: E402
from gradcheck_cli.torch import check  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
KERNELS = ROOT / "examples" / "kernels"
sys.path.insert(0, str(KERNELS))
import jitter  # noqa: E402
import stride0  # noqa: E402
import strided  # noqa: E402


def x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).requires_grad_()


def line_of(path: Path, cls, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"class {cls.__name__}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def failing(report) -> list:
    return [g for g in report.gates if g.status == "fail"]


# --- the oracle: torch's own autograd, through graphs that give these layouts -----------------------

def test_torch_itself_shows_each_wrong_kernel_wrong_and_gradcheck_passes_it():
    a = x(4, 5)
    (through_t,) = torch.autograd.grad(strided.StridedScale.apply(a).t(), a, torch.ones(5, 4).double() * torch.arange(
        20.0, dtype=torch.float64).reshape(5, 4))
    assert not torch.allclose(through_t, 2 * torch.arange(20.0, dtype=torch.float64).reshape(5, 4).t())
    with pytest.raises(RuntimeError, match="single memory location"):
        stride0.ScaleInPlace.apply(a).sum().backward()
    for wrong in (strided.StridedScale, stride0.ScaleInPlace):
        assert torch.autograd.gradcheck(wrong.apply, (x(4, 5),))
    g = torch.randn(4, 5, dtype=torch.float64)
    runs = [torch.autograd.grad(jitter.TripleAtomicFloat32.apply(a), a, g)[0] for _ in range(8)]
    assert any(not torch.equal(runs[0], r) for r in runs[1:])  # it varies from run to run


# --- layouts ---------------------------------------------------------------------------------------

def test_a_backward_reading_memory_fails_naming_the_layout_the_element_and_the_line():
    report = check(strided.StridedScale, (x(4, 5),))
    (row,) = failing(report)
    assert row.gate == "layouts" and row.input == "x"
    assert "wrong when grad_output is a transposed, non-contiguous view: x[" in row.note
    assert row.line == line_of(KERNELS / "strided.py", strided.StridedScale, "set_(")  # the line that reads memory
    assert check(strided.Scale, (x(4, 5),)).passed


def test_each_layout_alone_and_none():
    expanded = failing(check(strided.StridedScale, (x(4, 5),), layouts="expanded"))
    assert len(expanded) == 1 and "grad_output is a stride-0 expanded view (as behind y.sum())" in expanded[0].note
    assert failing(check(strided.StridedScale, (x(2, 3, 4, 5),), layouts="channels-last"))[0].note.startswith(
        "wrong when grad_output is channels-last (4-d)")
    assert failing(check(strided.StridedScale, (x(2, 3, 4, 5),), layouts="transposed"))[0].note.startswith(
        "wrong when grad_output is a permuted, non-contiguous view")
    assert check(strided.StridedScale, (x(4, 5),), layouts="offset").passed  # it honours the storage offset
    assert check(strided.StridedScale, (x(4, 5),), layouts="none").passed  # today's check, blind to it


class IgnoresOffset(torch.autograd.Function):
    """y = 2x; the backward reads grad_output's storage from its start, ignoring its offset."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        flat = torch.empty(0, dtype=g.dtype).set_(g.untyped_storage(), 0, g.shape, g.stride())
        return flat * 2


def test_a_storage_offset_ignored_fails_at_the_offset_layout_only():
    assert [g.note.split(":")[0] for g in failing(check(IgnoresOffset, (x(4, 5),)))] == [
        "wrong when grad_output is a view at storage offset 3"]
    assert check(IgnoresOffset, (x(4, 5),), layouts="transposed,expanded").passed


class WrongWhenBoth(torch.autograd.Function):
    """y = 2x; the backward is wrong only for a grad_output both non-contiguous and at a storage offset."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        factor = 3 if not g.is_contiguous() and g.storage_offset() > 0 else 2
        return factor * g


def test_transposed_and_offset_share_a_call_and_a_difference_only_both_make_is_named_as_both():
    (row,) = failing(check(WrongWhenBoth, (x(4, 5),)))
    assert row.note.startswith("wrong when grad_output is a transposed, non-contiguous view at storage offset 3: x[")
    assert check(WrongWhenBoth, (x(4, 5),), layouts="transposed,expanded,channels-last").passed
    assert check(WrongWhenBoth, (x(4, 5),), layouts="offset").passed


class Counted(torch.autograd.Function):
    """y = 2x, counting its backward's calls."""
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        Counted.calls += 1
        return 2 * g


def calls(shape, layouts: str) -> int:
    Counted.calls = 0
    assert check(Counted, (x(*shape),), layouts=layouts).passed
    return Counted.calls


def test_the_layouts_cost_six_calls_of_the_backward_seven_in_4_d():
    # the main check's own call at the point is the first contiguous run; then one more run, one call
    # transposed at a storage offset and one with only the inputs so, one expanded and one contiguous at
    # the expanded values, one gapped
    assert calls((4, 5), "all") - calls((4, 5), "none") == 6
    assert calls((2, 3, 4, 5), "all") - calls((2, 3, 4, 5), "none") == 7  # and channels-last
    assert calls((4, 5), "contiguous") - calls((4, 5), "none") == RUNS - 1


def test_an_in_place_write_into_a_stride_0_grad_output_fails_as_torch_raises():
    (row,) = failing(check(stride0.ScaleInPlace, (x(4, 5),)))
    assert row.note.startswith("when grad_output is a stride-0 expanded view (as behind y.sum()), the backward "
                               "raised RuntimeError")
    assert row.line == line_of(KERNELS / "stride0.py", stride0.ScaleInPlace, "dx = grad.mul_(3)")
    assert check(stride0.Scale, (x(4, 5),)).passed


class SquareReadsSavedMemory(torch.autograd.Function):
    """y = x²; the backward reads the saved input's storage as if it were contiguous."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xs = torch.empty(0, dtype=x.dtype).set_(x.untyped_storage(), x.storage_offset(), x.shape)
        return 2 * xs * g


class SumsRows(torch.autograd.Function):
    """y = x.sum(1) with a forward that reads the input's memory as contiguous rows."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        rows = torch.empty(0, dtype=x.dtype).set_(x.untyped_storage(), x.storage_offset(), x.shape)
        return rows.sum(1)

    @staticmethod
    def backward(ctx, g):
        return g[:, None].expand(ctx.shape).clone()


def test_inputs_in_layouts_the_backward_and_the_forward():
    (row,) = failing(check(SquareReadsSavedMemory, (x(4, 5),)))
    assert row.note.startswith("wrong when x is a transposed, non-contiguous view: x[")
    (row,) = failing(check(SumsRows, (x(4, 5),)))
    assert row.note.startswith("the forward's output is wrong when x is a transposed, non-contiguous view")
    assert row.line == SumsRows.forward.__code__.co_firstlineno + 1  # the def line, under @staticmethod


class ViewsItsInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        flat = x.view(-1)  # raises for a non-contiguous x: the forward's own limit, not its backward's
        return (flat * 2.0).view(x.shape)

    @staticmethod
    def backward(ctx, g):
        return g * 2.0


def test_a_forward_that_raises_in_a_layout_is_one_warning_at_its_line_not_the_backwards():
    # torch itself raises at the forward's x.view(-1) for a transposed input (the oracle for where it raised)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        ViewsItsInput.apply(x(4, 5).t())
    report = check(ViewsItsInput, (x(4, 5),))
    assert report.passed and not failing(report)
    said = [(text, line) for text, line, _ in report.warnings if "raised" in text]
    assert len(said) == 1, report.warnings
    text, line = said[0]
    assert text.startswith("ViewsItsInput.forward raised when x was in the transposed, expanded and gapped layouts, "
                           "so ViewsItsInput.backward was not checked with it there: RuntimeError: view size")
    assert line == ViewsItsInput.forward.__code__.co_firstlineno + 2  # the x.view(-1) line, under @staticmethod


class Inverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        inv = torch.linalg.inv(a)
        ctx.save_for_backward(inv)
        return inv

    @staticmethod
    def backward(ctx, g):
        (inv,) = ctx.saved_tensors
        return -inv.mT @ g @ inv.mT


def test_a_forward_undefined_at_the_expanded_layouts_values_says_so_not_that_the_layout_broke_it():
    # a stride-0 view of a square matrix repeats its first row: singular, contiguous or not (torch raises for
    # both, the oracle); the warning says the values are outside the forward's domain, not that the layout is
    a = x(4, 4)
    for repeated in (a[:1].expand(4, 4), a[:1].expand(4, 4).contiguous()):
        with pytest.raises(RuntimeError, match="singular"):
            torch.linalg.inv(repeated)
    report = check(Inverse, (a,))
    assert report.passed and not failing(report)
    (text,) = [t for t, _, _ in report.warnings if "raised" in t]
    assert text.startswith("Inverse.forward raised at the values a has in the expanded layout (its first row "
                           "repeated), laid out contiguously too: those values are outside its domain"), text


class Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return torch.nn.functional.conv2d(x, w, padding=1)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return (torch.nn.grad.conv2d_input(x.shape, w, g, padding=1),
                torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1))


def test_right_functions_pass_in_every_layout():
    assert check(Conv, (x(2, 3, 6, 6), x(4, 3, 3, 3, seed=1))).passed  # channels-last, reductions reordered
    assert check(jitter.Triple, (x(3, 4, 5),)).passed
    a = x(5, 4).t()  # a transposed input given by the user
    report = check(strided.Scale, (a,))
    assert report.passed and not report.warnings


class SeesItsInput(torch.autograd.Function):
    """y = 2x, keeping what each call's input was: a leaf? its strides and storage offset."""

    seen: list = []

    @staticmethod
    def forward(ctx, x):
        SeesItsInput.seen.append((x.requires_grad and x.is_leaf, x.stride(), x.storage_offset()))
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return 2 * g


class ReluInPlace(torch.autograd.Function):
    """relu written into its input (ctx.mark_dirty): torch refuses that for a leaf that requires grad."""

    @staticmethod
    def forward(ctx, x):
        x.clamp_(min=0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (y > 0).to(g.dtype)


def test_the_function_gets_each_layout_as_a_graph_computes_it_and_may_write_into_it():
    SeesItsInput.seen.clear()
    assert check(SeesItsInput, (x(2, 3, 4, 5),)).passed
    assert not any(leaf for leaf, _, _ in SeesItsInput.seen)  # copies of the leaves, as a graph gives (no leaf)
    layouts = {(stride, offset) for _, stride, offset in SeesItsInput.seen}
    assert ((1, 2, 6, 24), 3) in layouts  # transposed (permuted) at storage offset 3: not made contiguous
    assert ((60, 1, 15, 3), 0) in layouts  # channels-last
    assert any(0 in stride for stride, _ in layouts)  # expanded
    report = check(ReluInPlace, (x(2, 3, 4, 5),))
    assert report.passed and not failing(report)
    # the one layout it is not checked in: torch refuses an in-place write into a stride-0 view, as in a graph
    (warning,) = report.warnings
    assert "in the expanded layout" in warning[0] and "more than one element of the written-to tensor" in warning[0]


# --- the repeated runs -----------------------------------------------------------------------------

def test_a_spread_within_rounding_is_a_warning_and_past_it_a_failure():
    report = check(jitter.TripleJitter, (x(4, 5),))
    assert report.passed and len(report.warnings) == 1
    message, line, _ = report.warnings[0]
    assert "is a nondeterministic backward: run-to-run spread" in message and "within rounding" in message
    assert line == jitter.TripleJitter.backward.__code__.co_firstlineno + 1
    assert not check(jitter.Triple, (x(4, 5),)).warnings
    (row,) = failing(check(jitter.TripleAtomicFloat32, (x(4, 5),)))
    assert row.gate == "runs" and row.note.startswith(f"nondeterministic: {RUNS} runs at the same point differ by")


def jittering(size: float):
    class Jitter(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 3 * x

        @staticmethod
        def backward(ctx, g):
            noise = torch.rand(g.shape, dtype=g.dtype) * 2 - 1
            return 3 * g * (1 + size * noise)
    return Jitter


def test_the_rounding_constant_is_held_both_ways():
    under = check(jittering(ROUNDING / 8), (x(6, 7),))
    assert under.passed and "within rounding" in under.warnings[0][0]
    over = check(jittering(ROUNDING * 8), (x(6, 7),))
    assert [g.gate for g in failing(over)] == ["runs"]


# --- the command line ------------------------------------------------------------------------------

def check_py(*args):
    return gradcheck_in_process("check-py", *args, cwd=ROOT)


def test_the_command_line_chooses_layouts_and_every_face_says_the_spread():
    wrong = check_py(KERNELS / "strided.py::StridedScale", "--shape", "x=4,5")
    assert wrong.returncode == 1 and "transposed, non-contiguous view" in wrong.stdout
    blind = check_py(KERNELS / "strided.py::StridedScale", "--shape", "x=4,5", "--layouts", "offset,contiguous")
    assert blind.returncode == 0
    bad = check_py(KERNELS / "strided.py::StridedScale", "--shape", "x=4,5", "--layouts", "diagonal")
    assert bad.returncode == 2 and "unknown layout 'diagonal'" in bad.stderr
    face = check_py(KERNELS / "jitter.py::TripleJitter", "--shape", "x=4,5", "--format", "json")
    assert face.returncode == 0
    (warning,) = json.loads(face.stdout)["results"][0]["warnings"]
    assert "nondeterministic backward" in warning["message"]
    rerun = check_py(KERNELS / "strided.py::StridedScale", "--shape", "x=4,5", "--layouts", "expanded")
    assert rerun.returncode == 1 and "--layouts=expanded" in rerun.stdout


class _Center(torch.autograd.Function):  # right: y = x - mean(x, 1), whose gradient for a constant grad_output is 0
    @staticmethod
    def forward(ctx, x):
        return x - x.mean(1, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        return grad - grad.mean(1, keepdim=True)


@pytest.mark.parametrize("shape", [(8, 16), (16, 16), (3, 128)])
def test_a_gradient_that_is_zero_in_a_layout_is_not_failed_for_its_rounding(shape):
    # the expanded layout's grad_output is constant, so a centred gradient is 0 there; both layouts' values
    # are rounding (2e-16 against 0), which measured against their own largest element was an error of ~1
    assert torch.autograd.gradcheck(_Center.apply, (x(*shape)[:4, :8].clone().requires_grad_(),))
    assert failing(check(_Center, (x(*shape),))) == []
    sys.path.insert(0, str(ROOT / "examples" / "torch"))
    try:
        import functions
    finally:
        sys.path.pop(0)
    report = check(functions.LayerNorm, (x(*shape),))
    assert failing(report) == [] and report.passed
    constant = torch.full(shape, 0.1, dtype=torch.float64, requires_grad=True)  # x - mean(x) is 0: the forward's too
    assert failing(check(_Center, (constant,))) == []


class _SigmoidIntoItsOutput(torch.autograd.Function):  # right numbers once: it computes dx in the output y
    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dx = y.mul_(1 - y).mul_(grad)
        return dx


class _ScaleIntoItsInput(torch.autograd.Function):  # y = x * w, dw computed in x's own buffer
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        dx = grad * w
        dw = x.mul_(grad)
        return dx, dw


@pytest.mark.parametrize("fn,args,text", [(_SigmoidIntoItsOutput, 1, "dx = y.mul_("), (_ScaleIntoItsInput, 2, "dw = x.mul_(")])
def test_a_backward_that_writes_into_what_the_caller_holds_fails_at_that_line(fn, args, text):
    inputs = tuple(x(4, 5, seed=k) for k in range(args))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):  # torch's own gradcheck sees it
        torch.autograd.gradcheck(fn.apply, tuple(t.detach().clone().requires_grad_() for t in inputs))
    report = check(fn, inputs)
    assert not report.passed
    bad = [g for g in failing(report) if "writes into" in g.note]
    assert bad and bad[0].line == line_of(Path(__file__), fn, text)
    assert [g.status for g in check(fn, inputs, layouts="none").gates if g.status == "fail"] == []  # the gate's finding


def _dense(t):  # a pointer kernel's wrapper: any dense layout is walked as it is
    order = sorted(range(t.dim()), key=lambda d: t.stride(d))
    expect = 1
    for d in order:
        if t.size(d) != 1 and t.stride(d) != expect:
            return t.contiguous()
        expect *= t.size(d)
    return t


def _walk(t):
    return torch.as_strided(t, (t.numel(),), (1,), t.storage_offset())


class _InStep(torch.autograd.Function):
    """y = 3x; the backward walks grad_output's storage and a new dx's (in x's layout) in step: right
    when they share a layout, wrong when x is transposed and grad_output is not (`_InStep.apply(a.t())`)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 3 * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad = _dense(grad)
        dx = torch.empty_like(x)
        _walk(dx).copy_(3 * _walk(grad))
        return dx


class _RowStride(torch.autograd.Function):
    """y = 2x; a row kernel that makes the last axis stride 1 but takes the row stride to be the row's length
    (the forgotten `stride_row`): wrong for grad_output behind `torch.cat([y, z], 1)`."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        rows = torch.as_strided(grad, grad.shape, (grad.shape[1], 1), grad.storage_offset())
        return 2 * rows


def test_a_gapped_grad_output_shows_a_forgotten_row_stride_as_a_graph_does():
    a, g = x(4, 5), x(4, 7, seed=1).detach()
    (through_cat,) = torch.autograd.grad(torch.cat([_RowStride.apply(a), a[:, :2]], 1), a, g)  # rows 7 apart
    right = 2 * g[:, :5] + torch.cat([g[:, 5:], torch.zeros(4, 3, dtype=torch.float64)], 1)
    assert not torch.allclose(through_cat, right)  # wrong in a graph
    assert torch.autograd.gradcheck(_RowStride.apply, (x(4, 5),))  # contiguous only: torch's own passes it
    (row,) = failing(check(_RowStride, (x(4, 5),)))
    assert "grad_output is a view into a wider tensor" in row.note
    assert row.line == line_of(Path(__file__), _RowStride, "rows = torch.as_strided(")
    assert check(_RowStride, (x(4, 5),), layouts="transposed,expanded,offset").passed  # gapped alone shows it


def test_a_kernel_that_takes_its_tensors_to_share_a_layout_fails_when_they_do_not():
    a, g = x(5, 4), x(4, 5, seed=1).detach()
    (through_t,) = torch.autograd.grad(_InStep.apply(a.t()), a, g)
    assert not torch.allclose(through_t, 3 * g.t())  # wrong in a graph
    report = check(_InStep, (x(4, 5),))
    assert not report.passed and any("transposed" in g.note for g in failing(report))
    with pytest.raises(Exception, match="Jacobian mismatch"):  # torch's own, given the transposed input
        torch.autograd.gradcheck(_InStep.apply, (x(5, 4).t().detach().requires_grad_(),))
    given = check(_InStep, (x(5, 4).t().detach().requires_grad_(),), layouts="none")
    assert given.passed  # the main check reads values: the layout the caller gave is the gate's to check
    transposed = check(_InStep, (x(5, 4).t().detach().requires_grad_(),), layouts="contiguous")
    assert not transposed.passed and "in the layout it was given in" in failing(transposed)[0].note


class _ChannelsLastFastPath(torch.autograd.Function):
    """y = 2x; the backward's channels-last fast path swaps H and W, its other path is right."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        if grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous():
            dx = 2 * grad.transpose(2, 3).reshape(grad.shape)
        else:
            dx = 2 * grad
        return dx


def test_a_layout_failure_is_blamed_on_the_branch_that_ran_in_that_layout():
    a = x(2, 3, 4, 4)
    (through_cl,) = torch.autograd.grad(_ChannelsLastFastPath.apply(a.contiguous(memory_format=torch.channels_last)),
                                        a, x(2, 3, 4, 4, seed=1).detach().contiguous(memory_format=torch.channels_last))
    assert not torch.allclose(through_cl, 2 * x(2, 3, 4, 4, seed=1).detach())  # wrong in a graph
    (row,) = failing(check(_ChannelsLastFastPath, (a,)))
    assert "channels-last" in row.note
    assert row.line == line_of(Path(__file__), _ChannelsLastFastPath, "dx = 2 * grad.transpose(2, 3)")
