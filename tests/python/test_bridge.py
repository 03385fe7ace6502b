"""The framework bridge's skeleton (python/bridge.py), on a tiny fake framework of numpy arrays whose
functions carry their own backward: what torch and JAX supply is only a `Framework`'s few methods,
so the skeleton's calls, batching, splitting of several outputs, reference, error messages, rows'
lines and low-precision rows are tested here without either library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gradcheck_cli.core.settings import Settings
from gradcheck_cli.python import bridge
from gradcheck_cli.python.bridge import Arguments, Bridge, Pullback, UserCode, placed


@dataclass(frozen=True)
class Rule:
    """A function of numpy arrays with its own backward, `backward(*values, *cotangents)` -> one
    gradient per differentiated argument: what a Function or a custom_vjp is to the fake framework."""
    forward: Callable
    backward: Callable
    batches: bool = True  # can the fake framework's "vmap" run it?

    def __call__(self, *values):
        return self.forward(*values)


class Fake:
    """A `Framework` of numpy arrays: every floating-point ndarray is differentiated, a Rule's own
    backward is its VJP, and it records what it was asked to do."""

    word = "ndarray"

    def __init__(self):
        self.asked: list = []

    def differentiable(self, values):
        return [i for i, v in enumerate(values) if isinstance(v, np.ndarray) and v.dtype.kind == "f"]

    def to_numpy(self, value):
        return np.asarray(value, dtype=float)

    def dtype_name(self, value):
        return str(value.dtype)

    def evaluate(self, function, values, diff, arrays):
        self.asked.append("evaluate")
        result = function(*placed(values, diff, arrays))
        return [np.asarray(o, dtype=float) for o in (result if isinstance(result, tuple) else (result,))]

    def evaluate_rows(self, function, values, diff, arrays):
        self.asked.append("evaluate_rows")
        if not function.batches:
            raise ValueError("this function cannot be batched")
        return np.asarray(function(*placed(values, diff, arrays)), dtype=float).reshape(len(arrays[0]), -1)

    def pullback(self, function, values, diff, arrays, dtype):
        self.asked.append(f"pullback {dtype}")
        args = placed(values, diff, [np.asarray(a).astype(dtype) for a in arrays])
        result = function(*args)
        outs = result if isinstance(result, tuple) else (result,)

        def pull(cotangents):
            grads = function.backward(*args, *[c.astype(o.dtype) for c, o in zip(cotangents, outs)])
            return [None if g is None else np.asarray(g, dtype=float) for g in grads]
        return Pullback(shapes=[np.shape(o) for o in outs], pull=pull)

    def seeded_upstream(self, shapes):
        return [np.random.default_rng(5).standard_normal(s) for s in shapes]


def scaled(x, w, scale):
    return scale * x * w


def scaled_exact(x, w, scale, g):
    return g * w * scale, g * x * scale


def scaled_bwd(x, w, scale, g):
    dx = g * w * scale
    dw = g * x  # the scale forgotten
    return dx, dw


def through_float16(x, w, scale, g):
    dx = (g * w * scale).astype(np.float16).astype(g.dtype)
    dw = g * x * scale
    return dx, dw


def code(backward, *, forward=scaled, exact=scaled_exact, batches=True, reference=True) -> UserCode:
    rule = Rule(forward, backward, batches)
    return UserCode(name="scaled", call=rule, batched=rule, autodiff=Rule(forward, exact, batches),
                    reference=reference, forward=forward, backward=backward, parameters=("x", "w", "scale"))


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), 1) if text in line)


RNG = np.random.default_rng(3)
X, W = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))


def test_a_right_rule_passes_every_element_against_the_reference_and_a_scalar_passes_through():
    report = bridge.check(Fake(), code(scaled_exact), (X, W, 1.5), name=None, settings=Settings())
    assert report.error is None and report.passed and report.source == "scaled"
    assert [r.name for r in report.nodes] == ["x", "w"]  # the scale, a float, is not differentiated
    assert all(r.numeric_method.startswith("every element against autodiff") for r in report.nodes)
    assert report.gates and all(g.gate == "backward" for g in report.gates)  # float64 inputs: no low-precision rows


def test_a_wrong_rule_fails_at_the_line_that_assigns_the_wrong_gradient():
    report = bridge.check(Fake(), code(scaled_bwd), {"x": X, "w": W, "s": 1.5}, name="mine", settings=Settings())
    status = {r.name: (r.status, r.line) for r in report.nodes}
    assert report.source == "mine" and status["x"][0] == "pass"
    assert status["w"] == ("fail", line_of("dw = g * x  # the scale forgotten"))
    assert report.path.endswith("test_bridge.py")


def test_without_a_floating_argument_the_framework_word_is_in_the_error():
    report = bridge.check(Fake(), code(scaled_exact), (1, 2, 3), name=None, settings=Settings())
    assert report.error.message == "no floating-point ndarray among the inputs: nothing to differentiate"


def test_argument_names_are_the_parameters_then_input_k():
    assert bridge.argument_names(("x", "w"), 4) == ["x", "w", "input2", "input3"]
    given = bridge.arguments(Fake(), code(scaled_exact), (X, 2, W))
    assert given == Arguments(values=[X, 2, W], names=["x", "w", "scale"], diff=[0, 2])


def bridge_of(backward=scaled_exact, **options) -> tuple:
    fake = Fake()
    given = bridge.arguments(fake, code(backward, **options), (X, W, 1.5))
    return fake, Bridge(framework=fake, code=code(backward, **options), given=given)


def test_rows_are_batched_by_the_framework_or_else_called_one_by_one():
    rows = [np.stack([X, X + 1]), np.stack([W, 2 * W])]
    expected = np.stack([scaled(X, W, 1.5), scaled(X + 1, 2 * W, 1.5)])
    for batches in (True, False):
        fake, b = bridge_of(batches=batches)
        single = b.forward([X, W])  # the first call at one point finds the output's shape
        assert np.array_equal(single, scaled(X, W, 1.5)) and b.shapes == [(3, 4)]
        assert np.array_equal(b.forward(rows), expected)
        assert b.vectorises is batches
        b.forward(rows)  # a framework that could not batch it is not asked again
        assert fake.asked.count("evaluate_rows") == (2 if batches else 1)


def test_several_outputs_are_one_flat_output_and_each_gets_its_part_of_the_upstream():
    def two(x, w, scale):
        return x * w, scale * x

    def two_bwd(x, w, scale, g1, g2):
        assert g1.shape == (3, 4) and g2.shape == (3, 4)
        return g1 * w + scale * g2, g1 * x
    _, b = bridge_of()
    b = Bridge(framework=b.framework, code=code(two_bwd, forward=two, exact=two_bwd), given=b.given)
    out = b.forward([X, W])
    assert out.shape == (24,) and np.array_equal(out, np.concatenate([(X * W).ravel(), (1.5 * X).ravel()]))
    dout = np.arange(24.0)
    dx, dw = b.backward(dout, [X, W])
    g1, g2 = dout[:12].reshape(3, 4), dout[12:].reshape(3, 4)
    assert np.allclose(dx, g1 * W + 1.5 * g2) and np.allclose(dw, g1 * X)


def test_the_reference_fills_an_unused_argument_with_zeros_and_is_none_without_one():
    def ignores_w(x, w, scale, g):
        return g * scale, None
    _, b = bridge_of(exact=ignores_w)
    dx, dw = b.reference(np.ones((3, 4)), [X, W])
    assert np.array_equal(dx, np.full((3, 4), 1.5)) and np.array_equal(dw, np.zeros((3, 4)))
    assert b.backward(np.ones((3, 4)), [X, W])[1] is not None  # the rule's own: not through `exact`
    _, without = bridge_of(reference=False)
    assert without.reference(np.ones((3, 4)), [X, W]) is None


def test_float32_inputs_get_a_row_each_and_a_backward_through_float16_fails_its_row():
    x32, w32 = X.astype(np.float32), W.astype(np.float32)
    ok = bridge.check(Fake(), code(scaled_exact), (x32, w32, 1.5), name=None, settings=Settings())
    low = [(g.input, g.status) for g in ok.gates if g.gate == "float32"]
    assert ok.passed and low == [("x", "pass"), ("w", "pass")]
    fake = Fake()
    bad = bridge.check(fake, code(through_float16), (x32, w32, 1.5), name=None, settings=Settings())
    low = {g.input: (g.status, g.line) for g in bad.gates if g.gate == "float32"}
    assert low == {"x": ("fail", line_of("dx = (g * w * scale).astype(np.float16)")), "w": ("pass", low["w"][1])}
    assert fake.asked[-3:] == ["pullback float64", "pullback float32", "pullback float32"]


def test_seeded_gradients_are_none_when_the_function_raises_or_returns_none():
    def raises(x, w, scale, g):
        raise RuntimeError("no")

    def forgets(x, w, scale, g):
        return g * w, None
    fake = Fake()
    given = bridge.arguments(fake, code(scaled_exact), (X, W, 1.5))
    assert bridge.seeded_gradients(fake, Rule(scaled, raises), given, "float32") is None
    assert bridge.seeded_gradients(fake, Rule(scaled, forgets), given, "float32") is None
    grads = bridge.seeded_gradients(fake, Rule(scaled, scaled_exact), given, "float64")
    g = np.random.default_rng(5).standard_normal((3, 4))
    assert np.allclose(grads[0], g * W * 1.5) and np.allclose(grads[1], g * X * 1.5)
