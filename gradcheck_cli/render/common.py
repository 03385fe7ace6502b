"""Number formats and the one-line summary shared by every format."""

from __future__ import annotations

import numpy as np

from ..report import GateRow, NodeRow, RunReport

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


def fmt_error(x) -> str:
    return "—" if x is None else ("0" if x == 0 else f"{x:.1e}")


def fmt_shape(shape) -> str:
    return "×".join(map(str, shape))


def element(array, row: NodeRow, digits: int) -> str:
    """A tensor cell shows its worst element; a scalar cell the number itself."""
    if array is None:
        return "—"
    a = np.asarray(array, dtype=float)
    if a.ndim == 0:
        return fmt_number(a, digits)
    idx = row.worst_index if row.worst_index is not None and len(row.worst_index) == a.ndim else None
    return fmt_number(a[idx], digits) if idx is not None else f"[{a.size}]"


def row_name(row) -> str:
    """A node row's name, `expect dx` for an expectation, `gate f: dt` for a gate's own check."""
    if isinstance(row, GateRow):
        return f"gate {row.name}: {row.input}" + (" (second point)" if row.point == 2 else "")
    return getattr(row, "name", None) or f"expect {row.target}"


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
    noun = "file" if files == 1 else "files"
    line = f"{files} {noun}: {passed} passed, {failed} failed, {errors} with errors · nodes: {nodes or 'none'}"
    covered = [(r.symbolic_coverage, len([x for x in r.nodes if x.status != "skip"])) for r in run.results
               if r.error is None and r.symbolic_coverage is not None]
    if covered:
        total = sum(n for _, n in covered)
        share = sum(c * n for c, n in covered) / total if total else 1.0
        line += f" · symbolic: {share:.0%}"
    gates = [g.status for r in run.results for g in r.gates]
    if gates:
        line += f" · gate checks: {gates.count('pass') + gates.count('kink') + gates.count('warn')} of {len(gates)} pass"
    expects = [e.status for r in run.results for e in r.expects]
    if expects:
        line += f" · expects: {expects.count('pass')} pass" + (f", {expects.count('fail')} fail" if "fail" in expects else "")
    return line


def failure_lines(report) -> list:
    """`name (line N): status — note` for every row that makes the report fail."""
    out = []
    for row in report.failures:
        err = getattr(row, "numeric_error", None)
        detail = f", numeric error {fmt_error(err)}" if err is not None else ""
        out.append(f"{row_name(row)} (line {row.line}): {row.status}{detail}" + (f" — {row.note}" if row.note else ""))
    return out
