"""Native precision (python/native.py): a kernel whose forward refuses float64 — or any target given
dtype= — checked in its own dtype against a reference, allowed the error model's K·ε·√n of its
gradient's largest element (× 2 when the reference runs in the dtype too). The constants are held
both ways with numbers written here, not read from the module: a right kernel passes and a kernel
wrong by slightly more than the model allows fails, so changing K or the reference's factor 10×
fails a test. Golden values: torch autograd in float64 through a forward written here. Skipped
without PyTorch (JAX's tests skip without JAX)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from conftest import gradcheck_in_process
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")

from gradcheck_cli.torch import check  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
KERNELS = ROOT / "examples" / "kernels"
sys.path.insert(0, str(KERNELS))
import fused_gelu32 as F  # noqa: E402

EPS32 = 2.0 ** -23


def x(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def scaled(factor: float):
    """FusedGELU32 with its backward times `factor` (in float32)."""
    class Scaled(F.FusedGELU32):
        @staticmethod
        def backward(ctx, grad):
            dx = F.FusedGELU32.backward(ctx, grad) * factor
            return dx
    return Scaled


def line_of(path: Path, cls: str, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"class {cls}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def gelu_independent(t):
    """GELU (tanh form) written here, apart from the example: the golden reference's forward."""
    c = math.sqrt(2.0 / math.pi)
    return t * (1.0 + torch.tanh(c * t + c * 0.044715 * t * t * t)) / 2.0


def test_a_forward_that_refuses_float64_is_checked_in_float32_and_a_one_percent_slip_fails_at_its_line():
    right, slip = check(F.FusedGELU32, (x(4, 5),)), check(F.FusedGELU32Slip, (x(4, 5),))
    assert right.error is None and right.passed and right.precision.refuses_float64
    assert right.precision.dtype == "float32" and right.precision.reference_rounds == 2.0
    assert not slip.passed and slip.nodes[0].status == "fail"
    assert slip.nodes[0].line == line_of(KERNELS / "fused_gelu32.py", "FusedGELU32Slip", "dx = 1.01")
    assert 0.0099 < slip.nodes[0].numeric_error < 0.0101           # 1% of the gradient's largest element
    assert "in float32" in slip.nodes[0].note and "error model" in slip.nodes[0].note


def test_the_reference_gradient_is_torch_autograd_in_float64_of_an_independent_forward():
    point = x(64, 32, seed=1, scale=3.0)
    report = check(F.FusedGELU32, (point,), reference_fn=F.gelu_reference)
    row = report.nodes[0]
    x32 = point.to(torch.float32).to(torch.float64).requires_grad_()
    upstream = torch.randn(64, 32, generator=torch.Generator().manual_seed(104729), dtype=torch.float64)
    upstream = upstream.to(torch.float32).to(torch.float64)
    (golden,) = torch.autograd.grad(gelu_independent(x32), x32, upstream)
    assert abs(row.numeric - golden.numpy()).max() <= 1e-12 * abs(golden).max().item()
    # the float32 kernel's own error: above K/10 · ε (so K = 0.8 would fail this right kernel), within K · ε
    err = abs(row.grad - golden.numpy()).max() / abs(golden).max().item()
    assert 1.0 * EPS32 < err <= 8.0 * EPS32 and row.status == "pass"
    assert report.precision.inputs[0].n == 1 and report.precision.inputs[0].allowed == 8.0 * EPS32


def test_k_held_both_ways_against_a_float64_reference():
    point = (x(4, 5),)
    assert check(scaled(1.0), point, reference_fn=F.gelu_reference).passed
    # wrong by 16 ε: twice K·ε·√1 = 8 ε, a tenth of 10 K's
    wrong = check(scaled(1.0 + 16 * EPS32), point, reference_fn=F.gelu_reference)
    assert not wrong.passed and 12 * EPS32 < wrong.nodes[0].numeric_error < 20 * EPS32


def test_the_reference_in_float32_doubles_the_allowance_held_both_ways():
    point = (x(4, 5),)
    within = check(scaled(1.0 + 8 * EPS32), point)     # 8 ε: within 2·K·ε = 16 ε, past K/10 · 2 ε
    past = check(scaled(1.0 + 32 * EPS32), point)      # 32 ε: past 16 ε, within 20·K·ε
    assert within.passed and within.nodes[0].numeric_error > 4 * EPS32
    assert not past.passed and past.nodes[0].numeric_error < 40 * EPS32


class Softmax32(torch.autograd.Function):
    """Softmax over the last axis, float32 only."""

    @staticmethod
    def forward(ctx, x):
        if x.dtype != torch.float32:
            raise TypeError("float32 only")
        y = torch.softmax(x, -1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dx = y * (grad - (grad * y).sum(-1, keepdim=True))
        return dx


def test_n_is_the_outputs_one_element_reaches():
    report = check(Softmax32, (x(3, 64),))
    assert report.passed and report.precision.inputs[0].n == 64
    assert report.precision.inputs[0].allowed == 8.0 * EPS32 * 8 * 2


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_dtype_asked_for_a_forward_that_takes_float64_runs_the_float64_check_and_the_native_rows(dtype):
    sys.path.insert(0, str(ROOT / "examples" / "torch"))
    import functions as T
    right = check(T.FusedGELU, (x(8, 8),), dtype=dtype)
    wrong = check(T.FusedGELURounded, (x(8, 8),), dtype=dtype)
    assert right.passed and [g.status for g in right.gates if g.gate == dtype] == ["pass"]
    assert not right.precision.refuses_float64 and right.precision.reference.endswith("in float64")
    assert not wrong.passed and wrong.nodes[0].status == "fail"   # the float64 check sees what bfloat16 cannot


def test_bad_arguments_are_said():
    assert "dtype must be one of" in check(F.FusedGELU32, (x(2),), dtype="float8").error.message
    assert "reference_fn must be a function" in check(F.FusedGELU32, (x(2),), reference_fn=3).error.message
    sys.path.insert(0, str(ROOT / "examples" / "torch"))
    import functions as T
    said = check(T.FusedGELU, (x(2),), reference_fn=F.gelu_reference).error.message
    assert "give dtype=" in said


def run(*args, cwd=ROOT):
    return gradcheck_in_process("check-py", *args, cwd=cwd)


def test_cli_native_check_says_dtype_and_allowance_in_the_table_and_json():
    done = run("examples/kernels/fused_gelu32.py::FusedGELU32Slip", "--shape", "x=4,5")
    assert done.returncode == 1
    assert "checked in float32 (the forward refuses float64)" in done.stdout
    line = line_of(KERNELS / "fused_gelu32.py", "FusedGELU32Slip", "dx = 1.01")
    assert f"(line {line}): in float32" in done.stdout
    done = run("examples/kernels/fused_gelu32.py::FusedGELU32", "--shape", "x=4,5", "--reference",
               "examples/kernels/fused_gelu32.py::gelu_reference", "--format", "json")
    said = json.loads(done.stdout)["results"][0]["precision"]
    assert done.returncode == 0 and said["dtype"] == "float32" and said["refuses_float64"] is True
    assert said["reference"] == "your reference, in float64" and said["inputs"][0]["allowed"] == 8 * EPS32


def test_cli_bad_references_are_positioned_errors(tmp_path):
    ref = tmp_path / "ref.py"
    ref.write_text("import torch\n\nNOT_A_FUNCTION = 3\n\n\ndef summed(x):\n    return x.sum()\n", encoding="utf-8")
    target = "examples/kernels/fused_gelu32.py::FusedGELU32"
    cases = {f"{tmp_path}/missing.py::f": "no such file",
             f"{ref}::gelu": "has no 'gelu' to be the reference",
             f"{ref}::NOT_A_FUNCTION": f"{ref}:3:1: error: the reference NOT_A_FUNCTION is not a function",
             f"{ref}::summed": f"{ref}:6:1: error: the reference summed returns output(s) of shape(s) scalar where "}
    for spec, said in cases.items():
        done = run(target, "--shape", "x=4,5", "--reference", spec)
        assert done.returncode == 2, (spec, done.stdout + done.stderr)
        assert said in done.stdout + done.stderr, (spec, done.stdout + done.stderr)
        assert "Traceback" not in done.stdout + done.stderr


def functions():
    sys.path.insert(0, str(ROOT / "examples" / "torch"))
    import functions as T
    return T


def test_order_2_with_a_forward_that_refuses_float64_is_a_usage_error_at_the_forward():
    report = check(F.FusedGELU32, (x(4, 5),), order=2)
    assert report.error is not None and report.error.line == line_of(KERNELS / "fused_gelu32.py", "FusedGELU32",
                                                                      "def forward")
    assert "refuses float64 (it runs in float32)" in report.error.message and "double backward" in report.error.message
    done = run("examples/kernels/fused_gelu32.py::FusedGELU32", "--shape", "x=4,5", "--order", "2")
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "--order 2 (order=2) checks the double backward in float64" in done.stderr


def test_order_2_with_dtype_checks_the_double_backward_in_float64_and_the_first_in_the_dtype():
    T = functions()

    class SlipInFloat32(T.FusedGELU):  # right in float64, 0.1% off in float32 only
        @staticmethod
        def backward(ctx, grad):
            dx = T.FusedGELU.backward(ctx, grad)
            return dx * 1.001 if grad.dtype == torch.float32 else dx

    class DetachedTwice(T.FusedGELU):  # right first backward, its own derivative in x lost
        @staticmethod
        def backward(ctx, grad):
            (saved,) = ctx.saved_tensors
            x = saved.detach()
            t = torch.tanh(F.SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            dinner = F.SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x ** 2)
            return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)

    right = check(T.FusedGELU, (x(4, 5),), order=2, dtype="float32")
    assert right.error is None and right.passed
    assert {n.name for n in right.nodes} == {"x", "grad_out"}            # the double backward's rows
    assert [g.status for g in right.gates if g.gate == "float32"] == ["pass"]
    slip = check(SlipInFloat32, (x(4, 5),), order=2, dtype="float32")
    assert all(n.status == "pass" for n in slip.nodes)
    assert [g.status for g in slip.gates if g.gate == "float32"] == ["fail"] and not slip.passed
    lost = check(DetachedTwice, (x(4, 5),), order=2, dtype="float32")
    assert [g.status for g in lost.gates if g.gate == "float32"] == ["pass"]
    assert not lost.passed and any(n.status == "fail" for n in lost.nodes)


def test_a_dtype_the_forward_refuses_says_so_and_the_dtype_it_runs_in():
    report = check(F.FusedGELU32, (x(4, 5),), dtype="float16")
    said = report.error.message
    assert said.startswith("the forward refuses float16, as it refuses float64: in float16 it raised TypeError: "
                           "this kernel runs in float32 only, not torch.float16")
    assert "(it runs in float32: --dtype float32, or no --dtype, checks it there)" in said
    lines = (KERNELS / "fused_gelu32.py").read_text(encoding="utf-8").splitlines()
    assert report.error.line == next(i for i, line in enumerate(lines) if "raise TypeError" in line) + 1
    done = run("examples/kernels/fused_gelu32.py::FusedGELU32", "--shape", "x=4,5", "--dtype", "bfloat16")
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert f"fused_gelu32.py:{report.error.line}:9: error: the forward refuses bfloat16" in done.stderr


class Probed(torch.autograd.Function):
    """y = 2x, float32 only, recording which elements of x are ever NaN or infinite in a forward."""
    seen: set = set()

    @staticmethod
    def forward(ctx, x):
        if x.dtype != torch.float32:
            raise TypeError("float32 only")
        Probed.seen |= {int(i) for i in torch.nonzero(~torch.isfinite(x.reshape(-1))).reshape(-1)}
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


def test_n_is_measured_on_at_most_the_documented_number_of_elements_spread_over_the_input():
    row = next(line for line in (ROOT / "docs" / "limits.md").read_text(encoding="utf-8").splitlines()
               if "measure n" in line)
    documented = int(row.split("|")[2].strip())
    assert documented == 16
    for size, probed in ((100, documented), (10, 10), (1, 1)):
        Probed.seen = set()
        assert check(Probed, (x(size),)).passed
        assert len(Probed.seen) == probed and {0, size - 1} <= Probed.seen


def _float32_or_lower(t):
    if t.dtype == torch.float64:
        raise TypeError("no float64 build")


def relu_matmul(factor: float = 1.0):
    """y = where(x > 0, x, 0) @ w, no float64 build; its backward sums dx over the m columns one at a
    time in the dtype (right: its rounding grows as √m), times `factor`."""
    class ReluMatmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            _float32_or_lower(x)
            h = torch.where(x > 0, x, torch.zeros_like(x))
            ctx.save_for_backward(x, w, h)
            return h @ w

        @staticmethod
        def backward(ctx, g):
            x, w, h = ctx.saved_tensors
            acc = torch.zeros_like(x)
            for j in range(w.shape[1]):
                acc = acc + g[:, j:j + 1] * w[:, j]
            dx = torch.where(x > 0, acc, torch.zeros_like(acc)) * factor
            return dx, h.t() @ g
    return ReluMatmul


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_op_that_swallows_a_nan_still_has_its_reach_measured(dtype):
    point = (x(8, 32, seed=2), x(32, 64, seed=3))   # one element of x reaches a row of y: 64 outputs
    report = check(relu_matmul(), point, dtype=dtype)
    assert report.error is None and report.passed
    assert [a.n for a in report.precision.inputs] == [64, 8]


def test_the_reach_of_a_relu_held_both_ways():
    point = (x(8, 32, seed=2), x(32, 64, seed=3))
    # n = 64: allowed K·ε·√64 · 2 = 128 ε; n = 1 (a NaN swallowed) would allow 16 ε
    within = check(relu_matmul(1.0 + 48 * EPS32), point)
    past = check(relu_matmul(1.0 + 192 * EPS32), point)
    assert within.passed and within.nodes[0].numeric_error > 32 * EPS32
    assert not past.passed and past.nodes[0].numeric_error < 256 * EPS32


KERNEL32 = ("import torch\nfrom torch.autograd import Function\n\n\nclass Exp32(Function):\n    @staticmethod\n"
            "    def forward(ctx, x):\n        y = x.float().exp()  # takes float64, computes in float32\n"
            "        ctx.save_for_backward(y)\n        return y\n\n"
            "    @staticmethod\n    def backward(ctx, g):\n        (y,) = ctx.saved_tensors\n"
            "        return (g.float() * y * SLIP).to(g.dtype)\n")


@pytest.mark.parametrize("slip, passed", [("1.0", True), ("1.01", False)])
def test_a_function_that_takes_float64_and_computes_in_float32_is_checked_in_float32(tmp_path, slip, passed):
    # differenced in float64, a right float32 kernel failed (its rounding read as its slope, beside kinks that
    # are not there); the numpy layer's refusal of a float32 output had made it exit 2, even under --dtype
    (tmp_path / "k32.py").write_text(KERNEL32.replace("SLIP", slip))
    done = gradcheck_in_process("check-py", "k32.py::Exp32", "--shape", "x=3", "--format", "json", cwd=tmp_path)
    assert done.returncode == (0 if passed else 1), done.stdout + done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["precision"]["dtype"] == "float32" and result["precision"]["computes_in_dtype"] is True
    assert "kink" not in done.stdout
    if not passed:
        assert "in float32: x's gradient" in " ".join(done.stdout.split()) or any(
            "float32" in (n.get("note") or "") for n in result["nodes"])
