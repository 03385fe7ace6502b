"""jax.custom_vjp rules checked by this project's engine (issue 24): right ones pass, wrong ones fail
at the line of the rule's bwd that computes the failing cotangent; float32 against a float64
reference. Skipped without JAX (`pip install 'gradcheck-cli[jax]'`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax", reason="JAX is an optional extra: pip install 'gradcheck-cli[jax]'")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "jax" / "rules.py"
sys.path.insert(0, str(EXAMPLES.parent))
import rules  # noqa: E402

from gradcheck_cli.jax import check  # noqa: E402


def line_of(function: str, text: str) -> int:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {function}("))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def test_a_right_rule_passes_and_a_wrong_one_fails_on_its_line():
    x = np.random.default_rng(0).standard_normal((4, 3))
    assert check(rules.softplus, (x,)).passed
    (row,) = check(rules.softplus_wrong, (x,)).nodes
    assert row.status == "fail" and row.line == line_of("softplus_wrong_bwd", "dx = ")


def test_several_inputs_a_passed_through_scalar_and_only_the_wrong_cotangent_fails():
    w, v = np.random.default_rng(1).standard_normal((3, 4)), np.random.default_rng(2).standard_normal(4)
    assert check(rules.scaled_dot, (w, v, 1.7)).passed
    status = {r.name: (r.status, r.line) for r in check(rules.scaled_dot_wrong, (w, v, 1.7)).nodes}
    assert status["w"][0] == "pass" and status["x"] == ("fail", line_of("scaled_dot_wrong_bwd", "dx = "))


def test_float32_is_checked_against_a_float64_reference():
    import jax.numpy as jnp
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8)), dtype=jnp.float32)
    report = check(rules.softplus, (x,))
    low = [g for g in report.gates if g.gate == "float32"]
    assert report.passed and len(low) == 1 and low[0].status == "pass"
    assert [g.status for g in check(rules.softplus_wrong, (x,)).gates if g.gate == "float32"] == ["fail"]
