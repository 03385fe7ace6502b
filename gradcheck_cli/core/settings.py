"""One frozen `Settings` value: every option of a check, validated once, from config or from flags."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UsageError, did_you_mean
from .text import shell_quote

FORMATS = ("table", "json", "junit", "github", "markdown", "html")
DEFAULT_RTOL = 1e-5      # finite differences: CS231n's "below 1e-7 is right, above 1e-4 is wrong"
DEFAULT_ATOL = 0.0       # an absolute floor for the tolerance (none: the row's own scale sets it)
DEFAULT_STEP = (2.0 ** -52) ** (1 / 3)  # ∛ε: h = step·max(1, |v|)
DEFAULT_BUDGET = 10_000  # elements per file differenced one by one (leaves first)
DEFAULT_SYMBOLIC_BUDGET = 1_000_000  # expression nodes SymPy's derivatives may visit per file


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


# field: (check, what it must be)
RULES = {
    "seed": (lambda v: _is_int(v) and 0 <= v < 2 ** 63, "an integer from 0 to 2^63-1"),
    "rtol": (lambda v: _is_number(v) and 0 < v < 1, "a number between 0 and 1"),
    "atol": (lambda v: _is_number(v) and v >= 0, "a number ≥ 0"),
    "step": (lambda v: v is None or (_is_number(v) and 0 < v < 1), "a number between 0 and 1"),
    "strict": (lambda v: isinstance(v, bool), "true or false"),
    "symbolic": (lambda v: isinstance(v, bool), "true or false"),
    "budget": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "symbolic_budget": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "format": (lambda v: v in FORMATS, "one of " + ", ".join(FORMATS)),
    "jobs": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "complex_step": (lambda v: v is None or isinstance(v, bool), "true or false"),
    "reference": (lambda v: isinstance(v, bool), "true or false"),
    "order": (lambda v: v in (1, 2), "1 or 2"),
    "fast": (lambda v: isinstance(v, bool), "true or false"),
}


@dataclass(frozen=True)
class Settings:
    """How a check runs. Build it from `[tool.gradcheck]` (`from_mapping`), then apply flags (`with_flags`)."""
    seed: int = 0
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    step: float | None = None
    strict: bool = False
    symbolic: bool = True
    budget: int = DEFAULT_BUDGET
    symbolic_budget: int = DEFAULT_SYMBOLIC_BUDGET
    format: str = "table"
    jobs: int = 1
    complex_step: bool | None = None  # the complex step (complexstep.py): None is each kind's default (on for
                                      # .grad files' analytic nodes, off for Python layers, whose code runs)
    reference: bool = True      # framework targets: every element against autodiff through the forward (pycheck)
    order: int = 1              # .grad files: 2 checks Hessian-vector products (hvp.py)
    fast: bool = False          # Python targets: the given point only, along random directions (torch's fast_mode)

    def __post_init__(self):
        for name, (ok, what) in RULES.items():
            value = getattr(self, name)
            if not ok(value):
                raise UsageError(f"{name} must be {what}, not {value!r}")

    @property
    def h(self) -> float:
        """The relative finite-difference step."""
        return DEFAULT_STEP if self.step is None else self.step

    @classmethod
    def from_mapping(cls, mapping: dict,
                     locate: Callable[[str], tuple[int | None, int | None]] | None = None) -> "Settings":
        """Settings from a `[tool.gradcheck]` table; `locate(key)` gives (line, col) for errors."""
        locate = locate or (lambda key: (None, None))
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in mapping.items():
            line, col = locate(key)
            if key not in known:
                raise UsageError(f"[tool.gradcheck] has an unknown key '{key}'" + did_you_mean(key, known)
                                 + f" (known: {', '.join(RULES)})", line, col)
            ok, what = RULES[key]
            if not ok(value):
                raise UsageError(f"[tool.gradcheck] {key} must be {what}, not {value!r}", line, col)
        return cls(**mapping)

    def with_flags(self, **flags) -> "Settings":
        """A copy with every flag that was given (not None) applied."""
        given = {k: v for k, v in flags.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self  # (frozen: itself is its copy)

    def reproduce(self, target: str, inline: bool = False, at: dict | None = None) -> str:
        """One shell line that reruns a check of `target` (a file, or source text with `inline`) as it ran."""
        parts = ["gradcheck", "check"] + (["-e", shell_quote(target)] if inline else [shell_quote(target)])
        for name, value in sorted((at or {}).items()):
            parts += ["--at", shell_quote(f"{name}={value}")]
        parts += ["--seed", str(self.seed)]
        default = Settings()
        for name, flag in (("rtol", "--rtol"), ("atol", "--atol"), ("step", "--step"), ("budget", "--budget"),
                           ("symbolic_budget", "--symbolic-budget")):
            if getattr(self, name) != getattr(default, name):
                parts += [flag, repr(getattr(self, name))]
        if not self.symbolic:
            parts.append("--no-symbolic")
        if self.strict:
            parts.append("--strict")
        if self.complex_step is False:
            parts.append("--no-complex-step")
        if self.order == 2:
            parts += ["--order", "2"]
        return " ".join(parts)
