"""`gradcheck gates`: every registry gate with how it is written, its local gradient and how it routes."""

from __future__ import annotations


def gate_entries() -> list:
    """(name, label, written, local gradient, routes) of every registry gate, in registry order."""
    from ..gates import REGISTRY
    out = []
    for gate in REGISTRY.values():
        written = gate.operator or (f"{gate.call}(...)" if gate.call else "")
        if gate.const_forms:
            written = ", ".join(f"{'c ' + f.operator + ' x' if f.side == 'left' else 'x ' + f.operator + ' c'}"
                                if f.side != "either" else f"x {f.operator} c" for f in gate.const_forms)
        label = gate.display({"c": 1.0}) if gate.const_forms else gate.display({})
        out.append((gate.name, label, written, gate.local, gate.routes))
    return out


def gate_table():
    """The registry as a rich Table (for a terminal wide enough to hold its rows on one line)."""
    from rich.markup import escape
    from rich.table import Table
    table = Table(show_edge=False, header_style="bold")
    table.add_column("name", no_wrap=True)  # in words, so a learner can search for "matmul"
    table.add_column("gate", no_wrap=True)
    table.add_column("written", no_wrap=True)
    table.add_column("local gradient")
    table.add_column("routes the gradient")
    for entry in gate_entries():
        table.add_row(*(escape(text) for text in entry))
    return table


def gate_lines() -> list:
    """The registry as notes (rich markup), one block per gate, for a narrow terminal."""
    from rich.markup import escape
    lines = []
    for name, label, written, local, routes in gate_entries():
        shown = f"[bold]{escape(name)}[/]" + (f"  gate {escape(label)}" if label != name else "") + \
            (f"  written {escape(written)}" if written else "")
        lines += [shown, f"  local gradient: {escape(local)}", f"  {escape(routes)}"]
    return lines
