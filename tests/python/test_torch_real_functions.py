"""Real torch.autograd.Functions judged right: outputs autograd does not differentiate (marked
non-differentiable, integer) get no upstream and are not checked; a None gradient is zero, and said
when the true gradient is not; ctx under any name; --param arrays as tensors (bool and integer kept);
nested targets; and an input's structure (symmetric, spd, simplex) kept by the second point and the
differences, for torch Functions and numpy layers alike.

Golden verdicts come from torch: torch.autograd.gradcheck where it is right (smooth points), else
autograd of an independent forward compared along the structure's directions (its symmetric part,
or less its mean along the last axis), at the given point and at a second point of the structure.
Skipped without PyTorch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)
from click.testing import CliRunner

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")

HERE = Path(__file__).resolve().parent
FUNCTIONS = HERE / "real_functions.py"
LAYERS = HERE.parent.parent / "examples" / "python" / "structured.py"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(LAYERS.parent))
import real_functions as R  # noqa: E402
import structured as L  # noqa: E402

from gradcheck_cli import check_layer  # noqa: E402
from gradcheck_cli.cli import main  # noqa: E402
from gradcheck_cli.torch import check  # noqa: E402


def randn(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def torch_says(fn, *args) -> bool:
    """torch.autograd.gradcheck's verdict (the inputs requiring grad are the differentiated ones)."""
    return torch.autograd.gradcheck(fn.apply, args, raise_exception=False)


def cli(*args):
    return CliRunner().invoke(main, ["check-py", *[str(a) for a in args]])


def statuses(report):
    return {r.name: r.status for r in report.nodes}, [g.status for g in report.gates]


# --- 1. outputs autograd does not differentiate, and None gradients -----------------------------------------

@pytest.mark.parametrize("fn, args", [
    (R.SortValues, lambda: (randn(3, 5).requires_grad_(),)),
    (R.ReluWithMask, lambda: (randn(4, 3).requires_grad_(),)),
    (R.ReluWithMaskSlip, lambda: (randn(4, 3).requires_grad_(),)),
    (R.MaxWithArgmax, lambda: (randn(3, 4).requires_grad_(), 1)),
])
def test_outputs_marked_non_differentiable_or_integer_get_no_upstream(fn, args):
    inputs = args()
    golden = torch_says(fn, *inputs)
    assert golden == (fn is not R.ReluWithMaskSlip)  # the slip is wrong, the others right
    report = check(fn, inputs)
    assert report.error is None, report.error and report.error.format()
    assert report.passed == golden, [(r.name, r.status, r.note) for r in report.nodes]
    if not golden:  # the slip is blamed on its own line, not on torch's function.py
        (row,) = report.nodes
        assert row.status == "fail" and "dx = grad_out * (1 - mask)" in FUNCTIONS.read_text().splitlines()[row.line - 1]
        assert "does not require grad" not in (row.note or "")


def test_a_function_with_no_differentiable_output_is_an_error_saying_so():
    report = check(R.OnlyMask, (randn(3, 4).requires_grad_(),))
    assert report.error is not None and "no output of OnlyMask is differentiable" in report.error.message
    report = check(R.OnlyIndices, (randn(3, 4).requires_grad_(),))
    assert report.error is not None and "OnlyIndices returned no floating-point tensor" in report.error.message


def test_none_for_an_input_whose_gradient_is_zero_passes_as_autograd_reads_it():
    x, gate = randn(3, 4).requires_grad_(), (randn(3, 4, seed=1) + 0.0).requires_grad_()
    gate.data[gate.data.abs() < 0.1] = 0.5  # away from the gate's kink
    assert torch_says(R.GateBySign, x, gate)
    report = check(R.GateBySign, (x, gate))
    assert report.error is None and report.passed, [(r.name, r.status, r.note) for r in report.nodes]


def test_none_for_an_input_whose_gradient_is_not_zero_fails_and_says_so():
    x, floor = randn(3, 4).requires_grad_(), randn(3, 4, seed=1).requires_grad_()
    assert not torch_says(R.ClampToFloor, x, floor)
    report = check(R.ClampToFloor, (x, floor))
    rows = {r.name: r for r in report.nodes}
    assert rows["x"].status == "pass" and rows["floor"].status == "fail"
    assert "returned None for floor" in rows["floor"].note and "not zero" in rows["floor"].note
    returned = FUNCTIONS.read_text().splitlines()[rows["floor"].line - 1]
    assert "return grad * (x >= floor)" in returned  # the return that gives None


def test_check_py_on_a_function_with_a_marked_output():
    done = cli(f"{FUNCTIONS}::ReluWithMask", "--shape", "x=4,3")
    assert done.exit_code == 0, done.output
    done = cli(f"{FUNCTIONS}::ReluWithMaskSlip", "--shape", "x=4,3")
    assert done.exit_code == 1 and "function.py" not in done.output, done.output


# --- 2. ctx under any name --------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [R.SquareSelf, R.SquareSelfSlip])
def test_ctx_named_self_is_ctx(fn):
    x = randn(3, 4).requires_grad_()
    golden = torch_says(fn, x, 1.5)
    assert golden == (fn is R.SquareSelf)
    report = check(fn, (x, 1.5))
    assert report.error is None and [r.name for r in report.nodes] == ["x"]
    assert report.passed == golden
    done = cli(f"{FUNCTIONS}::{fn.__name__}", "--shape", "x=3,4", "--param", "scale=1.5")
    assert done.exit_code == (0 if golden else 1), done.output


# --- 3. --param arrays as tensors -----------------------------------------------------------------------

def test_a_bool_mask_given_with_param_is_a_bool_tensor():
    mask = [[True, False, True], [False, False, True]]
    assert torch_says(R.MaskedFill, randn(2, 3).requires_grad_(), torch.tensor(mask))
    done = cli(f"{FUNCTIONS}::MaskedFill", "--shape", "x=2,3", "--param", f"mask={json.dumps(mask)}")
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("fn", [R.CrossEntropy, R.CrossEntropySlip])
def test_integer_labels_given_with_param_are_a_long_tensor(fn):
    labels = [0, 2, 1]
    golden = torch_says(fn, randn(3, 4).requires_grad_(), torch.tensor(labels))
    assert golden == (fn is R.CrossEntropy)
    done = cli(f"{FUNCTIONS}::{fn.__name__}", "--shape", "logits=3,4", "--param", f"labels={labels}")
    assert done.exit_code == (0 if golden else 1), done.output
    assert golden or "'--param=labels=[0, 2, 1]'" in done.output  # the rerun line gives the labels back


# --- 4. nested targets ----------------------------------------------------------------------------------------

def test_a_function_nested_in_a_class_is_found_and_a_missing_part_is_named():
    assert torch_says(R.Activations.SoftPlus, randn(3).requires_grad_())
    done = cli(f"{FUNCTIONS}::Activations.SoftPlus", "--shape", "x=3")
    assert done.exit_code == 0, done.output
    typo = cli(f"{FUNCTIONS}::Activations.Softplus", "--shape", "x=3")
    assert typo.exit_code == 2 and "has no 'Softplus'" in typo.output and "SoftPlus" in typo.output
    outer = cli(f"{FUNCTIONS}::Activation.SoftPlus", "--shape", "x=3")
    assert outer.exit_code == 2 and "has no 'Activation'" in outer.output and "Activations" in outer.output


# --- 5. inputs of a structure ---------------------------------------------------------------------------------

def sym(g):
    return (g + g.transpose(-1, -2)) / 2


def centred(g):
    return g - g.mean(dim=-1, keepdim=True)


def spd(n, seed):
    b = randn(n, n, seed=seed)
    return b @ b.T / n + torch.eye(n, dtype=torch.float64)


def simplex(shape, seed):
    return randn(*shape, seed=seed).softmax(dim=-1)


def sqrtm_by_eigh(a):
    """An independent forward: the square root through torch's eigh of the symmetric part."""
    s, v = torch.linalg.eigh(sym(a))
    return v @ torch.diag_embed(s.sqrt()) @ v.transpose(-1, -2)


def entropy(p):
    return torch.special.entr(p).sum(dim=-1)


def right_along(backward_of, forward, project, points) -> bool:
    """Does the backward agree with autograd of an independent forward along the structure's directions
    (project: Pᵀ) at each point, for a random upstream?"""
    for k, point in enumerate(points):
        a = point.clone().requires_grad_()
        out = forward(a)
        u = randn(*out.shape, seed=100 + k)
        (true,) = torch.autograd.grad(out, a, u)
        mine = backward_of(point.clone(), u)
        if not torch.allclose(project(mine), project(true), rtol=1e-6, atol=1e-9):
            return False
    return True


def function_backward(fn):
    def backward_of(point, u):
        a = point.requires_grad_()
        return torch.autograd.grad(fn.apply(a), a, u)[0]
    return backward_of


def layer_backward(forward, backward):
    def backward_of(point, u):
        _, cache = forward(point.numpy())
        return torch.from_numpy(np.asarray(backward(u.numpy(), cache), dtype=float))
    return backward_of


@pytest.mark.parametrize("fn", [R.Sqrtm, R.SqrtmSlip, R.SqrtmEig])
def test_a_matrix_square_root_right_for_symmetric_inputs_passes_with_structure_spd(fn):
    a = spd(4, seed=3)
    golden = right_along(function_backward(fn), sqrtm_by_eigh, sym, [a, spd(4, seed=4)])
    assert golden == (fn is not R.SqrtmSlip)
    for kind in ("spd", "symmetric"):
        report = check(fn, (a.clone().requires_grad_(),), structure={"a": kind})
        assert report.error is None and report.passed == golden, (kind, statuses(report))
    # without the structure the random second point is not symmetric: there the backward is wrong,
    # as torch's gradcheck says too
    near = a + 0.1 * randn(4, 4, seed=5)
    assert not torch.autograd.gradcheck(fn.apply, (near.requires_grad_(),), raise_exception=False)
    plain = check(fn, (a.clone().requires_grad_(),))
    assert plain.error is None and not plain.passed


def test_the_structure_holds_in_low_precision_too():
    report = check(R.Sqrtm, (spd(4, seed=3).float().requires_grad_(),), structure={"a": "spd"})
    assert report.error is None and report.passed, statuses(report)
    assert [g.gate for g in report.gates if g.gate == "float32"] == ["float32"]


@pytest.mark.parametrize("fn", [R.Entropy, R.EntropySlip])
def test_a_backward_right_on_the_simplex_passes_with_structure_simplex(fn):
    p = simplex((3, 5), seed=6)
    golden = right_along(function_backward(fn), entropy, centred, [p, simplex((3, 5), seed=7)])
    assert golden == (fn is R.Entropy)
    report = check(fn, (p.clone().requires_grad_(),), structure={"p": "simplex"})
    assert report.error is None and report.passed == golden, statuses(report)
    assert not torch.autograd.gradcheck(fn.apply, (p.clone().requires_grad_(),), raise_exception=False)
    assert not check(fn, (p.clone().requires_grad_(),)).passed  # the constant the backward drops is seen


@pytest.mark.parametrize("name, kind, forward", [
    ("logdet", "spd", torch.logdet), ("logdet_slip", "spd", torch.logdet),
    ("entropy", "simplex", entropy), ("entropy_slip", "simplex", entropy),
])
def test_numpy_layers_through_check_py_and_check_layer(name, kind, forward):
    fwd, bwd = getattr(L, f"{name}_forward"), getattr(L, f"{name}_backward")
    points = [spd(3, seed=8), spd(3, seed=9)] if kind == "spd" else [simplex((2, 4), seed=8), simplex((2, 4), seed=9)]
    golden = right_along(layer_backward(fwd, bwd), forward, sym if kind == "spd" else centred, points)
    assert golden == ("slip" not in name)
    variable = "x" if kind == "spd" else "p"
    shape = "3,3" if kind == "spd" else "2,4"
    done = cli(f"{LAYERS}::{name}", "--shape", f"{variable}={shape}", "--structure", f"{variable}={kind}")
    assert done.exit_code == (0 if golden else 1), done.output
    report = check_layer(fwd, bwd, {variable: points[0].numpy()}, structure={variable: kind})
    assert report.error is None and report.passed == golden
    if golden:  # without the structure, the second point leaves it
        assert not check_layer(fwd, bwd, {variable: points[0].numpy()}).passed


def test_the_rerun_line_keeps_the_structure():
    done = cli(f"{FUNCTIONS}::SqrtmSlip", "--shape", "a=3,3", "--structure", "a=spd")
    assert done.exit_code == 1 and "--structure=a=spd" in done.output


@pytest.mark.parametrize("args, said", [
    (("--at", "x=[[2, 1], [0, 2]]", "--structure", "x=symmetric"), "is stated symmetric, but it is not symmetric"),
    (("--at", "x=[[1, 2], [2, 1]]", "--structure", "x=spd"), "it is not positive definite"),
    (("--at", "x=[3, 4]", "--structure", "x=symmetric"), "must be square in its last two axes"),
    (("--shape", "x=2,2", "--structure", "y=spd"), "a structure is stated for 'y', which is not a differentiated input"),
    (("--shape", "x=2,2", "--structure", "x=orthogonal"), "KIND one of symmetric, spd, simplex"),
])
def test_a_point_not_of_its_structure_or_a_bad_structure_is_exit_2(args, said):
    done = cli(f"{LAYERS}::logdet", *args)
    assert done.exit_code == 2 and said in done.output, done.output


def test_a_simplex_point_must_be_one():
    done = cli(f"{LAYERS}::entropy", "--at", "p=[0.2, 0.3, 0.6]", "--structure", "p=simplex")
    assert done.exit_code == 2 and "sum to 1.1, not 1" in done.output
    report = check(R.Entropy, (simplex((4,), seed=1).requires_grad_(),), structure={"p": "triangle"})
    assert report.error is not None and "unknown structure 'triangle'" in report.error.message
