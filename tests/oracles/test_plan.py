"""The differences' plan (`oracles.plan`) as a unit, and the engine reading it: the rows it names are
the rows the engine runs, counted here by hand, so that a plan with other numbers runs other rows."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import batches, numeric, plan, runners
from gradcheck_cli.oracles.numeric import Target


class CountingRunner:
    """f(v) = Σ v², with every row it evaluates counted (its branches: none)."""

    def __init__(self, x):
        self.x = np.asarray(x, dtype=float)
        self.centre, self.terms, self.rows = float(self.x @ self.x), 0.0, 0

    def width(self, target_id) -> int:
        return self.x.size

    def work(self, target) -> int:
        return 0

    def run(self, probes, n_rows):
        rows = np.broadcast_to(self.x, (n_rows, self.x.size)).copy()
        for p in probes:
            if p.flat is None:
                rows[p.rows] += p.delta
            else:
                np.add.at(rows, (p.rows, p.flat), p.delta)
        self.rows += n_rows
        return (rows ** 2).sum(axis=1, keepdims=True), np.zeros(n_rows, dtype=bool)


def test_the_default_plan_is_a_centred_pair_of_steps_on_each_side_and_four_directions():
    p = plan.DifferencePlan()
    assert plan.SIDES == (1.0, -1.0) and plan.STEPS == (1.0, plan.REFINE) and p.projections == 4
    assert p.rows_per_element == 4 and p.direction_rows_per_step == 8 and p.complex_rows_per_element == 1
    assert p.rows(10, projected=False) == 40 and p.rows(10, projected=True) == 16
    assert p.offsets(0.5) == [0.5, -0.5, 0.25, -0.25]
    np.testing.assert_array_equal(np.stack(p.offsets(np.array([1.0, 4.0]))),
                                  [[1.0, 4.0], [-1.0, -4.0], [0.5, 2.0], [-0.5, -2.0]])


def test_a_plan_is_frozen_keyword_only_and_needs_a_direction():
    with pytest.raises(TypeError):
        plan.DifferencePlan(5)  # type: ignore[misc]
    with pytest.raises(ValueError, match="at least one direction"):
        plan.DifferencePlan(projections=0)
    with pytest.raises(AttributeError):
        plan.PLAN.projections = 5  # type: ignore[misc]


def test_an_element_takes_a_row_on_each_side():
    elems, deltas = batches.pm(np.array([3, 7]), np.array([0.1, 0.2]), 0.5)
    assert [int(e[0]) for e in elems] == [3, 3, 7, 7]
    np.testing.assert_array_equal(np.concatenate(deltas), [0.05, -0.05, 0.1, -0.1])


@pytest.mark.parametrize("directions", [1, 4, 9])
def test_the_engine_runs_the_plans_directions_and_at_most_its_rows(monkeypatch, directions):
    monkeypatch.setattr(plan, "PLAN", plan.DifferencePlan(projections=directions))
    x = np.linspace(-1.0, 1.0, 50)
    runner = CountingRunner(x)
    # no reference: every direction is in doubt, so both steps run for each
    result = numeric.differentiate(runner, [Target("x", x, projections=True)], 1e-4, 1e-5, 0.0)["x"]
    assert result.directions.shape == (directions, x.size)
    assert runner.rows == plan.PLAN.rows(x.size, projected=True) == 4 * directions
    np.testing.assert_allclose(result.projected[:, 0], result.directions @ (2 * x), rtol=1e-8)


def test_every_element_in_doubt_takes_the_plans_rows_per_element():
    x = np.array([0.5, -1.5, 2.0])
    runner = CountingRunner(x)
    result = numeric.differentiate(runner, [Target("x", x)], 1e-4, 1e-5, 0.0)["x"]  # no reference: all in doubt
    assert runner.rows == plan.PLAN.rows(x.size, projected=False) == 12
    np.testing.assert_allclose(result.value[0], 2 * x, rtol=1e-9)


def test_the_runners_count_a_targets_work_by_the_plans_rows(monkeypatch):
    graph = load("x = randn(6)\nf = sum(x * x)", "t.grad", {}, 0, False)
    x = graph.nodes[graph.names["x"]]
    whole, projected = Target(x.id, np.zeros(6)), Target(x.id, np.zeros(6), projections=True)
    before = runners.works(graph, [whole, projected])
    monkeypatch.setattr(plan, "PLAN", plan.DifferencePlan(projections=9))
    after = runners.works(graph, [whole, projected])
    assert after[0] == before[0] and after[1] * 4 == before[1] * 9  # only the projected target's rows moved
    assert before[0] * 4 == before[1] * 6  # 6 elements against 4 directions, the same rows for each
    node = graph.nodes[graph.output - 1]
    gate = runners.GateRunner(node, [np.ones(6), np.ones(6)], np.ones(6), [0, 1])
    assert gate.work(Target(node.id, gate.x, projections=True)) == 4 * 9 * (12 + 6)
    assert gate.work(Target(node.id, gate.x)) == 4 * 12 * (12 + 6)
