"""Property tests: random expressions agree three ways; random text never raises anything but our error."""


import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from gradcheck_cli import check
from gradcheck_cli.core.errors import GradcheckError

LEAVES = ["x", "y", "z"]
SMOOTH_UNARY = ["sin({})", "cos({})", "tanh({})", "sigmoid({})", "exp(0.3 * {})", "({})^2", "log(1 + ({})^2)",
                "sqrt(2 + ({})^2)", "-{}", "2 * {}", "{} + 1", "1 / (2 + ({})^2)"]
SMOOTH_BINARY = ["{} + {}", "{} - {}", "{} * {}", "({}) / (3 + ({})^2)", "0.5 * ({} + {})"]


def expressions(depth):
    leaf = st.sampled_from(LEAVES)
    if depth == 0:
        return leaf
    sub = expressions(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda f, a: f.format(a), st.sampled_from(SMOOTH_UNARY), sub),
        st.builds(lambda f, a, b: f.format(a, b), st.sampled_from(SMOOTH_BINARY), sub, sub),
    )


values = st.floats(min_value=-2, max_value=2, allow_nan=False).filter(lambda v: abs(v) > 1e-3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions(4), x=values, y=values, z=values)
def test_random_expressions_agree_three_ways(expr, x, y, z):
    src = f"x = {x!r}\ny = {y!r}\nz = {z!r}\nf = {expr} + 0 * (x + y + z)\n"
    report = check(src)
    assert report.error is None, report.error.format()
    for row in report.nodes:
        grad = np.asarray(row.grad, dtype=float)
        # backprop equals SymPy's exact derivative to float rounding
        assert row.symbolic is not None, row.note
        sym = np.asarray(row.symbolic, dtype=float)
        assert np.all(np.abs(grad - sym) <= 1e-11 * np.maximum(1, np.abs(sym))), (row.name, grad, sym)
        # and the finite difference within its tolerance (no false alarm on smooth functions)
        assert row.status in ("pass", "warn"), (row.name, row.status, row.note)
    assert report.passed


@settings(max_examples=40, deadline=None)
@given(expr=expressions(3), x=values, y=values, z=values)
def test_inline_and_file_forms_agree(expr, x, y, z):
    body = f"{expr} + 0 * (x + y + z)"
    a = check(f"x = {x!r}\ny = {y!r}\nz = {z!r}\nf = {body}", symbolic=False)
    b = check(body, at={"x": repr(x), "y": repr(y), "z": repr(z)}, free_names=True, symbolic=False)
    assert a.error is None and b.error is None
    grads = lambda r: {row.name: float(row.grad) for row in r.nodes if row.name in LEAVES}
    assert grads(a) == grads(b)
    assert float(a.value) == float(b.value)


ALPHABET = st.sampled_from(list("xyzf=+-*/^()[],.;#@<>0123456789 \n\t\r") +
                           ["exp", "max", "sum", "gate", "const", "output", "expect", "axis", ".T", "**",
                            "\ufeff", "é", "\x00", "1e999", "randn(", "  ", "lambda", "'", '"'])


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_random_text_never_raises(text):
    report = check(text, source="fuzz.grad")  # check() reports errors, it never raises
    if report.error is not None:
        assert isinstance(report.error, GradcheckError)
        formatted = report.error.format()
        assert formatted.startswith("fuzz.grad")
        assert ": error: " in formatted
    else:
        assert report.nodes


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_unicode_never_raises(text):
    report = check(text, free_names=True, symbolic=False)
    assert report.error is None or isinstance(report.error, GradcheckError)
