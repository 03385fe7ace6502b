"""A Markdown report for a job summary or a pull-request comment."""

from __future__ import annotations

import numpy as np

from ..core.report import NodeRow, RunReport
from .common import (STATUSES, causes, element, fmt_number, row_error, fmt_shape, inherited, line_in, md_code,
                     md_text, precision_lines, row_name, summary, warning_lines)


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
            lines.append(f"| {md_code(r.source)} | — | — | ❌ error: {md_text(r.error.message)} |")
            continue
        counts = ", ".join(f"{sum(x.status == s for x in r.nodes)} {s}" for s in STATUSES
                           if any(x.status == s for x in r.nodes))
        lines.append(f"| {md_code(r.source)} | {md_text(r.output)} | {counts} | {'✅' if r.passed else '❌'} |")
    for r in (r for r in run.results if r.error is None and not r.passed):
        lines += ["", f"### {md_code(r.source)}", "", "| node | line | status | backprop | numeric error | note |",
                  "|---|---|---|---|---|---|"]
        for status, (line, _), lead, rows, file in causes(r):  # the root cause leads; rows that inherit it fold in
            note = lead.note or ""
            also = inherited(rows, lead)
            note += f" ({also})" if also else ""
            lines.append(f"| {md_code(row_name(lead))} | {md_text(line_in(line, file, r).removeprefix('line '))} | {status} | {md_text(_backprop_cell(lead))} | "
                         f"{row_error(lead)} | {md_text(note)} |")
        lines += ["", f"Reproduce: {md_code(r.reproduce())}"]
    warned = [(r, w) for r in run.results for w in warning_lines(r) + precision_lines(r)]
    if warned:
        lines += ["", "### Warnings", ""] + [f"- {md_code(r.source)}: {md_text(w)}" for r, w in warned]
    return "\n".join(lines) + "\n"
