"""Teaching output: explain (text, LaTeX, JSON), the quiz's feedback, descent."""

from __future__ import annotations

import json

import numpy as np

from ..core.report import Faults, to_json_value
from ..core.text import visible
from ..teaching.teach import Explanation, grad_name
from .common import fmt_number


def short(value, digits: int = 4) -> str:
    """A value in a sentence: the number, a small tensor in full, a large one by its shape and its
    first and last elements (`3×3 [1, 2, 3, …, 2]`)."""
    a = np.asarray(value, dtype=float)
    if a.ndim == 0:
        return fmt_number(a, digits)
    if a.size <= 6:
        return "[" + ", ".join(short(x, digits) for x in a) + "]"
    flat = a.ravel()
    return ("×".join(map(str, a.shape)) + " [" + ", ".join(fmt_number(x, digits) for x in flat[:3])
            + f", …, {fmt_number(flat[-1], digits)}]")


def full(value, digits: int = 4, limit: int = 64) -> str:
    """Every element of a tensor up to `limit` of them (numpy's layout, one row a line); else `short`."""
    a = np.asarray(value, dtype=float)
    if a.ndim == 0 or a.size <= 6 or a.size > limit:
        return short(a, digits)
    return np.array2string(a, separator=", ", max_line_width=100,
                           formatter={"float_kind": lambda x: fmt_number(x, digits)})


def wrong_reason(s, faults: Faults) -> str:
    """Why a backward step is flagged: its gate's own check fails for this input, or '' when it is right."""
    if faults.wire(s.node_id, s.slot):
        return "this gate's backward is wrong for this input (it fails its own check)" \
            if (s.node_id, s.slot) in faults.wires else "wrong: the gradient arriving here is already wrong"
    return ""


def explain_text(ex: Explanation, faults: Faults = Faults()) -> str:
    lines = [f"{visible(ex.source)}: output {ex.output} = {short(ex.value, 6)}", "",
             "forward pass, in topological order (each gate, its inputs, its value):"]
    width = max((len(s.node) for s in ex.forward), default=4)
    for s in ex.forward:
        inputs = ", ".join(f"{n} = {short(v)}" for n, v in s.inputs)
        lines.append(f"  {s.node:<{width}}  [{s.gate}]  from {inputs}  →  {short(s.value)}")
    lines += ["", "backward pass, in reverse order, one line per edge:  upstream × local = downstream",
              f"  {grad_name(ex.output)}/{grad_name(ex.output)} = 1"]
    for s in ex.backward:
        local = short(s.local) if s.local is not None else "J"
        sign = "+=" if s.accumulate else "="
        lines.append(f"  {s.node} → {s.input}  [{s.gate}: {s.formula}]")
        tail = f"   (total {grad_name(s.input)} = {short(s.total)}, fan-out adds)" if s.accumulate else ""
        lines.append(f"      {grad_name(s.input)} {sign} {short(s.upstream)} × {local} = {short(s.downstream)}{tail}")
        if wrong_reason(s, faults):
            lines.append(f"      ✗ {wrong_reason(s, faults)}")
    graph = ex.graph
    leaves = [n for n in graph.nodes if n.kind == "leaf"]  # consts are frozen: no gradient to show
    grads = ", ".join(f"{grad_name(n.name)} = {short(ex.grads.get(n.id, np.zeros(n.shape)))}"
                      + (" ✗" if n.id in faults.wrong else "") for n in leaves)
    lines += ["", f"gradients on the inputs: {grads}"]
    for nid in sorted(faults.culprits):
        node = graph.nodes[nid]
        lines.append(f"✗ the backward of '{node.name}' ({node.label}, called at line {node.pos.line}) fails its own check: "
                     f"the gradients marked ✗ are wrong (gradcheck check says which line)")
    return "\n".join(lines) + "\n"


def _tex_name(name: str) -> str:
    special = {"\\": r"\textbackslash{}", "_": r"\_", "^": r"\^{}", "&": r"\&", "%": r"\%", "$": r"\$",
               "#": r"\#", "{": r"\{", "}": r"\}", "~": r"\~{}"}
    return "".join(special.get(c, c) for c in name)


def _tex(value) -> str:
    """A value in math mode: a large tensor as `\text{array } 2\times 2`, never bare text."""
    if np.size(value) > 6:
        return r"\text{array } " + r" \times ".join(map(str, np.shape(value)))
    return short(value)


def explain_latex(ex: Explanation) -> str:
    out = ex.output
    lines = [r"\begin{align*}", rf"\frac{{\partial \text{{{_tex_name(out)}}}}}{{\partial \text{{{_tex_name(out)}}}}} &= 1 \\"]
    for s in ex.backward:
        op = r"\mathrel{+}=" if s.accumulate else "="
        local = _tex(s.local) if s.local is not None else "J"
        lines.append(rf"\frac{{\partial \text{{{_tex_name(out)}}}}}{{\partial \text{{{_tex_name(s.input)}}}}} &{op} "
                     rf"\underbrace{{{_tex(s.upstream)}}}_{{\text{{upstream}}}} \times "
                     rf"\underbrace{{{local}}}_{{\text{{local}}}} = {_tex(s.downstream)} "
                     rf"&& \text{{{_tex_name(s.node)} [{_tex_name(s.gate)}]}} \\")
    lines.append(r"\end{align*}")
    return "\n".join(lines) + "\n"


def explain_json(ex: Explanation, faults: Faults = Faults()) -> str:
    steps = [{"pass": "forward", "node": s.node, "gate": s.gate,
              "inputs": {n: to_json_value(v) for n, v in s.inputs}, "value": to_json_value(s.value), "line": s.line}
             for s in ex.forward]
    steps += [{"pass": "backward", "node": s.node, "gate": s.gate, "input": s.input,
               "upstream": to_json_value(s.upstream), "local": to_json_value(s.local),
               "downstream": to_json_value(s.downstream), "accumulate": s.accumulate,
               "total": to_json_value(s.total), "formula": s.formula, "line": s.line,
               "wrong": bool(wrong_reason(s, faults))} for s in ex.backward]
    return json.dumps({"source": ex.source, "output": ex.output, "value": to_json_value(ex.value),
                       "steps": steps}, indent=2, allow_nan=False) + "\n"


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



def feedback_lines(q, ok: bool, written: str | None = None) -> list:
    """The quiz's answer to one question: right (the answer), or wrong (what was said and the answer),
    then upstream × local for each edge into it."""
    name = grad_name(q.node)
    if ok:
        head = f"  right: {name} = "
        lines = [head + full(q.answer).replace("\n", "\n" + " " * len(head))]
    else:
        said = f"you said {name} = {written.strip()}" if written is not None and written.strip() else "no answer"
        one_line = f"  wrong: {said}; the answer is {name} = "
        answer = full(q.answer)
        if "\n" not in answer and len(one_line + answer) <= 76:
            lines = [one_line + answer]
        else:  # a long or multi-line answer: under what was said, aligned
            head = f"         the answer is {name} = "
            lines = [f"  wrong: {said}", head + answer.replace("\n", "\n" + " " * len(head))]
    for e in q.edges:
        local = short(e.local) if e.local is not None else "J"
        lines.append(f"    from {e.node} [{e.gate}: {e.formula}]: upstream {short(e.upstream)} × local {local}"
                     f" = {short(e.downstream)}" + ("  (added: fan-out)" if e.accumulate else ""))
    return lines


def newton_text(source: str, output: str, n) -> str:
    """`explain --order 2`: the gradient, the Hessian and one Newton step, for a learner."""
    width = max(len(name) for name in n.names)
    lines = [f"{source}: output {output} = {fmt_number(n.f)} at " + ", ".join(
        f"{name} = {fmt_number(v)}" for name, v in zip(n.names, n.x)), "",
        "gradient g (backprop):"]
    lines += [f"  d{output}/d{name:<{width}} = {fmt_number(v)}" for name, v in zip(n.names, n.g)]
    lines += ["", "Hessian H (forward-over-reverse through the backward pass, your d lines included):"]
    lines += ["  " + "  ".join(f"{fmt_number(v):>10}" for v in row) for row in n.hessian]
    lines += ["", n.why + "."]
    if n.step is None:
        return "\n".join(lines) + "\n"
    lines += ["", "Newton step Δ = −H⁻¹·g:"]
    lines += [f"  {name:<{width}} {fmt_number(x)} → {fmt_number(x + d)}  (Δ = {fmt_number(d)})"
              for name, x, d in zip(n.names, n.x, n.step)]
    after = "undefined there" if n.f_after is None else fmt_number(n.f_after)
    lines += ["", f"{output}: {fmt_number(n.f)} → {after}; the quadratic model f + g·Δ + ½·Δ·H·Δ predicted "
                  f"{fmt_number(n.model)} (equal when the function is quadratic)"]
    return "\n".join(lines) + "\n"
