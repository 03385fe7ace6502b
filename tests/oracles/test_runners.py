"""`oracles.runners` (and the batching of `oracles.batches`) as units: a runner's rows are the
function evaluated at the perturbed values, computed here in closed form; batched rows are the
rows run one at a time; a branch switch is flagged exactly where a value crosses a kink."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff, batches, runners
from gradcheck_cli.oracles.batches import Probe, Rows, run_rows
from gradcheck_cli.oracles.numeric import Target

E = np.exp(-2.0)


def graph_of(text):
    graph = load(text, "t.grad", {}, 0, False)
    return graph, autodiff.forward(graph)


def probe(node, flat, delta):
    """One row per (element, delta), in order."""
    return Probe(node, np.arange(len(flat)), np.asarray(flat), np.asarray(delta, dtype=float))


def test_graph_runner_rows_are_the_function_at_the_perturbed_leaves():
    graph, values = graph_of("x = 1.5\ny = -2\nf = x * exp(y)")
    runner = runners.GraphRunner(graph, values)
    assert runner.centre == pytest.approx(1.5 * E)
    x, y = graph.names["x"], graph.names["y"]
    probes = [Probe(x, np.array([0, 1]), np.array([0, 0]), np.array([0.25, -1.0])),
              Probe(y, np.array([2, 3]), np.array([0, 0]), np.array([0.5, 3.0]))]
    out, switched = runner.run(probes, 4)
    expected = [1.75 * E, 0.5 * E, 1.5 * np.exp(-1.5), 1.5 * np.exp(1.0)]
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-15)
    assert not switched.any()
    # and the graph's own forward pass at those leaves agrees
    assert out[3, 0] == pytest.approx(autodiff.forward(graph, {y: np.array(1.0)})[graph.output], rel=1e-15)


def test_graph_runner_nudges_an_intermediate_node_and_the_nodes_after_it_see_the_nudge():
    graph, values = graph_of("x = 1.5\ny = -2\ne = exp(y)\nf = x * e")
    runner = runners.GraphRunner(graph, values)
    ey = graph.names["e"]
    out, _ = runner.run([probe(ey, [0, 0], [0.125, -E])], 2)
    np.testing.assert_allclose(out[:, 0], [1.5 * (E + 0.125), 0.0], atol=1e-16)


def test_graph_runner_weights_contract_a_vector_output():
    graph, values = graph_of("x = [1, -2, 3]\nf = x * x")
    w = np.array([1.0, 0.5, -2.0])
    plain, weighted = runners.GraphRunner(graph, values), runners.GraphRunner(graph, values, w)
    x = np.array([1.0, -2.0, 3.0])
    assert weighted.centre == pytest.approx(w @ x ** 2) and weighted.out_size == 1 and plain.out_size == 3
    out, _ = plain.run([probe(0, [1, 2], [2.0, -3.0])], 2)
    np.testing.assert_array_equal(out, [[1.0, 0.0, 9.0], [1.0, 4.0, 0.0]])
    out, _ = weighted.run([probe(0, [1, 2], [2.0, -3.0])], 2)
    np.testing.assert_allclose(out[:, 0], [1 + 0 - 18, 1 + 2 + 0])


def test_dense_rows_move_every_element_at_once():
    graph, values = graph_of("x = [1, -2, 3]\nf = sum(x * x)")
    runner = runners.GraphRunner(graph, values)
    delta = np.array([[1.0, 1.0, 1.0], [-1.0, 2.0, 0.0]])
    out, _ = runner.run([Probe(0, np.arange(2), None, delta)], 2)
    np.testing.assert_array_equal(out[:, 0], [4 + 1 + 16, 0 + 0 + 9])


def test_a_branch_switch_is_flagged_only_on_rows_that_cross_the_kink():
    graph, values = graph_of("x = [0.5, 2, -3]\nf = sum(abs(x))")
    runner = runners.GraphRunner(graph, values)
    out, switched = runner.run([probe(0, [0, 0, 1, 2, 2], [-1.0, 0.25, -1.0, 2.0, 4.0])], 5)
    np.testing.assert_array_equal(out[:, 0], [0.5 + 5, 0.75 + 5, 5.5 - 1 + 0, 2.5 + 1, 2.5 + 1])
    np.testing.assert_array_equal(switched, [True, False, False, False, True])


def test_gate_runner_is_one_gate_alone_weighted_as_a_function_of_its_inputs():
    graph, values = graph_of("x = 1.5\ny = -2\nf = x * exp(y)")
    node = graph.nodes[graph.output]
    args = [values[i] for i in node.inputs]
    runner = runners.GateRunner(node, args, np.array(0.5), [0, 1])
    np.testing.assert_allclose(runner.x, [1.5, E])
    assert runner.centre == pytest.approx(0.5 * 1.5 * E)
    out, switched = runner.run([probe(node.id, [0, 1, 1], [1.0, 1.0, -E])], 3)
    np.testing.assert_allclose(out[:, 0], [0.5 * 2.5 * E, 0.5 * 1.5 * (E + 1), 0.0], atol=1e-16)
    assert not switched.any()
    only_second = runners.GateRunner(node, args, np.array(0.5), [1])  # the first input held at the point
    out, _ = only_second.run([probe(node.id, [0], [1.0])], 1)
    assert out[0, 0] == pytest.approx(0.5 * 1.5 * (E + 1))


def test_gate_runner_flags_a_kink_gate_crossing_its_branch():
    graph, values = graph_of("x = [1, -2, 0.5]\nw = [1, 2, 3]\nr = relu(x)\nf = sum(r * w)")
    node = graph.nodes[graph.names["r"]]
    runner = runners.GateRunner(node, [values[node.inputs[0]]], np.array([1.0, 2.0, 3.0]), [0])
    out, switched = runner.run([probe(node.id, [1, 1, 2], [3.0, 1.0, -0.25])], 3)
    np.testing.assert_array_equal(out[:, 0], [1 + 2 + 1.5, 1 + 0 + 1.5, 1 + 0 + 0.75])
    np.testing.assert_array_equal(switched, [True, False, False])


def one_at_a_time(runner, rows):
    """Each row of `rows` run alone."""
    out = {}
    for t, elems, deltas in rows.items:
        out[t.id] = np.concatenate([runner.run([Probe(t.id, np.array([0]), e, d)], 1)[0] for e, d in zip(elems, deltas)])
    return out


def test_rows_of_several_targets_batched_and_chunked_equal_each_row_alone(monkeypatch):
    graph, values = graph_of("x = [1, -2, 3]\ny = 0.5\nf = sum(sin(x) * exp(y))")
    runner = runners.GraphRunner(graph, values)
    x, y = graph.names["x"], graph.names["y"]
    rows = Rows()
    rows.add(Target(x, values[x]), [np.array([0]), np.array([2]), np.array([1, 2])],
             [np.array([0.1]), np.array([-0.2]), np.array([0.3, 0.3])])
    rows.add(Target(y, np.ravel(values[y])), [np.array([0]), np.array([0])], [np.array([1.0]), np.array([-1.0])])
    alone = one_at_a_time(runner, rows)
    expected = np.array([np.sin([1.1, -2, 3]).sum(), np.sin([1, -2, 2.8]).sum(), np.sin([1, -1.7, 3.3]).sum()])
    np.testing.assert_allclose(alone[x][:, 0], expected * np.exp(0.5), rtol=1e-14)
    np.testing.assert_allclose(alone[y][:, 0], np.sin([1, -2, 3]).sum() * np.exp([1.5, -0.5]), rtol=1e-14)
    calls = []
    run = runner.run
    runner.run = lambda probes, n_rows: calls.append(n_rows) or run(probes, n_rows)
    for chunk in (batches.CHUNK_ELEMENTS, 6):  # one batch; then 6 // width 3 = 2 rows per batch
        monkeypatch.setattr(batches, "CHUNK_ELEMENTS", chunk)
        calls.clear()
        batched = run_rows(runner, rows)
        assert calls == ([5] if chunk > 6 else [2, 2, 1])
        for t in (x, y):
            np.testing.assert_allclose(batched[t][0], alone[t], rtol=1e-15)
            assert not batched[t][1].any()


def test_allocate_differences_leaves_first_then_the_smallest_within_the_budget():
    sizes = {0: 50, 1: 5, 2: 30, 3: 10}
    assert runners.allocate(sizes, {0}, 70) == {0, 1, 3}
    assert runners.allocate(sizes, set(), 40) == {1, 3}
    assert runners.allocate(sizes, set(), 10, forced={2}) == {1, 2}


def test_a_batch_nudging_a_few_elements_visits_only_the_terms_that_read_them():
    # x[i] reads one element: a row nudging x[j] reaches the terms of x[j] alone, so a batch costs the
    # terms it nudges, not the comprehension; the values equal each row run alone
    from gradcheck_cli.core.meter import Meter
    n = 40
    graph, values = graph_of(f"x = randn({n})\nf = sum(stack(sin(x[i]) * x[i] for i in range({n})))")
    runner = runners.GraphRunner(graph, values)
    x = graph.names["x"]
    rows = Rows()
    rows.add(Target(x, values[x]), [np.array([3]), np.array([17]), np.array([3, 4])],
             [np.array([1e-3]), np.array([-2e-3]), np.array([1e-3, 1e-3])])
    alone = one_at_a_time(runner, rows)
    xs = values[x]
    for row, (elems, deltas) in enumerate(zip(*rows.items[0][1:])):
        moved = xs.copy()
        moved[elems] += deltas
        assert alone[x][row, 0] == pytest.approx(float(np.sum(np.sin(moved) * moved)), rel=1e-14)
    with Meter() as meter:
        together = run_rows(runner, rows)
    np.testing.assert_allclose(together[x][0], alone[x], rtol=1e-14)
    terms = 3 * 4  # x[3], x[4], x[17]: each term is x[i], sin, x[i], *
    assert meter.counts["sweep"] == 1 + terms + 2, meter.counts  # x, the terms, stack and sum
    assert meter.counts["call"] == terms + 2, meter.counts
