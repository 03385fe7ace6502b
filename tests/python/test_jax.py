"""jax.custom_vjp rules checked by this project's engine: right ones pass, wrong ones fail
at the line of the rule's bwd that computes the failing cotangent; float32 against a float64
reference. Skipped without JAX (`pip install '.[jax]'`). Each runs in a process of its
own: JAX starts threads, and the suite's other tests fork (-j workers) after it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("jax") is None:
    pytest.skip("JAX is an optional extra: pip install '.[jax]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples" / "jax" / "rules.py"


def run(body: str) -> dict:
    """Run `body` (which sets `result`) with numpy, the examples as `rules` and `check`; its result."""
    code = (f"import json, sys\nimport numpy as np\nsys.path.insert(0, {str(EXAMPLES.parent)!r})\nimport rules\n"
            "from gradcheck_cli.jax import check\n" + body + "\nprint(json.dumps(result))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def line_of(function: str, text: str) -> int:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def test_a_right_rule_passes_and_a_wrong_one_fails_on_its_line():
    result = run("x = np.random.default_rng(0).standard_normal((4, 3))\n"
                 "result = [check(rules.softplus, (x,)).passed,\n"
                 "          [(r.status, r.line) for r in check(rules.softplus_wrong, (x,)).nodes]]")
    assert result == [True, [["fail", line_of("softplus_wrong_bwd", "dx = ")]]]


def test_several_inputs_a_passed_through_scalar_and_only_the_wrong_cotangent_fails():
    result = run("w, v = np.random.default_rng(1).standard_normal((3, 4)), np.random.default_rng(2).standard_normal(4)\n"
                 "result = [check(rules.scaled_dot, (w, v, 1.7)).passed,\n"
                 "          {r.name: (r.status, r.line) for r in check(rules.scaled_dot_wrong, (w, v, 1.7)).nodes}]")
    assert result[0] is True
    assert result[1]["w"][0] == "pass" and result[1]["x"] == ["fail", line_of("scaled_dot_wrong_bwd", "dx = ")]


def test_float32_is_checked_against_a_float64_reference():
    result = run("import jax.numpy as jnp\n"
                 "x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8)), dtype=jnp.float32)\n"
                 "report = check(rules.softplus, (x,))\n"
                 "result = [report.passed, [g.status for g in report.gates if g.gate == 'float32'],\n"
                 "          [g.status for g in check(rules.softplus_wrong, (x,)).gates if g.gate == 'float32']]")
    assert result == [True, ["pass"], ["fail"]]


def test_every_element_against_jax_autodiff_of_the_primal_names_the_one_wrong_element():
    result = run("import jax, jax.numpy as jnp\n"
                 "@jax.custom_vjp\n"
                 "def f(w):\n    return jnp.sin(w) * w\n"
                 "def f_fwd(w):\n    return f(w), w\n"
                 "def f_bwd(w, g):\n    dw = g * (jnp.cos(w) * w + jnp.sin(w))\n    return (dw.at[2, 1].multiply(1.001),)\n"
                 "f.defvjp(f_fwd, f_bwd)\n"
                 "w = np.random.default_rng(0).standard_normal((4, 3))\n"
                 "bad = check(f, (w,), budget=1)\n"
                 "ok = check(rules.softplus, (w,), budget=1)\n"
                 "result = [[(r.name, r.status, list(r.worst_index)) for r in bad.nodes], bad.nodes[0].numeric_method,\n"
                 "          ok.passed, ok.nodes[0].numeric_method]")
    assert result[0] == [["w", "fail", [2, 1]]]
    assert result[1].startswith("every element against autodiff") and "the 1 element where" in result[1]
    assert result[2] is True and result[3].startswith("every element against autodiff")
