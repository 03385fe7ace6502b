"""Quiz answer files: one `d<node> = value` line per node, named as the quiz names it."""

from __future__ import annotations

import re

from ..core.errors import GradcheckError, GradNameError, GradSyntaxError, did_you_mean
from ..language.frontend import parse_value
from .teach import grad_name

_ANSWER_EQ = re.compile(r"(?<![<>=!])=(?!=)")  # the `=` of `dname = value`, not of `==`, `<=`, `>=`


def parse_answers(text: str, names, output: str | None = None) -> dict:
    """Node name -> the answer as written. Spaces in names are ignored, so unnamed gates like
    `exp(-dot)` can be answered too. `d<output> = 1`, the first step of every backward pass, is
    accepted and not graded. A bad line is a GradcheckError with its position."""
    by_key = {re.sub(r"\s+", "", n): n for n in names}
    if output is not None and re.sub(r"\s+", "", output) not in by_key:
        by_key[re.sub(r"\s+", "", output)] = None
    out = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        eqs = list(_ANSWER_EQ.finditer(line))
        name = line[: eqs[-1].start()].strip() if eqs else ""
        key = re.sub(r"\s+", "", name)[1:]
        if key.startswith("(") and key.endswith(")") and key not in by_key:
            key = key[1:-1]  # d(q^2), as the quiz writes it
        if not eqs or not name.startswith("d") or key not in by_key:
            col = len(raw) - len(raw.lstrip()) + 1
            if not eqs:
                raise GradSyntaxError("expected d<node> = value", number, col)
            listed = ", ".join(grad_name(n) for n in names)
            raise GradNameError(f"'{name}' is not the gradient of a quiz node"
                                + did_you_mean(name, ["d" + n for n in names])
                                + f" (the quiz asks for: {listed})"[:300], number, col)
        value = line[eqs[-1].end():]
        start = eqs[-1].end() + len(value) - len(value.lstrip())
        try:
            parse_value(value.strip(), name="the answer")
        except GradcheckError as err:
            raise type(err)(err.message, number, start + (err.col or 1)) from None
        if by_key[key] is not None:
            out[by_key[key]] = value.strip()
    return out
