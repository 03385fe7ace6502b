"""A teacher's exercise for `gradcheck grade`: what the student writes and the points for each part.

A `.grad` exercise is the teacher's solution: its `gate`s with d lines, and `# points:` lines naming
the d lines a student writes (`dW=2 dx=2 db=1`, or `affine.dW=2` when several gates have a `W`).
A Python exercise is a module with `NAME_forward`/`NAME_backward` pairs (the teacher's, right),
`# points: affine.dx=2 affine.dw=2 affine.db=1` and `# shapes: affine x=4,2,3 w=6,5 b=5` lines (or
`# inputs: affine x=[[1, 2], [2, 1]]` values, fixed), its arguments that are not differentiated as
JSON (`# params: batchnorm bn_param={"mode": "train"}`, `# params: svm_loss y=[1, 0, 3]`: integers stay
integers), and its random forwards (`# random: dropout keep=dropout_param.p`). Points may also come
from `points.toml` beside the exercise (`[points]`, the same names). Every mistake is a positioned error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..language import nodes
from ..core.errors import GradcheckError
from ..checking.files import read_source
from ..language.frontend import parse_value
from ..language.syntax import parse

POINTS = re.compile(r"^\s*#\s*points\s*:(.*)$")
SHAPES = re.compile(r"^\s*#\s*(shapes|inputs)\s*:\s*(\w+)\s+(.*)$")
PARAMS = re.compile(r"^(\s*#\s*(params|random)\s*:\s*)(\w+)\s+(.*)$")
PARAM_NAME = re.compile(r"\s*(\w+)=")
MAX_PARAM_CHARS = 100_000  # of one `# params:` line
DIMS = re.compile(r"^\s*#\s*dims\s*:(.*)$")
ACCEPT = re.compile(r"^\s*#\s*accept\s*:(.*)$")
RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
ACCEPTED = ("broadcast-shapes",)  # `# accept:` options: a gradient of shape (1, 5) for a (5,) input is right
MAX_DIM = 10_000
MAX_PARTS = 100  # parts one exercise may name (each is graded at every point)


@dataclass
class Part:
    """One thing the student writes: `what` (`dW`, `affine.db`), its gate or pair, its input, its points."""
    what: str
    owner: str      # the gate (a .grad exercise) or the pair's NAME (a Python one)
    input: str      # the parameter or input whose gradient it is ("" for a forward part)
    points: float
    line: int = 0   # where the exercise names it
    forward: bool = False  # `NAME.forward` (Python): the student's forward, not a gradient


@dataclass
class Exercise:
    path: str
    kind: str                                  # "grad" or "python"
    text: str
    parts: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)  # pair -> {input: shape tuple} (Python): sizes, dim names, "2..6"
    dims: dict = field(default_factory=dict)    # dim name (or an inline range's text) -> [low, high] (`# dims:`)
    accept: list = field(default_factory=list)  # `# accept:` options (ACCEPTED)
    variants: bool = False                      # grade --variants: points and dims drawn per student
    values: dict = field(default_factory=dict)  # pair -> {input: value text} (Python, fixed values)
    params: dict = field(default_factory=dict)  # pair -> {argument: JSON value} (Python, not differentiated)
    random: dict = field(default_factory=dict)  # pair -> keep probability: a number or a "param.key" (Python)
    where: dict = field(default_factory=dict)   # "pair.name" -> [line, col] of a header entry (for its errors)

    @property
    def total(self) -> float:
        return sum(p.points for p in self.parts)


def load_exercise(path: str) -> Exercise:
    """The exercise at `path` (`.grad` or `.py`), its parts and points; a GradcheckError (with the
    exercise's line) when it names nothing, or names what it does not have."""
    text = read_source(path)
    kind = "python" if str(path).endswith(".py") else "grad"
    ex = Exercise(str(path), kind, text)
    named = _points(text, Path(path))
    if not named:
        raise GradcheckError("the exercise names no parts: add a line like `# points: dW=2 dx=2 db=1` "
                             "(or a points.toml beside it)", 1, 1)
    if len(named) > MAX_PARTS:
        raise GradcheckError(f"the exercise names {len(named)} parts (at most {MAX_PARTS})", named[MAX_PARTS][2], 1)
    if kind == "grad":
        ex.parts = _grad_parts(text, named)
    else:
        ex.parts = [_python_part(what, pts, line) for what, pts, line in named]
        for number, line in enumerate(text.splitlines(), 1):
            m = SHAPES.match(line)
            if m:
                _inputs(ex, m, number)
            m = PARAMS.match(line)
            if m:
                _params(ex, m, number)
            _options(ex, line, number)
        _check_dims(ex)
        for p in ex.parts:
            if p.owner not in ex.shapes and p.owner not in ex.values:
                raise GradcheckError(f"part '{p.what}': give its inputs with `# shapes: {p.owner} x=4,5 ...`", p.line, 1)
    return ex


def _points(text: str, path: Path) -> list:
    """[(name, points, line)] from the `# points:` lines, or from points.toml beside the exercise."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        m = POINTS.match(line)
        if not m:
            continue
        for item in m.group(1).split():
            name, eq, value = item.partition("=")
            try:
                pts = float(value)
            except ValueError:
                pts = -1.0
            if not eq or not name or not pts >= 0 or pts > 1e6:
                raise GradcheckError(f"`# points:` takes NAME=POINTS (a number ≥ 0), not {item!r}", number,
                                     line.index(item) + 1)
            found.append((name, pts, number))
    toml = path.with_name("points.toml")
    if not found and toml.is_file():
        found = _toml_points(toml)
    return found


def _toml_points(toml: Path) -> list:
    import tomllib  # only when a points.toml is there
    try:
        table = tomllib.loads(toml.read_text(encoding="utf-8")).get("points", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as err:
        raise GradcheckError(f"{toml}: {err}", 1, 1) from None
    bad = [k for k, v in table.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0]
    if bad:
        raise GradcheckError(f"{toml}: [points] {bad[0]} must be a number ≥ 0", 1, 1)
    return [(k, float(v), 0) for k, v in table.items()]


def _grad_parts(text: str, named: list) -> list:
    gates = {s.name: s for s in parse(text).statements if isinstance(s, nodes.GateDef)}
    parts = []
    for what, pts, line in named:
        owner, _, d = what.rpartition(".")
        if not d.startswith("d") or len(d) < 2:
            raise GradcheckError(f"part '{what}': name a d line (`dW`, or `affine.dW`)", line, 1)
        param = d[1:]
        having = [g for g in gates.values() if param in g.params and (not owner or g.name == owner)]
        if not having:
            raise GradcheckError(f"part '{what}': no gate of the exercise has a parameter '{param}'"
                                 + (f" (gate '{owner}')" if owner else ""), line, 1)
        if len(having) > 1:
            raise GradcheckError(f"part '{what}': gates {', '.join(g.name for g in having)} all have '{param}': "
                                 f"write {having[0].name}.{d}", line, 1)
        gate = having[0]
        if not any(s.name == d for s in gate.body):
            raise GradcheckError(f"part '{what}': gate '{gate.name}' has no line `{d} = ...` (the solution writes it)",
                                 gate.pos.line, gate.pos.col)
        parts.append(Part(what, gate.name, param, pts, line))
    return parts


def _python_part(what: str, pts: float, line: int) -> Part:
    owner, _, d = what.partition(".")
    if owner and d == "forward":
        return Part(what, owner, "", pts, line, forward=True)
    if not owner or not d.startswith("d") or len(d) < 2:
        raise GradcheckError(f"part '{what}': name a pair and a gradient (`affine.dx`), or its forward "
                             "(`dropout.forward`)", line, 1)
    return Part(what, owner, d[1:], pts, line)


def _inputs(ex: Exercise, m, number: int) -> None:
    kind, pair, rest = m.group(1), m.group(2), m.group(3)
    into = ex.shapes if kind == "shapes" else ex.values
    for found in re.finditer(r"(\w+)=(\[[^=]*\]|[^\s]+)", rest):
        name, value = found.groups()
        col = m.start(3) + found.start(2) + 1
        ex.where[f"{pair}.{name}"] = [number, m.start(3) + found.start() + 1]
        if kind == "shapes":
            shape = tuple(_size(s.strip(), ex, number) for s in value.split(","))
            if not shape or any(isinstance(s, int) and (s <= 0 or s > MAX_DIM) for s in shape) or len(shape) > 8:
                raise GradcheckError(f"`# shapes:` {name}={value}: a shape is sizes like 4,5 (each 1 to 10,000), "
                                     "dim names of `# dims:` or ranges like 2..6", number, 1)
            into.setdefault(pair, {})[name] = shape
        else:
            try:
                parse_value(value, name=name)
            except GradcheckError as err:
                raise GradcheckError(f"`# inputs:` {name}: {err.message}", number, col + (err.col or 1) - 1) from None
            into.setdefault(pair, {})[name] = value


def _params(ex: Exercise, m, number: int) -> None:
    """`# params: PAIR NAME=JSON ...` (each value JSON, as `check-py --param` takes it) or
    `# random: PAIR keep=P` (a number, or `PARAM.KEY` naming one of the pair's params)."""
    kind, pair, rest, start = m.group(2), m.group(3), m.group(4), m.start(4)
    if len(rest) > MAX_PARAM_CHARS:
        raise GradcheckError(f"`# {kind}:` line of {len(rest):,} characters (at most {MAX_PARAM_CHARS:,})", number, 1)
    decoder = json.JSONDecoder()
    k = 0
    while k < len(rest.rstrip()):
        name = PARAM_NAME.match(rest, k)
        if not name:
            raise GradcheckError(f"`# {kind}:` takes NAME=VALUE after the pair's name, e.g. `# params: batchnorm "
                                 'bn_param={"mode": "train"}`', number, start + k + 1 + len(rest[k:]) - len(rest[k:].lstrip()))
        key, k = name.group(1), name.end()
        ex.where[f"{pair}.{key}"] = [number, start + name.start(1) + 1]
        if kind == "random":
            value = rest[k:].split()[0] if rest[k:].split() else ""
            if key != "keep" or not re.fullmatch(r"[0-9.eE+-]+|\w+\.\w+", value):
                raise GradcheckError("`# random:` takes keep=P: the keep probability, a number or PARAM.KEY "
                                     "(`keep=dropout_param.p`)", number, start + name.start(1) + 1)
            ex.random[pair] = value
            k += len(value)
            continue
        try:
            value, end = decoder.raw_decode(rest, k)
        except (ValueError, RecursionError) as err:
            at = getattr(err, "pos", k)
            raise GradcheckError(f"`# params:` {key}: not JSON ({getattr(err, 'msg', 'nested too deeply')}); write it "
                                 "as check-py's --param takes it", number, start + at + 1) from None
        ex.params.setdefault(pair, {})[key] = value
        k = end
        if k < len(rest) and not rest[k].isspace():
            raise GradcheckError(f"`# params:` {key}: the JSON value ends here; separate NAME=VALUE entries by "
                                 "spaces", number, start + k + 1)


def _size(text: str, ex: Exercise, number: int):
    """One size of a `# shapes:` entry: a number, a dim name (`# dims: N=2..8`), or a range `2..6`
    (a dim of its own); None when it is none of them (a positioned error follows)."""
    if text.isdigit():
        return int(text)
    m = RANGE.match(text)
    if m:
        ex.dims[text] = _range(text, m, number)
        return text
    return text if text.isidentifier() else 0


def _range(text: str, m, number: int) -> list:
    low, high = int(m.group(1)), int(m.group(2))
    if not 1 <= low <= high <= MAX_DIM:
        raise GradcheckError(f"`{text}`: a range of sizes is LOW..HIGH, 1 ≤ LOW ≤ HIGH ≤ {MAX_DIM:,}", number, 1)
    return [low, high]


def _options(ex: Exercise, line: str, number: int) -> None:
    """`# dims: N=2..8 M=3` and `# accept: broadcast-shapes` lines."""
    m = DIMS.match(line)
    for item in m.group(1).split() if m else []:
        name, eq, value = item.partition("=")
        found = RANGE.match(value) or re.match(r"^(\d+)()$", value)
        if not eq or not name.isidentifier() or not found:
            raise GradcheckError(f"`# dims:` takes NAME=LOW..HIGH (or NAME=SIZE), not {item!r}", number,
                                 line.index(item) + 1)
        ex.dims[name] = _range(value, found, number) if found.group(2) else [int(value)] * 2
    m = ACCEPT.match(line)
    for item in m.group(1).split() if m else []:
        if item not in ACCEPTED:
            raise GradcheckError(f"`# accept:` knows {', '.join(ACCEPTED)}, not {item!r}", number, line.index(item) + 1)
        ex.accept.append(item)


def _check_dims(ex: Exercise) -> None:
    for pair, shapes in ex.shapes.items():
        for name, shape in shapes.items():
            unknown = [s for s in shape if isinstance(s, str) and s not in ex.dims]
            if unknown:
                line = next((p.line for p in ex.parts if p.owner == pair), 1)
                raise GradcheckError(f"`# shapes: {pair}` {name}: '{unknown[0]}' is not a dim: name it in a line "
                                     f"like `# dims: {unknown[0]}=2..8`", line, 1)


def splice(exercise: Exercise, submission_text: str) -> tuple:
    """(the program, {gate: why its parts get 0}): the exercise with the student's lines in place of
    the solution's backward, for the parts' gates. Each gate keeps the exercise's header and forward
    locals (what is differentiated cannot change) and takes, of the submission's lines, only d lines
    and names of its own: a line that rebinds a name the exercise defines (a parameter, a forward
    local, a name of the file) is a positioned error, and that gate's parts get 0 (it keeps the
    solution's lines so the others can be graded). Raises GradcheckError (the submission's line)
    when the submission does not parse."""
    program = parse(submission_text)
    theirs = {s.name: s for s in program.statements if isinstance(s, nodes.GateDef)}
    statements = parse(exercise.text).statements
    ours = {s.name: s for s in statements if isinstance(s, nodes.GateDef)}
    file_names = {getattr(s, "name", None) for s in statements} - {None}
    lines, sub_lines = exercise.text.splitlines(), submission_text.splitlines()
    replaced, refused = [], {}
    for name in dict.fromkeys(p.owner for p in exercise.parts):
        if name not in theirs:
            refused[name] = GradcheckError(f"the submission has no `gate {name}(...)`: the exercise's parts are its d "
                                           "lines", 1, 1)
            continue
        try:
            block = _spliced_gate(ours[name], theirs[name], lines, sub_lines, file_names,
                                  _next_line(statements, ours[name]), _next_line(program.statements, theirs[name]))
        except GradcheckError as err:
            refused[name] = err
            continue
        replaced.append((ours[name].pos.line - 1, _extent(lines, ours[name].pos.line - 1,
                                                          _next_line(statements, ours[name]))[1], block))
    for start, end, block in sorted(replaced, reverse=True):
        lines[start:end] = block
    text = "\n".join(lines) + "\n"
    _same_shape(exercise.text, text)
    return text, refused


def _next_line(statements: tuple, stmt) -> int:
    """The line (1-based) of the statement after `stmt` at the top level, or one past the end."""
    later = [s.pos.line for s in statements if s.pos.line > stmt.pos.line]
    return min(later) if later else 10 ** 9


def _extent(lines: list, start: int, stop_line: int) -> tuple:
    """(start, end) indices of a statement's lines: from `start` to before line `stop_line`, without
    the blank and comment lines that trail it."""
    end = min(stop_line - 1, len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return start, end


def _spliced_gate(ours, theirs, lines: list, sub_lines: list, file_names: set, ours_end: int,
                  theirs_end: int) -> list:
    """The gate's lines: the exercise's header and forward locals, then the submission's own lines."""
    kinds = _line_kinds(ours)
    taken = set(ours.params) | {"out", "dout"} | {n for n, k in kinds.items() if k == "forward"} | file_names
    body_start = ours.body[0].pos.line if ours.body else ours_end
    block = lines[ours.pos.line - 1: _extent(lines, ours.pos.line - 1, body_start)[1]]
    stops = [s.pos.line for s in ours.body[1:]] + [ours_end]
    forward = {}  # name -> the exercise's forward line, as text without space or comments
    for stmt, stop in zip(ours.body, stops):
        if kinds[stmt.name] == "forward":
            own = lines[slice(*_extent(lines, stmt.pos.line - 1, stop))]
            block += own
            forward[stmt.name] = _bare(own)
    indent = next((ln[: len(ln) - len(ln.lstrip())] for ln in lines[body_start - 1: body_start]), "  ") or "  "
    stops = [s.pos.line for s in theirs.body[1:]] + [theirs_end]
    for stmt, stop in zip(theirs.body, stops):
        own = sub_lines[slice(*_extent(sub_lines, stmt.pos.line - 1, stop))]
        if forward.get(stmt.name) == _bare(own):
            continue  # the exercise's own forward line, copied: the exercise's is used
        if stmt.name in taken:
            what = ("a parameter" if stmt.name in ours.params else "the gate's forward" if stmt.name in kinds
                    else "a name of the exercise's file" if stmt.name in file_names else "reserved")
            raise GradcheckError(f"gate '{theirs.name}': '{stmt.name}' is {what}, which a submission cannot "
                                 "change: write only d lines and names of your own", stmt.pos.line, stmt.pos.col)
        if own and own[-1].rstrip().endswith("\\"):
            raise GradcheckError(f"gate '{theirs.name}': line {stmt.pos.line} continues (a backslash) past the "
                                 "gate's last line", stmt.pos.line, len(own[-1].rstrip()))
        first = own[0][: len(own[0]) - len(own[0].lstrip())] if own else ""
        block += [indent + ln[len(first):] if ln.startswith(first) else ln for ln in own]
    return block


def _bare(lines: list) -> str:
    """A statement's text without comments, spaces or line continuations (the language has no strings)."""
    return "".join("".join(line.split("#", 1)[0].split()).rstrip("\\") for line in lines)


def _line_kinds(gate) -> dict:
    """name -> "forward" or "backward" for each line under the gate, as the language tells them apart
    (usergates.define): a line is the backward's when it is a d line or uses out, dout or a backward line."""
    kinds: dict = {}
    for line in gate.body:
        used = {e.id for e in nodes.walk(line.expr) if isinstance(e, nodes.Name)}
        backward = (line.name.startswith("d") and (line.name[1:] in gate.params or kinds.get(line.name[1:]) == "forward")
                    or bool(used & {"out", "dout"}) or any(kinds.get(u) == "backward" for u in used))
        kinds[line.name] = "backward" if backward else "forward"
    return kinds


def _same_shape(exercise_text: str, program: str) -> None:
    """The spliced program has the exercise's statements, in its order (a submission's text cannot
    swallow or add a line of the exercise's)."""
    want = [(type(s).__name__, getattr(s, "name", None)) for s in parse(exercise_text).statements]
    got = [(type(s).__name__, getattr(s, "name", None)) for s in parse(program).statements]
    if want != got:
        raise GradcheckError("the submission's lines change the exercise's program around the gate (a continuation "
                             "line?): submit only the gate's own lines", 1, 1)
