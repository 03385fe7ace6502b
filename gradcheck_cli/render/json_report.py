"""JSON, schema 1: the report's structure indented, each tensor on one line."""

from __future__ import annotations

import json
import re
import secrets

from ..core.report import RunReport, Tensor


def render_json(run: RunReport) -> str:
    """The run as JSON. Tensors (nested lists of numbers) are written compactly by json's C encoder
    and put in place afterwards: indenting a 2-million-element tensor one number per line took 15 s
    and 2 GB; this takes a fraction of a second and the text it needs. The report marks its tensors
    (report.Tensor), so a million nested lists are not searched for a non-number either (14 s)."""
    tensors: list = []
    mark = secrets.token_hex(8)  # a tensor's place: no text of the user's can spell it (a name, a note)

    def lift(value):
        if isinstance(value, dict):
            return {k: lift(v) for k, v in value.items()}
        if isinstance(value, list):
            if isinstance(value, Tensor) or (value and _numeric(value)):
                tensors.append(value)
                return f"\0tensor{mark}:{len(tensors) - 1}\0"
            return [lift(v) for v in value]
        if isinstance(value, str):  # a lone surrogate (a file name's byte that is not UTF-8) as its escape, text:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")  # the JSON stays well-formed Unicode
        return value
    text = json.dumps(lift(run.to_dict()), indent=2, allow_nan=False)
    return re.sub(rf'"\\u0000tensor{mark}:(\d+)\\u0000"', lambda m: json.dumps(tensors[int(m.group(1))], allow_nan=False),
                  text)


def _numeric(value) -> bool:
    """Is this a (nested) list of numbers and nulls only: a tensor?"""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
            return False
    return True
