"""The terminal table: one row per node, notes, the reproduce line, a summary; and pytest's failure text."""

from __future__ import annotations

import numpy as np

from ..core.report import CheckReport, RunReport
from ..core.tolerances import ROW_FLOOR
from ..checking.verdict import rel_error
from .common import (STATUS_STYLE, causes, displayable, element, fmt_error, fmt_number, row_error, fmt_shape, inherited, line_in,
                     precision_lines, row_name, shown_index, summary, warning_lines)
from .notes import print_note

MEDIUM, WIDE = 100, 130  # terminal widths at which the table adds the index, then the oracles' values


def _index_cell(row) -> str:
    idx = shown_index(row)
    return "" if not idx else "[" + ",".join(map(str, idx)) + "]"


def _value_cell(row, digits: int) -> str:
    v = np.asarray(row.value)
    return fmt_number(v, digits) if v.ndim == 0 else fmt_shape(v.shape)


SEPARATOR = 3        # " │ " between two columns
NAME_MIN = 12        # below this the node column gives way: optional columns are dropped first
OPTIONAL = ("sym err", "gate", "value", "backprop")  # dropped in this order in a narrow terminal


def node_table(report: CheckReport, width: int):
    """The per-node rich Table, fitted to the terminal: the status column is never cut, optional
    columns go before the names get short, and two different nodes never show the same text."""
    medium, wide = width >= MEDIUM, width >= WIDE
    digits = 6 if medium else 4
    tensors = any(np.ndim(r.grad) > 0 for r in report.nodes if r.grad is not None)
    symbolic = any(r.symbolic is not None or r.symbolic_error is not None for r in report.nodes)
    columns = ["gate", "value", "backprop"] + (["numeric"] if wide else []) + (["symbolic"] if wide and symbolic else []) \
        + (["at"] if medium and tensors else []) + ["num err"] + (["tol"] if wide else []) \
        + (["sym err"] if symbolic else []) + ["status"]
    cells = {c: [] for c in columns}
    for row in report.nodes:
        cell = {"gate": row.op, "value": _value_cell(row, digits), "backprop": element(row.grad, row, digits),
                "numeric": element(row.numeric, row, digits), "symbolic": element(row.symbolic, row, digits),
                "at": _index_cell(row), "num err": row_error(row),
                "tol": fmt_error(row.tolerance) if row.grad is not None else "—",
                "sym err": row_error(row, "symbolic"), "status": row.status}
        for c in columns:
            cells[c].append(cell[c])
    widths = {c: max([len(c)] + [len(x) for x in cells[c]]) for c in columns}
    widths["gate"] = min(widths["gate"], 10 if medium else 7)
    longest = max([len("node")] + [len(r.name) for r in report.nodes])

    def name_room():
        return width - sum(widths[c] + SEPARATOR for c in columns)

    for optional in (c for c in OPTIONAL if c in columns):
        if name_room() >= min(NAME_MIN, longest):
            break
        columns.remove(optional)
    names = fitted_names(distinct_names(report.nodes), max(4, name_room()))
    fast = _Rows.fitted(names, columns, cells, widths, width)
    if fast is not None:
        return fast
    from rich.table import Table
    from rich.text import Text
    table = Table(show_edge=False, pad_edge=False, header_style="bold", expand=False)
    table.add_column("node", no_wrap=not names.folded, overflow="fold")
    for c in columns:
        left = c in ("gate", "at", "status")
        table.add_column(c, justify="left" if left else "right", no_wrap=True,
                         overflow="ellipsis" if c == "gate" else "fold", max_width=widths[c] if c == "gate" else None,
                         min_width=widths[c] if c == "status" else None)
    for i in range(len(report.nodes)):
        values = [Text(names[i])]
        for c in columns:
            text = cells[c][i]
            values.append(Text(text, style=STATUS_STYLE.get(text, "")) if c == "status" else Text(text))
        table.add_row(*values)
    return table


class _Rows:
    """The node table as rich's Table draws it when every cell fits its column unwrapped (the common
    case), written line by line: the same segments in time linear in the rows, where rich's Table
    measures and lays out every cell several times (seconds for a few thousand rows)."""

    def __init__(self, columns: list, justify: list, widths: list, lines: list):
        self.columns, self.justify, self.widths, self.lines = columns, justify, widths, lines

    @classmethod
    def fitted(cls, names: list, columns: list, cells: dict, widths: dict, width: int):
        """The table, or None where rich's layout would differ: it does not fit `width` as it is, a name
        must wrap, or a cell holds text whose width in cells is not its length."""
        from rich.cells import cell_len
        if getattr(names, "folded", False):
            return None
        heads = ["node"] + columns
        texts = [list(names)] + [cells[c] for c in columns]
        natural = []
        for head, column in zip(heads, texts):
            longest = max([len(head)] + [len(t) for t in column])
            if any(cell_len(t) != len(t) for t in column if not t.isascii()):
                return None
            if head == "gate":
                longest = min(longest, widths["gate"])
            if head == "status":
                longest = max(longest, widths["status"])
            natural.append(longest)
        if heads[-1] != "status" or sum(natural) + SEPARATOR * (len(heads) - 1) > width:
            return None
        justify = ["left"] + ["left" if c in ("gate", "at", "status") else "right" for c in columns]
        gate = heads.index("gate") if "gate" in heads else None
        if gate is not None:
            w = natural[gate]
            texts[gate] = [t if len(t) <= w else t[: w - 1] + "…" for t in texts[gate]]
        return cls(heads, justify, natural, texts)

    def __rich_console__(self, console, options):
        from rich.segment import Segment
        from rich.style import Style
        bold = console.get_style("bold")
        null = Style()
        last = len(self.columns) - 1
        pad = [(0 if i == 0 else 1, 0 if i == last else 1) for i in range(last + 1)]

        def fit(text, i):
            return text.ljust(self.widths[i]) if self.justify[i] == "left" else text.rjust(self.widths[i])
        for i, head in enumerate(self.columns):  # the header: bold cells between heavy rules
            if pad[i][0]:
                yield Segment(" ", bold)
            yield Segment(fit(head, i), bold)
            if pad[i][1]:
                yield Segment(" ", bold)
            if i < last:
                yield Segment("┃", null)
        yield Segment.line()
        yield Segment("╇".join("━" * (self.widths[i] + sum(pad[i])) for i in range(last + 1)), null)
        yield Segment.line()
        statuses = {k: console.get_style(v) for k, v in STATUS_STYLE.items()}
        for r in range(len(self.lines[0])):  # the status column, last, in its style; the rest plain
            yield Segment("".join(fit(self.lines[i][r], i) + " │ " for i in range(last)), null)
            yield Segment(fit(self.lines[last][r], last), statuses.get(self.lines[last][r], null))
            yield Segment.line()


class _Names(list):
    """Display names, and whether some must wrap to stay apart."""
    folded = False


def distinct_names(rows: list) -> list:
    """Row names, with `@LINE:COL` added where different nodes share a name (`v * r` written twice),
    and `#2`, `#3`, ... where they share the position too (the partial sums of one comprehension)."""
    count: dict = {}
    for r in rows:
        count[r.name] = count.get(r.name, 0) + 1
    named = [r.name if count[r.name] == 1 else f"{r.name} @{r.line}:{r.col}" for r in rows]
    seen: dict = {}
    for i, name in enumerate(named):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            named[i] = f"{name} #{seen[name]}"
    return named


def fitted_names(names: list, room: int) -> _Names:
    """Names cut to `room` characters in the middle (`sum(v * r)…sum(v * q)`), keeping both ends;
    where two different names would still read the same, both are shown whole (wrapped)."""
    out = _Names(n if len(n) <= room else n[: (room - 1) - (room - 1) // 2] + "…" + n[len(n) - (room - 1) // 2:]
                 for n in names)
    seen: dict = {}
    for i, shown in enumerate(out):
        seen.setdefault(shown, set()).add(names[i])
    for i, shown in enumerate(out):
        if len(seen[shown]) > 1:
            out[i] = names[i]
            out.folded = True
    return out


def print_table(run: RunReport, console, expand: str | None = None, quiet: bool = False,
                verbose: bool = False, errors_shown: bool = False) -> None:
    """Print every report: a heading, the table, notes, then a one-line summary of the run (file
    names with their control characters escaped).

    `quiet`: only the reports that fail; `verbose`: also each gate's own check; `errors_shown`: input
    errors were printed elsewhere (standard error), so a broken file is one line here, in its place."""
    run = displayable(run)
    from rich.markup import escape
    for report in run.results:
        if report.error is not None:
            console.print(f"[bold red]✗[/] {escape(report.source)}", highlight=False)
            if errors_shown:
                err = report.error
                where = f" at line {err.line}, column {err.col or 1}" if err.line else ""
                console.print(f"  input error{where}: {escape(err.message)}", highlight=False, soft_wrap=True)
            else:
                console.print(escape(report.error.format()), highlight=False, soft_wrap=True)
            console.print()
            continue
        if quiet and report.passed:
            continue
        mark = "[green]✓[/]" if report.passed else "[bold red]✗[/]"
        out = np.asarray(report.value)
        value = fmt_number(out) if out.ndim == 0 else fmt_shape(out.shape) + (
            " (Jacobian checked)" if report.path is None else " (a seeded random dout)")
        print_note(console, f"{mark} {escape(report.source)}  output [bold]{escape(str(report.output))}[/] = {value}")
        console.print(node_table(report, console.width))
        if report.expects:
            console.print(expect_table(report))
        for line in cause_lines(report):
            print_note(console, line)
        if verbose and report.gates:
            console.print(gate_table(report))
        if expand:
            print_expand(report, expand, console)
        if not report.passed:
            console.print(f"  reproduce: {escape(report.reproduce())}", highlight=False, soft_wrap=True)
        for line in method_lines(report, expand):
            print_note(console, f"  [dim]{escape(line)}[/]")
        console.print()
    for source, why in run.skipped:
        print_note(console, f"[dim]- {escape(source)}: not checked: {escape(why)}[/]")
    print_note(console, escape(summary(run)))


def cause_lines(report: CheckReport, markup: bool = True) -> list:
    """The notes under a table: each root cause first (the gate and line that go wrong), the rows that
    only inherit it collapsed into one line, then the other rows that are not a plain pass."""
    from rich.markup import escape
    esc = escape if markup else (lambda t: t)
    lines, explained = [], set()
    for status, (line, _), lead, rows, file in causes(report):
        label = row_name(lead) + (f" {list(lead.worst_index)}" if getattr(lead, "worst_index", None) else "")
        style = STATUS_STYLE[status]
        head = f"[{style}]{status}[/]" if markup else status
        lines.append(f"  {head} {esc(label)} ({esc(line_in(line, file, report))}): {esc(lead.note or status)}")
        also = inherited(rows, lead)
        if also:
            lines.append(f"    {esc(also)}")
        explained.update(id(r) for r in rows)
    for row in report.nodes + report.expects:
        if row.note and row.status not in ("pass", "skip") and id(row) not in explained:
            label = row_name(row) + (f" {list(row.worst_index)}" if getattr(row, "worst_index", None) else "")
            head = f"[{STATUS_STYLE[row.status]}]{row.status}[/]" if markup else row.status
            lines.append(f"  {head} {esc(label)} (line {row.line}): {esc(row.note)}")
    for line in warning_lines(report):
        lines.append(f"  [yellow]{esc(line)}[/]" if markup else f"  {line}")
    return lines


def gate_table(report: CheckReport):
    """Each gate call's backward checked on its own (-v)."""
    from rich.table import Table
    from rich.text import Text
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for col, justify in (("gate", "left"), ("input", "left"), ("line", "right"), ("point", "right"),
                         ("num err", "right"), ("status", "left")):
        table.add_column(col, justify=justify)
    for g in report.gates:
        table.add_row(Text(f"{g.name}"), Text(g.input), str(g.line), str(g.point), row_error(g),
                      Text(g.status, style=STATUS_STYLE.get(g.status, "")))
    return table


def expect_table(report: CheckReport):
    """The `expect` lines: what was written, what backprop gives, the verdict."""
    from rich.table import Table
    from rich.text import Text
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for col, justify in (("expect", "left"), ("line", "right"), ("expected", "right"), ("actual", "right"),
                         ("status", "left"), ("how", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "how")
    for e in report.expects:
        how = "at the point" if e.note is None else ("symbolically" if e.note == "symbolically equal" else "")
        table.add_row(Text(e.target), str(e.line), _cell(e.expected), _cell(e.actual),
                      Text(e.status, style=STATUS_STYLE.get(e.status, "")), how)
    return table


def _cell(value) -> str:
    a = np.asarray(value, dtype=float)
    return fmt_number(a) if a.ndim == 0 else fmt_shape(a.shape)


def method_lines(report: CheckReport, expand: str | None = None) -> list:
    """How the oracles ran, when not the plain way: projections, chained or skipped SymPy. The hint
    about tensor rows only while some tensor row is not the one `expand` lists in full."""
    lines = list(precision_lines(report))
    if any(np.ndim(r.grad) > 0 and r.name != expand for r in report.nodes if r.grad is not None):
        lines.append("tensor rows show the worst element; --expand NODE lists them all")
    projected = [r for r in report.nodes if r.numeric_method and r.numeric_method.startswith("projection")]
    if projected:
        why = projected[0].numeric_method.partition("; ")[2].rstrip(")") or "past the element budget; --budget raises it"
        lines.append(f"numeric by random projections ({why}): {_names([r.name for r in projected])}")
    chained = [r for r in report.nodes if r.note and "exact local derivatives" in r.note]
    if chained:
        lines.append("symbolic: SymPy's exact local derivatives, chained (the file is past the whole-expression budget)")
    if report.symbolic_rules:
        ruled = [r.partition(" (line ")[0] for r in report.symbolic_rules]
        lines.append(f"symbolic by index rules or one slice's partials, SymPy-confirmed at reduced shapes "
                     f"(see the JSON): {_names(ruled)}")
    skipped = [r.name for r in report.nodes if r.status != "skip" and r.symbolic is None]
    if skipped and report.settings.symbolic:
        lines.append(f"symbolic skipped (see the JSON note): {_names(skipped)}")
    return lines


def _names(names: list, limit: int = 4) -> str:
    shown = ", ".join(n if len(n) <= 40 else n[:39] + "…" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def print_expand(report: CheckReport, name: str, console) -> None:
    """Print one tensor node's elements side by side: backprop, numeric, symbolic, error."""
    from rich.table import Table
    from rich.markup import escape
    row = next((r for r in report.nodes if r.name == name), None)
    if row is None or row.grad is None:
        return
    table = Table(title=f"{escape(name)}: every element", show_edge=False, header_style="bold")
    for col in ("index", "backprop", "numeric", "symbolic", "rel err"):
        table.add_column(col, justify="right")
    grad = np.asarray(row.grad, dtype=float)
    num = None if row.numeric is None else np.asarray(row.numeric, dtype=float)
    sym = None if row.symbolic is None else np.asarray(row.symbolic, dtype=float)
    # each element's error as the verdict measures it: at no less than ROW_FLOOR of the row's largest entry
    both = np.concatenate([grad.ravel()] + ([num.ravel()] if num is not None else []))
    floor = ROW_FLOOR * float(np.max(np.abs(both[np.isfinite(both)]), initial=0.0))
    for idx in np.ndindex(*grad.shape):
        err = rel_error(grad[idx], num[idx], floor) if num is not None else None
        table.add_row(str(list(idx)), fmt_number(grad[idx]), fmt_number(num[idx]) if num is not None else "—",
                      fmt_number(sym[idx]) if sym is not None else "—", fmt_error(None if err is None else float(err), row.numeric_rounding))
    console.print(table)


def failure_text(report: CheckReport, width: int = 120) -> str:
    """Plain text for a failed check (the pytest plugin's report): failing rows, notes, reproduce."""
    from io import StringIO
    from rich.console import Console
    from rich.markup import escape
    if report.error is not None:
        return report.error.format()
    buffer = StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False, emoji=False)
    for line in cause_lines(report, markup=False):  # the cause first: pytest's short summary shows this line
        print_note(console, escape(line.strip() if line.startswith("  ") and not line.startswith("    ") else line))
    failing = [r for r in report.nodes if r in report.failures]
    if failing:
        console.print(node_table(CheckReport(report.source, report.output, report.value, failing,
                                             settings=report.settings), width))
    console.print(escape(f"reproduce: {report.reproduce()}"))
    return buffer.getvalue()
