"""Diagnosis: which failing rows share a root cause, and which rows only inherit it. Plain data in,
plain data out; every face (table, GitHub, JUnit, Markdown, pytest) groups and folds with these."""

from __future__ import annotations

from dataclasses import replace

from ..core.report import GateRow


def row_name(row) -> str:
    """A node row's name, `expect dx` for an expectation, `gate f: dt` for a gate's own check."""
    if isinstance(row, GateRow):
        return f"gate {row.name}: {row.input}" + (" (second point)" if row.point == 2 else "")
    return getattr(row, "name", None) or f"expect {row.target}"


def causes(report) -> list:
    """The report's failures grouped by where they go wrong, root causes first:
    [(status, (line, col), the row that says why, [every row it explains], file)], `file` the file
    that line is in (the report's own file unless a helper elsewhere is to blame).

    A gate's own check that fails is a root cause; node rows that only inherit it (their culprit is
    that gate's line) collapse into its group instead of each being a finding of its own."""
    groups: dict = {}
    for row in report.failures:
        where = tuple(getattr(row, "culprit", None) or (row.line, getattr(row, "col", None) or 1))
        key = (where[0], where[1], where[2] if len(where) > 2 else getattr(row, "file", None))
        groups.setdefault(key, []).append(row)
    found = []
    for (line, col, file), rows in groups.items():
        checks = [r for r in rows if isinstance(r, GateRow) and r.point == 1]
        own = [r for r in checks if (r.line, r.col) == (line, col)]  # the line's own check leads its group
        lead = (own or checks or [r for r in rows if not isinstance(r, GateRow)] or rows)[0]
        found.append((lead.status, (line, col), lead, rows, file or report.path or report.source))
    found.sort(key=lambda c: (not any(isinstance(r, GateRow) for r in c[3]), c[0] != "fail"))
    return found


def inherited(rows: list, lead) -> str:
    """`also: y, f (2 rows inherit it): <the first one's note>` for the rows of a cause other than
    its lead, or ''."""
    others = [r for r in rows if r is not lead]
    names = list(dict.fromkeys(row_name(r) + (f" {list(r.worst_index)}" if getattr(r, "worst_index", None) else "")
                               for r in others))
    if not names:
        return ""
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    text = f"also: {shown} ({len(names)} row{'s' if len(names) > 1 else ''} inherit{'s' if len(names) == 1 else ''} it)"
    notes = [(r.note, getattr(r, "inherits", False)) for r in others if r.note and r.note != lead.note]
    note = next((n for n, inherits in notes if not inherits), notes[0][0] if notes else None)
    if note and lead.note and note.startswith(lead.note):
        note = note[len(lead.note):].lstrip("; ") or None
    return f"{text}: {note}" if note else text


# --- which backward is wrong (the culprit search of a .grad check) ----------------------------------

def downstream_failures(order: list, consumers: dict, inputs: dict, failing: dict, limit: int = 3) -> dict:
    """For every node, the failing gate checks downstream of it, nearest first.

    `order` is node ids in topological order, `consumers` node -> gates reading it, `inputs` gate ->
    its input ids, `failing` gate -> the slots whose own check fails. A node's culprits are the
    failing (gate, slot) whose input is that node, then the culprits of the gates that read it.
    """
    found: dict = {}
    for nid in reversed(order):
        mine = []
        for g in consumers.get(nid, ()):
            for slot in failing.get(g, ()):
                if inputs[g][slot] == nid and (g, slot) not in mine:
                    mine.append((g, slot))
        for g in consumers.get(nid, ()):
            for c in found.get(g, ()):
                if c not in mine:
                    mine.append(c)
        found[nid] = mine[:limit]
    return found


def name_culprits(graph, rows: dict, checks: list) -> None:
    """Name, in every failing row's note, the gate whose own check fails downstream of it."""
    failing: dict = {}
    for c in checks:
        if c.status == "fail" and c.slot is not None:
            failing.setdefault(c.node, set()).add(c.slot)
        elif c.status == "fail":  # a failing d<local> line: every d line that uses it is wrong with it,
            gate = graph.nodes[c.node]  # even one whose own check happened to pass at this upstream
            for slot, param in enumerate(gate.composite.params):
                if deepest_failing(gate, d_local_uses(gate.composite, "d" + param), checks):
                    failing.setdefault(c.node, set()).add(slot)
    order = [n.id for n in graph.nodes]
    inputs = {n.id: n.inputs for n in graph.nodes}
    found = downstream_failures(order, {i: graph.consumers[i] for i in order}, inputs, failing)
    by_slot = {(c.node, c.slot, c.point): c for c in checks}
    for nid, row in rows.items():
        if row.status != "fail":
            continue
        culprit = found.get(nid)
        if not culprit:  # no gate's own check fails downstream: the row's own note is all there is
            continue
        g, slot = culprit[0]
        gate = graph.nodes[g]
        check = by_slot.get((g, slot, 1)) or by_slot.get((g, slot, 2))
        line, col, what = culprit_line(gate, slot, checks)
        where = f"'{gate.name}' ({gate.label}, line {gate.pos.line})"
        if gate.inputs[slot] != nid:
            rows[nid] = replace(row, note=f"inherits the failure of the backward of {where} downstream",
                                inherits=True, culprit=(line, col))
        else:
            detail = f": {what}" if what else ", whose own check fails"
            if check is not None and check.error:
                detail += f" ({check.error})"
            rows[nid] = replace(row, note=f"{row.note}; the gradient goes wrong in the backward of {where}{detail}",
                                culprit=(line, col))


def culprit_line(gate, slot: int, checks: list) -> tuple:
    """(line, col, text) of the line to blame in a gate whose check of `slot` fails: a failing
    `d<local>` line it uses whose own inputs pass, else its d line, else the gate call."""
    composite = gate.composite
    if composite is None or composite.backward is None:
        return gate.pos.line, gate.pos.col, None
    param = composite.params[slot]
    d_line = composite.d_lines[param]
    found = deepest_failing(gate, d_local_uses(composite, "d" + param), checks, f"d{param}")
    if found:
        return found
    shared = shared_line(gate, checks)
    if shared is not None and shared[0] in composite.backward.ancestors(composite.backward.names["d" + param]):
        _, line, names = shared
        return (line.pos.line, line.pos.col, f"{names} fail, and all of them (and no line that passes) use "
                f"'{line.name}' (line {line.pos.line}): look there first")
    return d_line.pos.line, d_line.pos.col, f"its d line 'd{param}' (line {d_line.pos.line}) fails its own check"


def shared_line(gate, checks: list):
    """(node id, line, names) of the one backward line that every failing line of this gate uses and
    no passing one does (`doutT = dout`, its .T forgotten, feeding dx, dgamma and dbeta): the single
    cause those failures share. None when fewer than two lines fail, or no single line fits."""
    composite = gate.composite
    bwd, names = composite.backward, composite.backward.names
    mine = [c for c in checks if c.node == gate.id and c.point == 1 and c.what in names]
    failing = [c for c in mine if c.status == "fail"]
    if len(failing) < 2:
        return None
    common = set.intersection(*(bwd.ancestors(names[c.what]) for c in failing))
    for c in mine:
        if c.status != "fail":
            common -= bwd.ancestors(names[c.what])
    lines = {names.get(line.name): line for line in composite.definition.body}
    dout = names.get("dout")
    # only lines that carry the upstream gradient: a forward value's reshape (xhatT = xhat.T) that two
    # independently wrong lines both read is no shared cause of theirs
    carrying = [nid for nid in common if nid in lines and lines[nid].name not in {c.what for c in failing}
                and dout in bwd.ancestors(nid)]
    if len(carrying) != 1:
        return None  # none, or a chain of lines that could each be the one: do not guess
    what = [c.what for c in failing]
    return carrying[0], lines[carrying[0]], ", ".join(what[:-1]) + " and " + what[-1]


def deepest_failing(gate, uses: list, checks: list, user: str | None = None):
    """(line, col, text) of the first failing d<local> line among the locals `uses` (their d lines)
    whose own inputs pass, following failing lines down; None when none of them fails."""
    composite = gate.composite
    bad = {c.what: c for c in checks if c.node == gate.id and c.slot is None and c.status == "fail"}
    names = {m.local: "d" + m.local for m in composite.intermediates}
    suspects = [names[u] for u in uses if names[u] in bad]
    while suspects:
        line_name = suspects[0]
        deeper = [names[u] for u in d_local_uses(composite, line_name) if names[u] in bad]
        if not deeper:
            c = bad[line_name]
            return (c.line, c.col, f"its line '{line_name}' (line {c.line}) is not the gradient of "
                    f"'{line_name[1:]}' (it fails its own check)" + (f", and {user} uses it" if user else ""))
        suspects = deeper
    return None


def d_local_uses(composite, line_name: str) -> list:
    """The forward locals whose d<local> lines the backward line `line_name` of a composite uses."""
    return composite.depends.get(line_name, [])
