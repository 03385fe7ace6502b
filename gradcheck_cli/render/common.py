"""Number formats and the one-line summary shared by every format."""

from __future__ import annotations

import copy
import re

import numpy as np

from ..checking.diagnosis import causes, inherited, row_name
from ..core.report import NodeRow, RunReport, at_rounding
from ..core.text import visible

STATUS_STYLE = {"pass": "green", "fail": "bold red", "kink": "yellow", "warn": "magenta", "skip": "dim"}
STATUSES = ("pass", "kink", "warn", "fail", "skip")


def fmt_number(x, digits: int = 6) -> str:
    """A short rendering of a float: `digits` significant digits, scientific when very large or small."""
    if x is None:
        return "—"
    x = float(x)
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        return f"{x:.{digits}g}"
    return f"{x:.{max(1, digits - 3)}e}"


ROUGH = 0.05  # a figure whose rounding level is past this fraction of it shows one digit


def fmt_error(x, rounding: float | None = None) -> str:
    """An error figure as a face shows it: `≈0` where it is at or below its rounding level (equal as
    far as float64 can tell; its digits would be noise, different on another CPU or BLAS kernel), one
    digit (`~3e-07`) where rounding could move its second, else two (`1.5e-07`)."""
    if x is None:
        return "—"
    if at_rounding(x, rounding):
        return "≈0"
    if x == 0:
        return "0"
    if rounding is not None and rounding > ROUGH * x:
        return f"~{x:.0e}"
    return f"{x:.1e}"


def row_error(row, side: str = "numeric") -> str:
    """A row's numeric or symbolic error figure, as `fmt_error` shows it with the row's rounding level."""
    return fmt_error(getattr(row, f"{side}_error", None), getattr(row, f"{side}_rounding", None))


def fmt_shape(shape) -> str:
    """`[6]` for a vector (never a bare 6, which reads as a scalar), `4×3` for a matrix."""
    return f"[{shape[0]}]" if len(shape) == 1 else "×".join(map(str, shape))


def shown_index(row: NodeRow) -> tuple | None:
    """The element a tensor row shows in every column: its worst one, or, where none was singled
    out (checked by projections), backprop's largest in magnitude (the first of those equal within
    rounding, so the same on any CPU); None for a scalar row."""
    grad = None if row.grad is None else np.asarray(row.grad, dtype=float)
    if row.worst_index is not None and (grad is None or len(row.worst_index) == grad.ndim):
        return tuple(row.worst_index) or None
    if grad is None or grad.ndim == 0 or grad.size == 0:
        return None
    size = np.where(np.isfinite(grad), np.abs(grad), -1.0).ravel()
    top = float(size.max())
    first = int(np.flatnonzero(size >= top - abs(top) * TIE_RTOL)[0])
    return tuple(int(i) for i in np.unravel_index(first, grad.shape))


TIE_RTOL = 1e-9  # magnitudes this close (relative) are equal for choosing what to show: far above rounding


def element(array, row: NodeRow, digits: int) -> str:
    """A tensor cell shows the row's shown element (the same in every column); a scalar cell the number."""
    if array is None:
        return "—"
    a = np.asarray(array, dtype=float)
    if a.ndim == 0:
        return fmt_number(a, digits)
    idx = shown_index(row)
    return fmt_number(a[idx], digits) if idx is not None and len(idx) == a.ndim else "—"


def summary(run: RunReport) -> str:
    """`3 files: 2 passed, 1 failed, 0 errors · 41 nodes checked`."""
    files = len(run.results)
    errors = sum(r.error is not None for r in run.results)
    passed = sum(r.passed for r in run.results)
    failed = files - passed - errors
    counts: dict = {}
    for r in run.results:
        for row in r.nodes:
            counts[row.status] = counts.get(row.status, 0) + 1
    nodes = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))
    noun = run.noun if files == 1 else run.noun + "s"
    line = f"{files} {noun}: {passed} passed, {failed} failed, {errors} with errors · nodes: {nodes or 'none'}"
    covered = [(r.symbolic_coverage, len([x for x in r.nodes if x.status != "skip"])) for r in run.results
               if r.error is None and r.symbolic_coverage is not None]
    if covered:
        total = sum(n for _, n in covered)
        share = sum(c * n for c, n in covered) / total if total else 1.0
        line += f" · symbolic: {share:.0%}"
        ruled = sum(len(r.symbolic_rules) for r in run.results if r.error is None)
        if ruled:
            line += f" ({ruled} gate{'s' if ruled > 1 else ''} by rules SymPy confirmed)"
    gates = [g.status for r in run.results for g in r.gates]
    if gates:
        line += f" · gate checks: {gates.count('pass') + gates.count('kink') + gates.count('warn')} of {len(gates)} pass"
    expects = [e.status for r in run.results for e in r.expects]
    if expects:
        line += f" · expects: {expects.count('pass')} pass" + (f", {expects.count('fail')} fail" if "fail" in expects else "")
    warned = sum(len(r.warnings) for r in run.results)
    if warned:
        line += f" · {warned} warning{'s' if warned > 1 else ''}"
    if run.skipped:
        line += f" · {len(run.skipped)} not checked (inputs not given)"
    if run.not_checked:
        line += f" · {run.not_checked} not checked (stopped at the first failure, -x)"
    return line


def line_in(line: int, file: str, report) -> str:
    """`line 21`, or `line 21 of layers.py` when that line is in another file than the report's."""
    return f"line {line}" if file == (report.path or report.source) else f"line {line} of {file}"


def warning_lines(report) -> list:
    """`warning (line N): message` for each warning of a report (an unused gate line, ...)."""
    return [f"warning (line {line}): {message}" if line else f"warning: {message}"
            for message, line, _ in report.warnings]


def precision_lines(report) -> list:
    """The dtype a native check ran in and its error model's allowance (python/native.py), or nothing."""
    said = getattr(report, "precision", None)
    return [said.sentence()] if said is not None else []


def failure_lines(report) -> list:
    """`name (line N): status — note` for each root cause of the report's failure, then its warnings."""
    out = []
    for status, (line, _), row, rows, file in causes(report):  # root causes first, inherited rows folded in
        err = getattr(row, "numeric_error", None)
        detail = f", numeric error {row_error(row)}" if err is not None else ""
        out.append(f"{row_name(row)} ({line_in(line, file, report)}): {status}{detail}" + (f" — {row.note}" if row.note else ""))
        also = inherited(rows, row)
        if also:
            out.append(f"  {also}")
    return out + warning_lines(report) + precision_lines(report)


def displayable(run: RunReport) -> RunReport:
    """A copy of the run whose file names (each report's source and path, its error's source) have
    their control characters escaped: `bad\\x1b[31m.grad` is shown, never sent to a terminal raw, and
    a newline in a name cannot start a line of its own (a CI log's `::warning::`)."""
    shown = copy.copy(run)
    shown.results = [_displayable(r) for r in run.results]
    shown.skipped = [(visible(source), why) for source, why in run.skipped]
    return shown


def _displayable(report):
    shown = copy.copy(report)
    shown.rerun = report.reproduce()  # of the name itself (its own quoting makes it printable), before it is escaped
    shown.source = visible(report.source) if report.source else report.source
    shown.path = visible(report.path) if report.path else report.path
    if report.error is not None:
        shown.error = copy.copy(report.error)
        shown.error.source = visible(report.error.source) if report.error.source else report.error.source
    return shown


def md_text(text) -> str:
    """Text shown as itself in Markdown (a table cell included): its markup characters escaped,
    HTML's too, a line break a space — a message from the user's code cannot add a link, a tag or a row."""
    from html import escape  # here: the Markdown faces need it, the table and JSON do not
    text = escape(str(text).replace("\r", " ").replace("\n", " "), quote=False)
    return "".join("\\" + c if c in "\\`*_[]#|~<>!" else c for c in text)


def md_code(text) -> str:
    """Text as inline code in a Markdown table: fenced by more backticks than it holds in a row, pipes
    escaped (GitHub reads `\\|` as a pipe even in code), a line break a space."""
    text = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    longest = max((len(m) for m in re.findall("`+", text)), default=0)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{'`' * (longest + 1)}{pad}{text}{pad}{'`' * (longest + 1)}"
