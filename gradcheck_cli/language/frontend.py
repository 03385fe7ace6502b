"""Source text → Graph: parse, bind `--at` values, build the circuit, compile the `expect` lines."""

from __future__ import annotations

import re

import numpy as np

from . import nodes
from .builder import Builder
from ..core.errors import GradcheckError, GradSyntaxError
from ..core.limits import MAX_ELEMENTS, MAX_FILE_BYTES, MAX_NDIM, MAX_TOTAL_ELEMENTS, size_error
from .expects import compile_expect
from .graph import Const, Graph
from ..core.meter import Meter
from .syntax import parse


def load(text: str, source: str = "<expr>", at: dict | None = None, seed: int = 0,
         free_names: bool = False) -> Graph:
    """The checked circuit of `text`; raises GradcheckError (with a position) on bad input.

    `at` maps leaf names to values: arrays, numbers, or constant text in the language.
    With `free_names`, unknown names become leaves (the `-e` form).
    """
    with Meter() as built:
        program = parse(text)
        builder = Builder(program, source, leaf_values(at, seed), free_names, seed)
        graph = builder.build()
        shape = graph.nodes[graph.output].shape
        graph.expects = [compile_expect(e, builder, graph.nodes, graph.names, shape) for e in graph.expects]
    graph.built = built.counts.get("build", 0)
    return graph


_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # the grammar's NUMBER


def parse_value(text: str, seed: int = 0, name: str = "value") -> np.ndarray:
    """A constant written in the language (`2`, `[1, 2]`, `0.1*randn(3)`) as an array. Its bytes and
    the numbers written in it are counted before it is parsed (parsing takes ~35 µs a number)."""
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_FILE_BYTES:
        raise GradSyntaxError(f"{name} is {size:,} bytes (at most {MAX_FILE_BYTES:,}; GRADCHECK_MAX_FILE_BYTES "
                              "raises it)", 1, 1)
    numbers = sum(1 for _ in _NUMBER.finditer(text))
    if numbers > MAX_ELEMENTS:
        raise GradSyntaxError(size_error(name, numbers, MAX_ELEMENTS, name="MAX_ELEMENTS"), 1, 1)
    program = parse(text)
    if len(program.statements) != 1 or not isinstance(program.statements[0], nodes.ExprStmt):
        raise GradSyntaxError(f"{name} must be a single value", 1, 1)
    ref = Builder(program, name, None, False, seed).expr(program.statements[0].expr)
    if not isinstance(ref, Const):
        raise GradSyntaxError(f"{name} must be a constant value (numbers, arrays, randn(...))", 1, 1)
    return ref.value


def leaf_values(at: dict | None, seed: int) -> dict:
    """`--at` values (text in the language, or numbers) as arrays; errors point into the value."""
    out, total = {}, 0
    for key, given in (at or {}).items():
        value = given
        if isinstance(given, str):
            try:
                value = parse_value(given, seed, f"--at {key}")
            except GradcheckError as err:
                raise err.located(f"--at {key}", given) from None
        out[key] = _array(key, value)
        total += out[key].size
        if total > MAX_TOTAL_ELEMENTS:  # each value is bounded before it is made; all of them here
            what = "the --at values together" if isinstance(given, str) else "the at= values together"
            err = GradcheckError(size_error(what, total, MAX_TOTAL_ELEMENTS, name="MAX_TOTAL_ELEMENTS"), 1, 1)
            raise err.located(f"--at {key}", given) if isinstance(given, str) else err
    return out


def _array(key: str, value) -> np.ndarray:
    """An `at=` value as a float array, or a GradcheckError naming the argument (a ragged list, an
    object, a dict, complex numbers, too many dimensions or elements)."""
    if isinstance(value, dict):
        raise GradcheckError(f"at={{'{key}': ...}} must be real numbers or an array of them, not a dict", 1, 1)
    try:
        raw = np.asarray(value)
        if raw.dtype.kind == "c":
            raise GradcheckError(f"at={{'{key}': ...}} must be real numbers, not complex ones", 1, 1)
        if raw.dtype.kind not in "biuf":  # objects, None, text inside a list: not numbers
            raise TypeError
        array = raw.astype(float)
    except (TypeError, ValueError, OverflowError):
        raise GradcheckError(f"at={{'{key}': ...}} must be a number or a rectangular array of numbers, not "
                             f"{type(value).__name__} {str(value)[:60]!r}", 1, 1) from None
    if array.ndim > MAX_NDIM or array.size > MAX_ELEMENTS:
        raise GradcheckError(f"at={{'{key}': ...}} has {array.ndim} dimensions and {array.size:,} elements (at most "
                             f"{MAX_NDIM} and {MAX_ELEMENTS:,})", 1, 1)
    return array
