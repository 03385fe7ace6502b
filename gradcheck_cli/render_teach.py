"""Teaching output: explain (text, LaTeX, JSON), the circuit (terminal tree, DOT), descent."""

from __future__ import annotations

import json

import numpy as np

from .render import fmt_number
from .report import to_json_value
from .teach import Explanation


def short(value, digits: int = 4) -> str:
    """A value in a sentence: the number, a small tensor in full, a large one by its shape."""
    a = np.asarray(value, dtype=float)
    if a.ndim == 0:
        return fmt_number(a, digits)
    if a.size <= 6:
        return "[" + ", ".join(short(x, digits) for x in a) + "]"
    return "array " + "×".join(map(str, a.shape))


def explain_text(ex: Explanation) -> str:
    lines = [f"{ex.source}: output {ex.output} = {short(ex.value, 6)}", "",
             "forward pass, in topological order (each gate, its inputs, its value):"]
    width = max((len(s.node) for s in ex.forward), default=4)
    for s in ex.forward:
        inputs = ", ".join(f"{n} = {short(v)}" for n, v in s.inputs)
        lines.append(f"  {s.node:<{width}}  [{s.gate}]  from {inputs}  →  {short(s.value)}")
    lines += ["", "backward pass, in reverse order, one line per edge:  upstream × local = downstream",
              f"  d{ex.output}/d{ex.output} = 1"]
    for s in ex.backward:
        local = short(s.local) if s.local is not None else "J"
        sign = "+=" if s.accumulate else "="
        lines.append(f"  {s.node} → {s.input}  [{s.gate}: {s.formula}]")
        tail = f"   (total d{s.input} = {short(s.total)}, fan-out adds)" if s.accumulate else ""
        lines.append(f"      d{s.input} {sign} {short(s.upstream)} × {local} = {short(s.downstream)}{tail}")
    graph = ex.graph
    leaves = [n for n in graph.nodes if n.kind in ("leaf", "const")]
    grads = ", ".join(f"d{n.name} = {short(ex.grads.get(n.id, np.zeros(n.shape)))}" for n in leaves)
    lines += ["", f"gradients on the inputs: {grads}"]
    return "\n".join(lines) + "\n"


def _tex_name(name: str) -> str:
    special = {"\\": r"\textbackslash{}", "_": r"\_", "^": r"\^{}", "&": r"\&", "%": r"\%", "$": r"\$",
               "#": r"\#", "{": r"\{", "}": r"\}", "~": r"\~{}"}
    return "".join(special.get(c, c) for c in name)


def explain_latex(ex: Explanation) -> str:
    out = ex.output
    lines = [r"\begin{align*}", rf"\frac{{\partial \text{{{_tex_name(out)}}}}}{{\partial \text{{{_tex_name(out)}}}}} &= 1 \\"]
    for s in ex.backward:
        op = r"\mathrel{+}=" if s.accumulate else "="
        local = short(s.local) if s.local is not None else "J"
        lines.append(rf"\frac{{\partial \text{{{_tex_name(out)}}}}}{{\partial \text{{{_tex_name(s.input)}}}}} &{op} "
                     rf"\underbrace{{{short(s.upstream)}}}_{{\text{{upstream}}}} \times "
                     rf"\underbrace{{{local}}}_{{\text{{local}}}} = {short(s.downstream)} "
                     rf"&& \text{{{_tex_name(s.node)} [{_tex_name(s.gate)}]}} \\")
    lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"


def explain_json(ex: Explanation) -> str:
    steps = [{"pass": "forward", "node": s.node, "gate": s.gate,
              "inputs": {n: to_json_value(v) for n, v in s.inputs}, "value": to_json_value(s.value), "line": s.line}
             for s in ex.forward]
    steps += [{"pass": "backward", "node": s.node, "gate": s.gate, "input": s.input,
               "upstream": to_json_value(s.upstream), "local": to_json_value(s.local),
               "downstream": to_json_value(s.downstream), "accumulate": s.accumulate,
               "total": to_json_value(s.total), "formula": s.formula, "line": s.line} for s in ex.backward]
    return json.dumps({"source": ex.source, "output": ex.output, "value": to_json_value(ex.value),
                       "steps": steps}, indent=2, allow_nan=False) + "\n"


# --- the circuit --------------------------------------------------------------------------------

MAX_TREE_DEPTH = 40


def circuit_tree(ex: Explanation, ascii_only: bool = False):
    """A rich Tree from the output back to the inputs: value and gradient on every node."""
    from rich.markup import escape
    from rich.tree import Tree
    graph, values, grads = ex.graph, ex.values, ex.grads

    def label(node, seen_before):
        grad = grads.get(node.id)
        text = (f"[bold]{escape(node.name)}[/] [dim]\\[{escape(node.label)}][/]  "
                f"[green]{escape(short(values[node.id]))}[/]")
        if grad is not None and node.kind != "literal":
            text += f"  [red]{'grad' if ascii_only else '∇'} {escape(short(grad))}[/]"
        return text + ("  [dim](shown above)[/]" if seen_before else "")

    root_node = graph.nodes[graph.output]
    root = Tree(label(root_node, False), guide_style="dim")
    shown = {root_node.id}
    stack = [(root, root_node, 0)]
    while stack:  # iterative: a 10,000-gate chain must not recurse
        tree, node, depth = stack.pop()
        if depth >= MAX_TREE_DEPTH:
            tree.add("[dim]… (deeper gates not drawn)[/]")
            continue
        children = []
        for i in node.inputs:
            child = graph.nodes[i]
            seen = child.id in shown
            branch = tree.add(label(child, seen))
            shown.add(child.id)
            if not seen and child.inputs:
                children.append((branch, child, depth + 1))
        stack.extend(reversed(children))
    return root


def _dot_id(nid: int) -> str:
    return f'"n{nid}"'


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def circuit_dot(ex: Explanation) -> str:
    """Graphviz DOT, as the CS231n figures: values in green above each wire, gradients in red below."""
    graph, values, grads = ex.graph, ex.values, ex.grads
    out = graph.nodes[graph.output]
    lines = ["digraph circuit {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for node in graph.nodes[: out.id + 1]:
        if node.kind == "literal":
            continue
        shape = ", shape=plaintext" if node.gate is None else ""
        lines.append(f"  {_dot_id(node.id)} [label={_dot_string(node.name + chr(10) + node.label)}{shape}];")
    for node in graph.nodes[: out.id + 1]:
        for i in node.inputs:
            src = graph.nodes[i]
            if src.kind == "literal":
                continue
            lines.append(f"  {_dot_id(i)} -> {_dot_id(node.id)} [label=<{_wire(values[i], grads.get(i))}>];")
    lines.append('  "output" [shape=point, width=0.05];')
    lines.append(f'  {_dot_id(out.id)} -> "output" [label=<{_wire(values[out.id], np.ones(out.shape))}>];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _wire(value, grad) -> str:
    top = f'<font color="darkgreen">{_html(short(value, 3))}</font>'
    bottom = f'<font color="red">{_html(short(grad, 3))}</font>' if grad is not None else ""
    return top + ("<br/>" + bottom if bottom else "")


def descent_json(history) -> str:
    return json.dumps({"steps": [{"value": h.value, "leaves": {k: to_json_value(v) for k, v in h.leaves.items()}}
                                 for h in history]}, indent=2, allow_nan=False) + "\n"


def descent_table(history):
    from rich.table import Table
    table = Table(show_edge=False, header_style="bold")
    table.add_column("step", justify="right")
    table.add_column("output", justify="right")
    names = list(history[0].leaves) if history else []
    for name in names:
        table.add_column(name, justify="right", overflow="ellipsis", max_width=24)
    for step, h in enumerate(history):
        table.add_row(str(step), fmt_number(h.value), *[short(h.leaves[n]) for n in names])
    return table

