"""The cost model (cost.py) against the work meter (meter.py): every check finishes within the work
it predicted, or is refused before the work with the limit named. Shapes from the list of
inputs that ran for minutes inside the old limits, each small enough to run here and large enough
to be refused."""

from __future__ import annotations

import pytest

from gradcheck_cli import check
from gradcheck_cli.core.meter import Meter


def nested(k: int) -> str:
    src = "gate g0(t) = t * 1.0001\n" + "".join(f"gate g{i}(t) = g{i - 1}(g{i - 1}(t))\n" for i in range(1, k + 1))
    return src + f"x = 0.5\nf = g{k}(x)\n"


def nested_by_hand(k: int) -> str:
    src = "gate g0(t) = t * 1.0001\n  dt = 1.0001 * dout\n"
    src += "".join(f"gate g{i}(t) = g{i - 1}(g{i - 1}(t))\n" for i in range(1, k + 1))
    return src + f"x = 0.5\nf = g{k}(x)\n"


def leaves(n: int) -> str:
    return "".join(f"v{i} = {i % 10}\n" for i in range(n)) + "f = v1 * v2\n"


def chain(op: str, n: int) -> str:
    return "x = 0.7\nf = x" + f" {op} x" * n + "\n"


SMALL = {  # shape: a source that runs (in well under a second or two)
    "gates calling gates": nested(8),
    "gates calling gates, a hand-derived one inside": nested_by_hand(6),
    "unused leaves": leaves(2_000),
    "a deep + chain": chain("+", 1_000),
    "a deep ^ chain": "x = 0.7\nf = " + "(" * 300 + "x" + " ^ 1)" * 300 + "\n",
    "a wide elementwise function": "x = randn(50000)\nf = sum(tanh(x * x + x))\n",
    "a network": ("const X = randn(8, 16)\nW = 0.1 * randn(16, 4)\nb = randn(4)\n"
                  "L = mean(logsumexp(relu(X @ W + b), axis=1))\n"),
    "a comprehension": "x = randn(200)\nf = sum(stack(x[i] * x[i] for i in range(200)))\n",
    "conv and pool": ("x = randn(1, 2, 8, 8)\nw = randn(3, 2, 3, 3)\nb = randn(3)\n"
                      "f = sum(maxpool2d(relu(conv2d(x, w, b, pad=1)), size=2))\n"),
    "argmax": "x = randn(40)\nf = sum(x * argmax(x))\n",
    "add_at with repeats": "x = randn(3)\nf = sum(add_at(zeros(4), [1, 1, 1, 2, 1], x[[0, 1, 2, 0, 1]]) ** 2)\n",
    "a batched matmul": "A = randn(3, 4, 5)\nB = randn(5, 2)\nf = sum(A @ B)\n",
    "a hand-derived gate, wrong": ("gate sq(t) = t * t\n  dt = t * dout\nx = randn(30)\n"
                                   "f = sum(stack(sq(x[i]) for i in range(30)))\n"),
    "kinks at ties": "x = [1.0, 1.0, 0.0, -0.0]\nf = sum(relu(x)) + max(x)\n",
    # every element on a kink: the kink, pair and tie passes run for all of them
    "relu at zeros": "x = zeros(300)\nf = sum(relu(x))\n",
    "max over ties": "x = ones(200)\nf = max(x) + sum(abs(x - 1))\n",
    "a hand-derived gate at its kink": "gate r(t) = relu(t)\n  dt = dout * (t > 0)\nx = [0.0, 0, 1, -1]\nf = sum(r(x))\n",
    "abs of a zero matmul": "x = zeros(50, 50)\nf = sum(abs(x @ x))\n",
    "expectations": "x = 2.0\ny = x * x\nexpect dx = 2 * x\nf = y + x\n",
}


_metered: dict = {}  # (shape, symbolic) -> the report and the meter of checking SMALL[shape] so, in this process


def metered(shape: str, symbolic: bool):
    """SMALL[shape] checked under a meter: (report, meter), run once for the two tests below."""
    if (shape, symbolic) not in _metered:
        with Meter() as meter:
            report = check(SMALL[shape], symbolic=symbolic)
        _metered[shape, symbolic] = report, meter
    return _metered[shape, symbolic]


@pytest.mark.parametrize("shape", list(SMALL))
def test_a_check_does_no_more_work_than_it_predicted(shape):
    for symbolic in (True, False):
        report, meter = metered(shape, symbolic)
        assert report.error is None, report.error
        assert 0 < meter.units <= report.work.total, (shape, meter.counts, report.work.parts)


def test_the_prediction_is_not_wildly_above_the_work():
    # an upper bound that is 100× the work would refuse what runs in a second: held within 12× here
    for shape in ("a deep + chain", "gates calling gates", "a network", "unused leaves", "conv and pool"):
        report, meter = metered(shape, symbolic=False)
        assert report.work.total <= 12 * meter.units, (shape, meter.counts, report.work.parts)


LARGE = {  # shape: a source inside every other limit that the work limit refuses, before the work
    "gates calling gates": (nested(15), "GRADCHECK_MAX_WORK"),  # k = 14 took 45 s before the model, 10.6 s now
    "a deep + chain": (chain("+", 15_000), "GRADCHECK_MAX_WORK"),
    "a deep sin chain": ("x = 0.5\nf = " + "sin(" * 12_000 + "x" + ")" * 12_000 + "\n", "GRADCHECK_MAX_WORK"),
    "conv over a big image": ("x = randn(2, 3, 96, 96)\nw = randn(8, 3, 5, 5)\nb = randn(8)\n"
                              "f = sum(conv2d(x, w, b, pad=2))\n", "GRADCHECK_MAX_WORK"),
}


@pytest.mark.parametrize("shape", list(LARGE))
def test_work_past_the_limit_is_refused_before_it_starts(shape):
    source, named = LARGE[shape]
    with Meter() as meter:
        report = check(source, symbolic=False)
    assert report.error is not None and named in report.error.message, report.error
    assert "work units" in report.error.message and "most of it is" in report.error.message
    # refused before the work: nothing but building the graph (and no difference) was done
    assert set(meter.counts) <= {"build"}, meter.counts


def test_sympy_gets_what_is_left_of_the_work_limit(monkeypatch):
    from gradcheck_cli.checking import cost
    from gradcheck_cli.checking.cost import units
    from gradcheck_cli.core.meter import PRICES
    numeric = check(SMALL["a network"], symbolic=False).work.total
    limit = numeric + 1_000 * PRICES["sympy"]  # room for 1,000 SymPy nodes: it needs ~3,200
    monkeypatch.setattr(cost, "MAX_WORK", limit)
    with Meter() as meter:
        report = check(SMALL["a network"])
    assert report.error is None
    assert units(report.work.parts["symbolic"]) == 1_000 * PRICES["sympy"]
    assert meter.units <= limit
    assert any("past the SymPy work budget" in (r.note or "") for r in report.nodes)
    monkeypatch.setattr(cost, "MAX_WORK", 8_000_000_000)
    report = check(SMALL["a network"])
    assert not any("past the SymPy work budget" in (r.note or "") for r in report.nodes)


def test_calls_below_a_failing_row_are_checked_while_the_limit_allows(monkeypatch):
    from gradcheck_cli.checking import checker
    source = SMALL["a hand-derived gate, wrong"]
    report = check(source, symbolic=False)
    assert sum(1 for g in report.gates if g.status == "fail" and g.point == 1) == 30
    monkeypatch.setattr(checker, "LOCAL_CHECKS", 2)  # the calls are below failing rows: all still checked
    report = check(source, symbolic=False)
    assert sum(1 for g in report.gates if g.status == "fail" and g.point == 1) == 30
    from gradcheck_cli import load
    from gradcheck_cli.checking import cost, gatecheck
    from gradcheck_cli.core.settings import Settings
    graph = load(source)
    sq = next(n for n in graph.nodes if n.gate is not None and n.gate.name == "sq")
    one = cost.Calls(graph, lambda n: gatecheck.exhaustive_limit(n, Settings()), lambda n: True).units(sq)
    limit = report.work.total + int(3.5 * one)  # room for three calls the sample left out
    monkeypatch.setattr(cost, "MAX_WORK", limit)
    with Meter() as meter:
        report = check(source, symbolic=False)
    assert meter.units <= limit
    failed = [g.name for g in report.gates if g.status == "fail" and g.point == 1]
    # the calls nearest the output first (the sum and the stack take some of the room too)
    assert failed and set(failed) <= {f"sq(x[i]) (i={i})" for i in (27, 28, 29)}, failed
    assert any("past the work limit" in w[0] for w in report.warnings)
    # named where a call was checked (rows whose call was not checked name none: never a neighbour)
    assert (2, 3) in {r.culprit for r in report.nodes if r.status == "fail"} <= {(2, 3), None}


def test_a_python_layer_past_the_limit_is_refused_before_its_differences():
    import numpy as np

    from gradcheck_cli import check_function

    def outer(x):
        return np.einsum("...i,...j->...ij", x, x)

    def outer_vjp(g, x):
        return np.einsum("...ij,...j->...i", g, x) + np.einsum("...ij,...i->...j", g, x)
    with Meter() as meter:
        report = check_function(outer, outer_vjp, {"x": np.linspace(-1, 1, 1400)})
    assert report.error is not None and "GRADCHECK_MAX_WORK" in report.error.message, report.error
    assert "1,400 input elements, 1,960,000 outputs" in report.error.message
    assert meter.counts.get("python", 0) <= 4  # the output, the backward, the batching test: no differences
    with Meter() as meter:
        small = check_function(outer, outer_vjp, {"x": np.linspace(-1, 1, 40)})
    assert small.passed and meter.units <= small.work.total


def test_the_prices_are_the_benchmarks_fit():
    # the meter's prices convert counts into time; the suite cannot time (CI machines differ), so they
    # are pinned to what tests/benchmarks/bench_cost.py fitted on this project's machine (README):
    # within 2x of each fitted price, the unfitted ones (sweep: collinear with rows; python: your code)
    # kept between their neighbours
    from gradcheck_cli.core.meter import PRICES
    fitted = {"element": 1, "window": 13, "call": 4_846, "row": 145_839, "build": 31_880, "sympy": 3_787}
    for kind, price in fitted.items():
        assert price / 2 <= PRICES[kind] <= 2 * price, kind
    assert PRICES["element"] < PRICES["sweep"] < PRICES["call"] <= PRICES["python"] < PRICES["row"]


def test_a_failing_projection_rechecked_element_by_element_is_in_the_prediction():
    # x and w past the budget are differenced along projections; they fail, so each is differenced
    # again element by element (pipeline's recheck): 10.3e6 units, where the prediction without its
    # "rechecks" part was 6.3e6
    from gradcheck_cli.checking.cost import units
    src = "gate sq(t) = t * t\n  dt = t * dout\nx = randn(400)\nw = randn(400)\ny = sq(x * w)\nf = sum(tanh(y))\n"
    with Meter() as meter:
        report = check(src, budget=100, symbolic=False)
    assert {r.name: r.numeric_method for r in report.nodes}["x"] == "exhaustive"  # rechecked
    assert meter.units <= report.work.total
    assert meter.units > report.work.total - units(report.work.parts["rechecks"])


def test_the_check_plan_counts_the_passes_the_engine_makes(monkeypatch):
    from dataclasses import replace

    from gradcheck_cli.checking.cost import CheckPlan
    from gradcheck_cli.checking.pipeline import POLICIES
    from gradcheck_cli.oracles import plan, subgradients
    planned = CheckPlan.of()
    assert planned.differences is plan.PLAN and planned.graph is POLICIES["graph"] and planned.gate is POLICIES["gate"]
    # the point and six attempts at the second point (three scales, each moved by ~scale·(|v| + 1), then
    # in proportion to |v|); backprop, two rounding reruns, five chain rules
    assert (planned.forward_passes, planned.backward_passes, planned.gate_vjps) == (7, 8, 3)
    fewer = CheckPlan.of(replace(POLICIES["graph"], noise_signs=(1,), second_scales=(0.1,)))
    assert (fewer.forward_passes, fewer.backward_passes) == (3, 7)
    monkeypatch.setattr(subgradients, "CONVENTIONS", subgradients.CONVENTIONS[:2])
    assert CheckPlan.of().backward_passes == 1 + 2 + 2


def test_a_changed_plan_moves_the_prediction_and_the_metered_work_together(monkeypatch):
    from dataclasses import replace

    from gradcheck_cli.checking import checker
    from gradcheck_cli.oracles import plan
    src = "x = randn(300)\nw = randn(300)\nf = sum(tanh(x * w))\n"

    def run(**options):
        with Meter() as meter:
            report = check(src, symbolic=False, **options)
        assert report.error is None and meter.units <= report.work.total, (meter.counts, report.work.parts)
        return report, meter.units
    # x and w past the budget: differenced along the plan's directions, more of them in a larger plan
    four, four_metered = run(budget=10)
    monkeypatch.setattr(plan, "PLAN", plan.DifferencePlan(projections=12))
    twelve, twelve_metered = run(budget=10)
    assert {r.numeric_method for r in twelve.nodes if r.name in ("x", "w")} == {"projection (12 random directions)"}
    assert twelve_metered > four_metered and twelve.work.total - four.work.total >= twelve_metered - four_metered
    monkeypatch.setattr(plan, "PLAN", plan.DifferencePlan())
    # one more rounding rerun of backprop: the prediction and the meter each count one more backward pass
    before, before_metered = run()
    monkeypatch.setattr(checker, "POLICY", replace(checker.POLICY, noise_signs=(1, -1, 2)))
    after, after_metered = run()
    assert after_metered > before_metered
    assert after.work.total - before.work.total == after_metered - before_metered


def comprehension(n: int) -> str:
    return f"x = randn({n})\nf = sum(stack(sin(x[i]) * x[i] for i in range({n})))\n"


def balanced_tree(n: int) -> str:
    """About n gates: products of sines and tanhs paired up level by level over 10 leaves."""
    lines = [f"x{i} = {0.5 + i / 10}" for i in range(10)]
    names = [f"x{i % 10}" for i in range(n // 2)]
    k = 0
    while len(names) > 1:
        paired = [f"t{k + j}" for j in range(len(names) // 2)]
        lines += [f"{t} = {'sin' if (k + j) % 3 else 'tanh'}({a}) * {b}"
                  for j, (t, a, b) in enumerate(zip(paired, names[0::2], names[1::2]))]
        k += len(paired)
        names = paired + names[len(paired) * 2:]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("make", [comprehension, balanced_tree])
def test_the_work_grows_linearly_with_the_graph(make, monkeypatch):
    # work, not time: gate calls, nodes walked, nodes built and rows judged for n and 2n terms. Chunks of
    # as many rows at both sizes (a batch's width is the stacked vector's n) and no gate checked on its own
    # put both in the regime of large graphs, where each chunk used to walk every term of a comprehension.
    from gradcheck_cli.checking import checker, cost
    from gradcheck_cli.oracles import batches
    monkeypatch.setattr(checker, "ALL_GATES", 0)
    counts, predicted = [], []
    for n in (150, 300):
        monkeypatch.setattr(batches, "CHUNK_ELEMENTS", 40 * n)
        monkeypatch.setattr(cost, "CHUNK_ELEMENTS", 40 * n)
        with Meter() as meter:
            report = check(make(n), symbolic=False)
        assert report.error is None and report.passed, report.error
        assert meter.units <= report.work.total
        counts.append(meter.counts)
        total: dict = {}
        for part in report.work.parts.values():
            for kind, n in part.items():
                total[kind] = total.get(kind, 0) + n
        predicted.append(total)
    for kind in ("call", "sweep", "build", "row"):
        assert counts[1][kind] <= 2.2 * counts[0][kind], (kind, counts)
        assert predicted[1].get(kind, 0) <= 2.2 * predicted[0].get(kind, 0), (kind, predicted)
    assert counts[0]["call"] > 2 * 150  # every gate was evaluated, more than once
