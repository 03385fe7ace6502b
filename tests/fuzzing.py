"""A grammar-aware generator of `.grad` programs, valid and broken, for the fuzz tests and the
fuzz campaign (tests/benchmarks/fuzz_campaign.py)."""

import numpy as np
from hypothesis import strategies as st

NAMES = ["x", "y", "z", "W", "b", "h", "t", "q"]
UNARY = ["exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "sum", "mean", "max",
         "softmax", "logsumexp", "norm"]
BINARY_FUNCS = ["max", "min", "dot", "outer", "concatenate", "stack"]
INDICES = ["0", "-1", "1:", "::-1", ":, 0", "None", "0, 0", "1.5", "arange(2)", "[0, 0, 1]", "5", "::0", "x", "2:1"]
OPERATORS = ["+", "-", "*", "/", "@", "^", "**", "<", ">", "==", ">="]
SIZES = ["0", "1", "2", "3", "-1", "1.5", "1e200", "1e6", "40000"]
NOISE = ["(", ")", "[", "]", ",", ";", "=", "#", "\n", "  ", "\t", ".", ".T", "'", "$", "\x1b", "\udcff",
         "gate", "expect", "const", "output", "lambda", "import", "\u00e9", "[link=x]", "0.0e400", "9" * 400]


def _number(draw):
    return draw(st.sampled_from(["0", "1", "-1", "2.5", "1e-9", "1e8", "0.0e400", "3", "-0.5", "1e308"]))


def _value(draw, depth=0):
    kind = draw(st.integers(0, 5 if depth < 3 else 1))
    if kind <= 1:
        return _number(draw)
    if kind == 2:
        n = draw(st.integers(1, 3))
        return "[" + ", ".join(_value(draw, depth + 1) for _ in range(n)) + "]"
    if kind == 3:
        func = draw(st.sampled_from(["randn", "rand", "zeros", "ones", "eye"]))
        args = draw(st.lists(st.sampled_from(SIZES[:6] + SIZES[6:]), min_size=0, max_size=3))
        return f"{func}({', '.join(args)})"
    if kind == 4:
        return f"{_number(draw)} * {_value(draw, depth + 1)}"
    return "[" * 9 + "1" + "]" * 9


def _expr(draw, names, depth=0):
    kind = draw(st.integers(0, 6 if depth < 4 else 1))
    if kind == 0 or not names:
        return _number(draw)
    if kind == 1:
        return draw(st.sampled_from(names))
    if kind == 2:
        return f"{draw(st.sampled_from(UNARY))}({_expr(draw, names, depth + 1)})"
    if kind == 3:
        op = draw(st.sampled_from(OPERATORS))
        return f"({_expr(draw, names, depth + 1)} {op} {_expr(draw, names, depth + 1)})"
    if kind == 4:
        f = draw(st.sampled_from(BINARY_FUNCS))
        return f"{f}({_expr(draw, names, depth + 1)}, {_expr(draw, names, depth + 1)})"
    if kind == 5:
        return f"-{_expr(draw, names, depth + 1)}"
    shape_kind = draw(st.integers(0, 7))
    inner = _expr(draw, names, depth + 1)
    if shape_kind == 0:
        return f"{inner}[{draw(st.sampled_from(INDICES))}]"
    if shape_kind == 1:
        return f"reshape({inner}, {draw(st.sampled_from(['-1', '2, -1', '[3, 2]', '0', 'x.shape[0], -1']))})"
    if shape_kind == 2:
        return f"where({inner} > 0, {inner}, {_expr(draw, names, depth + 1)})"
    if shape_kind == 3:
        return f"sum({inner} * {draw(st.sampled_from(['i', '2']))} for i in range({draw(st.sampled_from(['3', '0', '1.5', '20000']))}))"
    if shape_kind == 4:
        return f"{draw(st.sampled_from(['pad', 'flip', 'transpose', 'argmax', 'sign']))}({inner}{draw(st.sampled_from(['', ', 1', ', [1, 0]', ', -1']))})"
    if shape_kind == 5:
        return f"conv2d({inner}, {inner}, {inner}, stride={draw(st.sampled_from(['1', '2', '0']))}, pad=1)"
    if shape_kind == 6:
        return f"maxpool2d({inner}{draw(st.sampled_from(['', ', size=2', ', size=3, stride=1']))})"
    axis = draw(st.sampled_from(["0", "1", "-1", "5", "x"]))
    return f"sum({inner}, axis={axis})"


@st.composite
def programs(draw):
    """A program: leaves, a gate (sometimes with d lines), computed nodes, expects; sometimes broken."""
    lines, names = [], []
    if draw(st.booleans()):
        body = ["  dt = dout * " + _expr(draw, ["t", "out"], 2)] if draw(st.booleans()) else []
        if draw(st.booleans()):
            body.insert(0, "  u = " + _expr(draw, ["t"], 2))
        lines += ["gate g(t) = " + _expr(draw, ["t"] + (["u"] if any("u =" in b for b in body) else []), 1)] + body
        if draw(st.booleans()):  # gates calling gates, sometimes doubling (nested work multiplies)
            lines.append("gate g2(t) = " + draw(st.sampled_from(["g(g(t))", "g(t) * t", "g(t) + g(2 * t)"])))
    for name in draw(st.lists(st.sampled_from(NAMES[:4]), min_size=1, max_size=3, unique=True)):
        prefix = "const " if draw(st.integers(0, 5)) == 0 else ""
        lines.append(f"{prefix}{name} = {_value(draw)}")
        names.append(name)
    callable_ = names + (["g(" + names[0] + ")"] if lines[0].startswith("gate") else [])
    if any(line.startswith("gate g2") for line in lines):
        callable_.append("g2(" + names[0] + ")")
    for name in draw(st.lists(st.sampled_from(NAMES[4:]), min_size=1, max_size=3, unique=True)):
        lines.append(f"{name} = {_expr(draw, callable_)}")
        names.append(name)
        callable_.append(name)
    if draw(st.booleans()):
        lines.append(f"expect d{draw(st.sampled_from(names))} = {_expr(draw, names, 3)}")
    if draw(st.integers(0, 3)) == 0:
        lines.append(f"output {draw(st.sampled_from(names + ['nope']))}")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 2)) == 0:  # break it: insert noise somewhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(NOISE)) + text[at:]
    return text


def check_in_every_format(text: str):
    """Check `text` and render it in every format, asserting each is well formed; the report.

    Raises on anything a user must never see: an exception other than GradcheckError, JSON that
    does not parse, JUnit that is not XML."""
    from gradcheck_cli import check
    from gradcheck_cli.core.errors import GradcheckError

    from gradcheck_cli.core.meter import Meter

    with Meter() as meter:
        report = check(text, source="fuzz.grad")  # never raises: bad input is in report.error
    assert report.error is None or isinstance(report.error, GradcheckError)
    if report.work is not None:  # the cost model is an upper bound on the work the check did
        assert meter.units <= report.work.total, (meter.counts, report.work.parts)
    if report.error is not None:
        assert report.error.format().startswith("fuzz.grad")
    return _render_every_format(report)


def _render_every_format(report):
    """Render a report in every format, asserting each is well formed (JSON parses, JUnit is XML)."""
    import json
    import xml.etree.ElementTree as ET
    from io import StringIO

    from rich.console import Console

    from gradcheck_cli.render import render
    from gradcheck_cli.render.table import print_table
    from gradcheck_cli.core.report import RunReport

    run = RunReport([report])
    json.loads(render(run, "json"))
    ET.fromstring(render(run, "junit"))
    render(run, "github")
    render(run, "markdown")
    print_table(run, Console(file=StringIO(), width=80))
    return report


PY_FORWARDS = {  # name -> (forward, its right VJP's local derivative); the bridge's inputs are numpy code
    "tanh": (np.tanh, lambda x, y: 1 - y ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x, y: (x > 0) * 1.0),
    "abs": (np.abs, lambda x, y: np.sign(x)),
    "square": (lambda x: x * x, lambda x, y: 2 * x),
    "max_row": (lambda x: np.max(x, axis=-1, keepdims=True) + 0 * x, None),
    "exp": (np.exp, lambda x, y: y),
}


@st.composite
def python_layers(draw):
    """A Python forward and VJP pair for the bridge (`check_function`): right or wrong, at integer or
    random inputs (ties and exact zeros included), of odd shapes."""
    name = draw(st.sampled_from(sorted(PY_FORWARDS)))
    forward, local = PY_FORWARDS[name]
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    integer = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=shape).astype(float) if integer else rng.standard_normal(shape)
    slip = draw(st.sampled_from([None, "scale", "forget_dout", "shape", "raise", "nan"]))

    def vjp(dout, x):
        y = forward(x)
        if local is not None:
            g = dout * local(x, y)
        else:  # the row's max, broadcast back: each row's upstream summed, split evenly over its ties
            hit = x == np.max(x, axis=-1, keepdims=True)
            g = hit * np.sum(dout, axis=-1, keepdims=True) / hit.sum(axis=-1, keepdims=True)
        if slip == "scale":
            g = 1.5 * g
        elif slip == "forget_dout":
            g = g / np.where(dout == 0, 1, dout)
        elif slip == "shape":
            g = np.ravel(g)[:-1] if np.size(g) > 1 else np.zeros(3)
        elif slip == "raise":
            raise ValueError("a bug in the backward")
        elif slip == "nan":
            g = g * np.nan
        return g
    return name, forward, vjp, x, slip


def check_layer_in_every_format(layer):
    """check_function on a generated pair, rendered in every format; raises on what a user must never see."""
    from gradcheck_cli import check_function

    from gradcheck_cli.core.meter import Meter

    name, forward, vjp, x, slip = layer
    with Meter() as meter:
        report = _render_every_format(check_function(forward, vjp, {"x": x}, name=name))
    if report.work is not None:  # the cost model is an upper bound on the work the check did
        assert meter.units <= report.work.total, (meter.counts, report.work.parts)
    if report.error is None:
        if slip in ("raise", "nan", "shape"):
            assert not report.passed, (name, slip)  # a backward that raises, or returns nan or the wrong shape
        elif slip is None:
            assert report.passed, (name, x.tolist())  # a right backward passes, at ties and zeros too
    return report
