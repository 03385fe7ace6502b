"""The editor's view of a `.grad` file, for the language server (`gradcheck lsp`): the check's findings
as marks on their lines, a node's value and gradient and its gate's local-gradient rule on hover,
where a name or a gate is defined, and the chain rule at a node.

Plain data in the Language Server Protocol's terms (lines from 0, columns in UTF-16 code units), so
the server only wraps it. `analyse` never raises: bad input, a limit reached, or a bug of ours on a
half-typed file becomes a mark. Never prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..checking.checker import check_graph
from ..checking.diagnosis import causes, inherited, row_name
from ..core import config
from ..core.errors import GradcheckError
from ..core.limits import MAX_FILE_BYTES, size_error
from ..core.report import CheckReport, NodeRow, faults
from ..core.settings import Settings
from ..core.status import Status
from ..gates import functions
from ..language import nodes
from ..language.frontend import load
from ..language.graph import Graph, Node
from ..language.syntax import parse
from ..teaching.teach import explain, grad_name
from .teach import short

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"[A-Za-z_0-9.]+|\S")


class Severity(IntEnum):
    """A mark's severity, numbered as the protocol's DiagnosticSeverity."""
    ERROR = 1
    WARNING = 2
    INFORMATION = 3
    HINT = 4


SEVERITY = {Status.FAIL: Severity.ERROR, Status.WARN: Severity.WARNING, Status.KINK: Severity.INFORMATION}


@dataclass(frozen=True, kw_only=True)
class Span:
    """A range of the text: lines from 0, characters in UTF-16 code units (the protocol's default)."""
    line: int
    character: int
    end_line: int
    end_character: int


@dataclass(frozen=True, kw_only=True)
class Mark:
    """One diagnostic: where, how bad, the report's reason, and what kind of finding (`fail`, `kink`,
    `warn`, `warning`, `error`)."""
    span: Span
    severity: Severity
    message: str
    code: str


@dataclass(kw_only=True)
class Analysis:
    """One version of a file, checked: its marks, and what hovers and definitions read."""
    text: str
    source: str
    marks: list[Mark] = field(default_factory=list)
    program: nodes.Program | None = None
    graph: Graph | None = None
    report: CheckReport | None = None


# --- positions ---------------------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    return text.split("\n")


def _utf16(line: str, index: int) -> int:
    """The UTF-16 column of the code point `index` of a line."""
    return len(line[:index].encode("utf-16-le", "surrogatepass")) // 2


def _code_point(line: str, units: int) -> int:
    """The code point index of a UTF-16 column of a line (clamped to the line)."""
    count = 0
    for i, ch in enumerate(line):
        if count >= units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
    return len(line)


def offset(text: str, line: int, character: int) -> int | None:
    """The character offset of a protocol position, or None past the text."""
    lines = _lines(text)
    if not 0 <= line < len(lines):
        return None
    return sum(len(t) + 1 for t in lines[:line]) + _code_point(lines[line], character)


def _span(text: str, line: int, start: int, end: int) -> Span:
    """A span on one line (1-based line, 0-based code point columns) in protocol terms."""
    lines = _lines(text)
    row = min(max(line, 1), len(lines)) - 1
    content = lines[row]
    return Span(line=row, character=_utf16(content, start), end_line=row, end_character=_utf16(content, end))


def _statement_span(text: str, line: int, col: int) -> Span:
    """From (line, col) to the end of that line's code (a comment left out)."""
    lines = _lines(text)
    content = lines[min(max(line, 1), len(lines)) - 1]
    start = min(max(col - 1, 0), len(content))
    code = content.split("#", 1)[0].rstrip() if "#" in content[start:] else content.rstrip()
    end = max(len(code), start + 1) if start < len(content) else start
    return _span(text, line, start, min(end, len(content)))


def _token_span(text: str, line: int | None, col: int | None) -> Span:
    """The token at (line, col): a name or a number, else one character."""
    lines = _lines(text)
    line = min(max(line or 1, 1), len(lines))
    content = lines[line - 1]
    start = min(max((col or 1) - 1, 0), len(content))
    if start == len(content) and content:  # past the end of the line (an unfinished statement): its last character
        start -= 1
    found = _TOKEN.match(content, start)
    return _span(text, line, start, found.end() if found else min(start + 1, len(content)))


def pos_span(text: str, pos: nodes.Pos) -> Span:
    """The span of an AST position (a name: one line)."""
    lines = _lines(text)
    content = lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""
    start = pos.col - 1
    return _span(text, pos.line, start, min(start + (pos.end - pos.start), len(content)))


def _word_at(text: str, at: int) -> tuple[str, int, int] | None:
    """The name under (or just before) the offset: (name, start, end)."""
    line_start = text.rfind("\n", 0, at) + 1
    line_end = text.find("\n", at)
    line = text[line_start: len(text) if line_end < 0 else line_end]
    for found in _WORD.finditer(line):
        if found.start() <= at - line_start <= found.end():
            return found.group(), line_start + found.start(), line_start + found.end()
    return None


def _called(text: str, end: int) -> bool:
    """Whether the name ending at `end` is followed by `(`: a call."""
    return text[end:end + 200].lstrip(" \t").startswith("(")


# --- the check ----------------------------------------------------------------------------------------

def analyse(text: str, *, source: str, path: str | None = None) -> Analysis:
    """Check one version of a file. Settings come from the `[tool.gradcheck]` nearest `path` (as the
    command line's); every problem, a bug of ours too, becomes a mark, never an exception."""
    result = Analysis(text=text, source=source)
    if not any(line.split("#", 1)[0].strip() for line in _lines(text)):  # nothing written yet is not an error
        return result
    try:
        _analyse(result, path)
    except GradcheckError as err:
        result.marks.append(_error_mark(text, err, source))
    except RecursionError:
        result.marks.append(_error_mark(text, GradcheckError("the input is nested too deeply", 1, 1), source))
    except Exception as err:  # noqa: BLE001 - a bug of ours on a half-typed file must not stop the editor's server
        result.marks.append(Mark(span=_token_span(text, 1, 1), severity=Severity.ERROR, code="error",
                                 message=f"gradcheck could not check this file ({type(err).__name__}: {err}); "
                                         "this is a bug of gradcheck, please report it"))
    return result


def _analyse(result: Analysis, path: str | None) -> None:
    text = result.text
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise GradcheckError(size_error("this file", size, MAX_FILE_BYTES, "bytes", "MAX_FILE_BYTES")
                             + ": not checked (a .grad source is text, a few kilobytes)", 1, 1)
    settings = _settings(path)
    result.program = parse(text)
    result.graph = load(text, result.source, None, settings.seed)
    report = check_graph(result.graph, settings)
    result.report = report
    if report.error is not None:
        result.marks.append(_error_mark(text, report.error, result.source))
    result.marks.extend(finding_marks(report, text))


def _settings(path: str | None) -> Settings:
    if path is None:
        return Settings()
    try:
        settings, _ = config.load(Path(path).parent)
    except GradcheckError as err:
        where = f"{err.source}:{err.line}" if err.line else (err.source or "pyproject.toml")
        raise GradcheckError(f"{where}: {err.message}", 1, 1) from None
    return settings


def _error_mark(text: str, err: GradcheckError, source: str) -> Mark:
    elsewhere = err.source is not None and err.source != source
    message = f"{err.source}: {err.message}" if elsewhere else err.message
    line, col = (1, 1) if elsewhere else (err.line, err.col)
    return Mark(span=_token_span(text, line, col), severity=Severity.ERROR, message=message, code="error")


def finding_marks(report: CheckReport, text: str) -> list[Mark]:
    """One mark per root cause (a failing d line at its line, the rows that only inherit it folded
    in), kinks as information, warn rows and the report's warnings as warnings."""
    rows = [r for r in report.nodes + report.gates + report.expects if r.status in SEVERITY]
    shown = SimpleNamespace(failures=rows, path=None, source=report.source)
    marks = []
    for status, (line, col), lead, group, file in causes(shown):
        if file != report.source or not line:
            continue
        message = f"{row_name(lead)}: {lead.note or status}"
        also = inherited(group, lead)
        marks.append(Mark(span=_statement_span(text, line, col or 1), severity=SEVERITY[Status(status)],
                          message=message + (f"\n{also}" if also else ""), code=str(status)))
    for message, line, col in report.warnings:
        marks.append(Mark(span=_statement_span(text, line or 1, col or 1), severity=Severity.WARNING,
                          message=message, code="warning"))
    return marks


# --- what is under the cursor -------------------------------------------------------------------------

def _gate_def_at(program: nodes.Program, text: str, at: int) -> nodes.GateDef | None:
    """The `gate` definition whose lines hold the offset."""
    for s in program.statements:
        if not isinstance(s, nodes.GateDef):
            continue
        start = text.rfind("\n", 0, s.pos.start) + 1
        end = max([s.expr.pos.end] + [b.expr.pos.end for b in s.body])
        if start <= at <= end:
            return s
    return None


def node_at(analysis: Analysis, line: int, character: int) -> Node | None:
    """The circuit's node at a position: a name bound outside a gate definition, else the smallest
    gate call whose source holds the position. None inside a `gate` definition (its names are local)."""
    graph, program, text = analysis.graph, analysis.program, analysis.text
    at = offset(text, line, character)
    if graph is None or program is None or at is None or _gate_def_at(program, text, at) is not None:
        return None
    word = _word_at(text, at)
    if word and word[0] in graph.names and not _called(text, word[2]):
        return graph.node(word[0])
    for spot in (at, at - 1):
        holding = [n for n in graph.nodes if n.kind == "gate" and n.pos.start <= spot < n.pos.end]
        if holding:
            return min(holding, key=lambda n: (n.pos.end - n.pos.start, -n.id))
    return None


def _row(analysis: Analysis, node: Node) -> NodeRow | None:
    report = analysis.report
    if report is None:
        return None
    return next((r for r in report.nodes if r.node_id == node.id), None)


def _rule(operation) -> str:
    """A gate's local-gradient rule and what it computes, in markdown."""
    local = operation.local.strip()
    rule = f"```\n{local}\n```" if "\n" in local else f"`{local}`"
    return f"local gradient of `{operation.name}`: {rule}  \n{operation.doc}"


def hover(analysis: Analysis, line: int, character: int) -> str | None:
    """Markdown for the position: a node's value and gradient (with its status and the report's
    reason) and, for a gate call, the gate's local-gradient rule; a gate's name alone: its rule."""
    text, program = analysis.text, analysis.program
    at = offset(text, line, character)
    if program is None or at is None:
        return None
    word = _word_at(text, at)
    gate_def = _gate_def_at(program, text, at)
    if gate_def is not None:
        if word and word[0] == gate_def.name:
            return _user_gate_hover(analysis, gate_def)
        return _builtin_hover(word[0]) if word and _called(text, word[2]) else None
    node = node_at(analysis, line, character)
    if node is not None:
        return _node_hover(analysis, node)
    return _builtin_hover(word[0]) if word and _called(text, word[2]) else None


def _user_gate_hover(analysis: Analysis, gate_def: nodes.GateDef) -> str | None:
    graph = analysis.graph
    calls = [n for n in graph.nodes if n.composite is not None and n.composite.name == gate_def.name] if graph else []
    if calls:
        return f"**gate {gate_def.name}**  \n" + _rule(calls[0].gate)
    return f"**gate {gate_def.name}**({', '.join(gate_def.params)}): not called, so not checked"


def _builtin_hover(name: str) -> str | None:
    found = functions(name)
    return "\n\n".join(_rule(g) for g in found) if found else None


def _node_hover(analysis: Analysis, node: Node) -> str:
    row = _row(analysis, node)
    report = analysis.report
    kind = {"leaf": "input", "const": "const"}.get(node.kind, f"gate `{node.label}`")
    lines = [f"**{node.name}** · {kind} · line {node.pos.line}"]
    value = row.value if row is not None else node.value
    if value is not None:
        lines.append(f"value: `{short(value)}`" + (f" (shape {node.shape})" if node.shape else ""))
    if row is not None and row.grad is not None and report is not None and report.output:
        oracles = [f"{name} `{short(v)}`" for name, v in (("numeric", row.numeric), ("SymPy", row.symbolic))
                   if v is not None]
        lines.append(f"gradient ∂{report.output}/∂{node.name}: `{short(row.grad)}` (backprop)"
                     + (f"; {', '.join(oracles)}" if oracles else ""))
    if row is not None:
        lines.append(f"status: **{row.status}**" + (f": {row.note}" if row.note else ""))
    if node.gate is not None:
        lines.append(_rule(node.gate))
    return "  \n".join(lines)


def definition(analysis: Analysis, line: int, character: int) -> Span | None:
    """Where the name under the position is defined: a gate's `gate` line, a parameter or local of
    the gate definition the position is in, or the assignment of a name."""
    text, program = analysis.text, analysis.program
    at = offset(text, line, character)
    if program is None or at is None:
        return None
    word = _word_at(text, at)
    if word is None:
        return None
    name = word[0]
    gate_defs = {s.name: s for s in program.statements if isinstance(s, nodes.GateDef)}
    inside = _gate_def_at(program, text, at)
    if inside is not None and not _called(text, word[2]):
        if name in inside.params and len(inside.param_pos) == len(inside.params):
            return pos_span(text, inside.param_pos[inside.params.index(name)])
        local = next((b for b in inside.body if b.name == name), None)
        return pos_span(text, local.pos) if local is not None else None
    if name in gate_defs and (_called(text, word[2]) or inside is not None):
        return pos_span(text, gate_defs[name].pos)
    bound = next((s for s in program.statements if isinstance(s, nodes.Assign) and s.name == name), None)
    return pos_span(text, bound.pos) if bound is not None else None


# --- the chain rule at a node ----------------------------------------------------------------------------

def chain_rule(analysis: Analysis, line: int, character: int) -> str | None:
    """The chain rule at the node under the position, as text: one term per gate that reads it
    (upstream × local = downstream), the terms' sum, and what the oracles say of it."""
    node = node_at(analysis, line, character)
    graph, report = analysis.graph, analysis.report
    if node is None or graph is None:
        return None
    out = graph.nodes[graph.output]
    d = grad_name(node.name)
    head = f"chain rule at {node.name} (line {node.pos.line})"
    if node.id == out.id:
        return f"{head}: {node.name} is the output, so {grad_name(out.name)}/{d} = 1"
    if node.kind == "const":
        return f"{head}: {node.name} is a const: frozen, no gradient flows into it"
    try:
        ex = explain(graph)
    except GradcheckError as err:
        return f"{head}: cannot be shown: {err.message}"
    wrong = faults(report) if report is not None else None
    steps = [s for s in ex.backward if s.input_id == node.id]
    if not steps:
        return f"{head}: {node.name} does not reach the output {out.name}: {d} = 0"
    lines = [f"{head}: {grad_name(out.name)}/{d} sums one term per gate that reads {node.name}, "
             "upstream × local = downstream"]
    for s in steps:
        local = short(s.local) if s.local is not None else "J"
        lines.append(f"  {s.node} → {s.input}  [{s.gate}: {s.formula}]")
        lines.append(f"      {d} {'+=' if s.accumulate else '='} {short(s.upstream)} × {local} = {short(s.downstream)}")
        if wrong is not None and (s.node_id, s.slot) in wrong.wires:
            lines.append("      ✗ this gate's backward is wrong for this input (it fails its own check)")
    total = ex.grads.get(node.id, np.zeros(node.shape)) if ex.grads else np.zeros(node.shape)
    lines.append(f"  total: {d} = {short(total)}")
    row = _row(analysis, node)
    if row is not None and row.status != Status.SKIP:
        said = [f"{name} {short(v)}" for name, v in (("numeric", row.numeric), ("SymPy", row.symbolic)) if v is not None]
        lines.append(f"  check: {row.status}" + (f" (the other oracles say {', '.join(said)})" if said else "")
                     + (f": {row.note}" if row.note else ""))
    return "\n".join(lines)
