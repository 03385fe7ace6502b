"""The call of a user gate is a Composite: its definition, its forward body, its backward, its locals
with d<local> lines, and what the reports show of it; a registry Gate is the other kind."""

import numpy as np
import pytest

from gradcheck_cli import gates
from gradcheck_cli.core.errors import BackwardError
from gradcheck_cli.gates.record import Gate, Operation
from gradcheck_cli.language.frontend import load
from gradcheck_cli.language.graph import Composite, Intermediate, applications

SIGMOID = """gate sig(t) = 1 / (1 + exp(-t))
  dt = dout * out * (1 - out)
x = 0.5
y = [1, -2]
f = sig(x) + sum(sig(y)) + sig(x * 2) * exp(x)
"""

STAGED = """gate square2(x) = 2 * h
  h = x * x
  dh = 2 * dout
  dx = dh * 2 * x
x = [1, 2]
f = sum(square2(x))
"""


def calls(graph, name):
    return [n for n in graph.nodes if n.gate is not None and n.gate.name == name]


def test_a_user_gate_call_carries_a_composite_and_a_built_in_call_a_registry_gate():
    graph = load(SIGMOID)
    sig = calls(graph, "sig")[0]
    assert isinstance(sig.gate, Composite) and not isinstance(sig.gate, Gate)
    assert sig.composite is sig.gate
    exp_node = next(n for n in graph.nodes if n.gate is not None and n.gate.name == "exp")
    assert isinstance(exp_node.gate, Gate) and exp_node.composite is None
    assert not hasattr(exp_node.gate, "instance")
    leaf = graph.node("x")
    assert leaf.gate is None and leaf.composite is None


def test_calls_at_the_same_shapes_share_one_composite_and_other_shapes_get_their_own():
    graph = load(SIGMOID)
    scalar = [n.gate for n in calls(graph, "sig") if n.shape == ()]
    vector = [n.gate for n in calls(graph, "sig") if n.shape == (2,)]
    assert len(scalar) == 2 and scalar[0] is scalar[1]
    assert len(vector) == 1 and vector[0] is not scalar[0]
    assert vector[0].shapes == ((2,),) and scalar[0].shapes == ((),)


def test_a_composite_holds_its_definition_body_and_backward():
    composite = calls(load(SIGMOID), "sig")[0].gate
    assert composite.name == "sig" and composite.params == ("t",)
    assert composite.definition.name == "sig" and list(composite.d_lines) == ["t"]
    assert composite.hand_derived and composite.backward is not None
    assert [n.name for n in composite.body.leaves()] == ["t"]
    assert [n.name for n in composite.backward.leaves()] == ["t", "out", "dout"]
    assert "dt" in composite.backward.names and not composite.failures and composite.intermediates == ()
    assert composite.display({}) == "sig"
    assert composite.local == "dt = dout * out * (1 - out)"
    assert composite.doc == "user gate sig(t) = 1 / (1 + exp(-t))"
    assert composite.routes == "by the d lines written for it"
    assert not composite.has_kinks and not composite.elementwise and composite.domain is None


def test_without_d_lines_it_has_no_backward_and_is_differentiated_through_its_body():
    graph = load("gate r(t) = max(t, 0) * 3\nx = [1, -1]\nf = sum(r(x))\n")
    composite = calls(graph, "r")[0].gate
    assert composite.backward is None and not composite.hand_derived and composite.backward_outputs() == []
    assert composite.local == "differentiated automatically through its body"
    assert composite.routes == "through the gates of its body"
    assert composite.has_kinks  # its body's max has one


def test_a_forward_local_with_a_d_line_is_a_typed_intermediate_and_the_d_lines_using_it_depend_on_it():
    composite = calls(load(STAGED), "square2")[0].gate
    (mid,) = composite.intermediates
    assert isinstance(mid, Intermediate)
    assert (mid.local, mid.line.name, mid.error) == ("h", "dh", None)
    assert mid.body_id == composite.body.names["h"] and mid.backward_id == composite.backward.names["dh"]
    assert composite.depends["dx"] == ["h"]
    assert composite.depends["dh"] == []


def test_a_d_line_of_the_wrong_shape_is_a_failure_of_its_parameter():
    text = "gate g(a) = sum(a)\n  da = sum(dout * a)\nx = [1, 2]\nf = g(x)\n"
    composite = calls(load(text), "g")[0].gate
    assert list(composite.failures) == ["a"]
    assert "da has shape () but a has shape (2,)" in composite.failures["a"].message
    assert composite.backward_outputs() == []
    with pytest.raises(BackwardError) as err:
        composite.gradients([], 1)
    assert np.isnan(err.value.grads[0]).all() and err.value.grads[0].shape == (1, 2)


def test_gradients_turn_the_d_lines_values_into_rows_per_parameter_and_refuse_non_finite_ones():
    composite = calls(load(SIGMOID), "sig")[0].gate
    (grad,) = composite.gradients([np.array(0.25)], 3)
    assert grad.shape == (3,) and np.all(grad == 0.25)
    with pytest.raises(BackwardError, match="dt is not finite"):
        composite.gradients([np.array(np.inf)], 1)


def test_a_composites_applications_count_its_bodies_and_nested_gates_multiply():
    text = ("gate inner(t) = exp(t) * t\ngate twice(t) = inner(t) + inner(2 * t)\n"
            "x = 0.5\nf = twice(x)\n")
    graph = load(text)
    outer = calls(graph, "twice")[0].gate
    inner = calls(outer.body, "inner")[0].gate
    assert applications(inner) == inner.cost == 2  # exp and *
    assert applications(outer) == outer.cost == 2 * inner.cost + 2  # two calls of inner, *2 and +
    assert applications(gates.functions("exp")[0]) == 1


def test_both_kinds_show_what_the_operation_protocol_asks():
    graph = load(SIGMOID)
    assert isinstance(calls(graph, "sig")[0].gate, Operation)
    assert isinstance(calls(graph, "exp")[0].gate, Operation)


def test_a_registry_gate_has_kinks_exactly_when_it_has_a_kink_test():
    graph = load("x = [1, -1]\ny = 2\nf = sum(max(x, 0) * exp(y))\n")
    by_name = {n.gate.name: n.gate for n in graph.nodes if n.gate is not None}
    for gate in by_name.values():
        assert gate.has_kinks == (gate.branch is not None)
    assert by_name["exp"].has_kinks is False and any(g.has_kinks for g in by_name.values())
