"""Reports → text: the rich table, JSON. The only library module that imports rich."""

from __future__ import annotations

import json

import numpy as np

from .report import CheckReport, NodeRow, RunReport

STATUS_STYLE = {"pass": "green", "fail": "bold red", "kink": "yellow", "warn": "magenta", "skip": "dim"}
WIDE = 110  # at or above this many columns the table also shows the numeric and symbolic values


def fmt_number(x) -> str:
    """A short, fixed-ish width rendering of a float."""
    if x is None:
        return "—"
    x = float(x)
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        return f"{x:.6g}"
    return f"{x:.3e}"


def fmt_error(x) -> str:
    return "—" if x is None else ("0" if x == 0 else f"{x:.1e}")


def _element(array, row: NodeRow):
    """A tensor cell: the worst element (with its index), or the scalar itself."""
    if array is None:
        return "—"
    a = np.asarray(array, dtype=float)
    if a.ndim == 0:
        return fmt_number(a)
    idx = row.worst_index if row.worst_index is not None and len(row.worst_index) == a.ndim else None
    if idx is None:
        return f"[{a.size}]"
    return f"{fmt_number(a[idx])} @{list(idx)}"


def _value_cell(row: NodeRow) -> str:
    v = np.asarray(row.value)
    if v.ndim == 0:
        return fmt_number(v)
    return "×".join(str(n) for n in v.shape)


def node_table(report: CheckReport, width: int):
    """The per-node rich Table for one report."""
    from rich.table import Table
    wide = width >= WIDE
    table = Table(show_edge=False, pad_edge=False, header_style="bold", expand=False)
    table.add_column("node", overflow="ellipsis", max_width=28 if wide else 18, no_wrap=True)
    table.add_column("gate", overflow="ellipsis", max_width=10, no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("backprop", justify="right", no_wrap=True)
    if wide:
        table.add_column("numeric", justify="right", no_wrap=True)
        table.add_column("symbolic", justify="right", no_wrap=True)
    table.add_column("num err", justify="right", no_wrap=True)
    table.add_column("sym err", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for row in report.nodes:
        cells = [row.name, row.op, _value_cell(row), _element(row.grad, row)]
        if wide:
            cells += [_element(row.numeric, row), _element(row.symbolic, row)]
        cells += [fmt_error(row.numeric_error), fmt_error(row.symbolic_error),
                  f"[{STATUS_STYLE.get(row.status, '')}]{row.status}[/]"]
        table.add_row(*cells)
    return table


def render_table(run: RunReport, console, expand: str | None = None) -> None:
    """Print every report: a heading, the table, notes, then a one-line summary of the run."""
    from rich.markup import escape
    for report in run.results:
        if report.error is not None:
            console.print(f"[bold red]✗[/] {escape(report.source)}", highlight=False)
            console.print(escape(report.error.format()), highlight=False, soft_wrap=True)
            console.print()
            continue
        mark = "[green]✓[/]" if report.passed else "[bold red]✗[/]"
        out = np.asarray(report.value)
        value = fmt_number(out) if out.ndim == 0 else "×".join(map(str, out.shape))
        console.print(f"{mark} {escape(report.source)}  output [bold]{escape(str(report.output))}[/] = {value}",
                      highlight=False)
        console.print(node_table(report, console.width))
        for row in report.nodes:
            if row.note and row.status not in ("pass", "skip"):
                console.print(f"  [{STATUS_STYLE[row.status]}]{row.status}[/] {escape(row.name)} "
                              f"(line {row.line}): {escape(row.note)}", highlight=False)
        if expand:
            render_expand(report, expand, console)
        console.print()
    console.print(summary(run), highlight=False)


def render_expand(report: CheckReport, name: str, console) -> None:
    """Print one tensor node's elements side by side: backprop, numeric, symbolic, error."""
    from rich.table import Table
    row = next((r for r in report.nodes if r.name == name), None)
    if row is None or row.grad is None:
        return
    table = Table(title=f"{name}: every element", show_edge=False, header_style="bold")
    for col in ("index", "backprop", "numeric", "symbolic", "rel err"):
        table.add_column(col, justify="right")
    grad = np.asarray(row.grad, dtype=float)
    num = None if row.numeric is None else np.asarray(row.numeric, dtype=float)
    sym = None if row.symbolic is None else np.asarray(row.symbolic, dtype=float)
    from .checker import rel_error
    for idx in np.ndindex(*grad.shape):
        err = rel_error(grad[idx], num[idx]) if num is not None else None
        table.add_row(str(list(idx)), fmt_number(grad[idx]), fmt_number(num[idx]) if num is not None else "—",
                      fmt_number(sym[idx]) if sym is not None else "—", fmt_error(None if err is None else float(err)))
    console.print(table)


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
    nodes = ", ".join(f"{counts[s]} {s}" for s in ("pass", "kink", "warn", "fail", "skip") if counts.get(s))
    noun = "file" if files == 1 else "files"
    return f"{files} {noun}: {passed} passed, {failed} failed, {errors} with errors · nodes: {nodes or 'none'}"


def render_json(run: RunReport) -> str:
    return json.dumps(run.to_dict(), indent=2, allow_nan=False)
