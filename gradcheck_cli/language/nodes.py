"""The abstract syntax tree: frozen dataclasses, no behaviour; every node keeps its position."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pos:
    """Where a piece of source starts (1-based line and column) and its character span."""
    line: int
    col: int
    start: int
    end: int


@dataclass(frozen=True)
class Num:
    value: float
    pos: Pos


@dataclass(frozen=True)
class Name:
    id: str
    pos: Pos


@dataclass(frozen=True)
class Op:
    """An operator: '+', '-', '*', '/', '@', '^', 'neg', '.T', or a comparison."""
    op: str
    args: tuple
    pos: Pos
    op_pos: Pos | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple
    kwargs: tuple  # ((name, expr, pos), ...)
    pos: Pos
    func_pos: Pos


@dataclass(frozen=True)
class Array:
    """A bracketed literal: `[1, 2]`, `[[1, 2], [3, 4]]`."""
    items: tuple
    pos: Pos


@dataclass(frozen=True)
class Loop:
    """`for NAME in range(args)` in a comprehension."""
    var: str
    args: tuple
    pos: Pos


@dataclass(frozen=True)
class Comprehension:
    """`func(element for v in range(...) ...)`: the element is built once per value of the loops."""
    func: str
    element: object
    loops: tuple
    kwargs: tuple  # ((name, expr, pos), ...)
    pos: Pos
    func_pos: Pos


@dataclass(frozen=True)
class Slice:
    """`start:stop:step` in a subscript; a part left out is None."""
    start: object
    stop: object
    step: object
    pos: Pos


@dataclass(frozen=True)
class NewAxis:
    """`None` in a subscript."""
    pos: Pos


@dataclass(frozen=True)
class Index:
    """`base[item, ...]`: items are expressions, Slices or NewAxis."""
    base: object
    items: tuple
    pos: Pos
    bracket_pos: Pos


@dataclass(frozen=True)
class Assign:
    name: str
    expr: object
    pos: Pos
    const: bool = False


@dataclass(frozen=True)
class ExprStmt:
    """A bare expression: the output, when it is the last statement."""
    expr: object
    pos: Pos


@dataclass(frozen=True)
class Output:
    name: str
    pos: Pos


@dataclass(frozen=True)
class Expect:
    target: str
    expr: object
    pos: Pos


@dataclass(frozen=True)
class GateDef:
    """`gate NAME(params) = expr`, then indented locals and `d<param>` lines."""
    name: str
    params: tuple
    expr: object
    body: tuple  # Assign statements
    pos: Pos
    param_pos: tuple = field(default=())


@dataclass(frozen=True)
class Program:
    statements: tuple
    text: str


def children(expr) -> tuple:
    """The sub-expressions of an expression node, in source order."""
    if isinstance(expr, Op):
        return expr.args
    if isinstance(expr, Call):
        return expr.args + tuple(k[1] for k in expr.kwargs)
    if isinstance(expr, Array):
        return expr.items
    if isinstance(expr, Index):
        return (expr.base,) + expr.items
    if isinstance(expr, Slice):
        return tuple(p for p in (expr.start, expr.stop, expr.step) if p is not None)
    if isinstance(expr, Comprehension):  # the element and the ranges are built by it, per loop value
        return tuple(k[1] for k in expr.kwargs)
    return ()


def walk(expr):
    """Every expression node under `expr`, itself included (iterative: deep nesting is fine)."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        stack.extend(children(e))
        if isinstance(e, Comprehension):
            stack.append(e.element)
            stack.extend(a for loop in e.loops for a in loop.args)
