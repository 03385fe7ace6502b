"""torch.autograd.Function checked by this project's engine: right and wrong examples
failing on their lines, non-tensor arguments, None gradients, several outputs, low precision
(float32, float16, bfloat16 against a float64 reference), the double backward, torch's gradcheck
signature, and a Function that writes into its input (ctx.mark_dirty). Skipped without PyTorch
(`pip install '.[torch]'`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples" / "torch" / "functions.py"
sys.path.insert(0, str(EXAMPLES.parent))
import functions as F  # noqa: E402

from gradcheck_cli.core.errors import GradcheckError  # noqa: E402
from gradcheck_cli.torch import check, gradcheck  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from gradcheck_cli.cli import main  # noqa: E402


def check_py(*args):
    """`gradcheck check-py ARGS` in this process (the Function runs in check-py's own child process)."""
    return CliRunner().invoke(main, ["check-py", *[str(a) for a in args]])


def line_of(cls, text: str) -> int:
    """The line, in the examples file, of `text` inside class `cls`."""
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"class {cls.__name__}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def x(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).requires_grad_()


@pytest.mark.parametrize("right, wrong, shape", [
    (F.FusedGELU, F.FusedGELURounded, (4, 5)),
    (F.LayerNorm, F.LayerNormNoMean, (4, 6)),
    (F.Softmax, F.SoftmaxWrongAxis, (3, 5)),
    (F.Transpose, F.TransposeStrideBug, (4, 4)),
])
def test_right_functions_pass_and_wrong_ones_fail_on_their_line(right, wrong, shape):
    ok = check(right, (x(*shape),))
    assert ok.error is None and ok.passed, [(r.name, r.status, r.note) for r in ok.nodes]
    bad = check(wrong, (x(*shape),))
    assert bad.error is None and not bad.passed
    (row,) = bad.nodes
    assert row.status == "fail" and row.line == line_of(wrong, "dx = ")


def test_non_tensor_arguments_pass_through_and_none_for_them_is_fine():
    report = check(F.LayerNorm, (x(3, 4), 1e-3))  # eps: a float, returned None for
    assert report.passed and [r.name for r in report.nodes] == ["x"]


def test_none_for_a_differentiable_input_fails_that_input():
    class Forgets(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, None
    report = check(Forgets, (x(3), x(3, seed=1)))
    status = {r.name: (r.status, r.note) for r in report.nodes}
    assert status["a"][0] == "pass" and status["b"][0] == "fail" and "returned None for b" in status["b"][1]


def test_several_outputs_and_a_wrong_shape():
    class SinCos(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a.sin(), a.cos()

        @staticmethod
        def backward(ctx, gs, gc):
            (a,) = ctx.saved_tensors
            return gs * a.cos() - gc * a.sin()
    assert check(SinCos, (x(4),)).passed

    class WrongShape(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return (g * 2).sum(0)
    report = check(WrongShape, (x(3, 4),))
    assert not report.passed and "shape" in (report.nodes[0].note or "")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_right_passes_and_a_one_percent_bug_fails(dtype):
    class OnePercent(F.FusedGELU):
        @staticmethod
        def backward(ctx, grad):
            return F.FusedGELU.backward(ctx, grad) * 1.01
    ok = check(F.FusedGELU, (x(64, 32, dtype=dtype),))
    low = [g for g in ok.gates if g.gate == str(dtype).removeprefix("torch.")]
    assert ok.passed and len(low) == 1 and low[0].status == "pass", [g.note for g in low]
    # the float64 check sees 1% in any dtype (at 16 × 8: its element-by-element search costs N² to the 64 × 32's)
    bad = check(OnePercent, (x(16, 8, dtype=dtype),))
    assert not bad.passed and bad.nodes[0].status == "fail"


def test_a_float32_backward_that_rounds_through_bfloat16_fails_only_in_its_dtype():
    class ThroughBF16(F.FusedGELU):
        @staticmethod
        def backward(ctx, grad):
            dx = F.FusedGELU.backward(ctx, grad.to(torch.bfloat16)) if grad.dtype == torch.float32 else F.FusedGELU.backward(ctx, grad)
            return dx.to(grad.dtype)
    report = check(ThroughBF16, (x(64, 32, dtype=torch.float32),))
    low = [g for g in report.gates if g.gate == "float32"]
    assert report.nodes[0].status != "fail" and low[0].status == "fail" and not report.passed
    assert "past 3× autodiff's own" in low[0].note


def test_the_double_backward_of_a_function_that_keeps_an_intermediate_on_ctx_fails():
    # pytorch #76185: an intermediate kept on ctx (not save_for_backward) is a constant to autograd,
    # so the first backward is right and the double backward silently misses its derivative
    class ExpSaved(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            y = 2 * a.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y

    class ExpOnCtx(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            t = a.exp()
            ctx.t = t
            return 2 * t

        @staticmethod
        def backward(ctx, g):
            return 2 * g * ctx.t
    a = x(5)
    assert check(ExpOnCtx, (a,)).passed  # the first backward is right
    assert check(ExpSaved, (a,), order=2).passed
    twice = check(ExpOnCtx, (a,), order=2)
    status = {r.name: r.status for r in twice.nodes}
    assert status == {"a": "fail", "grad_out": "pass"}


def test_the_drop_in_gradcheck_raises_with_lines_not_jacobians():
    assert gradcheck(F.Softmax.apply, (x(3, 4),), eps=1e-6, atol=1e-5, rtol=1e-3)
    assert gradcheck(F.SoftmaxWrongAxis, (x(3, 4),), raise_exception=False) is False
    with pytest.raises(GradcheckError) as err:
        gradcheck(F.SoftmaxWrongAxis, (x(3, 4),))
    assert f"line {line_of(F.SoftmaxWrongAxis, 'dx = ')}" in err.value.message and "functions.py" in err.value.message


def test_check_py_on_a_function_and_its_double_backward():
    done = check_py(f"{EXAMPLES}::LayerNormNoMean", "--shape", "x=4,6")
    assert done.exit_code == 1 and f"(line {line_of(F.LayerNormNoMean, 'dx = ')})" in done.stdout
    done = check_py(f"{EXAMPLES}::Softmax", "--shape", "x=3,5", "--order", "2")
    assert done.exit_code == 0, done.stdout + done.stderr
    done = check_py(f"{ROOT / 'examples/python/layers.py'}::affine", "--shape", "x=2,3", "--shape", "w=3,2",
                    "--shape", "b=2", "--order", "2")
    assert done.exit_code == 2 and "torch.autograd.Functions only" in done.stderr


def test_torch_is_imported_only_when_a_target_uses_it():
    code = ("import sys\nfrom gradcheck_cli import check, check_function\nimport numpy as np\n"
            "check('x = 1.5\\nf = x * x')\ncheck_function(np.sin, lambda g, x: g * np.cos(x), {'x': np.ones(3)})\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


class TwoLayer(torch.autograd.Function):
    """relu(x @ W1) @ W2, summed squares; backward by hand (a small MLP as one Function)."""

    @staticmethod
    def forward(ctx, x, W1, W2):
        h = x @ W1
        a = h.clamp(min=0)
        y = a @ W2
        ctx.save_for_backward(x, W1, W2, h, a, y)
        return (y * y).sum()

    @staticmethod
    def backward(ctx, g):
        x, W1, W2, h, a, y = ctx.saved_tensors
        dy = 2 * y * g
        da = dy @ W2.T
        dh = da * (h > 0)
        return dh @ W1.T, x.T @ dh, a.T @ dy


class OffByOneInAThousand(TwoLayer):
    """dW1[3, 2] wrong by 0.1%: only the exact reference sees it element by element; 4 projections cannot name it."""

    @staticmethod
    def backward(ctx, g):
        dx, dW1, dW2 = TwoLayer.backward(ctx, g)
        dW1 = dW1.clone()
        dW1[3, 2] *= 1.001
        return dx, dW1, dW2


def here(text: str) -> int:
    """The line of `text` in this file."""
    return next(i for i, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), 1) if text in line)


def mlp(seed=0, integers=False):
    if integers:  # what real tests use: integer values, exact zeros in h (relu's kink), ties
        g = torch.Generator().manual_seed(seed)
        return tuple(torch.randint(-2, 3, s, generator=g).to(torch.float64).requires_grad_()
                     for s in [(6, 5), (5, 7), (7, 3)])
    return (x(6, 5, seed=seed), x(5, 7, seed=seed + 1), x(7, 3, seed=seed + 2))


@pytest.mark.parametrize("options", [{}, {"budget": 1}, {"fast": True}, {"reference": False}])
def test_every_element_against_autograd_through_the_forward_names_the_one_wrong_element(options):
    report = check(OffByOneInAThousand, mlp(), **options)
    failing = [(r.name, r.worst_index, r.line) for r in report.nodes if r.status == "fail"]
    assert failing == [("W1", (3, 2), here("dW1[3, 2] *= 1.001"))], [(r.name, r.status, r.note) for r in report.nodes]
    method = report.nodes[1].numeric_method
    if options.get("reference") is False:
        assert method == "exhaustive"
    else:
        assert method.startswith("every element against autodiff through the forward") and "the 1 element" in method
    assert check(TwoLayer, mlp(), **options).passed


def test_without_the_reference_a_projection_failure_blames_every_input():
    # why the reference matters: 4 random projections cover every input at once, and 100 elements
    # are too many for this layer's recheck budget... here the recheck runs, so the element is named
    # either way; the reference names it without differencing every element
    report = check(TwoLayer, mlp(), budget=1)
    assert report.passed and all(r.numeric_method.startswith("every element against autodiff") for r in report.nodes)
    assert all(r.numeric is None for r in report.nodes)  # no element was differenced: none disagreed


def test_a_forward_autograd_cannot_follow_is_judged_by_the_differences_alone():
    class Detached(torch.autograd.Function):
        """x · x.detach(): autograd through this forward sees half the derivative."""

        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a.detach()

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return 2 * a * g

    class LikeAutograd(Detached):
        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return a * g  # agrees with the wrong reference at every element: the differences must fail it
    right = check(Detached, (x(40),), budget=1)
    assert right.passed and "each element differenced instead" in right.nodes[0].note
    wrong = check(LikeAutograd, (x(40),), budget=1)
    assert [r.status for r in wrong.nodes] == ["fail"]


class ScaledRelu(torch.autograd.Function):
    """max(x, 0) · w; its backward takes relu'(0) = 0 where torch's clamp takes 1."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x.clamp(min=0) * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w * (x > 0), g * x.clamp(min=0)


class ScaledReluDoubleAtZero(ScaledRelu):
    """2 · g · w at x = 0: outside the one-sided slopes (0 and g · w), a bug only at the kink."""

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dx = g * w * ((x > 0) + 2.0 * (x == 0))
        return dx, g * x.clamp(min=0)


def test_integer_inputs_at_relu_kinks_pass_though_autograd_picks_another_subgradient():
    xs = torch.tensor([[-2.0, 0.0, 1.0, 0.0], [3.0, -1.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    ws = torch.tensor([[1.0, 2.0, -3.0, 1.0], [2.0, 1.0, 1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    report = check(ScaledRelu, (xs, ws))
    assert report.passed, [(r.name, r.status, r.note) for r in report.nodes]
    row = report.nodes[0]  # the random directions cross the kinks: nothing confirms the reference, so each element is differenced
    assert row.status == "kink" and row.numeric_method == "exhaustive" and "a kink in the way" in row.note, row
    bad = check(ScaledReluDoubleAtZero, (xs, ws))
    assert [(r.name, r.status) for r in bad.nodes] == [("x", "fail"), ("w", "pass")]
    assert bad.nodes[0].worst_index in {(0, 1), (0, 3), (1, 2)} and "outside the one-sided slopes" in bad.nodes[0].note


def test_the_reference_costs_no_more_than_predicted():
    from gradcheck_cli.core.meter import Meter
    for fn in (TwoLayer, OffByOneInAThousand):
        with Meter() as meter:
            report = check(fn, mlp(), budget=1)
        assert meter.units <= report.work.total, (meter.counts, report.work.parts)


def test_check_py_without_the_reference_differences_every_element():
    import json
    run = [f"{EXAMPLES}::LayerNorm", "--shape", "x=4,6", "--format", "json"]
    plain = json.loads(check_py(*run).stdout)
    alone = json.loads(check_py(*run, "--no-reference").stdout)
    method = [n["numeric_method"] for n in plain["results"][0]["nodes"]]
    assert method[0].startswith("every element against autodiff"), method
    assert [n["numeric_method"] for n in alone["results"][0]["nodes"]] == ["exhaustive"]
    done = check_py(f"{EXAMPLES}::LayerNormNoMean", "--shape", "x=4,6", "--no-reference")
    assert done.exit_code == 1 and "--shape=x=4,6 --no-reference" in done.stdout


class RightAtThePointOnly(torch.autograd.Function):
    """d(x²) written as 2·x₀ with x₀ the given point's value: right there, wrong anywhere else."""

    @staticmethod
    def forward(ctx, a):
        return a * a

    @staticmethod
    def backward(ctx, g):
        return g * 2 * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def test_fast_mode_checks_the_given_point_only_as_torchs_does():
    a = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    full = check(RightAtThePointOnly, (a,))
    assert full.nodes[0].status == "pass" and [g.status for g in full.gates] == ["fail"]  # the second point sees it
    fast = check(RightAtThePointOnly, (a,), fast=True)
    assert fast.passed and fast.gates == []  # the trade fast mode makes, as torch's fast_mode does
    assert gradcheck(F.Softmax.apply, (x(3, 4),), fast_mode=True)
    with pytest.raises(GradcheckError):
        gradcheck(OffByOneInAThousand.apply, mlp(), rtol=1e-5, fast_mode=True)  # torch's default rtol, 1e-3, allows 0.1%
    done = check_py(f"{EXAMPLES}::LayerNormNoMean", "--shape", "x=4,6", "--fast")
    assert done.exit_code == 1 and "--fast" in done.stdout and "second point" not in done.stdout


# --- a Function that writes into its input (ctx.mark_dirty) -------------------------------------------

IN_PLACE = """\
import torch


class ReluInPlace(torch.autograd.Function):
    \"\"\"relu written into its input, as an in-place activation is.\"\"\"

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


class ReluInPlaceNoMask(ReluInPlace):
    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g  # slip


class ReluInPlaceTwice(ReluInPlace):
    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return 2 * g * (y > 0).to(g.dtype)  # slip
"""
IN_PLACE_WRONG = ("ReluInPlaceNoMask", "ReluInPlaceTwice")


@pytest.fixture
def in_place(tmp_path):
    """(the file, its module): the Functions of IN_PLACE, written to a file check-py reads."""
    path = tmp_path / "in_place.py"
    path.write_text(IN_PLACE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("in_place_functions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def slip_line(name: str) -> int:
    lines = IN_PLACE.splitlines()
    start = lines.index(f"class {name}(ReluInPlace):")
    return next(i for i in range(start, len(lines)) if "# slip" in lines[i]) + 1


def test_a_function_that_writes_into_its_input_passes_when_right_and_fails_at_its_return_when_wrong(in_place):
    path, module = in_place
    a = x(4, 5)
    # the oracle: torch's gradcheck, given the Function as torch's own tests give it one that writes into its
    # input, on a clone (applied to a leaf that requires grad, torch refuses it, after its forward wrote into it)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        module.ReluInPlace.apply(x(4, 5))
    assert torch.autograd.gradcheck(lambda t: module.ReluInPlace.apply(t.clone()), (a,))
    for wrong in IN_PLACE_WRONG:
        assert not torch.autograd.gradcheck(lambda t: getattr(module, wrong).apply(t.clone()), (a,),
                                            raise_exception=False)
    done = check_py(f"{path}::ReluInPlace", "--shape", "x=4,5")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert "leaf Variable" not in done.stdout
    for wrong in IN_PLACE_WRONG:
        done = check_py(f"{path}::{wrong}", "--shape", "x=4,5")
        assert done.exit_code == 1, done.stdout + done.stderr
        assert f"(line {slip_line(wrong)}): backprop disagrees with finite differences" in done.stdout, done.stdout


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap has no batching rule for clamp_
def test_a_function_that_writes_into_its_input_never_writes_into_the_point(in_place):
    _, module = in_place
    a = x(4, 5)
    given = a.detach().clone()
    for options in ({}, {"order": 2}, {"fast": True}, {"reference": False}):
        assert check(module.ReluInPlace, (a,), **options).passed, options
    assert check(module.ReluInPlace, (x(4, 5, dtype=torch.float32),)).passed  # the float32 rows too
    assert check(module.ReluInPlace, (a,), dtype="float32").passed  # the native check
    assert gradcheck(module.ReluInPlace.apply, (a,))  # the drop-in, given it unwrapped (torch's raises so)
    for wrong in IN_PLACE_WRONG:
        (row,) = check(getattr(module, wrong), (a,)).nodes
        assert row.status == "fail" and row.line == slip_line(wrong)
    assert torch.equal(a.detach(), given)
    # the engine's rows of points, batched by vmap through the forward (on a stand-in ctx), stay as they were
    from gradcheck_cli.python.torch_bridge import TORCH, user_code
    rows = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    kept = rows.copy()
    out = TORCH.evaluate_rows(user_code(module.ReluInPlace).batched, [a], [0], [rows])
    assert (rows == kept).all() and (out == kept.clip(min=0).reshape(6, -1)).all()


def test_a_name_the_forward_has_no_parameter_for_is_an_error_at_its_def():
    result = check_py(f"{EXAMPLES}::LayerNorm", "--shape", "x=4,6", "--shape", "w=6")
    assert result.exit_code == 2
    line = next(i for i, text in enumerate(EXAMPLES.read_text().splitlines(), 1) if "def forward(ctx, x, eps=1e-5)" in text)
    assert f"functions.py:{line}:5: error: LayerNorm.forward has no parameter 'w'" in result.output
