"""HTML: one self-contained page of a run (`--format html`), the same blocks as a notebook's display,
and explain's steps. The culprit leads; every table follows, tensor rows folding out in <details>.
No external fonts, styles or scripts (explain's page has one inline script: the stepper); every text
from a file, a name or a note is escaped."""

from __future__ import annotations

import shutil
from html import escape

import numpy as np

from ..core.errors import GradcheckError
from ..core.report import CheckReport, NodeRow, RunReport
from ..core.text import visible
from .common import causes, element, fmt_number, row_error, fmt_shape, line_in, row_name, summary

# light and dark themes from one set of variables: the status colours keep their contrast in both
CSS = """
.gc{--fg:#1b1f24;--bg:#ffffff;--muted:#57606a;--line:#d0d7de;--pass:#1a7f37;--fail:#cf222e;--kink:#9a6700;
--warn:#8250df;--skip:#6e7781;--lead:#fff1f0;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;
color:var(--fg);background:var(--bg);line-height:1.4;font-size:14px}
@media (prefers-color-scheme:dark){.gc{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;--pass:#3fb950;
--fail:#ff7b72;--kink:#d29922;--warn:#bc8cff;--skip:#9198a1;--lead:#3a1d1d}}
.gc h1{font-size:20px;margin:8px 0}.gc h2{font-size:16px;margin:18px 0 6px}
.gc table{border-collapse:collapse;margin:6px 0 12px}.gc th,.gc td{border:1px solid var(--line);padding:3px 8px;
text-align:left;vertical-align:top}.gc th{color:var(--muted);font-weight:600}
.gc .num{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;text-align:right;white-space:nowrap}
.gc code,.gc pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}.gc pre{margin:4px 0;white-space:pre-wrap}
.gc .pass{color:var(--pass);font-weight:600}.gc .fail{color:var(--fail);font-weight:600}
.gc .kink{color:var(--kink);font-weight:600}.gc .warn{color:var(--warn);font-weight:600}
.gc .skip{color:var(--skip)}.gc .error{color:var(--fail);font-weight:600}
.gc .culprit{background:var(--lead);border-left:4px solid var(--fail);padding:8px 12px;margin:8px 0}
.gc .ok{border-left:4px solid var(--pass);padding:8px 12px;margin:8px 0}
.gc .muted{color:var(--muted)}.gc svg{max-width:100%;height:auto}
"""


def _e(text) -> str:
    return escape(str(text), quote=True)


def _status(status: str) -> str:
    return f'<span class="{_e(status)}">{_e(status)}</span>'


def _tensor(array, row: NodeRow) -> str:
    """A cell: the number, or the shown element with the whole array folded in <details>."""
    if array is None:
        return "—"
    a = np.asarray(array, dtype=float)
    shown = _e(element(a, row, 6))
    if a.ndim == 0:
        return shown
    with np.printoptions(precision=6, threshold=200, linewidth=100):
        whole = np.array2string(a)
    return f"<details><summary>{shown}</summary><pre>{_e(whole)}</pre></details>"


def headline(report: CheckReport) -> str:
    """One sentence: what is wrong and where (the first root cause), or that it passes."""
    if report.error is not None:
        return f'<div class="culprit"><span class="error">error</span> {_e(report.error.format())}</div>'
    found = list(causes(report))
    if not found:
        checked = sum(1 for r in report.nodes if r.status != "skip")
        kinks = sum(1 for r in report.nodes if r.status == "kink")
        at_kinks = f" ({kinks} at a kink, within its one-sided slopes)" if kinks else ""
        return (f'<div class="ok"><span class="pass">pass</span> — all {checked} checked nodes of '
                f"<code>{_e(report.source)}</code> agree with finite differences"
                + (" and SymPy" if report.symbolic_coverage else "") + f"{at_kinks}.</div>")
    status, (line, _), row, _rows, file = found[0]
    where = line_in(line, file, report)
    rest = f" {len(found) - 1} more cause{'s' if len(found) > 2 else ''} below." if len(found) > 1 else ""
    return (f'<div class="culprit">{_status(status)} <b>{_e(row_name(row))}</b> at <b>{_e(where)}</b>: '
            f"{_e((row.note or status).rstrip('.'))}.{rest}</div>")


def _nodes_table(report: CheckReport) -> str:
    head = ("<tr><th>node</th><th>gate</th><th>shape</th><th>line</th><th>status</th><th>backprop</th>"
            "<th>numeric</th><th>symbolic</th><th>numeric error</th><th>note</th></tr>")
    body = []
    for r in report.nodes:
        shape = fmt_shape(r.shape) if r.shape else "scalar"
        body.append(f"<tr><td><code>{_e(r.name)}</code></td><td>{_e(r.op)}</td><td>{_e(shape)}</td>"
                    f'<td class="num">{r.line}</td><td>{_status(r.status)}</td>'
                    f'<td class="num">{_tensor(r.grad, r)}</td><td class="num">{_tensor(r.numeric, r)}</td>'
                    f'<td class="num">{_tensor(r.symbolic, r)}</td><td class="num">{_e(row_error(r))}</td>'
                    f"<td>{_e(r.note or '')}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _gates_table(report: CheckReport) -> str:
    if not report.gates:
        return ""
    head = ("<tr><th>call</th><th>gate</th><th>checks</th><th>line</th><th>point</th><th>status</th>"
            "<th>numeric error</th><th>note</th></tr>")
    body = [f"<tr><td><code>{_e(g.name)}</code></td><td>{_e(g.gate)}</td><td><code>{_e(g.input)}</code></td>"
            f'<td class="num">{g.line}</td><td class="num">{g.point}</td><td>{_status(g.status)}</td>'
            f'<td class="num">{_e(row_error(g))}</td><td>{_e(g.note or "")}</td></tr>'
            for g in report.gates]
    return f"<h2>Each gate's backward on its own</h2><table>{head}{''.join(body)}</table>"


def _expects_table(report: CheckReport) -> str:
    if not report.expects:
        return ""
    rows = []
    for e in report.expects:
        actual = fmt_number(np.asarray(e.actual)) if np.ndim(e.actual) == 0 else fmt_shape(np.shape(e.actual))
        rows.append(f"<tr><td><code>expect {_e(e.target)}</code></td><td class=\"num\">{e.line}</td>"
                    f"<td>{_status(e.status)}</td><td class=\"num\">{_e(actual)}</td><td>{_e(e.note or '')}</td></tr>")
    return ("<h2>Expectations</h2><table><tr><th>expectation</th><th>line</th><th>status</th><th>backprop</th>"
            f"<th>note</th></tr>{''.join(rows)}</table>")


def report_block(report: CheckReport, svg: str | None = None) -> str:
    """One report as an HTML block (no page around it): a notebook cell's output, or a page's section."""
    parts = [f'<h1><code>{_e(report.source)}</code> {_status("pass" if report.passed else "fail")}</h1>'
             if report.error is None else f"<h1><code>{_e(report.source)}</code></h1>", headline(report)]
    if report.error is None:
        if report.output is not None:
            parts.append(f'<p class="muted">output <code>{_e(report.output)}</code> = '
                         f"{_e(fmt_number(np.asarray(report.value)) if np.ndim(report.value) == 0 else fmt_shape(np.shape(report.value)))}</p>")
        parts += [_nodes_table(report), _gates_table(report), _expects_table(report)]
        if report.warnings:
            parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{_e(m)}" + (f" (line {line})" if line else "") + "</li>"
                                                           for m, line, _ in report.warnings) + "</ul>")
        if svg:
            parts.append(f"<h2>The circuit</h2>{svg}")
        parts.append(f'<p class="muted">Reproduce: <code>{_e(report.reproduce())}</code></p>')
    return "\n".join(p for p in parts if p)


def fragment(body: str) -> str:
    """A block with its styles, for a notebook (the page's `<style>` scoped to `.gc`)."""
    return f'<div class="gc"><style>{CSS}</style>{body}</div>'


def page(title: str, body: str) -> str:
    """A whole self-contained page."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}body{{margin:0}}.gc{{padding:16px 24px}}</style></head>"
            f'<body><div class="gc">{body}</div></body></html>\n')


def render_html(run: RunReport, pictures: dict | None = None) -> str:
    """The run as one page: the summary, then each report (failing ones first), `pictures` by source."""
    ok = run.passed and not run.has_input_error
    order = sorted(run.results, key=lambda r: (r.error is None and r.passed, r.source))
    body = [f"<h1>gradcheck {_status('pass' if ok else 'fail')}</h1>", f"<p>{_e(summary(run))}</p>"]
    body += [f"<section>{report_block(r, (pictures or {}).get(r.source))}</section>" for r in order]
    return page("gradcheck: " + ("passed" if ok else "failed"), "\n".join(body))


PICTURED = 200  # nodes: a bigger circuit is not drawn in a page (it would not be read)


def pictures(run: RunReport) -> dict:
    """The circuit of each `.grad` report as inline SVG, by source, where Graphviz is installed."""
    if shutil.which("dot") is None:
        return {}
    return {r.source: svg for r in run.results if r.error is None and r.path is None and r.text is not None
            for svg in [picture(r)] if svg}


def picture(report: CheckReport) -> str | None:
    """The report's circuit (values and gradients on the wires, failing gates marked) as SVG, or None:
    drawn from the text the report was checked from, with its own point and seed (never the file read again,
    which may have changed since)."""
    from ..language.frontend import load
    from ..core.report import faults
    from ..teaching.teach import explain
    try:
        text = report.inline or report.text
        if text is None:
            return None
        graph = load(text, report.source, report.at or None, report.settings.seed, report.inline is not None)
        return circuit_svg(explain(graph), faults(report)) if len(graph.nodes) <= PICTURED else None
    except (GradcheckError, OSError, UnicodeDecodeError):
        return None


def circuit_svg(ex, faults) -> str | None:
    """An explained circuit as inline SVG, or None without Graphviz (or past its drawing limit)."""
    from . import graphviz
    from .circuit import circuit_dot
    if shutil.which("dot") is None:
        return None
    try:
        svg = graphviz.render(circuit_dot(ex, faults), "svg", len(ex.graph.nodes)).decode("utf-8")
    except GradcheckError:
        return None
    return svg[svg.find("<svg"):]  # the document's XML prologue and DOCTYPE do not belong inside a page


def explain_page(ex, faults) -> str:
    """explain as one self-contained page: the circuit to step through (laid out by Graphviz where it
    is installed, else in columns; not past PICTURED nodes), then the steps as tables."""
    from .stepper import stepper_html
    drawn = sum(1 for n in ex.graph.nodes[: ex.graph.output + 1] if n.kind != "literal")
    stepper = stepper_html(ex, faults) if drawn <= PICTURED else None  # past it: the tables alone
    body = explain_html(ex, faults, stepper=stepper)
    return page(f"gradcheck explain: {visible(ex.source)}", body)


def explain_frame(ex, faults, height: int = 720) -> str:
    """explain's page in an iframe (`srcdoc`, scripts allowed, nothing else): a notebook cell's output,
    its script and ids kept apart from the notebook's and from other cells'."""
    return (f'<iframe srcdoc="{_e(explain_page(ex, faults))}" sandbox="allow-scripts" title="gradcheck explain" '
            f'style="width:100%;height:{height}px;border:1px solid #d0d7de;border-radius:6px"></iframe>')


def explain_html(ex, faults, svg: str | None = None, stepper: str | None = None) -> str:
    """explain's chain rule as a page: the forward pass, each backward edge as upstream × local =
    downstream (the wrong ones marked), the inputs' gradients and the circuit (`svg`, a static
    picture; or `stepper`, the circuit to step through, placed first)."""
    from ..teaching.teach import grad_name
    from .teach import short
    culprits = [ex.graph.nodes[nid] for nid in sorted(faults.culprits)]
    lead = "".join(f'<div class="culprit"><span class="fail">fail</span> the backward of <b>{_e(n.name)}</b> '
                   f"({_e(n.label)}, called at line {n.pos.line}) fails its own check: the gradients marked ✗ "
                   "are wrong (gradcheck check says which line).</div>" for n in culprits)
    forward = "".join(f"<tr><td><code>{_e(s.node)}</code></td><td>{_e(s.gate)}</td>"
                      f"<td>{_e(', '.join(f'{n} = {short(v)}' for n, v in s.inputs))}</td>"
                      f'<td class="num">{_e(short(s.value))}</td></tr>' for s in ex.forward)
    backward = []
    for s in ex.backward:
        local = short(s.local) if s.local is not None else "J"
        bad = faults.wire(s.node_id, s.slot)
        mark = ' <span class="fail">✗</span>' if bad else ""
        backward.append(f"<tr><td><code>{_e(s.node)} → {_e(s.input)}</code></td><td>{_e(s.gate)}: {_e(s.formula)}</td>"
                        f"<td><code>{_e(grad_name(s.input))} {'+=' if s.accumulate else '='} {_e(short(s.upstream))} × "
                        f"{_e(local)} = {_e(short(s.downstream))}</code>{mark}</td></tr>")
    leaves = [n for n in ex.graph.nodes if n.kind == "leaf"]
    grads = ", ".join(f"{grad_name(n.name)} = {short(ex.grads.get(n.id, np.zeros(n.shape)))}"
                      + (" ✗" if n.id in faults.wrong else "") for n in leaves)
    body = [f"<h1><code>{_e(visible(ex.source))}</code>: output <code>{_e(ex.output)}</code> = {_e(short(ex.value, 6))}</h1>",
            lead] + ([f"<h2>Step through the circuit</h2>{stepper}"] if stepper else []) + [
            "<h2>Forward pass, in topological order</h2>",
            f"<table><tr><th>node</th><th>gate</th><th>inputs</th><th>value</th></tr>{forward}</table>",
            "<h2>Backward pass, in reverse order: upstream × local = downstream</h2>",
            f"<table><tr><th>edge</th><th>local gradient</th><th>step</th></tr>{''.join(backward)}</table>",
            f"<h2>Gradients on the inputs</h2><p><code>{_e(grads)}</code></p>"]
    if svg:
        body.append(f"<h2>The circuit</h2>{svg}")
    return "\n".join(b for b in body if b)
