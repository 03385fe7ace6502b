"""`checking.pipeline.compare`, the one check step, on a tiny fake target over a Python function's
runner: backprop here is written in the test (a closed-form derivative, right or broken on purpose),
never taken from the code under test, and so are the fake's rerun, chain rules, explanation and
complex step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest

from gradcheck_cli.checking import checker, gatecheck, pipeline, verdict
from gradcheck_cli.core.settings import Settings
from gradcheck_cli.core.tolerances import EPS
from gradcheck_cli.oracles import complexstep
from gradcheck_cli.oracles.numeric import NumericResult, Target
from gradcheck_cli.python import pycheck, reference
from gradcheck_cli.python.pyrunner import FunctionRunner

SETTINGS = Settings()
PYTHON = pipeline.POLICIES["python"]
X = np.array([1.0, -1.0, 0.0, 2.0])


def f(a):
    return np.exp(a[0]) * a[0] ** 2


RIGHT = np.exp(X) * (X ** 2 + 2 * X)  # d/dx eˣx²; exactly 0 at x = 0


def runner_of(fn, x):
    x = np.asarray(x, dtype=float)
    out = fn([x])
    return FunctionRunner(fn, [x], np.ones_like(out), out)


@dataclass(frozen=True, kw_only=True)
class Fake:
    """The smallest CheckTarget: a runner over `fn`, backprop as written, and whatever else the test hands in."""
    runner: FunctionRunner
    elements: Target
    backprop: np.ndarray
    moved: Callable | None = None          # what rerun(delta) answers
    chain_rules: Callable | None = None    # what references() answers
    explanation: Callable | None = None    # what explain(ev) does
    complex_step: object = None
    differences: NumericResult | None = None
    noise: np.ndarray | None = None
    symbolic: pipeline.Symbolic | None = None
    seed: int | None = None
    groups: np.ndarray | None = None

    def rerun(self, delta):
        return None if self.moved is None else self.moved(delta)

    def references(self):
        return [] if self.chain_rules is None else self.chain_rules()

    def explain(self, ev):
        return ev if self.explanation is None else self.explanation(ev)


def fake(bp, fn=f, x=X, projections=False, rerun=None, references=None, **kw) -> Fake:
    runner = runner_of(fn, x)
    return Fake(runner=runner, elements=Target("x", runner.x.copy(), projections), backprop=np.asarray(bp, dtype=float)[None],
                moved=rerun, chain_rules=references, **kw)


def compare(bp, fn=f, x=X, policy=PYTHON, projections=False, **kw):
    compared = pipeline.compare(fake(bp, fn, x, projections, **kw), SETTINGS, policy)
    return compared, verdict.summarize(compared.evidence)


def counted(values):
    """A rerun that answers `values` whatever the nudge, and counts its calls."""
    calls = []
    return calls, (lambda delta: calls.append(delta) or np.asarray(values, dtype=float)[None])


def test_a_right_backward_passes():
    _, j = compare(RIGHT)
    assert j.status == "pass"


def test_a_backward_off_by_one_percent_at_one_element_fails_there():
    wrong = RIGHT.copy()
    wrong[1] *= 1.01
    compared, j = compare(wrong)
    assert j.status == "fail" and j.worst == (0, 1)
    np.testing.assert_array_equal(compared.evidence.codes[0], [0, 3, 0, 0])
    assert j.numeric_error == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_a_backward_right_up_to_rounding_passes_exact_zeros_included():
    noisy = RIGHT * (1 + 4 * EPS * np.array([1, -1, 1, -1]))
    noisy[2] = 1e-17  # the exact 0 at x = 0, computed with a cancellation's rounding
    _, j = compare(noisy)
    assert j.status == "pass"


def test_backprops_measured_rounding_widens_the_tolerance_and_is_asked_for_only_on_failure():
    off = RIGHT.copy()
    off[3] *= 1 + 5e-5  # past rtol 1e-5
    calls, rerun = counted(off * np.array([1, 1, 1, 1 + 1e-5]))  # rerun moves it by 1e-5: its own rounding
    _, j = compare(off, rerun=rerun)
    assert j.status == "pass" and len(calls) == 1             # the python policy: one nudge, + only
    _, rerun = counted(off)                                  # a rerun that does not move: no rounding
    assert compare(off, rerun=rerun)[1].status == "fail"
    calls, rerun = counted(RIGHT)
    assert compare(RIGHT, rerun=rerun)[1].status == "pass" and calls == []  # a user's backward is dear


def test_graph_policy_measures_rounding_first_with_both_signs():
    calls, rerun = counted(RIGHT)
    assert compare(RIGHT, policy=pipeline.POLICIES["graph"], rerun=rerun)[1].status == "pass"
    assert len(calls) == 2 and calls[0] == -calls[1] > 0


def relu(z):
    return np.maximum(z, 0.0)


def g(a):
    # relu(x) − 2·relu(−x): at x = 0 the one-sided slopes are 2 (left) and 1 (right), and the chain
    # rule with relu′(0) = 0 gives 0, outside them, though valid; at 1.5 and −2 the slopes are 1 and 2
    return relu(a[0]) - 2 * relu(-a[0])


def test_a_kink_outside_the_one_sided_slopes_fails_without_a_chain_rule_to_explain_it():
    compared, j = compare([0.0, 1.0, 2.0], fn=g, x=[0.0, 1.5, -2.0])
    assert j.status == "fail" and j.worst == (0, 0)
    assert compared.num.at_kink.tolist() == [True, False, False]
    np.testing.assert_allclose([compared.num.lower[0, 0], compared.num.upper[0, 0]], [1.0, 2.0], atol=1e-9)


def test_a_kink_explained_by_a_valid_chain_rule_becomes_kink_not_fail():
    asked = []
    refs = [("relu'(0) = 1", [[3.0, 1.0, 2.0]]), ("relu'(0) = 0", [[0.0, 1.0, 2.0]])]
    references = lambda: asked.append(1) or refs  # noqa: E731
    compared, j = compare([0.0, 1.0, 2.0], fn=g, x=[0.0, 1.5, -2.0], references=references)
    assert j.status == "kink" and "relu'(0) = 0" in j.note and asked == [1]
    np.testing.assert_array_equal(compared.evidence.codes[0], [1, 0, 0])


def test_a_kink_no_chain_rule_matches_still_fails_and_references_are_asked_only_on_failure():
    refs = [("relu'(0) = 0", [[0.0, 1.0, 2.0]])]
    assert compare([0.5, 1.0, 2.0], fn=g, x=[0.0, 1.5, -2.0], references=lambda: refs)[1].status == "fail"
    # a chain rule never excuses an element away from the kink
    assert compare([0.0, 1.1, 2.0], fn=g, x=[0.0, 1.5, -2.0],
                   references=lambda: [("x", [[0.0, 1.1, 2.0]])])[1].worst == (0, 1)
    asked = []
    assert compare(RIGHT, references=lambda: asked.append(1) or [])[1].status == "pass" and asked == []


def test_a_failed_projection_is_redone_element_by_element_to_name_the_element():
    wrong = RIGHT.copy()
    wrong[3] *= 1.01
    compared, j = compare(wrong, projections=True)
    assert compared.num.method == "exhaustive" and j.status == "fail" and j.worst == (0, 3)
    compared, j = compare(wrong, projections=True, policy=replace(PYTHON, recheck_work=0))
    assert compared.num.method == "projection" and j.status == "fail"
    compared, j = compare(RIGHT, projections=True)
    assert compared.num.method == "projection" and j.status == "pass"


def test_policies_has_one_row_per_kind_of_target_and_the_modules_use_theirs():
    assert set(pipeline.POLICIES) == {"graph", "gate", "python"}
    assert checker.POLICY is pipeline.POLICIES["graph"]
    assert gatecheck.POLICY is pipeline.POLICIES["gate"]
    assert reference.POLICY is pycheck.POLICY is pipeline.POLICIES["python"]
    python = pipeline.POLICIES["python"]
    assert not python.noise_first and python.noise_signs == (1,)
    assert [k for k, p in pipeline.POLICIES.items() if p.second_opinion] == ["graph"]
    assert all(p.noise_first and p.noise_signs == (1, -1) for k, p in pipeline.POLICIES.items() if k != "python")


# --- the complex step, wired through the check step -------------------------------------------------

def exact(values) -> NumericResult:
    """A complex step's columns: exact to rounding, (1, n)."""
    v = np.asarray(values, dtype=float)[None]
    zero = np.zeros(v.shape[1], dtype=bool)
    return NumericResult("complex step", 1e-16 * np.abs(v), np.zeros_like(v), zero, value=v, at_kink=zero,
                         lower=v, upper=v, exact=True)


@dataclass
class Step:
    """A fake ComplexStep that records what the check step asks of it."""
    up_front: NumericResult | None = None
    own_rounding: float = 0.0
    second: NumericResult | None = None
    cross: complexstep.CrossCheck | None = None
    term_size: float | None = None     # what terms(num) tells, per element (None: it cannot tell)
    asked: list | None = None

    def __post_init__(self):
        self.asked = []

    def columns(self):
        self.asked.append("columns")
        return self.up_front

    def rounding(self, num):
        self.asked.append("rounding")
        return np.full(np.shape(num.value), self.own_rounding)

    def terms(self, num):
        return None if self.term_size is None else np.full(np.shape(num.value), self.term_size)

    def off_kinks(self, num):
        self.asked.append("off_kinks")
        return self.second

    def cross_check(self, num, bp, noise):
        self.asked.append(("cross_check", num.method, float(np.max(noise()))))
        return self.cross


def test_the_complex_steps_columns_stand_in_for_the_differences():
    step = Step(up_front=exact(RIGHT))
    target = fake(RIGHT, complex_step=step)
    before = target.runner.calls  # (the runner's own test of whether the forward batches)
    compared = pipeline.compare(target, SETTINGS, pipeline.POLICIES["gate"])
    assert compared.num.method == "complex step" and verdict.summarize(compared.evidence).status == "pass"
    assert target.runner.calls == before and step.asked == ["columns"]  # nothing differenced, nothing else asked


def test_a_failing_exact_column_is_judged_again_with_the_complex_steps_own_rounding():
    off = RIGHT * (1 + 1e-8)  # past the exact columns' tolerance (1e-9), within ~1e-7 of rounding
    for own, status in ((0.0, "fail"), (1e-7 * float(np.max(np.abs(RIGHT))), "pass")):
        step = Step(up_front=exact(RIGHT), own_rounding=own)
        compared = pipeline.compare(fake(off, complex_step=step), SETTINGS, pipeline.POLICIES["gate"])
        assert verdict.summarize(compared.evidence).status == status and "rounding" in step.asked


def test_backprops_rounding_at_the_size_of_its_terms_is_never_a_failure_against_exact_columns():
    """A gradient that is 0 as a cancellation of terms of about 1/3 (backprop rounds it to -2.3e-17, the
    complex step to exactly 0, and the rerun that measures backprop's noise does not move): the size of
    the terms, from SymPy or else from the complex step, says it is rounding; without it, a false alarm."""
    zero = np.zeros(1)
    cancelled = np.array([-2.3e-17])

    def judged(bp=cancelled, **kw):
        step = Step(up_front=exact(zero), term_size=kw.pop("term_size", None))
        target = fake(bp, fn=lambda a: 0.0 * a[0], x=[0.03125], rerun=lambda d: bp[None], complex_step=step, **kw)
        return verdict.summarize(pipeline.compare(target, SETTINGS, pipeline.POLICIES["gate"]).evidence).status
    assert judged() == "fail"
    assert judged(term_size=0.667) == "warn"  # no SymPy: never a failure, but no exact derivative confirms it
    sym = pipeline.Symbolic(values=zero[None], magnitudes=np.full((1, 1), 0.667))
    assert judged(symbolic=sym) == "pass"
    assert judged(symbolic=sym, term_size=1e-30) == "pass"  # SymPy's magnitudes come first
    # an error of 1e-9 of the terms is far above their rounding (about 1e-14): a bug, with or without SymPy
    assert judged(np.array([0.667e-9]), term_size=0.667) == "fail"
    assert judged(np.array([0.667e-9]), symbolic=sym) == "fail"


def test_the_second_opinion_off_the_kinks_is_the_policys_and_only_for_failing_element_by_element_rows():
    wrong = RIGHT.copy()
    wrong[1] *= 1.01
    for kind, used in (("graph", True), ("gate", False), ("python", False)):
        step = Step(second=exact(wrong))  # the complex step says backprop is right after all
        compared = pipeline.compare(fake(wrong, complex_step=step), SETTINGS, pipeline.POLICIES[kind])
        assert ("off_kinks" in step.asked) == used
        assert verdict.summarize(compared.evidence).status == ("pass" if used else "fail")
    step = Step(second=exact(RIGHT))
    pipeline.compare(fake(RIGHT, complex_step=step), SETTINGS, pipeline.POLICIES["graph"])
    assert "off_kinks" not in step.asked  # a passing row needs no second opinion


def test_the_cross_check_runs_after_element_by_element_differences_with_backprops_rounding_on_demand():
    cross = complexstep.CrossCheck(unused=None, failing=np.array([2]), error=0.5, values=RIGHT)
    calls, rerun = counted(RIGHT * (1 + 1e-12))
    step = Step(cross=cross)
    compared = pipeline.compare(fake(RIGHT, rerun=rerun, complex_step=step), SETTINGS, PYTHON)
    assert compared.complex_step is cross
    columns, asked = step.asked
    assert columns == "columns" and asked[:2] == ("cross_check", "exhaustive") and asked[2] > 0 and len(calls) == 1
    step = Step(cross=cross)
    compared = pipeline.compare(fake(RIGHT, projections=True, complex_step=step), SETTINGS, PYTHON)
    assert compared.num.method == "projection" and compared.complex_step is None and step.asked == ["columns"]


def test_the_targets_explanation_is_asked_for_only_where_a_kink_element_fails():
    asked = []

    def explanation(ev):
        asked.append(1)
        return verdict.explained(ev, "explained by the fake")
    compared, j = compare([0.0, 1.0, 2.0], fn=g, x=[0.0, 1.5, -2.0], explanation=explanation)
    assert j.status == "kink" and j.note == "explained by the fake" and asked == [1]
    compare(RIGHT, explanation=explanation)
    wrong = RIGHT.copy()
    wrong[1] *= 1.01
    assert compare(wrong, explanation=explanation)[1].status == "fail" and asked == [1]  # no kink: not asked


def test_symbolic_values_fail_a_backward_the_differences_cannot_see():
    off = RIGHT * (1 + 1e-7)  # within the differences' tolerance, far past SymPy's
    sym = pipeline.Symbolic(values=RIGHT[None], magnitudes=np.abs(RIGHT)[None])
    assert compare(off)[1].status == "pass"
    assert compare(off, symbolic=sym)[1].status == "fail"
