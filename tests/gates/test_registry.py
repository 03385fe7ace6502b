"""The registry test: every gate's VJP against finite differences, its SymPy form against its
forward, and its forward on batched operands — so a new gate is tested with no new test code."""

import numpy as np
import pytest
import sympy

from gradcheck_cli import gates

CASES = [(g, ex) for g in gates.REGISTRY.values() for ex in g.examples]


def _ids(case):
    gate, ex = case
    return f"{gate.name}-{'x'.join(str(s) for s in ex.shapes)}-{ex.params}"


def _inputs(gate, ex, seed=0):
    rng = np.random.default_rng(seed)
    args = []
    for shape in ex.shapes:
        a = rng.uniform(ex.low, ex.high, size=shape)
        if ex.low < 0 < ex.high:  # keep away from 0 so kinks and poles are far
            a = np.where(np.abs(a) < 0.2, a + np.sign(a + 1e-9) * 0.3, a)
        args.append(np.asarray(a, dtype=float))
    shape, attrs = gate.infer([a.shape for a in args], {k: v for k, v in ex.params.items() if k != "c"})
    attrs = {**attrs, **({"c": ex.params["c"]} if "c" in ex.params else {})}
    return args, shape, attrs


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_vjp_matches_central_differences(case):
    gate, ex = case
    args, shape, attrs = _inputs(gate, ex)
    out = np.asarray(gate.forward(args, attrs))
    assert out.shape == tuple(shape)
    g = np.random.default_rng(1).standard_normal((2,) + out.shape)  # two rows of the Jacobian at once
    grads = gate.vjp(g, args, out, attrs)
    assert len(grads) == len(args)
    h = 1e-6
    for k, a in enumerate(args):
        got = np.broadcast_to(grads[k], (2,) + a.shape)
        want = np.zeros((2,) + a.shape)
        for idx in np.ndindex(*a.shape):
            plus = [x.copy() for x in args]
            minus = [x.copy() for x in args]
            plus[k][idx] += h
            minus[k][idx] -= h
            d = (np.asarray(gate.forward(plus, attrs)) - np.asarray(gate.forward(minus, attrs))) / (2 * h)
            want[(slice(None),) + idx] = (g * d).reshape(2, -1).sum(axis=1)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=f"{gate.name} input {k}")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_sympy_form_matches_forward(case):
    gate, ex = case
    args, shape, attrs = _inputs(gate, ex, seed=2)
    numbers = [np.asarray(np.frompyfunc(sympy.Float, 1, 1)(a), dtype=object) for a in args]
    expr = np.asarray(gate.sym(numbers, attrs), dtype=object)
    assert expr.shape == tuple(shape)
    got = np.asarray(np.frompyfunc(lambda e: float(sympy.N(e)), 1, 1)(expr), dtype=float)
    np.testing.assert_allclose(got, gate.forward(args, attrs), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_forward_is_batch_agnostic(case):
    """A leading batch axis on any operand gives the stacked unbatched results (the numeric oracle relies on it)."""
    gate, ex = case
    args, shape, attrs = _inputs(gate, ex, seed=3)
    for k in range(len(args)):
        stack = np.stack([args[k], args[k] * 1.1, args[k] * 0.9])
        batched = list(args)
        batched[k] = stack
        if gate.elementwise:  # autodiff pads batched operands of elementwise gates to the result's rank
            extra = len(shape) - args[k].ndim
            batched[k] = stack.reshape((3,) + (1,) * extra + args[k].shape)
        got = np.asarray(gate.forward(batched, attrs))
        for b in range(3):
            single = list(args)
            single[k] = stack[b]
            np.testing.assert_allclose(np.broadcast_to(got, (3,) + tuple(shape))[b],
                                       gate.forward(single, attrs), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("gate", list(gates.REGISTRY.values()), ids=lambda g: g.name)
def test_every_gate_is_documented(gate):
    assert gate.local and gate.doc and gate.routes
    assert gate.operator or gate.call or gate.const_forms, f"{gate.name} cannot be written in the language"


def test_kink_gates_declare_a_branch():
    for name in ("max", "min", "relu", "abs", "reduce_max"):
        assert gates.REGISTRY[name].branch is not None


def test_ties_split_the_gradient_evenly():
    g = np.ones((1,))
    for name in ("max", "min"):
        da, db = gates.REGISTRY[name].vjp(g, [np.array(2.0), np.array(2.0)], np.array(2.0), {})
        assert (da.item(), db.item()) == (0.5, 0.5)
    (d,) = gates.REGISTRY["relu"].vjp(g, [np.array(0.0)], np.array(0.0), {})
    assert d.item() == 0.5
    x = np.array([1.0, 3.0, 3.0])
    _, attrs = gates.REGISTRY["reduce_max"].infer([(3,)], {})
    (d,) = gates.REGISTRY["reduce_max"].vjp(np.ones((1,)), [x], np.array(3.0), attrs)
    np.testing.assert_array_equal(d, [[0, 0.5, 0.5]])


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_sympy_local_jacobian_matches_the_vjp(case):
    """The symbolic oracle's own path (symbolic.local_jacobian: SymPy's derivatives of the `sym` form,
    evaluated by the module's float tables) equals the registry VJP: a `sym` form using a function the
    oracle cannot evaluate fails here, not only in a user's check."""
    from gradcheck_cli.language import nodes
    from gradcheck_cli.oracles import symbolic
    from gradcheck_cli.language.graph import Node
    gate, ex = case
    args, shape, attrs = _inputs(gate, ex, seed=4)
    out = np.asarray(gate.forward(args, attrs))
    node = Node(id=10 ** 6 + next(i for i, c in enumerate(CASES) if c is case), name=gate.name, kind="gate", shape=tuple(shape), pos=nodes.Pos(1, 1, 0, 0),
                gate=gate, inputs=tuple(range(len(args))), attrs=attrs)
    jac = symbolic.local_jacobian(node, args, symbolic.Work(10 ** 8))
    u = np.random.default_rng(5).standard_normal((1,) + out.shape)
    grads = gate.vjp(u, args, out, attrs)
    for k, a in enumerate(args):
        value, _ = symbolic.pull_back(u.reshape(1, -1), np.abs(u.reshape(1, -1)), jac[k], int(np.size(a)))
        want = np.broadcast_to(grads[k], (1,) + a.shape).reshape(1, -1)
        np.testing.assert_allclose(value, want, rtol=1e-9, atol=1e-12, err_msg=f"{gate.name} input {k}")


COMPLEX_STEP = 1e-20  # the registry tests of the complex step (forward, and the VJP: second order)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_complex_forward_matches_the_real_forward_and_its_derivative(case):
    # the complex step's premise, gate by gate: f(x + i·h·e_j) has f(x) as its real part and
    # h·∂f/∂x_j as its imaginary part (kink gates follow the real part: exact away from their kinks)
    import warnings
    gate, ex = case
    args, shape, attrs = _inputs(gate, ex)
    out = np.asarray(gate.forward(args, attrs), dtype=float)
    g = np.random.default_rng(1).standard_normal(out.shape)
    grads = gate.vjp(g[None], args, out, attrs)
    for k, a in enumerate(args):
        want = np.broadcast_to(grads[k], (1,) + a.shape)[0]
        got = np.zeros(a.shape)
        for idx in np.ndindex(*a.shape):
            z = [x.astype(complex) for x in args]
            z[k][idx] += 1j * COMPLEX_STEP
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a cast that drops the imaginary part is an error here
                o = np.asarray(gate.forward_on(z, attrs))
            np.testing.assert_allclose(np.real(o), out, rtol=1e-14, atol=1e-15, err_msg=f"{gate.name}: real part")
            got[idx] = np.sum(g * np.imag(o)) / COMPLEX_STEP
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"{gate.name} input {k}")


def test_analytic_gates_have_no_kinks_and_kink_gates_are_not_analytic():
    kinked = {g.name for g in gates.REGISTRY.values() if g.branch is not None}
    analytic = {g.name for g in gates.REGISTRY.values() if g.analytic}
    assert not kinked & analytic  # norm too: at 0 its complex step is i·H/H = 1, not a derivative
    assert {"abs", "relu", "max", "min", "reduce_max", "maxpool2d", "sign", "argmax", "lt", "eq", "norm"} <= kinked - analytic
    assert {"exp", "matmul", "conv2d", "softmax", "logsumexp", "where", "add_at", "identity"} <= analytic


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_vjp_on_complex_operands_differentiates_itself(case):
    # forward-over-reverse's premise (second order, hvp.py), gate by gate: the VJP run on x + i·h·e_j
    # with upstream g + i·h·g2 has h·(∂VJP/∂x_j + VJP(g2)) as its imaginary part
    import warnings
    gate, ex = case
    args, shape, attrs = _inputs(gate, ex)
    out = np.asarray(gate.forward(args, attrs), dtype=float)
    rng = np.random.default_rng(1)
    g, g2 = rng.standard_normal((1,) + out.shape), rng.standard_normal((1,) + out.shape)
    linear = gate.vjp(g2, args, out, attrs)
    h = 1e-6
    for k, a in enumerate(args):
        for idx in list(np.ndindex(*a.shape))[:4]:
            z = [x.astype(complex) for x in args]
            z[k][idx] += 1j * COMPLEX_STEP
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = gate.vjp(g + 1j * COMPLEX_STEP * g2, z, np.asarray(gate.forward_on(z, attrs)), attrs)
            plus, minus = [x.copy() for x in args], [x.copy() for x in args]
            plus[k][idx] += h
            minus[k][idx] -= h
            up = gate.vjp(g, plus, np.asarray(gate.forward(plus, attrs)), attrs)
            down = gate.vjp(g, minus, np.asarray(gate.forward(minus, attrs)), attrs)
            for slot, (c, p, m, lin) in enumerate(zip(got, up, down, linear)):
                want = (np.asarray(p, dtype=float) - np.asarray(m, dtype=float)) / (2 * h) + np.asarray(lin, dtype=float)
                np.testing.assert_allclose(np.imag(c) / COMPLEX_STEP, np.broadcast_to(want, np.shape(c)), rtol=1e-5,
                                           atol=1e-6, err_msg=f"{gate.name} d{slot}/d{k}{idx}")
