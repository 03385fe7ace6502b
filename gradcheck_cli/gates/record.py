"""The gate record: what one registry entry holds (see gates.py for its conventions and the table)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# What a gate's functions take and give (operands and attrs as the evaluators hand them over).
Forward = Callable[[list, dict], Any]                          # (operands, attrs) -> output
ForwardInto = Callable[[list, dict, np.ndarray], Any]          # (operands, attrs, out) -> writes the output into out
Vjp = Callable[[np.ndarray, list, Any, dict], Sequence[Any]]   # (upstream rows, operands, output, attrs) -> per operand
Sym = Callable[[list, dict], Any]                              # (operand expressions, attrs) -> object array
Infer = Callable[[list, dict], tuple[tuple, dict]]             # (operand shapes, params) -> (shape, attrs)
Branch = Callable[[list, dict], np.ndarray]                    # (operands, attrs) -> the branch taken, per element
Units = Callable[[list, dict], int]                            # (operand shapes, attrs) -> a count
Jacobian = Callable[[list, dict], list]                        # (operands, attrs) -> per operand (rows, cols, values)
Reads = Callable[[list, dict], np.ndarray]                     # (operand shapes, attrs) -> flat elements read, sorted


@dataclass(frozen=True)
class ConstForm:
    """How an operator with one literal operand maps onto this gate: `x - c` → `+c` with -c."""
    operator: str
    side: str  # 'left' (c OP x), 'right' (x OP c) or 'either'
    to_attr: Callable[[float], float] = lambda c: c
    accepts: Callable[[float], bool] = lambda c: True


@dataclass(frozen=True, kw_only=True)
class IndexRule:
    """A gate's local Jacobian by an index rule (`text`): which output element depends on which operand
    element, through which value, as flat (rows, cols, values) per operand (`jacobian`). The values are
    operand elements gathered as they are (exact), and `jacobian` runs on object arrays too: SymPy
    checks it against the gate's `sym` form at reduced shapes before it stands in for that form."""
    text: str
    jacobian: Jacobian


@dataclass(frozen=True)
class Example:
    """Operand shapes (and params) the registry test draws random inputs for."""
    shapes: tuple
    params: dict = field(default_factory=dict)
    low: float = -2.0
    high: float = 2.0


@dataclass(frozen=True)
class Gate:
    name: str                       # registry key, unique
    arity: int                      # number of tensor operands
    forward: Forward
    vjp: Vjp
    sym: Sym | None                 # its SymPy form (None for a user gate: symbolic evaluates its body)
    local: str                      # the local gradient, as text
    doc: str                        # one line: what the gate computes
    routes: str                     # one line: how it routes the gradient
    infer: Infer
    label: Callable[[dict], str] | None = None  # attrs -> text shown in the gate column
    operator: str | None = None     # '+', '*', '@', '.T', '<', ... when written as an operator
    call: str | None = None         # the function name in the language, if callable as call(...)
    const_forms: tuple = ()         # operator forms with one literal operand
    branch: Branch | None = None    # kink test
    sym_cost: Units | None = None   # (input shapes, attrs) -> expression nodes `sym` builds past one per output element
    index_rule: IndexRule | None = None  # its local Jacobian by indices, for large operands (symbolic)
    workspace: Units | None = None  # (input shapes, attrs) -> elements of its largest temporary, when past its output
    reads: Reads | None = None      # (input shapes, attrs) -> the flat elements of its one operand that its output
                                    # reads (x[i]: one): a batched row nudging none of them leaves it at its value
    elementwise: bool = False       # operands broadcast elementwise
    domain: str | None = None       # where the forward is finite, for error messages
    params: tuple = ()              # keyword parameters, e.g. ('axis', 'keepdims')
    positional_params: tuple = ()   # parameters that may also follow the operands positionally
    examples: tuple = (Example(((),)),)
    variadic: bool = False          # takes `arity` or more operands (concatenate, stack)
    constant_args: tuple = ()       # (position, param): call arguments that are constant parameters, not
                                    # operands (add_at's index): a const, a literal or arange(...)
    analytic: bool = False          # complex-analytic: on complex operands its forward is the holomorphic
                                    # extension, so the complex step differentiates through it exactly
    complex_forward: Forward | None = None  # its forward on complex operands where numpy's is not the right
                                    # one (kink gates follow the real part, as the complex-step literature does)
    forward_into: ForwardInto | None = None  # the same forward on real operands, written into a given array
                                    # (the batched passes' work buffers): the same operations, the same bits

    def forward_on(self, args: list, attrs: dict):
        """The forward, on real or complex operands (complex_forward where numpy's is not the right one)."""
        if self.complex_forward is not None and any(np.iscomplexobj(a) for a in args):
            return self.complex_forward(args, attrs)
        return self.forward(args, attrs)

    @property
    def has_kinks(self) -> bool:
        """Whether it has a kink test (max, relu, abs, ...): its branch can switch between nearby points."""
        return self.branch is not None

    def display(self, attrs: dict) -> str:
        """The gate's label in reports: `+1`, `*-1`, `1/x`, `exp`, `@`."""
        return self.label(attrs) if self.label else (self.call or self.operator or self.name)


@runtime_checkable
class Operation(Protocol):
    """What every gate call's operation shows and tells, whichever its kind: a registry `Gate`, or a
    user gate's `language.graph.Composite` (whose body the evaluators run). Reports, the teaching
    pages and the evaluators' shared paths read only these; what runs a gate is the evaluators' own
    dispatch (autodiff.gate_forward, gate_vjp, gate_branch; symbolic.gate_sym)."""

    @property
    def name(self) -> str: ...
    @property
    def local(self) -> str: ...
    @property
    def doc(self) -> str: ...
    @property
    def routes(self) -> str: ...
    @property
    def elementwise(self) -> bool: ...
    @property
    def domain(self) -> str | None: ...
    @property
    def has_kinks(self) -> bool: ...
    @property
    def workspace(self) -> Units | None: ...
    @property
    def sym_cost(self) -> Units | None: ...

    def display(self, attrs: dict) -> str: ...
