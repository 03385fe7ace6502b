"""A graph's node as a target of the check step (`checking.targets`): its chain rules at kinks are
computed once for the whole graph, when a row first asks, and each node gets its own (out, n) row."""

import numpy as np

from gradcheck_cli.checking import pipeline, targets, verdict
from gradcheck_cli.core.settings import Settings
from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff, numeric, runners, subgradients


def graph_at_a_kink():
    graph = load("x = [0.0, 2.0]\nh = relu(x)\nf = sum(3 * h)", "<t>", None, 0, False)
    values = autodiff.forward(graph)
    return graph, values, autodiff.backward(graph, values, {})


def test_chain_rules_are_computed_once_for_the_graph_and_given_per_node(monkeypatch):
    graph, values, _ = graph_at_a_kink()
    computed = []
    real = subgradients.references
    monkeypatch.setattr(subgradients, "references", lambda compute: computed.append(1) or real(compute))
    rules = targets.ChainRules(graph, values, np.ones((1,)))
    x, h = (graph.nodes[i] for i in (0, 1))
    assert computed == []  # nothing until a row asks
    at_x, at_h = rules.of(x.id), rules.of(h.id)
    assert computed == [1] and len(at_x) == len(subgradients.CONVENTIONS)
    by_name = dict(at_x)
    np.testing.assert_array_equal(by_name["the left slope at every kink (relu′(0) = 0; a tie to its first element)"], [[0.0, 3.0]])
    np.testing.assert_array_equal(by_name["the right slope at every kink (relu′(0) = 1; a tie to its first element)"], [[3.0, 3.0]])
    assert all(np.shape(a) == (1, 2) for _, a in at_h)


def test_a_graph_node_whose_backprop_is_a_valid_chain_rule_at_the_kink_is_a_kink_not_a_failure():
    # relu(x) − 2·relu(−x) at 0: one-sided slopes 2 and 1; relu′(0) = 0 everywhere gives 0, outside them
    graph = load("x = [0.0, 1.5]\nf = sum(relu(x) - 2 * relu(-x))", "<t>", None, 0, False)
    values = autodiff.forward(graph)
    x = next(n for n in graph.nodes if n.name == "x")
    runner = runners.GraphRunner(graph, values)
    elements = numeric.Target(x.id, np.ravel(values[x.id]))
    node = targets.GraphNode(runner=runner, elements=elements, backprop=np.array([[0.0, 1.0]]),
                             chain_rules=targets.ChainRules(graph, values, np.ones((1,))))
    assert node.rerun(1e-15) is None and node.explain is not None
    j = verdict.summarize(pipeline.compare(node, Settings(), pipeline.POLICIES["graph"]).evidence)
    assert j.status == "kink" and "relu′(0) = 0" in j.note
    wrong = targets.GraphNode(runner=runner, elements=elements, backprop=np.array([[0.5, 1.0]]),  # no chain rule
                              chain_rules=targets.ChainRules(graph, values, np.ones((1,))))
    assert verdict.summarize(pipeline.compare(wrong, Settings(), pipeline.POLICIES["graph"]).evidence).status == "fail"
