"""The three oracles and the verdicts: pass, kink, warn, fail; Jacobians, broadcasting, projections."""

import dataclasses

import numpy as np
import pytest

from gradcheck_cli import check
from gradcheck_cli import gates
from gradcheck_cli.checking.verdict import rel_error
from conftest import rows


def inline(src, **at):
    return check(src, at={k: str(v) for k, v in at.items()}, free_names=True)


def status(report, name):
    return rows(report)[name].status


def test_rel_error_is_relative_to_the_larger_value_or_a_floor():
    assert rel_error(1e-12, -1e-12) == 2          # a sign flip is wrong at any scale
    assert rel_error(1e-12, -1e-12, floor=1e-3) == pytest.approx(2e-9)
    assert rel_error(1.0, 1.0 + 1e-9) == pytest.approx(1e-9, rel=1e-6)
    assert rel_error(1e-3, 0) == 1 and rel_error(0, 0) == 0


def test_fan_out_accumulates():
    r = check("a = 3\nb = a + a\nf = b * a")
    assert float(rows(r)["a"].grad) == 12  # d(2a·a)/da = 4a
    assert r.passed


@pytest.mark.parametrize("src,at,expected", [
    ("relu(x)", {"x": 1e-7}, "kink"),            # the step straddles 0
    ("relu(x)", {"x": 0.0}, "kink"),             # exact tie: split evenly
    ("abs(x)", {"x": 0.0}, "kink"),
    ("max(x, y)", {"x": 2.0, "y": 2.0}, "kink"),
    ("min(x, y)", {"x": 2.0, "y": 2.0 + 1e-9}, "kink"),
    ("max(x, y)", {"x": 2.0, "y": 1.0}, "pass"),
])
def test_kinks(src, at, expected):
    assert status(inline(src, **at), "x") == expected


def test_exact_tie_splits_the_gradient_evenly_like_the_oracles():
    r = inline("max(x, y)", x=1.0, y=1.0)
    for name in "xy":
        row = rows(r)[name]
        assert float(row.grad) == 0.5 and float(row.symbolic) == 0.5
        assert float(row.numeric) == pytest.approx(0.5)


def test_warn_when_the_difference_is_the_artefact():
    # sin(1e7·x): 1e7·h is ~60 rad at h, still 0.06 rad at the smallest step differences try
    r = check("x = 0.3\nf = sin(1e7 * x)", complex_step=False)
    row = rows(r)["x"]
    assert row.status == "warn" and "backprop agrees with SymPy" in row.note
    assert r.passed  # a warn is not a failure ...
    assert not check("x = 0.3\nf = sin(1e7 * x)", strict=True, complex_step=False).passed  # ... unless --strict
    exact = rows(inline("sin(1e5 * x)", x=0.3))["x"]  # the complex step has no step to be too coarse
    assert exact.status == "pass" and exact.numeric_method == "complex step" and exact.numeric_error < 1e-12


@pytest.mark.parametrize("k", [1e5, 3e5])
def test_a_difference_bound_by_truncation_is_taken_again_at_a_smaller_step(k):
    # sin(k·x) at h = 6e-6: k·h is 0.6 to 1.8 rad, and the difference's truncation is past the tolerance (a warn,
    # "unreliable", before); at a step up to 1024 times smaller it resolves f′ = k·cos(k·x), with no other oracle
    r = check(f"x = 0.3\nf = sin({k!r} * x)", complex_step=False, symbolic=False)
    row = rows(r)["x"]
    assert row.status == "pass", row.note
    assert float(row.numeric) == pytest.approx(k * np.cos(k * 0.3), rel=1e-6)
    wrong = check(f"gate s(t) = sin(t)\n  dt = dout * cos(t) * 1.001\nx = 0.3\nf = s({k!r} * x)",
                  complex_step=False, symbolic=False)
    assert rows(wrong)["x"].status == "fail"  # a slip of 0.1%, resolved there too


def test_warn_when_a_nudge_leaves_the_domain():
    row = rows(check("x = 1e-12\nf = sqrt(x)", complex_step=False))["x"]
    assert row.status == "warn" and "left the function's domain" in row.note
    exact = rows(inline("sqrt(x)", x=1e-12))["x"]  # the complex step moves no real part: it never leaves it
    assert exact.status == "pass" and exact.numeric_method == "complex step"


def _tanh_wrong_at_element_2(g, args, out, a):
    """tanh's VJP, 1.5 times too large at element 2 only."""
    grad = g * (1 - out * out)
    grad[..., 2] *= 1.5
    return (grad,)


def _with_wrong(monkeypatch, name, vjp):
    wrong = dataclasses.replace(gates.REGISTRY[name], vjp=vjp)
    monkeypatch.setitem(gates.REGISTRY, name, wrong)


def test_a_wrong_vjp_fails_exactly_the_rows_upstream_and_names_the_gate(monkeypatch):
    _with_wrong(monkeypatch, "exp", lambda g, args, out, a: (-g * out,))  # wrong sign
    r = check("w = 2; x = -1\ndot = w * x\nf = 1 / (1 + exp(-dot))\n")
    by = rows(r)
    assert [n for n, row in by.items() if row.status == "fail"] == ["w", "x", "dot", "-dot"]
    assert all(by[n].status == "pass" for n in ("exp(-dot)", "1 + exp(-dot)", "f"))
    assert "backprop disagrees with both the complex-step derivative and SymPy" in by["-dot"].note
    assert "less than any finite difference" not in by["-dot"].note  # a sign is not a fine error
    by = rows(check("w = 2; x = -1\ndot = w * x\nf = 1 / (1 + exp(-dot))\n", complex_step=False))
    assert "backprop disagrees with both finite differences and SymPy" in by["-dot"].note
    assert "backward of 'exp(-dot)' (exp, line 3)" in by["-dot"].note
    assert not r.passed


def test_wrong_vjp_without_symbolic_still_fails(monkeypatch):
    _with_wrong(monkeypatch, "sin", lambda g, args, out, a: (g * np.sin(args[0]),))
    r = check("x = 0.7\nf = sin(x)", symbolic=False)
    assert rows(r)["x"].status == "fail" and rows(r)["x"].symbolic is None


def test_non_scalar_output_checks_the_full_jacobian():
    r = check("W = [[1, 2, 3], [4, 5, 6]]\nx = [0.5, -1, 2]\ny = tanh(W @ x * 0.1)")
    assert r.passed
    jw = np.asarray(rows(r)["W"].grad)
    jx = np.asarray(rows(r)["x"].grad)
    assert jw.shape == (2, 2, 3) and jx.shape == (2, 3)
    W = np.array([[1, 2, 3], [4, 5, 6.]])
    x = np.array([0.5, -1, 2.])
    d = (1 - np.tanh(W @ x * 0.1) ** 2) * 0.1
    np.testing.assert_allclose(jx, d[:, None] * W, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(rows(r)["x"].numeric), jx, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(rows(r)["x"].symbolic), jx, rtol=1e-12)


SHAPES = {"scalar": "1.3", "vec6": "rand(6) + 0.5", "mat76": "rand(7, 6) + 0.5", "mat16": "rand(1, 6) + 0.5"}


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "^"])
@pytest.mark.parametrize("left", list(SHAPES))
@pytest.mark.parametrize("right", list(SHAPES))
def test_broadcasting_pairs(op, left, right):
    src = f"a = {SHAPES[left]}\nb = {SHAPES[right]}\nf = sum(sin(a {op} b))\n"
    r = check(src, symbolic=False)
    assert r.error is None and r.passed, [(x.name, x.status, x.note) for x in r.nodes]
    by = rows(r)
    a, b = np.asarray(by["a"].value), np.asarray(by["b"].value)
    ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}
    # an independent gradient by central differences straight from numpy
    def f(a_, b_):
        return np.sum(np.sin(ops[op](a_, b_)))
    for name, v in (("a", a), ("b", b)):
        want = np.zeros(v.shape)
        for idx in np.ndindex(*v.shape):
            e = np.zeros(v.shape)
            e[idx] = 1e-6
            want[idx] = ((f(a + e, b) - f(a - e, b)) if name == "a" else (f(a, b + e) - f(a, b - e))) / 2e-6
        np.testing.assert_allclose(np.asarray(by[name].grad), want, rtol=1e-6, atol=1e-8)


def test_projection_past_the_budget_passes_and_says_so():
    r = check("W = randn(6, 5)\nx = randn(5)\nf = sum(tanh(W @ x))", budget=8)
    assert r.passed
    w = rows(r)["W"]
    assert w.numeric is None and w.numeric_method.startswith("projection")
    assert "random projections" in w.note
    assert rows(r)["x"].numeric_method == "complex step"  # every element, and exact


def test_failed_projection_rechecks_every_element_and_names_the_bad_one(monkeypatch):
    def bad_tanh(g, args, out, a):
        grad = g * (1 - out * out)
        grad[..., 2] *= 1.5  # one wrong element
        return (grad,)
    _with_wrong(monkeypatch, "tanh", bad_tanh)
    r = check("W = randn(6, 5)\nx = randn(5)\nf = sum(tanh(W @ x))", budget=8, symbolic=False)
    w = rows(r)["W"]
    assert w.status == "fail" and w.numeric_method == "exhaustive" and w.numeric is not None
    assert w.worst_index[0] == 2


def test_consts_are_skipped_and_not_perturbed():
    r = check("const c = 2\nx = 3\nf = c * x")
    assert status(r, "c") == "skip" and rows(r)["c"].grad is None
    assert float(rows(r)["x"].grad) == 2


def test_output_statement_chooses_the_output():
    r = check("x = 2\ny = x * x\nz = y + 1\noutput y")
    assert r.output == "y" and float(rows(r)["x"].grad) == 4


def test_symbolic_work_budget_skips_with_a_note_not_a_hang():
    r = check("X = randn(20, 20)\nf = sum(X @ X)", symbolic_budget=5_000)
    row = rows(r)["X"]
    assert row.symbolic is None and "past the SymPy work budget (5,000 expression nodes)" in row.note
    assert rows(r)["f"].symbolic is not None and r.passed   # what was reached before the budget keeps its value
    full = check("X = randn(20, 20)\nf = sum(X @ X)")
    assert rows(full)["X"].symbolic is not None and full.passed


def test_symbolic_covers_long_chains():
    src = "x = 0.3\n" + "\n".join(f"y{i} = sin(x * {i % 7 + 1}) + y{i - 1} * 0.5" if i else "y0 = x"
                                   for i in range(0, 80))
    r = check(src)
    assert r.passed
    assert all(row.symbolic is not None for row in r.nodes)


def test_same_seed_same_result():
    a = check("W = randn(3, 3)\nf = sum(W @ W)", seed=5)
    b = check("W = randn(3, 3)\nf = sum(W @ W)", seed=5)
    np.testing.assert_array_equal(rows(a)["W"].value, rows(b)["W"].value)
    np.testing.assert_array_equal(rows(a)["W"].numeric, rows(b)["W"].numeric)


@pytest.mark.parametrize("limit, named", [(10 ** 9, True), (10 ** 3, False)])
def test_a_failed_projection_is_rechecked_only_within_the_work_limit(monkeypatch, limit, named):
    # the element-by-element rerun costs numeric.work's count; past the graph policy's recheck_work the
    # row fails unnamed (an 80,000-element input took 40 s to rerun before this limit, 1 s after)
    import dataclasses
    from gradcheck_cli.checking import checker
    from gradcheck_cli.oracles import numeric, runners
    _with_wrong(monkeypatch, "tanh", _tanh_wrong_at_element_2)
    monkeypatch.setattr(checker, "POLICY", dataclasses.replace(checker.POLICY, recheck_work=limit))
    src = "W = randn(6, 5)\nx = randn(5)\nf = sum(tanh(W @ x))"
    r = check(src, budget=8, symbolic=False)
    w = rows(r)["W"]
    assert w.status == "fail"
    assert (w.numeric_method == "exhaustive") == named
    from gradcheck_cli.language.frontend import load
    graph = load(src)
    W = next(n for n in graph.nodes if n.name == "W")
    cost = runners.work(graph, [numeric.Target(W.id, np.zeros(W.size))])
    assert 10 ** 3 < cost <= checker.POLICY.recheck_work or not named


def test_work_counts_each_rows_own_copy_of_its_target():
    from gradcheck_cli.oracles import numeric, runners
    from gradcheck_cli.language.frontend import load
    graph = load("y = ones(400, 2)\nf = sum(y)")  # 800 elements, one scalar after them
    y = graph.nodes[0]
    cost = runners.work(graph, [numeric.Target(y.id, np.zeros(y.size))])
    assert cost >= 4 * 800 * 800  # every row holds a perturbed copy of all 800 elements


@pytest.mark.parametrize("big, factor, status_", [
    ("1e7", 1, "pass"), ("1e7", 0.1, "warn"), ("1e7", None, "warn"),   # escalation needed, and switched off
    ("1e8", 1, "warn"), ("1e8", 10, "pass"),                           # past ESCALATE_MAX: an honest warn
])
def test_a_rounding_bound_difference_is_escalated_up_to_its_limit(monkeypatch, big, factor, status_):
    # f = B + x²: the difference of a huge value is rounding-bound; a larger step (its truncation is
    # nil here) resolves it, up to ESCALATE_MAX·h. Held both ways, and against being switched off.
    from gradcheck_cli.oracles import numeric
    monkeypatch.setattr(numeric, "ESCALATE_MAX", 1.0 if factor is None else numeric.ESCALATE_MAX * factor)
    r = check(f"x = 0.7\nf = {big} + x * x\n", symbolic=False, complex_step=False)
    assert rows(r)["x"].status == status_


@pytest.mark.parametrize("factor, status_", [(1, "pass"), (0.1, "warn"), (10, "warn")])
def test_the_rounding_estimate_decides_when_to_escalate(monkeypatch, factor, status_):
    # ROUNDING·ε·|f|/h is the difference's rounding error: 10x too small misses the rounding, 10x too
    # large escalates into a step too coarse; both leave the same x unresolved (warn)
    from gradcheck_cli.oracles import numeric
    monkeypatch.setattr(numeric, "ROUNDING", numeric.ROUNDING * factor)
    assert rows(check("x = 0.7\nf = 1e7 + x * x\n", symbolic=False, complex_step=False))["x"].status == status_


@pytest.mark.parametrize("on, status_", [(True, "pass"), (False, "fail")])
def test_backprops_own_rounding_is_measured_for_each_gate(monkeypatch, on, status_):
    # a VJP whose last digits jitter with its input (1e-7 relative, past SYMBOLIC_RTOL): measured by
    # rerunning it 4 ulps away it is rounding; with the measurement off it would be a bug (a nudge 10x
    # larger measures the same: NOISE_STEP can only be pinned against being switched off)
    from gradcheck_cli.checking import pipeline
    def jittery(g, args, out, a):
        x = args[0]
        return (g * np.cos(x) * (1 + 1e-7 * np.sin(1e17 * x)),)
    _with_wrong(monkeypatch, "sin", jittery)
    if not on:
        monkeypatch.setattr(pipeline, "NOISE_STEP", 0.0)
    r = check("x = 0.7\nf = sin(x)\n")
    assert rows(r)["x"].status == status_ and r.gates[0].status == status_


@pytest.mark.parametrize("gap, factor, judged", [
    ("3e-10", 1, "fail"), ("3e-10", 0.1, "kink"),   # within TIE·h of the tie: on it, so the sum must hold
    ("3e-9", 1, "kink"), ("3e-9", 10, "fail"),      # farther: near a kink only, each slope judged alone
])
def test_tie_decides_when_a_near_tie_is_on_the_kink(monkeypatch, gap, factor, judged):
    # the whole gradient to both elements of a max: on a tie (the branch still switches at ±TIE·h) their
    # sum (2) must equal the slope of moving them together (1), which fails; a near tie is only a kink
    from gradcheck_cli.oracles import numeric
    monkeypatch.setattr(numeric, "TIE", numeric.TIE * factor)
    r = check(f"gate m(a, b) = max(a, b)\n  da = dout\n  db = dout\nb = 0.5\na = b + {gap}\nf = m(a, b)\n",
              symbolic=False)
    assert r.gates[1].status == judged


def test_leaves_the_output_does_not_use_are_one_warning_and_never_differenced(monkeypatch):
    from gradcheck_cli.oracles import numeric
    seen = []
    real = numeric.differentiate
    monkeypatch.setattr(numeric, "differentiate", lambda runner, targets, *a, **k: seen.extend(t.id for t in targets)
                        or real(runner, targets, *a, **k))
    src = "\n".join(f"v{i} = {i}" for i in range(8)) + "\nx = 3\nf = x * x\n"
    r = check(src)
    assert r.passed and len(r.warnings) == 1
    message, line, col = r.warnings[0]
    assert message.startswith("not used by the output 'f': v0, v1, v2, v3, v4 and 3 more") and (line, col) == (1, 1)
    unused = {n.node_id for n in r.nodes if n.name.startswith("v")}
    assert unused and not unused & set(seen)


@pytest.mark.parametrize("n, named", [(7_000, True), (7_200, False)])
def test_a_gate_alone_is_rechecked_element_by_element_up_to_its_policys_work(monkeypatch, n, named):
    # the gate policy's recheck_work (4·10⁸: 4·inputs·(inputs + outputs) ≤ it, ~7,070 inputs of an
    # elementwise gate) held at its value: just inside, the failed projection is redone element by
    # element (the note no longer says projections); just past, the row fails unnamed
    _with_wrong(monkeypatch, "tanh", _tanh_wrong_at_element_2)
    r = check(f"x = randn({n})\nf = sum(tanh(x))", symbolic=False, budget=8)
    gate = next(g for g in r.gates if g.gate == "tanh")
    assert gate.status == "fail"
    assert ("random projections" not in (gate.note or "")) == named


def test_a_gates_upstream_is_its_streams_draw_each_time_and_the_callers_own():
    # small upstreams are drawn once per process and copied after: each call still gets the stream's
    # numbers (numpy's generator is the oracle), in an array of its own that it may change
    from types import SimpleNamespace

    from gradcheck_cli.checking.gatecheck import KEPT_SIZE, upstream
    from gradcheck_cli.core.settings import Settings
    from gradcheck_cli.core.streams import Stream, stream
    for seed, point, nid, shape in [(0, 1, 3, ()), (7, 2, 3, (2, 3)), (0, 1, 4, (KEPT_SIZE + 1,)), (0, 1, 3, (1,))]:
        node = SimpleNamespace(id=nid, shape=shape)
        want = stream(seed, Stream.GATE_CHECK, point, nid).standard_normal(shape)
        first = upstream(Settings(seed=seed), point, node)
        assert first.shape == shape and np.array_equal(first, want) and first.flags.writeable
        first += 1.0
        again = upstream(Settings(seed=seed), point, node)
        assert np.array_equal(again, want) and again.flags.writeable
