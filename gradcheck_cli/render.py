"""Reports → text: the rich table, JSON. The only library module that imports rich."""

from __future__ import annotations

import json

import numpy as np

from .report import CheckReport, NodeRow, RunReport

STATUS_STYLE = {"pass": "green", "fail": "bold red", "kink": "yellow", "warn": "magenta", "skip": "dim"}
MEDIUM, WIDE = 100, 130  # terminal widths at which the table adds the index, then the oracles' values


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


def _element(array, row: NodeRow, digits: int) -> str:
    """A tensor cell shows its worst element; a scalar cell the number itself."""
    if array is None:
        return "—"
    a = np.asarray(array, dtype=float)
    if a.ndim == 0:
        return fmt_number(a, digits)
    idx = row.worst_index if row.worst_index is not None and len(row.worst_index) == a.ndim else None
    return fmt_number(a[idx], digits) if idx is not None else f"[{a.size}]"


def _index_cell(row: NodeRow) -> str:
    return "" if not row.worst_index else "[" + ",".join(map(str, row.worst_index)) + "]"


def _value_cell(row: NodeRow, digits: int) -> str:
    v = np.asarray(row.value)
    return fmt_number(v, digits) if v.ndim == 0 else "×".join(str(n) for n in v.shape)


def node_table(report: CheckReport, width: int):
    """The per-node rich Table; its columns fit the terminal (80 columns and up)."""
    from rich.table import Table
    medium, wide = width >= MEDIUM, width >= WIDE
    digits = 6 if medium else 4
    tensors = any(np.ndim(r.grad) > 0 for r in report.nodes if r.grad is not None)
    table = Table(show_edge=False, pad_edge=False, header_style="bold", expand=False)
    table.add_column("node", overflow="ellipsis", max_width=30 if wide else (22 if medium else 16), no_wrap=True)
    table.add_column("gate", overflow="ellipsis", max_width=10 if medium else 7, no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("backprop", justify="right", no_wrap=True)
    if wide:
        table.add_column("numeric", justify="right", no_wrap=True)
        table.add_column("symbolic", justify="right", no_wrap=True)
    if medium and tensors:
        table.add_column("at", no_wrap=True)
    table.add_column("num err", justify="right", no_wrap=True, min_width=7)
    if wide:
        table.add_column("tol", justify="right", no_wrap=True)
    table.add_column("sym err", justify="right", no_wrap=True, min_width=7)
    table.add_column("status", no_wrap=True, min_width=6)
    for row in report.nodes:
        cells = [row.name, row.op, _value_cell(row, digits), _element(row.grad, row, digits)]
        if wide:
            cells += [_element(row.numeric, row, digits), _element(row.symbolic, row, digits)]
        if medium and tensors:
            cells.append(_index_cell(row))
        cells.append(fmt_error(row.numeric_error))
        if wide:
            cells.append(fmt_error(row.tolerance) if row.grad is not None else "—")
        cells += [fmt_error(row.symbolic_error), f"[{STATUS_STYLE.get(row.status, '')}]{row.status}[/]"]
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
        value = fmt_number(out) if out.ndim == 0 else "×".join(map(str, out.shape)) + " (Jacobian checked)"
        console.print(f"{mark} {escape(report.source)}  output [bold]{escape(str(report.output))}[/] = {value}",
                      highlight=False)
        console.print(node_table(report, console.width))
        if report.expects:
            console.print(expect_table(report))
        for row in report.nodes + report.expects:
            if row.note and row.status not in ("pass", "skip"):
                label = getattr(row, "name", None) or f"expect {row.target}"
                if getattr(row, "worst_index", None):
                    label += f" {list(row.worst_index)}"
                console.print(f"  [{STATUS_STYLE[row.status]}]{row.status}[/] {escape(label)} "
                              f"(line {row.line}): {escape(row.note)}", highlight=False)
        if expand:
            render_expand(report, expand, console)
        if not report.passed:
            console.print(f"  reproduce: {escape(reproduce(report))}", highlight=False, soft_wrap=True)
        for line in method_lines(report):
            console.print(f"  [dim]{escape(line)}[/]", highlight=False)
        console.print()
    console.print(summary(run), highlight=False)


def expect_table(report: CheckReport):
    """The `expect` lines: what was written, what backprop gives, the verdict."""
    from rich.table import Table
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for col, justify in (("expect", "left"), ("line", "right"), ("expected", "right"), ("actual", "right"),
                         ("status", "left"), ("how", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "how")
    for e in report.expects:
        how = "at the point" if e.note is None else ("symbolically" if e.note == "symbolically equal" else "")
        table.add_row(e.target, str(e.line), _cell(e.expected), _cell(e.actual),
                      f"[{STATUS_STYLE.get(e.status, '')}]{e.status}[/]", how)
    return table


def _cell(value) -> str:
    a = np.asarray(value, dtype=float)
    return fmt_number(a) if a.ndim == 0 else "×".join(map(str, a.shape))


def method_lines(report: CheckReport) -> list:
    """How the oracles ran, when not the plain way: projections, chained or skipped SymPy."""
    lines = []
    if any(np.ndim(r.grad) > 0 for r in report.nodes if r.grad is not None):
        lines.append("tensor rows show the worst element; --expand NODE lists them all")
    projected = [r.name for r in report.nodes if r.numeric_method and r.numeric_method.startswith("projection")]
    if projected:
        lines.append(f"numeric by 4 random projections (past the element budget): {_names(projected)}")
    chained = [r for r in report.nodes if r.note and "exact local derivatives" in r.note]
    if chained:
        lines.append("symbolic: SymPy's exact local derivatives, chained (the file is past the whole-expression budget)")
    skipped = [r.name for r in report.nodes if r.status != "skip" and r.symbolic is None]
    if skipped and report.options.get("symbolic", True):
        lines.append(f"symbolic skipped (see the JSON note): {_names(skipped)}")
    return lines


def _names(names: list, limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


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
    line = f"{files} {noun}: {passed} passed, {failed} failed, {errors} with errors · nodes: {nodes or 'none'}"
    expects = [e.status for r in run.results for e in r.expects]
    if expects:
        line += f" · expects: {expects.count('pass')} pass" + (f", {expects.count('fail')} fail" if "fail" in expects else "")
    return line


def render_json(run: RunReport) -> str:
    return json.dumps(run.to_dict(), indent=2, allow_nan=False)


# --- reproduce, and the CI formats ----------------------------------------------------------------

def reproduce(report: CheckReport) -> str:
    """One shell line that reruns this check as it ran (file or -e, seed, tolerances, flags)."""
    import shlex
    from .checker import DEFAULT_ATOL, DEFAULT_RTOL
    from .numeric import DEFAULT_BUDGET
    o = report.options
    parts = ["gradcheck", "check"]
    if report.inline is not None:
        parts += ["-e", shlex.quote(report.inline)]
    else:
        parts.append(shlex.quote(report.source))
    for name, value in sorted((o.get("at") or {}).items()):
        parts += ["--at", shlex.quote(f"{name}={value}")]
    parts += ["--seed", str(report.seed)]
    if o.get("rtol") not in (None, DEFAULT_RTOL):
        parts += ["--rtol", repr(o["rtol"])]
    if o.get("atol") not in (None, DEFAULT_ATOL):
        parts += ["--atol", repr(o["atol"])]
    if o.get("step") is not None:
        parts += ["--step", repr(o["step"])]
    if o.get("budget") not in (None, DEFAULT_BUDGET):
        parts += ["--budget", str(o["budget"])]
    if o.get("symbolic") is False:
        parts.append("--no-symbolic")
    if o.get("strict"):
        parts.append("--strict")
    return " ".join(parts)


def _failure_lines(report: CheckReport) -> list:
    """`name (line N): status — note` for every row that makes the report fail."""
    out = []
    for row in report.failures:
        name = getattr(row, "name", None) or f"expect {row.target}"
        err = getattr(row, "numeric_error", None)
        detail = f", numeric error {fmt_error(err)}" if err is not None else ""
        out.append(f"{name} (line {row.line}): {row.status}{detail}" + (f" — {row.note}" if row.note else ""))
    return out


def _case_name(report: CheckReport) -> str:
    return report.source if report.inline is None else f"<expr> {report.inline}"


def render_junit(run: RunReport) -> str:
    """JUnit XML as GitLab and Jenkins read it: one testsuite, one testcase per file."""
    import xml.etree.ElementTree as ET
    failures = sum(1 for r in run.results if r.error is None and not r.passed)
    errors = sum(1 for r in run.results if r.error is not None)
    suite = ET.Element("testsuite", name="gradcheck", tests=str(len(run.results)),
                       failures=str(failures), errors=str(errors), skipped="0")
    seen: dict = {}
    for report in run.results:
        name = _case_name(report)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # unique and stable: the same file twice gets #2, #3, ...
            name = f"{name} #{seen[name]}"
        case = ET.SubElement(suite, "testcase", classname="gradcheck", name=name, file=report.source)
        if report.error is not None:
            err = report.error
            el = ET.SubElement(case, "error", message=err.message, type=type(err).__name__)
            el.text = err.format()
        elif not report.passed:
            lines = _failure_lines(report)
            el = ET.SubElement(case, "failure", message=f"{len(lines)} gradient check(s) failed", type="GradientCheckFailure")
            el.text = "\n".join(lines + ["", "reproduce: " + reproduce(report)])
    return '<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n' + ET.tostring(suite, encoding="unicode") + "\n</testsuites>\n"


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(run: RunReport) -> str:
    """GitHub Actions workflow commands: one ::error per failing row, at its line."""
    out = []
    for report in run.results:
        if report.error is not None:
            err = report.error
            props = f"file={_gh_property(report.source)}"
            if err.line:
                props += f",line={err.line},col={err.col or 1}"
            out.append(f"::error {props},title={_gh_property('gradcheck: input error')}::{_gh_data(err.message)}")
            continue
        for row in report.failures:
            name = getattr(row, "name", None) or f"expect {row.target}"
            level = "error" if row.status == "fail" or report.options.get("strict") else "warning"
            title = _gh_property(f"gradcheck {row.status}: {name}")
            message = (row.note or row.status) + "\nreproduce: " + reproduce(report)
            line, col = getattr(row, "culprit", None) or (row.line, row.col or 1)
            out.append(f"::{level} file={_gh_property(report.source)},line={line},col={col},"
                       f"title={title}::{_gh_data(message)}")
    out.append(_gh_data(summary(run)))
    return "\n".join(out) + "\n"


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _backprop_cell(row) -> str:
    """Backprop's value for a node row (its worst element), or the actual gradient for an expectation."""
    if isinstance(row, NodeRow):
        return _element(row.grad, row, 6)
    return fmt_number(np.asarray(row.actual)) if np.ndim(row.actual) == 0 else "×".join(map(str, np.shape(row.actual)))


def failure_text(report: CheckReport, width: int = 120) -> str:
    """Plain text for a failed check (the pytest plugin's report): failing rows, notes, reproduce."""
    from io import StringIO
    from rich.console import Console
    if report.error is not None:
        return report.error.format()
    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False)
    failing = [r for r in report.nodes if r in report.failures]
    if failing:
        console.print(node_table(CheckReport(report.source, report.output, report.value, report.seed, failing,
                                             options=report.options), width))
    for row in report.failures:
        name = getattr(row, "name", None) or f"expect {row.target}"
        console.print(f"{row.status} {name} (line {row.line}): {row.note or ''}")
    console.print(f"reproduce: {reproduce(report)}")
    return buffer.getvalue()


def render_markdown(run: RunReport) -> str:
    """A Markdown report for a job summary or a pull-request comment."""
    ok = run.passed and not run.has_input_error
    lines = [f"## gradcheck {'✅ passed' if ok else '❌ failed'}", "", summary(run), ""]
    lines += ["| file | output | nodes | result |", "|---|---|---|---|"]
    for r in run.results:
        if r.error is not None:
            lines.append(f"| `{_md_cell(r.source)}` | — | — | ❌ error: {_md_cell(r.error.message)} |")
            continue
        counts = ", ".join(f"{sum(x.status == s for x in r.nodes)} {s}" for s in ("pass", "kink", "warn", "fail", "skip")
                           if any(x.status == s for x in r.nodes))
        lines.append(f"| `{_md_cell(r.source)}` | {_md_cell(r.output)} | {counts} | {'✅' if r.passed else '❌'} |")
    failed = [r for r in run.results if r.error is None and not r.passed]
    for r in failed:
        lines += ["", f"### `{_md_cell(r.source)}`", "", "| node | line | status | backprop | numeric error | note |",
                  "|---|---|---|---|---|---|"]
        for row in r.failures:
            name = getattr(row, "name", None) or f"expect {row.target}"
            lines.append(f"| `{_md_cell(name)}` | {row.line} | {row.status} | {_md_cell(_backprop_cell(row))} | "
                         f"{fmt_error(getattr(row, 'numeric_error', None))} | {_md_cell(row.note or '')} |")
        lines += ["", f"Reproduce: `{reproduce(r)}`"]
    return "\n".join(lines) + "\n"
