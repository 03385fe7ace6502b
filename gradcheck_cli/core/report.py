"""Plain report data and its JSON form (schema 1). Imports neither rich nor click."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .display import Displayed
from .errors import GradcheckError
from .settings import Settings
from .status import Status
from .text import visible

SCHEMA = 1


class Tensor(list):
    """A tensor's nested lists: a list, marked so the JSON writer need not look inside to know it."""


def to_json_value(value):
    """A number for a scalar, nested lists for a tensor; None for None and for nan or ±inf."""
    if value is None:
        return None
    v = np.asarray(value, dtype=float)
    if v.ndim == 0:
        return float(v) if np.isfinite(v) else None
    if np.all(np.isfinite(v)):
        return Tensor(v.tolist())
    # numpy's stubs take no None as a where() operand; numpy does (an object array). unused-ignore: stubs
    # that accept it make the ignore unused, and that is no error
    return Tensor(np.where(np.isfinite(v), v, None).astype(object).tolist())  # type: ignore[call-overload, unused-ignore]


def _finite_or_none(x):
    return None if x is None or not np.isfinite(x) else float(x)


def at_rounding(error: float | None, rounding: float | None) -> bool:
    """An error figure no larger than its rounding level: the two sides are equal as far as float64
    can tell, and the figure's digits are noise (another CPU or BLAS kernel gives others)."""
    return bool(error is not None and rounding is not None and np.isfinite(error) and error <= rounding)


def _rounding_fields(row) -> dict:
    """JSON's `numeric_error_at_rounding` / `symbolic_error_at_rounding`: true where that figure is
    rounding, not a measured error (null where no figure)."""
    return {f"{side}_error_at_rounding": (None if getattr(row, f"{side}_error") is None
                                          else at_rounding(getattr(row, f"{side}_error"),
                                                           getattr(row, f"{side}_rounding")))
            for side in ("numeric", "symbolic")}


@dataclass(frozen=True, kw_only=True)
class NodeRow:
    """One node of the circuit with its three gradients and verdict."""
    name: str
    op: str
    shape: tuple[int, ...]
    line: int
    col: int
    value: np.ndarray
    grad: np.ndarray | None
    numeric: np.ndarray | None
    symbolic: np.ndarray | None
    numeric_error: float | None
    symbolic_error: float | None
    status: Status             # given as the enum or its word ("pass"): held as the enum
    note: str | None = None
    tolerance: float | None = None
    worst_index: tuple[int, ...] | None = None
    numeric_method: str | None = None
    culprit: tuple[int, int] | tuple[int, int, str] | None = None  # (line, col[, file]) of the backward that
                                  # goes wrong, when diagnosed
    node_id: int | None = None    # the graph node (not in the JSON: names say it there)
    inherits: bool = False        # it fails only because a backward downstream of it fails
    numeric_rounding: float | None = None   # the rounding level of each error figure (relative, as it is):
    symbolic_rounding: float | None = None  # a figure at or below it is equality within rounding

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # given as the word or the enum: held as the enum

    def to_dict(self) -> dict:
        return {
            "name": self.name, "op": self.op, "shape": list(self.shape),
            "line": self.line, "col": self.col,
            "value": to_json_value(self.value), "grad": to_json_value(self.grad),
            "numeric": to_json_value(self.numeric), "symbolic": to_json_value(self.symbolic),
            "numeric_error": _finite_or_none(self.numeric_error),
            "symbolic_error": _finite_or_none(self.symbolic_error),
            **_rounding_fields(self),
            "status": self.status, "note": self.note,
            "tolerance": _finite_or_none(self.tolerance),
            "worst_index": list(self.worst_index) if self.worst_index is not None else None,
            "numeric_method": self.numeric_method,
        }


@dataclass(frozen=True, kw_only=True)
class GateRow:
    """A gate call's backward checked on its own: one input (or one d<local> line), at one point."""
    name: str                  # the gate call's node name
    gate: str                  # its label
    input: str                 # the parameter or input checked, or the d<local> line
    line: int                  # where that backward is written (the d line, or the gate call)
    col: int
    call_line: int             # the gate call's line
    status: Status             # as NodeRow's
    numeric_error: float | None
    symbolic_error: float | None
    tolerance: float | None
    point: int = 1             # 1: the file's point; 2: a second, random point
    note: str | None = None
    node_id: int | None = None  # the gate call's graph node, and the input slot checked (None: a d<local>
    slot: int | None = None     # line); not in the JSON
    culprit: tuple[int, int] | None = None  # (line, col) of a failing d<local> line this d line's failure comes from
    file: str | None = None       # the file `line` is in, when not the report's (a helper layer elsewhere)
    numeric_rounding: float | None = None   # as NodeRow's
    symbolic_rounding: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # given as the word or the enum: held as the enum

    def to_dict(self) -> dict:
        return {"name": self.name, "gate": self.gate, "input": self.input, "line": self.line, "col": self.col,
                **({"file": self.file} if self.file else {}),
                "call_line": self.call_line, "point": self.point, "status": self.status,
                "numeric_error": _finite_or_none(self.numeric_error),
                "symbolic_error": _finite_or_none(self.symbolic_error),
                **_rounding_fields(self),
                "tolerance": _finite_or_none(self.tolerance), "note": self.note}


@dataclass
class ExpectRow:
    target: str
    expected: np.ndarray
    actual: np.ndarray
    status: str
    line: int | None = None
    col: int | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return {"target": self.target, "expected": to_json_value(self.expected),
                "actual": to_json_value(self.actual), "status": self.status,
                "line": self.line, "col": self.col, "note": self.note}


class Prediction(Protocol):
    """What a report holds of the cost model's prediction (checking.cost.Cost, a package above this one)."""
    parts: dict

    @property
    def total(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class Allowance:
    """One input's allowance under the native-precision error model (python/native.py)."""
    name: str
    n: int            # the outputs one of its elements reaches: the terms its gradient sums
    allowed: float    # K·ε·√n (× the reference's rounding): of the gradient's largest element

    def to_dict(self) -> dict:
        return {"name": self.name, "n": self.n, "allowed": self.allowed}


@dataclass(frozen=True, kw_only=True)
class Precision:
    """A check in a native dtype: which, why, against what, and the error model's allowance."""
    dtype: str
    refuses_float64: bool      # not checked in float64: its forward raises there, or computes in `dtype` anyway
    reference: str             # what the gradients were compared with, in words
    k: float                   # the model's constant K
    eps: float                 # the dtype's ε
    reference_rounds: float    # 2 when the reference runs in the dtype too, else 1
    inputs: tuple[Allowance, ...] = ()
    computes_in_dtype: bool = False  # it takes float64 and computes (its outputs come) in `dtype`

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "refuses_float64": self.refuses_float64, "computes_in_dtype": self.computes_in_dtype,
                "reference": self.reference,
                "k": self.k, "eps": self.eps, "reference_rounds": self.reference_rounds,
                "inputs": [a.to_dict() for a in self.inputs]}

    def sentence(self) -> str:
        """What every face says of it."""
        why = (f" (the forward computes in {self.dtype})" if self.computes_in_dtype else
               " (the forward refuses float64)" if self.refuses_float64 else "")
        each = ", ".join(f"{a.name} {a.allowed:.1e} (n = {a.n})" for a in self.inputs)
        return (f"checked in {self.dtype}{why} against {self.reference}; allowed K·ε·√n"
                + (" · 2" if self.reference_rounds > 1 else "") + f" of the gradient's largest element, K = {self.k:g}, "
                f"ε = {self.eps:.1e}: {each}")


@dataclass
class CheckReport(Displayed):
    """The check of one source: a file or an inline expression."""
    source: str
    output: str | None = None
    value: np.ndarray | None = None
    nodes: list[NodeRow] = field(default_factory=list)
    expects: list[ExpectRow] = field(default_factory=list)
    gates: list[GateRow] = field(default_factory=list)      # every gate's backward on its own
    warnings: list[tuple[str, int, int]] = field(default_factory=list)   # (message, line, col)
    error: GradcheckError | None = None  # when the source could not be read, parsed or evaluated
    settings: Settings = field(default_factory=Settings)
    inline: str | None = None  # the source text, for an `-e` check (to reproduce it)
    at: dict = field(default_factory=dict)  # `--at` values given as text (to reproduce them)
    path: str | None = None   # the file the rows' lines are in, when not `source` (a Python check)
    rerun: str | None = None  # the command that reruns this check, when not a `check` of `source`
    elapsed: float = 0.0      # seconds the check took: only JUnit's `time` shows it (never a verdict)
    work: Prediction | None = None  # the cost model's prediction (cost.Cost): what the check was expected to take
    text: str | None = None   # the source text that was checked (a face that draws the circuit reads it, never the file again)
    picture: str | None = None  # the circuit as SVG, when a face drew it (a notebook)
    precision: Precision | None = None  # a check in a native dtype (python/native.py), else None
    symbolic_rules: list[str] = field(default_factory=list)  # gates whose SymPy column came from an index rule, and how

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def passed(self) -> bool:
        if self.error is not None:
            return False
        return not self.failures

    @property
    def failures(self) -> list:
        """Rows that make this report fail."""
        bad = ("fail", "kink", "warn") if self.settings.strict else ("fail",)
        return [r for r in self.nodes + self.gates + self.expects if r.status in bad]

    @property
    def symbolic_coverage(self) -> float | None:
        """The fraction of checked nodes with a SymPy value (None when SymPy was off or nothing was checked)."""
        checked = [r for r in self.nodes if r.status != "skip"]
        if not self.settings.symbolic or not checked:
            return None
        return sum(r.symbolic is not None for r in checked) / len(checked)

    def reproduce(self) -> str:
        """One shell line that reruns this check as it ran: a word with a control, format or separator
        character (a file name's, an `--at` value's, an `-e` comment's) ANSI-C quoted (`$'a\\x1bb.grad'`), so
        the line is printable and, pasted into bash, runs the same check (`core.text.shell_quote`)."""
        if self.rerun is not None:
            line = self.rerun
        elif self.inline is not None:
            line = self.settings.reproduce(self.inline, inline=True, at=self.at)
        else:
            line = self.settings.reproduce(self.source, at=self.at)
        return visible(line)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "output": self.output, "value": to_json_value(self.value),
            "seed": self.seed, "passed": self.passed,
            "error": self.error.to_dict() if self.error is not None else None,
            "nodes": [r.to_dict() for r in self.nodes],
            "expects": [e.to_dict() for e in self.expects],
            "gates": [g.to_dict() for g in self.gates],
            "symbolic_coverage": self.symbolic_coverage,
            "symbolic_rules": list(self.symbolic_rules),
            "warnings": [{"message": m, "line": line, "col": col} for m, line, col in self.warnings],
            "precision": self.precision.to_dict() if self.precision is not None else None,
        }


@dataclass
class RunReport(Displayed):
    """Every source checked in one run; `total`: how many were to be checked (more than `results`
    when -x stopped early)."""
    results: list[CheckReport]
    total: int | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, why it was not checked): layers missing inputs
    noun: str = "file"                            # what a result is: a file, or a (Python) layer

    @property
    def not_checked(self) -> int:
        """Sources left unchecked because the run stopped at the first failure."""
        return max(0, (self.total or len(self.results)) - len(self.results))

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def has_input_error(self) -> bool:
        return any(r.error is not None for r in self.results)

    def exit_code(self) -> int:
        """0 all passed · 1 a check failed · 2 an input could not be checked (or nothing was)."""
        if self.has_input_error or not self.results:
            return 2
        return 0 if self.passed else 1

    def to_dict(self) -> dict:
        out = {"schema": SCHEMA, "passed": self.passed, "results": [r.to_dict() for r in self.results]}
        if self.skipped:
            out["skipped"] = [{"source": source, "reason": why} for source, why in self.skipped]
        return out


@dataclass(frozen=True)
class Faults:
    """What a picture of the circuit marks as wrong, by graph node id."""
    culprits: frozenset = frozenset()   # gate calls whose own backward check fails
    wrong: frozenset = frozenset()      # nodes whose gradient fails (so every wire into them is wrong too)
    wires: frozenset = frozenset()      # (gate call, input slot) whose own check fails

    def wire(self, node_id: int, slot: int) -> bool:
        """Is the gradient flowing back from gate `node_id` into its input `slot` wrong?"""
        return node_id in self.wrong or (node_id, slot) in self.wires

    def __bool__(self) -> bool:
        return bool(self.culprits or self.wrong or self.wires)


def faults(report: CheckReport) -> Faults:
    """The failing gates, rows and wires of a report of a `.grad` check."""
    failed = [g for g in report.gates if g.status == "fail" and g.node_id is not None]
    return Faults(culprits=frozenset(g.node_id for g in failed),
                  wrong=frozenset(r.node_id for r in report.nodes if r.status == "fail" and r.node_id is not None),
                  wires=frozenset((g.node_id, g.slot) for g in failed if g.slot is not None))
