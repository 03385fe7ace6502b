"""Native precision for JAX rules (python/native.py): a custom_vjp whose function refuses float64 is
checked in float32 against JAX's autodiff of the primal in float32, or a reference given in float64,
allowed K·ε·√n of the gradient's largest element (K = 8; × 2 for a float32 reference), held both
ways with numbers written here. Golden values: JAX's own float64 autodiff of a forward written here.
The checks run in a process of their own, with tests/python/test_jax.py's (tests/python/one_process.py): JAX is
imported once, each test's body in a namespace of its own; a body that raises fails its own test
alone, with its traceback. Skipped without JAX."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from one_process import result as run
from one_process import share

if importlib.util.find_spec("jax") is None:
    pytest.skip("JAX is an optional extra: pip install '.[jax]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent.parent
KERNEL = ROOT / "examples" / "kernels" / "gelu32_jax.py"
EPS32 = 2.0 ** -23

PRELUDE = f"""
import json, math, sys
import numpy as np
import jax, jax.numpy as jnp
sys.path.insert(0, {str(KERNEL.parent)!r})
import gelu32_jax as G
from gradcheck_cli.jax import check

def scaled(factor):
    f = jax.custom_vjp(lambda x: G.gelu32(x))
    f.defvjp(lambda x: (G.gelu32(x), x), lambda x, g: ((G.gelu32_bwd(x, g)[0] * jnp.float32(factor)),))
    return f
x = np.random.default_rng(0).standard_normal((4, 5))
"""


# Each test's body (which sets `result`) runs after PRELUDE, in a namespace of its own, in one process for
# the JAX API tests (`ran`): JAX and the kernel imported once.
BODIES: dict = {}
share(__name__, lambda folder: (PRELUDE, BODIES))


@pytest.fixture
def ran(jax_bodies) -> dict:
    return jax_bodies[__name__]


BODIES["float32_and_slip"] = (
    "r, w = check(G.gelu32, (x,)), check(G.gelu32_slip, (x,))\n"
    "result = [r.passed, r.precision.refuses_float64, r.precision.dtype, w.passed,\n"
    "          [(n.status, n.line) for n in w.nodes]]")


def test_a_rule_that_refuses_float64_is_checked_in_float32_and_a_slip_fails_at_its_bwd_line(ran):
    result = run(ran, "float32_and_slip")
    lines = KERNEL.read_text(encoding="utf-8").splitlines()
    line = next(i for i, t in enumerate(lines) if "dx = 1.01" in t) + 1
    assert result == [True, True, "float32", False, [["fail", line]]]


BODIES["golden_and_k"] = (
    "from gradcheck_cli.core.streams import Stream, stream\n"
    "ref = check(G.gelu32, (x,), reference_fn=G.gelu_reference)\n"
    "wrong = check(scaled(1 + 16 * 2.0 ** -23), (x,), reference_fn=G.gelu_reference)\n"
    "row = ref.nodes[0]\n"
    "def indep(t):\n"
    "    c = math.sqrt(2 / math.pi)\n"
    "    return t * (1 + jnp.tanh(c * t + c * 0.044715 * t * t * t)) / 2\n"
    "with jax.enable_x64(True):\n"
    "    x32 = jnp.asarray(np.asarray(x, dtype=np.float32), dtype=jnp.float64)\n"
    "    up = stream(0, Stream.JAX_LOW_PRECISION).standard_normal((4, 5)).astype(np.float32).astype(np.float64)\n"
    "    golden = np.asarray(jax.vjp(indep, x32)[1](jnp.asarray(up))[0])\n"
    "scale = np.abs(golden).max()\n"
    "result = [ref.passed, float(np.abs(row.numeric - golden).max() / scale),\n"
    "          float(np.abs(row.grad - golden).max() / scale / 2.0 ** -23),\n"
    "          wrong.passed, wrong.nodes[0].numeric_error / 2.0 ** -23]")


def test_golden_reference_and_k_held_both_ways(ran):
    result = run(ran, "golden_and_k")
    passed, reference_gap, own_err, wrong_passed, wrong_err = result
    assert passed and reference_gap < 1e-12 and own_err <= 8   # the right rule within K·ε of the golden gradient
    assert not wrong_passed and 12 < wrong_err < 20   # 16 ε: past K·ε = 8 ε, within 10 K's


BODIES["dtype_asked"] = (
    "sys.path.insert(0, 'examples/jax')\nimport rules\n"
    "r = check(rules.softplus, (x,), dtype='float16')\n"
    "result = [r.passed, [(g.gate, g.status) for g in r.gates if g.gate == 'float16'],\n"
    "          r.precision.refuses_float64, r.precision.reference]")


def test_dtype_asked_of_a_rule_that_takes_float64(ran):
    result = run(ran, "dtype_asked")
    assert result == [True, [["float16", "pass"]], False, "autodiff through the forward, in float64"]


BODIES["dtype_refused"] = (
    "r = check(G.gelu32, (x,), dtype='bfloat16')\n"
    "result = [r.error.message, r.error.line]")


def test_a_dtype_the_rule_refuses_says_so_and_the_dtype_it_runs_in(ran):
    result = run(ran, "dtype_refused")
    lines = KERNEL.read_text(encoding="utf-8").splitlines()
    line = next(i for i, t in enumerate(lines) if "raise TypeError" in t) + 1
    assert result[0].startswith("the forward refuses bfloat16, as it refuses float64: in bfloat16 it raised TypeError")
    assert "(it runs in float32: --dtype float32, or no --dtype, checks it there)" in result[0] and result[1] == line


# A rule that takes float64 and computes in float32 (`x.astype(jnp.float32)`): its float64 differences measured
# its rounding (a 1e-4 slip was "beside a kink ... its derivative is 0"); it is checked in float32 now
BODIES["computes_in_float32"] = (
    "def exp32(slip):\n"
    "    @jax.custom_vjp\n"
    "    def f(x):\n"
    "        return jnp.exp(x.astype(jnp.float32))\n"
    "    def fwd(x):\n"
    "        y = f(x)\n"
    "        return y, y\n"
    "    def bwd(y, g):\n"
    "        return (g * y * slip,)\n"
    "    f.defvjp(fwd, bwd)\n"
    "    return f\n"
    "r, w = check(exp32(1.0), (x,)), check(exp32(1.0001), (x,))\n"
    "result = [r.passed, r.precision.dtype, r.precision.computes_in_dtype, w.passed,\n"
    "          ' '.join(n.note or '' for n in w.nodes)]")


def test_a_rule_that_takes_float64_and_computes_in_float32_is_checked_in_float32(ran):
    passed, dtype, computes, wrong_passed, notes = run(ran, "computes_in_float32")
    assert passed and dtype == "float32" and computes and not wrong_passed, notes
    assert "in float32" in notes and "kink" not in notes
