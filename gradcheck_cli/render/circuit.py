"""The circuit: a tree in the terminal, and Graphviz DOT (values in green above the wires, gradients in red below)."""

from __future__ import annotations

import numpy as np

from ..core.report import Faults
from ..teaching.teach import Explanation
from .teach import short

MAX_TREE_DEPTH = 40


def circuit_tree(ex: Explanation, ascii_only: bool = False, faults: Faults = Faults()):
    """A rich Tree from the output back to the inputs: value and gradient on every node; the gates
    whose own backward fails, and the gradients that are wrong, marked."""
    from rich.markup import escape
    from rich.tree import Tree
    graph, values, grads = ex.graph, ex.values, ex.grads
    cross = "X" if ascii_only else "✗"

    def label(node, seen_before):
        grad = grads.get(node.id)
        text = (f"[bold]{escape(node.name)}[/] [dim]\\[{escape(node.label)}][/]  "
                f"[green]{escape(short(values[node.id]))}[/]")
        if grad is not None and node.kind not in ("literal", "const"):
            text += f"  [red]{'grad' if ascii_only else '∇'} {escape(short(grad))}[/]"
        if node.id in faults.culprits:
            text += f"  [bold red]{cross} its backward fails its own check[/]"
        elif node.id in faults.wrong:
            text += f"  [red]{cross} wrong gradient[/]"
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


def circuit_dot(ex: Explanation, faults: Faults = Faults()) -> str:
    """Graphviz DOT, as the CS231n figures: values in green above each wire, gradients in red below.

    Each wire carries its own gradient (at fan-out, what flows back along that wire, not the input's
    total); constants carry none. A gate whose own backward check fails is drawn in red, and every
    wire whose gradient is wrong is dashed red with a ✗. Each label is tied to its wire by a line
    (`decorate`), so a label between two wires is never ambiguous."""
    graph, values = ex.graph, ex.values
    out = graph.nodes[graph.output]
    along = {(s.node_id, s.input_id): s.downstream for s in ex.backward}
    legend = ('<font color="darkgreen">green: the value on a wire</font><br/>'
              '<font color="red">red: the gradient flowing back along it</font>')
    if faults:
        legend += ('<br/><font color="red">red box: a gate whose own backward is wrong</font><br/>'
                   '<font color="red">dashed red wire, ✗: a wrong gradient</font>')
    lines = ["digraph circuit {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10, labelfloat=false, decorate=true];',
             f"  legend [shape=plaintext, label=<{legend}>];"]
    for node in graph.nodes[: out.id + 1]:
        if node.kind == "literal":
            continue
        shape = ", shape=plaintext" if node.gate is None else ""
        text = node.name + chr(10) + node.label
        if node.id in faults.culprits:
            text += chr(10) + "✗ backward fails its own check"
            shape += ", color=red, fontcolor=red, penwidth=2.5"
        lines.append(f"  {_dot_id(node.id)} [label={_dot_string(text)}{shape}];")
    for node in graph.nodes[: out.id + 1]:
        for slot, i in enumerate(node.inputs):
            src = graph.nodes[i]
            if src.kind == "literal":
                continue
            grad = None if src.kind == "const" else along.get((node.id, i))
            wrong = grad is not None and faults.wire(node.id, slot)
            style = ", color=red, penwidth=2, style=dashed" if wrong else ""
            lines.append(f"  {_dot_id(i)} -> {_dot_id(node.id)} [label=<{_wire(values[i], grad, wrong)}>{style}];")
    lines.append('  "output" [shape=point, width=0.05];')
    lines.append(f'  {_dot_id(out.id)} -> "output" [label=<{_wire(values[out.id], np.ones(out.shape))}>];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _wire(value, grad, wrong: bool = False) -> str:
    shown = short(value, 3)
    mark = "✗ " if wrong else ""
    if np.size(value) > 6:  # too large to draw: the shape once
        tail = f'<br/><font color="red">{mark}wrong gradient</font>' if wrong else ""
        return f'<font color="darkgreen">{_html("×".join(map(str, np.shape(value))))} tensor</font>{tail}'
    top = f'<font color="darkgreen">{_html(shown)}</font>'
    bottom = f'<font color="red">{mark}{_html(short(grad, 3))}</font>' if grad is not None else ""
    return top + ("<br/>" + bottom if bottom else "")
