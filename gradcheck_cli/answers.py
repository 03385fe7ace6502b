"""Quiz answer files: one `d<node> = value` line per node, named as the quiz names it."""

from __future__ import annotations

import re

from .errors import GradcheckError, GradNameError, GradSyntaxError, did_you_mean
from .frontend import parse_value

_ANSWER_EQ = re.compile(r"(?<![<>=!])=(?!=)")  # the `=` of `dname = value`, not of `==`, `<=`, `>=`


def parse_answers(text: str, names) -> dict:
    """Node name -> the answer as written. Spaces in names are ignored, so unnamed gates like
    `exp(-dot)` can be answered too. A bad line is a GradcheckError with its position."""
    by_key = {re.sub(r"\s+", "", n): n for n in names}
    out = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        eqs = list(_ANSWER_EQ.finditer(line))
        name = line[: eqs[-1].start()].strip() if eqs else ""
        key = re.sub(r"\s+", "", name)[1:]
        if not eqs or not name.startswith("d") or key not in by_key:
            col = len(raw) - len(raw.lstrip()) + 1
            if not eqs:
                raise GradSyntaxError("expected d<node> = value", number, col)
            raise GradNameError(f"'{name}' is not the gradient of a quiz node"
                                + did_you_mean(name, ["d" + n for n in names]), number, col)
        value = line[eqs[-1].end():]
        start = eqs[-1].end() + len(value) - len(value.lstrip())
        try:
            parse_value(value.strip(), name="the answer")
        except GradcheckError as err:
            raise type(err)(err.message, number, start + (err.col or 1)) from None
        out[by_key[key]] = value.strip()
    return out
