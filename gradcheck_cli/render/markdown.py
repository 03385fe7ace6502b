"""A Markdown report for a job summary or a pull-request comment."""

from __future__ import annotations

import numpy as np

from ..core.report import NodeRow, RunReport
from .common import (STATUSES, causes, element, fmt_number, row_error, fmt_shape, inherited, line_in, row_name,
                     summary, warning_lines)


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _backprop_cell(row) -> str:
    """Backprop's value for a node row (its worst element), or the actual gradient for an expectation."""
    if isinstance(row, NodeRow):
        return element(row.grad, row, 6)
    if not hasattr(row, "actual"):
        return "—"
    return fmt_number(np.asarray(row.actual)) if np.ndim(row.actual) == 0 else fmt_shape(np.shape(row.actual))


def render_markdown(run: RunReport) -> str:
    ok = run.passed and not run.has_input_error
    lines = [f"## gradcheck {'✅ passed' if ok else '❌ failed'}", "", summary(run), ""]
    lines += ["| file | output | nodes | result |", "|---|---|---|---|"]
    for r in run.results:
        if r.error is not None:
            lines.append(f"| `{_md_cell(r.source)}` | — | — | ❌ error: {_md_cell(r.error.message)} |")
            continue
        counts = ", ".join(f"{sum(x.status == s for x in r.nodes)} {s}" for s in STATUSES
                           if any(x.status == s for x in r.nodes))
        lines.append(f"| `{_md_cell(r.source)}` | {_md_cell(r.output)} | {counts} | {'✅' if r.passed else '❌'} |")
    for r in (r for r in run.results if r.error is None and not r.passed):
        lines += ["", f"### `{_md_cell(r.source)}`", "", "| node | line | status | backprop | numeric error | note |",
                  "|---|---|---|---|---|---|"]
        for status, (line, _), lead, rows, file in causes(r):  # the root cause leads; rows that inherit it fold in
            note = lead.note or ""
            also = inherited(rows, lead)
            note += f" ({also})" if also else ""
            lines.append(f"| `{_md_cell(row_name(lead))}` | {_md_cell(line_in(line, file, r).removeprefix('line '))} | {status} | {_md_cell(_backprop_cell(lead))} | "
                         f"{row_error(lead)} | {_md_cell(note)} |")
        lines += ["", f"Reproduce: `{r.reproduce()}`"]
    warned = [(r, w) for r in run.results for w in warning_lines(r)]
    if warned:
        lines += ["", "### Warnings", ""] + [f"- `{_md_cell(r.source)}`: {_md_cell(w)}" for r, w in warned]
    return "\n".join(lines) + "\n"
