"""jax.custom_vjp rules checked by this project's engine: right ones pass, wrong ones fail
at the line of the rule's bwd that computes the failing cotangent; float32 against a float64
reference. Skipped without JAX (`pip install '.[jax]'`). They run in a process of their own
(one for this module and the other JAX API tests, see `ran`): JAX starts threads, and the suite's other
tests fork (-j workers) after it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from one_process import result as run
from one_process import share

if importlib.util.find_spec("jax") is None:
    pytest.skip("JAX is an optional extra: pip install '.[jax]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples" / "jax" / "rules.py"


# Each test's body (which sets `result`, with numpy, the examples as `rules` and `check` at hand) runs in
# one process for the JAX API tests (tests/python/one_process.py): JAX is imported once, not once per test.
BODIES: dict = {}
PRELUDE = f"""
import json, sys
import numpy as np
if {str(EXAMPLES.parent)!r} not in sys.path:
    sys.path.insert(0, {str(EXAMPLES.parent)!r})
import rules
from gradcheck_cli.jax import check
"""


def make(folder: Path) -> tuple[str, dict]:
    (folder / "jax_culprits.py").write_text(CULPRITS, encoding="utf-8")
    return PRELUDE, {name: body.replace("CULPRITS_FOLDER", repr(str(folder))) for name, body in BODIES.items()}


share(__name__, make)


@pytest.fixture
def ran(jax_bodies) -> dict:
    return jax_bodies[__name__]


def line_of(function: str, text: str) -> int:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


BODIES["right_and_wrong"] = ("x = np.random.default_rng(0).standard_normal((4, 3))\n"
                             "result = [check(rules.softplus, (x,)).passed,\n"
                             "          [(r.status, r.line) for r in check(rules.softplus_wrong, (x,)).nodes]]")


def test_a_right_rule_passes_and_a_wrong_one_fails_on_its_line(ran):
    result = run(ran, "right_and_wrong")
    assert result == [True, [["fail", line_of("softplus_wrong_bwd", "dx = ")]]]


BODIES["several_inputs"] = (
    "w, v = np.random.default_rng(1).standard_normal((3, 4)), np.random.default_rng(2).standard_normal(4)\n"
    "result = [check(rules.scaled_dot, (w, v, 1.7)).passed,\n"
    "          {r.name: (r.status, r.line) for r in check(rules.scaled_dot_wrong, (w, v, 1.7)).nodes}]")


def test_several_inputs_a_passed_through_scalar_and_only_the_wrong_cotangent_fails(ran):
    result = run(ran, "several_inputs")
    assert result[0] is True
    assert result[1]["w"][0] == "pass" and result[1]["x"] == ["fail", line_of("scaled_dot_wrong_bwd", "dx = ")]


BODIES["float32"] = ("import jax.numpy as jnp\n"
                     "x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8)), dtype=jnp.float32)\n"
                     "report = check(rules.softplus, (x,))\n"
                     "wrong = check(rules.softplus_wrong, (x,))\n"
                     "result = [report.passed, [g.status for g in report.gates if g.gate == 'float32'],\n"
                     "          wrong.passed, [g.status for g in wrong.gates if g.gate == 'float32']]")


def test_float32_is_checked_against_a_float64_reference(ran):
    result = run(ran, "float32")
    assert result == [True, ["pass"], False, []]  # a rule wrong in float64 gets no float32 row on top


# Right rules where autodiff of the primal is not the derivative: a tie of `maximum` (JAX's ½ each), a
# `where` branch at its edge, and sinc written with a `where` (autodiff: NaN at 0, the derivative 0).
EDGES = """
import jax, jax.numpy as jnp

@jax.custom_vjp
def tiemax(x, y):
    return jnp.maximum(x, y)
def tiemax_fwd(x, y):
    return tiemax(x, y), (x, y)
def tiemax_bwd(res, g):
    x, y = res
    return jnp.where(x >= y, g, 0.0), jnp.where(x >= y, 0.0, g)
tiemax.defvjp(tiemax_fwd, tiemax_bwd)

@jax.custom_vjp
def relu(x):
    return jnp.where(x > 0, x, 0.0)
def relu_fwd(x):
    return relu(x), x
def relu_bwd(x, g):
    return (jnp.where(x >= 0, g, 0.0),)
relu.defvjp(relu_fwd, relu_bwd)

def sinc_rule(slip):
    @jax.custom_vjp
    def sinc(x):
        return jnp.where(x == 0, 1.0, jnp.sin(x) / jnp.where(x == 0, 1.0, x))
    def sinc_fwd(x):
        return sinc(x), x
    def sinc_bwd(x, g):
        s = jnp.where(x == 0, 1.0, x)
        d = (jnp.cos(s) * s - (0.0 if slip else jnp.sin(s))) / (s * s)
        return (g * jnp.where(x == 0, 0.0, d),)
    sinc.defvjp(sinc_fwd, sinc_bwd)
    return sinc
"""


BODIES["edges"] = ("import jax, jax.numpy as jnp\n"
                   f"exec(compile({EDGES!r}, 'edges.py', 'exec'))\n"
                   "x, y = np.array([0.5, -1.0, 2.0, 0.0]), np.array([0.5, 0.3, 2.0, -0.1])\n"
                   "reports = [check(tiemax, (x, y)), check(relu, (np.array([0.0, 1.0, -2.0, 0.0]),)),\n"
                   "           check(sinc_rule(False), (np.array([0.0, 1.0, -2.0]),)),\n"
                   "           check(sinc_rule(True), (np.array([0.0, 1.0, -2.0]),))]\n"
                   "with jax.enable_x64(True):  # the oracle: JAX's autodiff of sin(x)/x, away from 0\n"
                   "    t = jnp.array([1.0, -2.0])\n"
                   "    want = jax.vmap(jax.grad(lambda v: jnp.sin(v) / v))(t)\n"
                   "    labels = [bool(np.allclose(jax.vmap(jax.grad(sinc_rule(s)))(t), want)) for s in (False, True)]\n"
                   "result = [[r.passed for r in reports], [[g.gate for g in r.gates if g.gate not in\n"
                   "          ('backward', 'forward rule')] for r in reports], labels, bool(jax.config.jax_enable_x64)]")


def test_float64_inputs_get_no_low_precision_row_and_right_rules_at_ties_and_edges_pass(ran):
    result = run(ran, "edges")
    passed, low_rows, labels, x64_after = result
    assert labels == [True, False]                     # the slip is wrong, by JAX's autodiff of sin(x)/x
    assert passed == [True, True, True, False]
    assert low_rows == [[], [], [], []]                # float64 in, no float32 row
    assert x64_after is False                          # the check's x64 was its own


LOSSY = ("@jax.custom_vjp\ndef sp(x):\n    return jnp.logaddexp(x, 0.0)\n"
         "def sp_fwd(x):\n    return sp(x), x\n"
         "def sp_bwd(x, g):\n    dx = g * jax.nn.sigmoid(x)\n"
         "    if dx.dtype == jnp.float32:\n        dx = dx.astype(jnp.bfloat16).astype(jnp.float32)\n"
         "    return (dx,)\nsp.defvjp(sp_fwd, sp_bwd)\n")
BODIES["low_precision"] = ("import jax, jax.numpy as jnp\n"
                           f"exec(compile({EDGES!r}, 'edges.py', 'exec'))\n{LOSSY}"
                           "x32 = jnp.asarray([0.5, -1.0, 2.0, 0.0], dtype=jnp.float32)\n"
                           "y32 = jnp.asarray([0.5, 0.3, 2.0, -0.1], dtype=jnp.float32)\n"
                           "ties = check(tiemax, (x32, y32))\n"
                           "asked = check(rules.softplus, (np.random.default_rng(0).standard_normal(6),), dtype='bfloat16')\n"
                           "lost = check(sp, (jnp.asarray(np.random.default_rng(0).standard_normal(6), dtype=jnp.float32),))\n"
                           "result = [[(g.gate, g.status) for g in r.gates if g.gate in ('float32', 'bfloat16')]\n"
                           "          for r in (ties, asked, lost)] + [[n.status for n in lost.nodes]]")


def test_low_precision_rows_hold_the_rule_to_itself_in_float64_and_catch_a_float32_only_loss(ran):
    result = run(ran, "low_precision")
    ties, asked, lost, lost_nodes = result
    assert ties == [["float32", "pass"], ["float32", "pass"]]   # the tie's subgradient is the rule's in both
    assert asked == [["bfloat16", "pass"]]                     # asked for, from float64 inputs
    assert lost == [["float32", "fail"]] and lost_nodes == ["pass"]


# A rule with two outputs of different sizes: the differences' batched rows must lay the outputs out as a single
# call does (each flattened, in order), or the right rule fails too. The oracle: JAX's autodiff of the same outputs.
# (Written by exec, as EDGES: its rows are at the rule's first line, there being no file to read it from.)
TWO = """
import jax, jax.numpy as jnp

def two_rule(slip):
    @jax.custom_vjp
    def two(x):
        return jnp.sin(x), jnp.tanh(x[:3])
    def two_fwd(x):
        return two(x), x
    def two_bwd(x, g):
        ga, gb = g
        dx = ga * jnp.cos(x) + jnp.zeros_like(x).at[:3].set(gb * (1.0 if slip else 1.0 - jnp.tanh(x[:3]) ** 2))
        return (dx,)
    two.defvjp(two_fwd, two_bwd)
    return two
"""
BODIES["two_outputs"] = ("import jax, jax.numpy as jnp\n"
                         f"exec(compile({TWO!r}, 'two.py', 'exec'))\n"
                         "x = np.random.default_rng(0).standard_normal(5)\n"
                         "reports = [check(two_rule(s), (x,)) for s in (False, True)]\n"
                         "with jax.enable_x64(True):  # the oracle: JAX's autodiff of the two outputs\n"
                         "    g = (jnp.asarray(np.cos(np.arange(5.0))), jnp.asarray(np.sin(np.arange(3.0))))\n"
                         "    want = jax.vjp(lambda v: (jnp.sin(v), jnp.tanh(v[:3])), jnp.asarray(x))[1](g)[0]\n"
                         "    labels = [bool(np.allclose(jax.vjp(two_rule(s), jnp.asarray(x))[1](g)[0], want)) for s in (False, True)]\n"
                         "result = [[r.passed for r in reports], [[(n.status, n.line) for n in r.nodes] for r in reports], labels]")


def test_a_rule_with_two_outputs_of_different_sizes_passes_and_its_slip_fails_on_its_line(ran):
    result = run(ran, "two_outputs")
    passed, rows, labels = result
    bwd = next(i for i, t in enumerate(TWO.splitlines()) if "def two_bwd" in t) + 1  # (no file to read its lines)
    assert labels == [True, False]                     # the slip is wrong, by JAX's autodiff
    assert passed == [True, False]
    assert rows == [[["pass", bwd]], [["fail", bwd]]]


CULPRITS = ("import jax\nimport jax.numpy as jnp\n\n\n"
            "@jax.custom_jvp\ndef lc(x):\n    return jnp.log(jnp.cosh(x))\n\n\n"
            "@lc.defjvp\ndef lc_jvp(primals, tangents):\n    x, = primals\n    t, = tangents\n"
            "    out = lc(x)\n    t_out = jnp.tanh(-x) * t\n    return out, t_out\n\n\n"
            "@jax.custom_gradient\ndef xs(x):\n    y = x * jnp.sin(x)\n\n"
            "    def rule(g):\n        dx = g * (jnp.sin(x) + jnp.cos(x))\n        return (dx,)\n    return y, rule\n")
BODIES["culprits"] = ("sys.path.insert(0, CULPRITS_FOLDER)\nimport jax_culprits as m\n"
                      "x = np.random.default_rng(0).standard_normal(5)\n"
                      "a, b = check(m.lc, (x,)), check(m.xs, (x,))\n"
                      "result = [[(str(n.status), n.line) for n in r.nodes] + [r.path] for r in (a, b)]")


def test_custom_jvp_and_custom_gradient_rules_are_blamed_in_the_users_rule(ran):
    result = run(ran, "culprits")
    lines = CULPRITS.splitlines()
    t_out = next(i for i, t in enumerate(lines) if "t_out = " in t) + 1
    dx = next(i for i, t in enumerate(lines) if "dx = " in t) + 1
    path = str(ran["folder"] / "jax_culprits.py")
    assert result == [[["fail", t_out], path], [["fail", dx], path]]
