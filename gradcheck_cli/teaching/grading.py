"""Grading one submission against an exercise (exercise.py): each part checked by gradcheck at the
exercise's own point and at hidden random points (a teacher's secret seed), scored all or nothing,
with the reason a learner can act on — the student's gradient compared with the right one (the
exercise's own backward, or backprop through the gate's forward) to say how it is wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from types import SimpleNamespace

import numpy as np

from ..oracles.autodiff import backward as backprop
from ..oracles.autodiff import forward, run_graph
from ..checking.checker import check
from .diagnose_grads import across_points, diagnose
from ..core.errors import GradcheckError
from .exercise import Exercise, load_exercise, splice
from ..checking.files import read_source
from ..language.frontend import load, parse_value
from ..checking.gatecheck import upstream
from ..python.pycheck import check_layer
from ..python.pymodule import load_module
from ..core.settings import Settings
from ..core.streams import Stream, stream

RETRIES = 4  # hidden points the exercise itself is not defined at are drawn again, this many times


@dataclass
class PartResult:
    what: str
    points: float
    earned: float
    status: str          # "right", "wrong" or "error"
    reason: str


@dataclass
class Graded:
    student: str
    source: str
    parts: list = field(default_factory=list)

    @property
    def earned(self) -> float:
        return sum(p.earned for p in self.parts)

    @property
    def total(self) -> float:
        return sum(p.points for p in self.parts)

    def to_dict(self) -> dict:
        return {"student": self.student, "source": self.source, "score": self.earned, "out_of": self.total,
                "parts": [vars(p) for p in self.parts]}


def zero(exercise: Exercise, student: str, source: str, why: str) -> Graded:
    """Every part 0, for one reason (the submission does not parse, raises, runs out of time)."""
    return Graded(student, source, [PartResult(p.what, p.points, 0.0, "error", why) for p in exercise.parts])


def score(exercise: Exercise, student: str, source: str, verdicts: dict) -> Graded:
    """Per part, its verdicts at every point [(point name, right, how it is wrong)] into points and a reason."""
    graded = Graded(student, source)
    for p in exercise.parts:
        right, reason = across_points(verdicts.get(p.what, []))
        graded.parts.append(PartResult(p.what, p.points, p.points if right else 0.0, "right" if right else "wrong", reason))
    return graded


def grade_grad(exercise: Exercise, path: str, student: str, secret: int, hidden: int) -> Graded:
    """A `.grad` submission: its d lines for the exercise's gates, checked in the exercise's program."""
    try:
        text = read_source(path)
        program = splice(exercise, text)
    except GradcheckError as err:
        return zero(exercise, student, path, err.located(path, _text(path)).format())
    verdicts: dict = {}
    for name, at, seed in _grad_points(exercise, secret, hidden):
        report = check(program, source=path, at=at, settings=Settings(seed=seed))
        if report.error is not None:
            why = report.error.message
            for p in exercise.parts:
                verdicts.setdefault(p.what, []).append((name, False, f"the program fails here: {why}"))
            continue
        for p in exercise.parts:
            # its calls' own checks at this point (gradcheck's second point is a random one: the hidden points are ours)
            rows = [g for g in report.gates if g.gate == p.owner and g.input == "d" + p.input and g.point == 1]
            right = bool(rows) and all(g.status != "fail" for g in rows)
            how = None if right else _grad_diagnosis(program, at, seed, p, rows)
            verdicts.setdefault(p.what, []).append((name, right, how))
    return score(exercise, student, path, verdicts)


def _text(path: str) -> str:
    try:
        return read_source(path)
    except GradcheckError:
        return ""


def _grad_points(exercise: Exercise, secret: int, hidden: int) -> list:
    """[(name, at, seed)]: the exercise's own point, then `hidden` random ones where the exercise's
    own solution is defined (each leaf drawn again; consts stay)."""
    graph = load(exercise.text, exercise.path)
    leaves = graph.leaves()
    points = [("the exercise's point", None, 0)]
    rng = stream(secret, Stream.GRADE_POINTS)
    tries = 0
    while len(points) < hidden + 1 and tries < (hidden + 1) * RETRIES:
        tries += 1
        at = {n.name: rng.standard_normal(n.shape) for n in leaves}
        seed = int(rng.integers(1, 2 ** 31))
        if check(exercise.text, source=exercise.path, at=at, settings=Settings(seed=seed, symbolic=False)).error is None:
            points.append((f"random point {len(points)}", at, seed))
    return points


def _grad_diagnosis(program: str, at, seed: int, part, rows) -> str:
    """How the student's d line differs from backprop through the gate's forward, at its first call."""
    note = next((g.note for g in rows if g.status == "fail" and g.note), None)
    try:
        graph = load(program, at=at, seed=seed)
        values = forward(graph)
        node = next(n for n in graph.nodes if n.gate is not None and n.gate.instance is not None
                    and n.gate.instance.user.defn.name == part.owner)
    except (GradcheckError, StopIteration):
        return note or "wrong"
    inst = node.gate.instance
    args = [values[i] for i in node.inputs]
    u = upstream(Settings(seed=seed), 1, node)[None]
    slot = list(inst.user.defn.params).index(part.input)
    body = forward(inst.fwd, dict(zip([n.id for n in inst.fwd.leaves()], args)))
    right = backprop(inst.fwd, body, seed=u)[inst.fwd.leaves()[slot].id][0]
    try:
        theirs = run_graph(inst.bwd, list(args) + [values[node.id], u], outputs=[inst.bwd.names["d" + part.input]])[0]
        theirs = np.asarray(theirs, dtype=float)
        if theirs.shape != right.shape and theirs.ndim and theirs.shape[0] == 1:
            theirs = theirs[0]  # the d line's leading row axis (one upstream row)
    except (GradcheckError, KeyError, ValueError, IndexError):
        return note or "wrong"
    return diagnose(theirs, right, part.input) or note or "wrong"


def grade_python(exercise: Exercise, path: str, student: str, secret: int, hidden: int) -> Graded:
    """A Python submission file: its NAME_backward (and NAME_forward, if it writes one) for each pair."""
    try:
        theirs = load_module(path)
    except GradcheckError as err:
        return zero(exercise, student, path, err.located(path, _text(path)).format())
    return grade_functions(exercise, theirs, path, student, secret, hidden)


def grade_functions(exercise: Exercise, theirs, path: str, student: str, secret: int, hidden: int) -> Graded:
    """The functions of `theirs` (a module, or a notebook's namespace as an object) graded."""
    ours = load_module(exercise.path)
    verdicts: dict = {}
    for owner in dict.fromkeys(p.owner for p in exercise.parts):
        parts = [p for p in exercise.parts if p.owner == owner]
        fwd, bwd = getattr(ours, owner + "_forward", None), getattr(ours, owner + "_backward", None)
        s_bwd = getattr(theirs, owner + "_backward", None)
        if fwd is None or bwd is None:
            raise GradcheckError(f"the exercise has no {owner}_forward/{owner}_backward pair", parts[0].line, 1)
        if not callable(s_bwd):
            for p in parts:
                verdicts[p.what] = [("every point", False, f"the submission defines no {owner}_backward")]
            continue
        s_fwd = getattr(theirs, owner + "_forward", fwd)
        for name, inputs in _python_points(exercise, owner, secret, hidden):
            for p, right, how in _python_point(parts, fwd, bwd, s_fwd, s_bwd, inputs, path):
                verdicts.setdefault(p.what, []).append((name, right, how))
    return score(exercise, student, path, verdicts)


def _python_points(exercise: Exercise, owner: str, secret: int, hidden: int) -> list:
    """[(name, inputs)]: the exercise's fixed values (or seeded ones of its shapes), then hidden ones."""
    shapes = {**{k: np.shape(parse_value(v)) for k, v in exercise.values.get(owner, {}).items()},
              **exercise.shapes.get(owner, {})}
    fixed = {k: parse_value(v) for k, v in exercise.values.get(owner, {}).items()}
    rng0 = stream(0, Stream.GRADE_EXERCISE_POINT)
    points = [("the exercise's point", {k: fixed[k] if k in fixed else rng0.standard_normal(s) for k, s in shapes.items()})]
    rng = stream(secret, Stream.GRADE_PYTHON_POINTS)
    points += [(f"random point {k + 1}", {n: rng.standard_normal(s) for n, s in shapes.items()}) for k in range(hidden)]
    return points


def _python_point(parts, fwd, bwd, s_fwd, s_bwd, inputs: dict, path: str) -> list:
    """[(part, right, how)] at one point: gradcheck's verdict on the student's pair, and how each
    wrong gradient differs from the exercise's own backward's."""
    report = check_layer(s_fwd, s_bwd, {k: v.copy() for k, v in inputs.items()})
    if report.error is not None:
        why = report.error.located(report.path or path, _text(report.path or path)).format().splitlines()[0]
        return [(p, False, why) for p in parts]
    status = {r.name: r.status for r in report.nodes}
    status.update({g.input: "fail" for g in report.gates if g.status == "fail"})
    mine = _call_pair(fwd, bwd, inputs)
    ours = _call_pair(s_fwd, s_bwd, inputs, dout_like=mine[0])
    forward_ok = mine[0] is not None and ours[0] is not None and np.shape(ours[0]) == np.shape(mine[0]) \
        and np.allclose(ours[0], mine[0], rtol=1e-6, atol=1e-9)
    names = list(inputs)
    out = []
    for p in parts:
        right = status.get(p.input) in ("pass", "kink", "warn") and forward_ok
        if right:
            out.append((p, True, None))
            continue
        if not forward_ok:
            out.append((p, False, "the forward's output differs from the exercise's: fix the forward first"))
            continue
        k = names.index(p.input) if p.input in names else None
        theirs = ours[1][k] if k is not None and ours[1] is not None and k < len(ours[1]) else None
        right_value = mine[1][k] if k is not None and mine[1] is not None else None
        note = next((r.note for r in report.nodes if r.name == p.input and r.note), None)
        how = diagnose(theirs, right_value, p.input) if right_value is not None and ours[1] is not None else None
        out.append((p, False, how or note or "wrong"))
    return out


def _call_pair(fwd, bwd, inputs: dict, dout_like=None) -> tuple:
    """(the output, the gradients) of a forward and backward with a seeded upstream; None where they raise."""
    try:
        with np.errstate(all="ignore"):
            out, cache = fwd(*[v.copy() for v in inputs.values()])
            out = np.asarray(out, dtype=float)
    except Exception:  # noqa: BLE001 - the student's code may raise anything (the check says what)
        return None, None
    try:
        with np.errstate(all="ignore"):
            dout = stream(0, Stream.GRADE_UPSTREAM).standard_normal(np.shape(out if dout_like is None else dout_like))
            grads = bwd(dout, cache)
        grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
        return out, [None if g is None else np.asarray(g, dtype=float) for g in grads]
    except Exception:  # noqa: BLE001
        return out, None


class Credit(float):
    """Points earned (a number, as nbgrader reads a cell's value for partial credit) that shows its
    reasons in a notebook."""
    graded: Graded

    def _repr_mimebundle_(self, include=None, exclude=None):
        rows = "".join(f"<tr><td><code>{escape(p.what)}</code></td><td>{p.earned:g} / {p.points:g}</td>"
                       f"<td>{escape(p.reason)}</td></tr>" for p in self.graded.parts)
        return {"text/plain": repr(float(self)),
                "text/html": f"<p><b>{float(self):g}</b> / {self.graded.total:g}</p><table>{rows}</table>"}


def partial_credit(exercise_path: str, namespace: dict, parts=None, secret: int = 0, hidden: int = 3) -> Credit:
    """For an nbgrader autograder cell: the student's functions in `namespace` (their notebook's
    `globals()`) graded against the exercise, for `parts` (names, default all); the cell's value is
    the points earned, which nbgrader takes as partial credit, and the notebook shows the reasons."""
    exercise = load_exercise(exercise_path)
    if parts is not None:
        wanted = [parts] if isinstance(parts, str) else list(parts)
        unknown = [w for w in wanted if w not in {p.what for p in exercise.parts}]
        if unknown:
            raise GradcheckError(f"the exercise has no part '{unknown[0]}' (it has: "
                                 + ", ".join(p.what for p in exercise.parts) + ")", 1, 1)
        exercise.parts = [p for p in exercise.parts if p.what in wanted]
    if exercise.kind != "python":
        raise GradcheckError("partial_credit grades Python functions: the exercise must be a .py module", 1, 1)
    graded = grade_functions(exercise, SimpleNamespace(**namespace), "notebook", "notebook", secret, hidden)
    credit = Credit(graded.earned)
    credit.graded = graded
    return credit
