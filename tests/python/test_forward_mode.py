"""Forward-mode rules checked in forward mode (python/forward_mode.py): a torch Function's `jvp`
(examples/kernels/jvp_scale.py) and a JAX `custom_jvp` (examples/jax/rules.py), right and wrong. The
labels are the frameworks' own forward mode through an independent forward (`torch.func.jvp` of
`tanh(x)·w`, `jax.jvp` of `log(cosh(x))`), never the rule under test; torch's own gradcheck with
`check_forward_ad=True` is a second oracle. The framework-free core is tested on numpy functions whose
derivatives are known in closed form."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import gradcheck_in_process
from one_process import result as run
from one_process import share
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)

from gradcheck_cli.core.settings import Settings
from gradcheck_cli.python import forward_mode

ROOT = Path(__file__).resolve().parent.parent.parent
KERNELS = ROOT / "examples" / "kernels"


def line_in(path: Path, start: str, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    return next(i for i in range(first, len(lines)) if text in lines[i]) + 1


# --- the core, on numpy -----------------------------------------------------------------------------

RULE = forward_mode.Rule(name="f_jvp (forward mode)", file=None, line=1, lines={"x": (3, 5), "y": (4, 5)})


def sin_times(arrays):
    x, y = arrays
    return [np.sin(x) * y]


def sin_times_jvp(wrong_y: bool):
    def jvp(arrays, tangents):
        (x, y), (tx, ty) = arrays, tangents
        return [np.cos(x) * y * tx + (2 if wrong_y else 1) * np.sin(x) * ty]  # d(sin x · y) = cos x · y dx + sin x dy
    return jvp


def test_a_right_rule_passes_against_the_complex_step_and_a_wrong_part_fails_naming_its_tangents():
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]
    right = forward_mode.rows(forward_mode.functions(sin_times, sin_times_jvp(False)), arrays, ["x", "y"], RULE,
                              Settings())
    assert [r.status for r in right] == ["pass", "pass"]
    assert all(r.gate == "forward mode (jvp)" and r.numeric_error < 1e-12 for r in right)  # the complex step: exact
    wrong = forward_mode.rows(forward_mode.functions(sin_times, sin_times_jvp(True)), arrays, ["x", "y"], RULE,
                              Settings())
    assert [r.status for r in wrong] == ["pass", "fail"]
    assert (wrong[1].line, wrong[1].col) == (4, 5)
    assert wrong[1].note.startswith("the JVP disagrees with the complex step along tangents 1, 2, 3 of 3 (seeded, on y alone)")
    again = forward_mode.rows(forward_mode.functions(sin_times, sin_times_jvp(True)), arrays, ["x", "y"], RULE,
                              Settings())
    assert again[1].note == wrong[1].note  # seeded tangents: the same words every run
    other_seed = forward_mode.rows(forward_mode.functions(sin_times, sin_times_jvp(True)), arrays, ["x", "y"], RULE,
                                   Settings(seed=5))
    assert other_seed[1].note != wrong[1].note


def test_code_that_is_not_complex_safe_is_judged_by_finite_differences():
    def with_abs(arrays):
        return [np.abs(arrays[0]) ** 3]  # abs of a complex drops its imaginary part

    def jvp(arrays, tangents):
        return [3 * arrays[0] * np.abs(arrays[0]) * tangents[0]]
    arrays = [np.random.default_rng(1).standard_normal(5)]
    (row,) = forward_mode.rows(forward_mode.functions(with_abs, jvp), arrays, ["x"], RULE, Settings())
    assert row.status == "pass"
    found = forward_mode.along(forward_mode.functions(with_abs, jvp), arrays, [np.ones(5)], 1, Settings())
    assert found.method == "finite differences"

    def wrong(arrays, tangents):
        return [3 * arrays[0] ** 2 * tangents[0]]  # the sign of x lost
    (bad,) = forward_mode.rows(forward_mode.functions(with_abs, wrong), arrays, ["x"], RULE, Settings())
    assert bad.status == "fail" and "finite differences" in bad.note


def test_a_rule_that_raises_or_gives_the_wrong_shape_fails():
    arrays = [np.ones((2, 2)), np.ones((2, 2))]

    def raises(arrays, tangents):
        raise ValueError("no tangent here")
    rows = forward_mode.rows(forward_mode.functions(sin_times, raises), arrays, ["x", "y"], RULE, Settings())
    assert rows[0].status == "fail" and rows[0].note.startswith("the jvp raised ValueError: no tangent here")

    def flat(arrays, tangents):
        return [np.ones(4)]
    rows = forward_mode.rows(forward_mode.functions(sin_times, flat), arrays, ["x", "y"], RULE, Settings())
    assert rows[0].status == "fail" and "output tangents of shape(s) [(4,)] where the outputs are [(2, 2)]" in rows[0].note


# --- torch: a Function's jvp ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_side():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install '.[torch]'")
    sys.path.insert(0, str(KERNELS))
    import jvp_scale
    return torch, jvp_scale


def _x(torch, *shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).requires_grad_()


def test_torch_labels_tell_the_right_jvp_from_the_wrong_one(torch_side):
    torch, jvp_scale = torch_side
    x, w = _x(torch, 4, 5).detach(), _x(torch, 4, 5, seed=1).detach()
    tx, tw = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    zero = torch.zeros(4, 5, dtype=torch.float64)
    for tangents in ((tx, zero), (zero, tw)):
        _, label = torch.func.jvp(lambda a, b: torch.tanh(a) * b, (x, w), tangents)  # an independent forward
        _, right = torch.func.jvp(jvp_scale.ScaledTanh.apply, (x, w), tangents)
        _, wrong = torch.func.jvp(jvp_scale.ScaledTanhJvpWrong.apply, (x, w), tangents)
        assert torch.allclose(right, label, rtol=1e-12, atol=1e-14)
        assert torch.allclose(wrong, label, rtol=1e-12, atol=1e-14) == (tangents[0] is zero)  # x's part is wrong
    # torch's own gradcheck sees it only when asked for forward mode
    assert torch.autograd.gradcheck(jvp_scale.ScaledTanhJvpWrong.apply, (_x(torch, 3, 2), _x(torch, 3, 2, seed=1)))
    with pytest.raises(Exception, match="forward"):
        torch.autograd.gradcheck(jvp_scale.ScaledTanhJvpWrong.apply, (_x(torch, 3, 2), _x(torch, 3, 2, seed=1)),
                                 check_forward_ad=True)


def test_torch_jvp_rows_pass_for_the_right_function_and_fail_at_the_line_for_the_wrong_one(torch_side):
    torch, jvp_scale = torch_side
    from gradcheck_cli.torch import check
    right = check(jvp_scale.ScaledTanh, (_x(torch, 4, 5), _x(torch, 4, 5, seed=1)))
    assert right.error is None and right.passed
    rows = [g for g in right.gates if g.gate == "forward mode (jvp)"]
    assert [(r.input, r.status) for r in rows] == [("x", "pass"), ("w", "pass")]
    assert rows[0].name == "ScaledTanh.jvp (forward mode)"
    wrong = check(jvp_scale.ScaledTanhJvpWrong, (_x(torch, 4, 5), _x(torch, 4, 5, seed=1)))
    assert not wrong.passed and all(n.status == "pass" for n in wrong.nodes)  # its backward is right
    rows = {g.input: g for g in wrong.gates if g.gate == "forward mode (jvp)"}
    assert rows["w"].status == "pass" and rows["x"].status == "fail"
    path = KERNELS / "jvp_scale.py"
    assert rows["x"].line == line_in(path, "class ScaledTanhJvpWrong(", "from_x = ")
    assert "along tangents 1, 2, 3 of 3 (seeded, on x alone)" in rows["x"].note
    assert "by the complex step" in rows["x"].note  # tanh is complex-safe: the sharp reference


def test_a_function_without_jvp_gets_no_forward_mode_row(torch_side):
    torch, _ = torch_side
    sys.path.insert(0, str(KERNELS))
    import strided
    from gradcheck_cli.torch import check
    report = check(strided.Scale, (_x(torch, 4, 5),))
    assert report.passed and not [g for g in report.gates if g.gate == "forward mode (jvp)"]


def check_py(*args):
    return gradcheck_in_process("check-py", *args, cwd=ROOT)


def test_the_json_face_holds_the_forward_mode_rows(torch_side):
    done = check_py("examples/kernels/jvp_scale.py::ScaledTanhJvpWrong", "--shape", "x=4,5", "--shape", "w=4,5",
                    "--format", "json")
    assert done.returncode == 1, done.stderr
    gates = json.loads(done.stdout)["results"][0]["gates"]
    rows = [g for g in gates if g["gate"] == "forward mode (jvp)"]
    assert [(g["input"], g["status"]) for g in rows] == [("x", "fail"), ("w", "pass")]


# --- JAX: a custom_jvp in forward mode --------------------------------------------------------------

# In the one process of the JAX API tests (tests/python/one_process.py, `jax_bodies`): JAX is not
# imported in pytest's process.
JAX_BODY = f"""
import sys
import numpy as np
import jax, jax.numpy as jnp
sys.path.insert(0, {str(ROOT / "examples" / "jax")!r})
import rules
from gradcheck_cli.jax import check
x = np.random.default_rng(0).standard_normal((3, 2))
t = np.random.default_rng(1).standard_normal((3, 2))
with jax.enable_x64(True):
    _, label = jax.jvp(lambda a: jnp.log(jnp.cosh(a)), (jnp.asarray(x),), (jnp.asarray(t),))
    _, right = jax.jvp(rules.logcosh, (jnp.asarray(x),), (jnp.asarray(t),))
    _, wrong = jax.jvp(rules.logcosh_wrong, (jnp.asarray(x),), (jnp.asarray(t),))
ok, bad, vjp_only = check(rules.logcosh, (x,)), check(rules.logcosh_wrong, (x,)), check(rules.softplus, (x,))
jvp = lambda report: [g for g in report.gates if g.gate == "forward mode (jvp)"]
result = [bool(np.allclose(right, label, rtol=1e-12)), bool(np.allclose(wrong, label, rtol=1e-2)),
          ok.passed, [(g.input, g.status) for g in jvp(ok)], [(g.status, g.name, g.line) for g in jvp(bad)],
          len(jvp(vjp_only))]
"""
if importlib.util.find_spec("jax") is not None:
    share(__name__, lambda folder: ("", {"jax_labels_and_rows": JAX_BODY}))


def test_jax_labels_and_rows(jax_bodies):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is an optional extra: pip install '.[jax]'")
    right_is_label, wrong_is_label, ok_passed, ok_rows, bad_rows, vjp_only_rows = run(
        jax_bodies[__name__], "jax_labels_and_rows")
    assert right_is_label and not wrong_is_label
    assert ok_passed and ok_rows == [["x", "pass"]]
    ((status, name, line),) = bad_rows
    assert status == "fail" and name == "logcosh_wrong_jvp (forward mode)"
    assert line == line_in(ROOT / "examples" / "jax" / "rules.py", "def logcosh_wrong_jvp(", "y_dot = ")
    assert vjp_only_rows == 0  # a custom_vjp: no forward-mode row


def test_a_kink_between_the_steps_is_a_warning_not_a_verdict():
    def relu(arrays):
        return [np.maximum(arrays[0], 0.0)]  # complex-safe away from 0: held to the differences, it is not used

    def jvp(arrays, tangents):
        return [(arrays[0] > 0) * tangents[0]]
    on = [np.zeros(3)]  # the kink on the point: every step, however narrowed, has one-sided slopes 0 and 1
    (row,) = forward_mode.rows(forward_mode.functions(relu, jvp), on, ["x"], RULE, Settings())
    assert row.status == "warn" and "unreliable" in row.note
    # at 1e-7 the kink lies between x − h and x + h, not between the narrowed steps (10⁻⁴·h): judged there
    (near,) = forward_mode.rows(forward_mode.functions(relu, jvp), [np.full(3, 1e-7)], ["x"], RULE, Settings())
    assert near.status == "pass", near.note
    (away,) = forward_mode.rows(forward_mode.functions(relu, jvp), [np.full(3, 0.5)], ["x"], RULE, Settings())
    assert away.status == "pass"


def test_a_jvp_beside_a_pole_is_judged_at_narrowed_steps():
    # 1/x at 3e-12 and 1e-12: the step h = 6e-6 crosses the pole, and the jvp (−t/x², right) was failed
    # against a secant across it; the narrowed steps give the derivative (a sign slip still fails)
    def recip(arrays):
        return [1.0 / arrays[0]]
    x = [np.array([3e-12, 1e-12])]
    (right,) = forward_mode.rows(forward_mode.functions(recip, lambda a, t: [-t[0] / a[0] ** 2]), x, ["x"], RULE,
                                 Settings())
    assert right.status == "pass", right.note
    (slip,) = forward_mode.rows(forward_mode.functions(recip, lambda a, t: [t[0] / a[0] ** 2]), x, ["x"], RULE,
                                Settings())
    assert slip.status == "fail", slip.note
