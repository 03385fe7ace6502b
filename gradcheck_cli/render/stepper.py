"""explain's circuit to step through: the gates laid out (by Graphviz where `dot` is installed, else in
columns by depth), drawn as inline SVG with an id on every box, wire and label, the steps of the
forward and the backward pass as a JSON blob, and the small script that lights them in turn. The page
stays self-contained: no network, every user text escaped in the SVG and in the JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape

import numpy as np

from ..core.errors import GradcheckError
from ..core.report import Faults
from ..teaching.teach import Explanation, grad_name
from .teach import short, wrong_reason

FONT = 12          # px, monospace: a character is 0.6 of it wide
CHAR = FONT * 0.6
LINE = 15          # px between two lines of text
PAD = 16           # px around the drawing
PORT = 38          # px between two wires entering one box (a value above each, a gradient below)
NAME_WIDTH = 28    # characters of a node's name drawn in its box (a longer one ends in …)


@dataclass(frozen=True, kw_only=True)
class Box:
    """A node drawn: its top-left corner and size, and its two lines of text."""
    id: int
    x: float
    y: float
    w: float
    h: float
    name: str
    label: str
    gate: bool
    culprit: bool


@dataclass(frozen=True, kw_only=True)
class Wire:
    """A wire from `src` into input `slot` of `node` (`node` -1: the output's wire out of the circuit),
    its SVG path, where its labels sit (the value above, the gradient below) and what they say."""
    node: int
    slot: int
    src: int
    path: str
    lx: float
    ly: float
    anchor: str        # SVG text-anchor of the labels: "middle" or "end"
    value: str
    grad: str | None   # None: a constant's wire, no gradient flows back along it
    wrong: bool


@dataclass(frozen=True, kw_only=True)
class Drawing:
    width: float
    height: float
    boxes: tuple
    wires: tuple
    laid_out_by: str   # "graphviz" or "columns"


def _clip(text: str, width: int = NAME_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _text_width(text: str) -> float:
    return len(text) * CHAR


def wire_id(node: int, slot: int) -> str:
    return "out" if node < 0 else f"{node}-{slot}"


def _content(ex: Explanation, faults: Faults):
    """The boxes' text and the wires' labels, before any layout: (nodes drawn, wires as dicts)."""
    graph, values = ex.graph, ex.values
    out = graph.nodes[graph.output]
    drawn = [n for n in graph.nodes[: out.id + 1] if n.kind != "literal"]
    along = {(s.node_id, s.slot): s.downstream for s in ex.backward}
    wires = []
    for node in drawn:
        for slot, i in enumerate(node.inputs):
            src = graph.nodes[i]
            if src.kind == "literal":
                continue
            grad = None if src.kind == "const" else along.get((node.id, slot))
            wires.append({"node": node.id, "slot": slot, "src": i, "value": _label(values[i]),
                          "grad": None if grad is None else _label(grad),
                          "wrong": grad is not None and faults.wire(node.id, slot)})
    wires.append({"node": -1, "slot": 0, "src": out.id, "value": _label(values[out.id]),
                  "grad": _label(np.ones(out.shape)), "wrong": False})
    return drawn, wires


def _label(value) -> str:
    if np.size(value) > 6:
        return "×".join(map(str, np.shape(value))) + " tensor"
    return short(value, 3)


def _box_size(node, inputs: int) -> tuple:
    width = max(_text_width(_clip(node.name)), _text_width(_clip(node.label) if node.gate is not None else "")) + 20
    return max(width, 44.0), float(max(40, PORT * inputs + 10))


def _label_width(w: dict) -> float:
    return max(_text_width(w["value"]), _text_width(w["grad"] or ""))


def layout_columns(ex: Explanation, faults: Faults = Faults()) -> Drawing:
    """The layered layout, without Graphviz: a column per depth (a leaf is 0, a gate one more than its
    deepest input), the nodes of a column in the program's order; each wire ends in a straight piece
    left of the box it enters, its value above it and its gradient below."""
    drawn, wires = _content(ex, faults)
    ids = {n.id for n in drawn}
    inputs = {n.id: [w for w in wires if w["node"] == n.id] for n in drawn}
    depth: dict = {}
    for n in drawn:  # topological order: inputs come first
        depth[n.id] = 1 + max((depth[w["src"]] for w in inputs[n.id] if w["src"] in ids), default=-1)
    for n in drawn:  # an input sits in the column just before its first use, not always in the first one
        if not inputs[n.id]:
            users = [depth[w["node"]] for w in wires if w["src"] == n.id and w["node"] >= 0]
            depth[n.id] = max(0, min(users, default=1) - 1)
    columns: dict = {}
    for n in drawn:
        columns.setdefault(depth[n.id], []).append(n)
    sizes = {n.id: _box_size(n, len(inputs[n.id])) for n in drawn}
    # the gap before a column holds the labels of the wires entering it, and room to bend
    gaps = {d: max((_label_width(w) for n in col for w in inputs[n.id]), default=0) + 56 for d, col in columns.items()}
    heights = {d: sum(sizes[n.id][1] + 2 * LINE + 24 for n in col) for d, col in columns.items()}
    tallest = max(heights.values())
    place: dict = {}
    x = PAD
    for d in sorted(columns):
        if d > 0:
            x += gaps[d]
        col_width = max(sizes[n.id][0] for n in columns[d])
        y = PAD + LINE + (tallest - heights[d]) / 2
        for n in columns[d]:
            w, h = sizes[n.id]
            place[n.id] = (x + (col_width - w) / 2, y + LINE, w, h)
            y += h + 2 * LINE + 24
        x += col_width
    return _route(drawn, wires, place, faults, "columns")


def _route(drawn: list, wires: list, place: dict, faults: Faults, laid_out_by: str,
           through: dict | None = None) -> Drawing:
    """The drawing of boxes placed at `place` (id -> x, y, w, h): each wire leaves its box's right side
    and enters the box it feeds on a straight piece at its own height (one per input, PORT apart), its
    value above that piece and its gradient below; `through`: points a long wire passes on its way
    (Graphviz's, around the boxes between), by the wire's index."""
    inputs = {n.id: [w for w in wires if w["node"] == n.id] for n in drawn}
    right = max(x + w for x, _, w, _ in place.values()) + _label_width(wires[-1]) + 40
    boxes = tuple(Box(id=n.id, x=place[n.id][0], y=place[n.id][1], w=place[n.id][2], h=place[n.id][3],
                      name=_clip(n.name), label=_clip(n.label) if n.gate is not None else "",
                      gate=n.gate is not None, culprit=n.id in faults.culprits) for n in drawn)
    drawn_wires = []
    for k, w in enumerate(wires):
        sx, sy, sw, sh = place[w["src"]]
        start = (sx + sw, sy + sh / 2)
        if w["node"] < 0:
            end = (right, start[1])
        else:
            tx, ty, _tw, th = place[w["node"]]
            count = len(inputs[w["node"]])
            rank = inputs[w["node"]].index(w)
            end = (tx, ty + th / 2 + (rank - (count - 1) / 2) * PORT)
        knee = (end[0] - _label_width(w) - 14, end[1])
        path = f"M{start[0]:.1f},{start[1]:.1f}"
        for point in (through or {}).get(k, []):
            if start[0] + 10 < point[0] < knee[0] - 10:
                path += _bend(start, point)
                start = point
        path += _bend(start, knee) + f" L{end[0]:.1f},{end[1]:.1f}"
        drawn_wires.append(Wire(node=w["node"], slot=w["slot"], src=w["src"], path=path, lx=end[0] - 8,
                                ly=end[1], anchor="end", value=w["value"], grad=w["grad"], wrong=w["wrong"]))
    height = max(b.y + b.h for b in boxes) + 2 * LINE + PAD
    return Drawing(width=right + PAD, height=height, boxes=boxes, wires=tuple(drawn_wires), laid_out_by=laid_out_by)


def _bend(start: tuple, end: tuple) -> str:
    """A cubic from `start` to `end`, level at both ends."""
    mid = (start[0] + end[0]) / 2
    return f" C{mid:.1f},{start[1]:.1f} {mid:.1f},{end[1]:.1f} {end[0]:.1f},{end[1]:.1f}"


def layout_graphviz(ex: Explanation, faults: Faults = Faults()) -> Drawing:
    """Graphviz's layout (`dot -Tjson0`) of the same boxes: it places them (ranks, and an order that
    keeps wires from crossing), and a long wire passes where Graphviz routes it; the wires end as in the
    columns, labels on their straight piece. Raises GradcheckError without `dot`, past its node limit,
    or when it fails."""
    from . import graphviz
    drawn, wires = _content(ex, faults)
    inputs = {n.id: sum(1 for w in wires if w["node"] == n.id) for n in drawn}
    gap = max(_label_width(w) for w in wires) + 60  # a wire's labels and its bend fit between two ranks
    lines = ["digraph circuit {", f"  rankdir=LR; nodesep=0.3; ranksep={gap / 72:.3f};",
             '  node [shape=box, fixedsize=true, label=""];', "  edge [arrowhead=none, tailport=e, headport=w];"]
    for n in drawn:
        w, h = _box_size(n, inputs[n.id])
        lines.append(f"  n{n.id} [width={w / 72:.3f}, height={h / 72:.3f}];")
    for k, w in enumerate(wires[:-1]):  # the last is the output's, out of the circuit
        lines.append(f'  n{w["src"]} -> n{w["node"]} [id="w{k}"];')
    lines.append("}")
    data = json.loads(graphviz.render("\n".join(lines) + "\n", "json0", len(drawn)).decode("utf-8"))
    bb = [float(v) for v in data["bb"].split(",")]

    def point(text: str) -> tuple:
        x, y = text.split(",")[-2:]
        return float(x) - bb[0] + PAD, bb[3] - float(y) + PAD + LINE

    objects = {o["name"]: o for o in data.get("objects", [])}
    place = {}
    for n in drawn:
        o = objects[f"n{n.id}"]
        cx, cy = point(o["pos"])
        w, h = float(o["width"]) * 72, float(o["height"]) * 72
        place[n.id] = (cx - w / 2, cy - h / 2, w, h)
    through = {}
    for e in data.get("edges", []):
        parts = [p for p in e["pos"].split() if not p.startswith(("e,", "s,"))]
        through[int(e["id"][1:])] = [point(p) for p in parts[3:-1:3]]  # the points on the curve between its ends
    # Graphviz sets every rank one gap apart, the widest label's: each gap is narrowed to the labels of
    # the wires that enter that rank (the points of long wires moved with the ranks either side)
    centres = sorted({round(x + w / 2, 1) for x, _, w, _ in place.values()})
    rank_of = {nid: centres.index(round(x + w / 2, 1)) for nid, (x, _, w, _) in place.items()}
    half = [max(w for nid, (_, _, w, _) in place.items() if rank_of[nid] == r) / 2 for r in range(len(centres))]
    entering = [max((_label_width(w) for w in wires[:-1] if rank_of[w["node"]] == r), default=0) + 56
                 for r in range(len(centres))]
    moved = [PAD + half[0]]
    for r in range(1, len(centres)):
        moved.append(moved[-1] + half[r - 1] + entering[r] + half[r])
    place = {nid: (x + moved[rank_of[nid]] - centres[rank_of[nid]], y, w, h) for nid, (x, y, w, h) in place.items()}
    through = {k: [(float(np.interp(px, centres, moved)), py) for px, py in pts] for k, pts in through.items()}
    return _route(drawn, wires, place, faults, "graphviz", through)


def layout(ex: Explanation, faults: Faults = Faults()) -> Drawing:
    """Graphviz's layout where `dot` is installed and takes the circuit, else the columns."""
    try:
        return layout_graphviz(ex, faults)
    except GradcheckError:
        return layout_columns(ex, faults)


def _e(text) -> str:
    return escape(str(text), quote=True)


def svg(drawing: Drawing, first_wrong: str | None = None) -> str:
    """The drawing as inline SVG: every box `gc-n<id>`, wire `gc-w<node>-<slot>` (`gc-w-out` for the
    output's), value label `gc-v...` and gradient label `gc-g...`; wrong wires have the class `wrong`,
    the first of them in the backward pass also `first-wrong`, gates whose own backward fails `culprit`."""
    w, h = drawing.width, drawing.height
    parts = [f'<svg id="gc-circuit" class="gc-circuit" xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" '
             f'height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="the circuit" '
             f'data-layout="{drawing.laid_out_by}" font-family="ui-monospace,Menlo,Consolas,monospace" '
             f'font-size="{FONT}">']
    for wire in drawing.wires:
        wid = wire_id(wire.node, wire.slot)
        classes = "wire" + (" wrong" if wire.wrong else "") + (" first-wrong" if wid == first_wrong else "")
        parts.append(f'<g id="gc-w{wid}" class="{classes}"><path d="{wire.path}"/></g>')
    for b in drawing.boxes:
        classes = "box" + (" gate" if b.gate else " leaf") + (" culprit" if b.culprit else "")
        cx = b.x + b.w / 2
        text_y = b.y + b.h / 2 + (-2 if b.label else FONT / 3)
        inner = f'<text x="{cx:.1f}" y="{text_y:.1f}" text-anchor="middle" class="name">{_e(b.name)}</text>'
        if b.label:
            inner += (f'<text x="{cx:.1f}" y="{text_y + LINE - 2:.1f}" text-anchor="middle" '
                      f'class="op">[{_e(b.label)}]</text>')
        parts.append(f'<g id="gc-n{b.id}" class="{classes}"><rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" '
                     f'height="{b.h:.1f}" rx="6"/>{inner}</g>')
    for wire in drawing.wires:  # labels last: drawn over the wires
        wid = wire_id(wire.node, wire.slot)
        up = wire.ly - 5
        parts.append(f'<text id="gc-v{wid}" class="val" x="{wire.lx:.1f}" y="{up:.1f}" '
                     f'text-anchor="{wire.anchor}">{_e(wire.value)}</text>')
        if wire.grad is not None:
            mark = "✗ " if wire.wrong else ""
            parts.append(f'<text id="gc-g{wid}" class="grad{" wrong" if wire.wrong else ""}" x="{wire.lx:.1f}" '
                         f'y="{wire.ly + FONT + 2:.1f}" text-anchor="{wire.anchor}">{_e(mark + wire.grad)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def steps(ex: Explanation, faults: Faults, drawing: Drawing) -> list:
    """The steps, each what lights up (`lit`: element ids), what appears for good from it on (`show`)
    and what the panel says. Step 0 is the circuit with its inputs; then the forward pass gate by
    gate, the output's gradient 1, each backward edge, and the inputs' gradients."""
    graph = ex.graph
    out = graph.nodes[graph.output]
    leaving: dict = {}
    for wire in drawing.wires:
        leaving.setdefault(wire.src, []).append(wire_id(wire.node, wire.slot))
    entering: dict = {}
    for wire in drawing.wires:
        entering.setdefault(wire.node, []).append(wire_id(wire.node, wire.slot))
    shown = {b.id for b in drawing.boxes}
    leaves = [b.id for b in drawing.boxes if not b.gate]
    names = ", ".join(graph.nodes[i].name for i in leaves)
    result = [{"phase": "start", "head": f"the circuit of {ex.output}",
               "text": f"the inputs {names} have their values; press next ▶ (or →) for the forward pass",
               "lit": [f"gc-n{i}" for i in leaves], "show": [f"gc-v{w}" for i in leaves for w in leaving.get(i, [])]}]
    gates = [n for n in graph.nodes[: out.id + 1] if n.gate is not None and n.id in shown]
    for n in gates:
        inputs = ", ".join(f"{graph.nodes[i].name} = {short(ex.values[i])}" for i in n.inputs)
        result.append({"phase": "forward", "head": f"forward: {n.name}  [{n.label}]",
                       "text": f"from {inputs}  →  {n.name} = {short(ex.values[n.id])}",
                       "lit": [f"gc-n{n.id}"] + [f"gc-w{w}" for w in entering.get(n.id, [])],
                       "show": [f"gc-v{w}" for w in leaving.get(n.id, [])]})
    result.append({"phase": "backward", "head": f"backward: {grad_name(ex.output)}/{grad_name(ex.output)} = 1",
                   "text": "the gradient of the output with respect to itself is 1: it flows back from here",
                   "lit": [f"gc-n{out.id}", "gc-wout"], "show": ["gc-gout"]})
    for s in ex.backward:
        wid = wire_id(s.node_id, s.slot)
        local = short(s.local) if s.local is not None else "J"
        step = {"phase": "backward", "head": f"backward: {s.node} → {s.input}  [{s.gate}: {s.formula}]",
                "text": f"{grad_name(s.input)} {'+=' if s.accumulate else '='} {short(s.upstream)} × {local} = "
                        f"{short(s.downstream)}" + (f"   (total {grad_name(s.input)} = {short(s.total)}, fan-out adds)"
                                                   if s.accumulate else ""),
                "lit": [f"gc-n{s.node_id}", f"gc-w{wid}", f"gc-n{s.input_id}"], "show": [f"gc-g{wid}"]}
        reason = wrong_reason(s, faults)
        if reason:
            step["wrong"] = f"✗ {reason}"
        if s.d_line is not None:
            d = s.d_line
            right = d.expected is not None and bool(np.allclose(d.value, d.expected, rtol=1e-6, atol=1e-9))
            step["dline"] = {"text": d.text, "line": d.line, "value": short(d.value),
                             "expected": None if d.expected is None else short(d.expected), "right": right}
        result.append(step)
    grads = ", ".join(f"{grad_name(graph.nodes[i].name)} = {short(ex.grads.get(i, np.zeros(graph.nodes[i].shape)))}"
                      + (" ✗" if i in faults.wrong else "") for i in leaves if graph.nodes[i].kind == "leaf")
    result.append({"phase": "end", "head": "the gradients on the inputs", "text": grads or "(no input has a gradient)",
                   "lit": [f"gc-n{i}" for i in leaves], "show": []})
    return result


def first_wrong(ex: Explanation, faults: Faults) -> str | None:
    """The first wire, in the backward pass's order, whose gradient is wrong."""
    return next((wire_id(s.node_id, s.slot) for s in ex.backward if faults.wire(s.node_id, s.slot)), None)


def script_json(data) -> str:
    """JSON to embed in a <script> element: `<`, `>` and `&` as \\u escapes, so no text in it (a name
    holding `</script>`) can end the element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


CSS = """
.gc .stepper{border:1px solid var(--line);border-radius:8px;padding:10px 12px;margin:8px 0 16px}
.gc .controls{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.gc .controls button{font:inherit;padding:3px 12px;border:1px solid var(--line);border-radius:6px;
background:var(--bg);color:var(--fg);cursor:pointer}.gc .controls button:disabled{opacity:.45;cursor:default}
.gc .counter{font-family:ui-monospace,Menlo,Consolas,monospace;color:var(--muted);min-width:9em}
.gc .panel{min-height:6.6em;font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}
.gc .panel .head{font-weight:600}.gc .panel .dline{margin-top:4px}.gc .panel .bad{color:var(--fail);font-weight:600}
.gc .panel .good{color:var(--pass);font-weight:600}
.gc .canvas{overflow-x:auto}.gc svg.gc-circuit{max-width:none;height:auto}
.gc-circuit .wire path{fill:none;stroke:var(--muted);stroke-width:1.4}
.gc-circuit .wire.first-wrong path{stroke:var(--fail);stroke-dasharray:6 4;stroke-width:3}
.gc-circuit .box rect{fill:var(--bg);stroke:var(--fg);stroke-width:1.2}.gc-circuit .box.leaf rect{stroke-dasharray:3 3}
.gc-circuit .box.culprit rect{stroke:var(--fail);stroke-width:2.5}
.gc-circuit text{fill:var(--fg)}.gc-circuit .op{fill:var(--muted)}
.gc-circuit .val{fill:var(--pass)}.gc-circuit .grad{fill:var(--fail)}
.gc-circuit .box.lit rect{fill:var(--lead);stroke:#0969da;stroke-width:3}
.gc-circuit .wire.lit path{stroke:#0969da;stroke-width:3.5;stroke-dasharray:none}
.gc-circuit .wire.wrong.lit path{stroke:var(--fail)}
.gc-circuit .hidden{visibility:hidden}
"""

# The stepper: reads the steps, hides what a step has not reached, lights the step's elements. Text
# goes in with textContent only (never parsed as HTML).
SCRIPT = """(function(){
var steps=JSON.parse(document.getElementById('gc-steps').textContent),k=0,lit=[];
function $(id){return document.getElementById(id)}
var counter=$('gc-counter'),back=$('gc-back'),next=$('gc-next'),reset=$('gc-reset'),panel=$('gc-panel');
var every=[];steps.forEach(function(s){every=every.concat(s.show)});
function line(cls,text){var d=document.createElement('div');d.className=cls;d.textContent=text;panel.appendChild(d);return d}
function render(){
every.forEach(function(id){var e=$(id);if(e)e.classList.add('hidden')});
for(var i=0;i<=k;i++)steps[i].show.forEach(function(id){var e=$(id);if(e)e.classList.remove('hidden')});
lit.forEach(function(id){var e=$(id);if(e)e.classList.remove('lit')});
var s=steps[k];lit=s.lit;lit.forEach(function(id){var e=$(id);if(e)e.classList.add('lit')});
counter.textContent='step '+k+' of '+(steps.length-1);
panel.textContent='';line('head',s.head);line('text',s.text);
if(s.dline){var d=s.dline;line('dline','your line '+d.line+': '+d.text+'  gives '+d.value);
line('dline '+(d.right?'good':'bad'),d.expected===null?'(the true value cannot be computed here)':
(d.right?'✓ ':'✗ ')+'the true value (the gate\\u2019s forward, differentiated) is '+d.expected)}
if(s.wrong)line('bad',s.wrong);
back.disabled=k===0;next.disabled=k===steps.length-1;
document.body.setAttribute('data-step',String(k))}
function go(n){var m=Math.max(0,Math.min(steps.length-1,k+n));if(m!==k){k=m;render()}}
back.addEventListener('click',function(){go(-1)});next.addEventListener('click',function(){go(1)});
reset.addEventListener('click',function(){k=0;render()});
document.addEventListener('keydown',function(e){if(e.key==='ArrowRight'){go(1);e.preventDefault()}
else if(e.key==='ArrowLeft'){go(-1);e.preventDefault()}});
render()})();"""


def stepper_html(ex: Explanation, faults: Faults, drawing: Drawing | None = None) -> str:
    """The steppable circuit as an HTML block: the controls, the panel, the SVG, the steps and the script."""
    drawing = drawing if drawing is not None else layout(ex, faults)
    data = steps(ex, faults, drawing)
    controls = ('<div class="controls"><button type="button" id="gc-back">◀ back</button>'
                '<button type="button" id="gc-next">next ▶</button><button type="button" id="gc-reset">reset'
                '</button><span class="counter" id="gc-counter"></span>'
                '<span class="muted">the arrow keys step too</span></div>')
    return (f'<style>{CSS}</style><div class="stepper" id="gc-stepper">{controls}<div class="panel" id="gc-panel" aria-live="polite">'
            f'</div><div class="canvas">{svg(drawing, first_wrong(ex, faults))}</div></div>'
            f'<script type="application/json" id="gc-steps">{script_json(data)}</script>'
            f"<script>{SCRIPT}</script>")
