"""Grading one submission against an exercise (exercise.py): each part checked by gradcheck at the
exercise's own point and at hidden random points (a teacher's secret seed), scored all or nothing,
with the reason a learner can act on — the student's gradient compared with the right one (the
exercise's own backward, or backprop through the gate's forward) to say how it is wrong."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from html import escape

import numpy as np

from ..checking.checker import check
from ..checking.gatecheck import upstream
from ..core.errors import GradcheckError
from ..core.settings import Settings
from ..core.streams import Stream, stream
from ..language.frontend import load, parse_value
from ..oracles.autodiff import backward as backprop
from ..oracles.autodiff import forward, run_graph
from ..python.pycheck import check_layer, check_loss
from ..python.pymodule import load_module
from . import similarity
from .diagnose_grads import across_points, diagnose, first_wrong
from .exercise import Exercise, load_exercise, splice
from .pairs import Outputs, pairs_of
from .randomfwd import check_random_point
from .sandbox import NOT_THE_FORMAT, Limits, Stopped, Submission
from .sealed import Local, Remote, Student, check_point, failure, function_lines
from .student_side import arguments
from ..core.text import shell_quote, student_text

RETRIES = 4  # hidden points the exercise itself is not defined at are drawn again, this many times
REFERENCE_RTOL = 1e-8  # a .grad d line against backprop through its gate's forward: two exact float64 formulas


@functools.lru_cache(maxsize=8)
def hidden_seed(secret: int) -> int:
    """The seed of the hidden points: the secret through scrypt (16 MB, ~50 ms), so that a submission
    that sees a hidden point cannot find the secret by trying seeds in the time it is given."""
    try:
        key = hashlib.scrypt(str(int(secret)).encode("ascii"), salt=b"gradcheck: the hidden points", n=2 ** 14, r=8,
                             p=1, maxmem=64 * 1024 * 1024, dklen=8)
    except ValueError as err:  # OpenSSL's "malloc failure" under a memory limit (a worker's)
        if "malloc" in str(err):
            raise MemoryError from None
        raise
    return int.from_bytes(key, "big")


@dataclass
class PartResult:
    what: str
    points: float
    earned: float
    status: str          # "right", "wrong" or "error"
    reason: str
    fingerprint: str = ""   # the teacher's only (similarity.py): the wrong values, hashed; never in a gradebook
    wrong_values: int = 0
    point: int | None = None  # the first point (numbered from 1, the exercise's own first) it is wrong at


PRIVATE = ("fingerprint", "wrong_values")


@dataclass
class Graded:
    student: str
    source: str
    parts: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # for the teacher: what the submission's process left behind
    # not in the gradebook: each pair's points, as graded (pair -> [{input: array}]), for the feedback's
    # files that reproduce a failure; the student's own sizes under --variants ({dim: size})
    points: dict = field(default_factory=dict, repr=False)
    variant: dict = field(default_factory=dict)
    own_forward: dict = field(default_factory=dict, repr=False)  # pair -> did the submission write NAME_forward

    @property
    def earned(self) -> float:
        return sum(p.earned for p in self.parts)

    @property
    def total(self) -> float:
        return sum(p.points for p in self.parts)

    def to_dict(self, private: bool = False) -> dict:
        parts = [{k: v for k, v in vars(p).items() if private or k not in PRIVATE} for p in self.parts]
        found = {"student": self.student, "source": self.source, "score": self.earned, "out_of": self.total,
                 "parts": [{k: v for k, v in part.items() if v is not None or k != "point"} for part in parts]}
        if self.variant:
            found["variant"] = dict(self.variant)
        return {**found, "notes": list(self.notes)} if self.notes else found


def zero(exercise: Exercise, student: str, source: str, why: str) -> Graded:
    """Every part 0, for one reason (the submission does not parse, raises, runs out of time)."""
    return Graded(student, source, [PartResult(p.what, p.points, 0.0, "error", why) for p in exercise.parts])


def score(exercise: Exercise, student: str, source: str, verdicts: dict, seen: dict | None = None) -> Graded:
    """Per part, its verdicts at every point [(point name, right, how it is wrong)] into points and a
    reason; `seen` (part -> per point, (the student's gradient, the right one) where it was wrong)
    into the part's fingerprint."""
    graded = Graded(student, source)
    for p in exercise.parts:
        right, reason = across_points(verdicts.get(p.what, []))
        found = similarity.NONE if right else similarity.fingerprint((seen or {}).get(p.what, []))
        graded.parts.append(PartResult(p.what, p.points, p.points if right else 0.0, "right" if right else "wrong", reason,
                                       found.digest, found.values,
                                       None if right else first_wrong(verdicts.get(p.what, []))))
    return graded


def grade_grad(exercise: Exercise, text: str, path: str, student: str, secret: int, hidden: int,
               points: list | None = None) -> Graded:
    """A `.grad` submission's text: its d lines for the exercise's gates, checked in the exercise's
    program (no code of the student's runs: the language is evaluated by gradcheck). `points`: the
    points `grad_points` gives for them, when the caller has drawn them (once for a class)."""
    try:
        program, refused = splice(exercise, text)
    except GradcheckError as err:
        return zero(exercise, student, path, student_text(err.located(path, text).format().splitlines()[0]))
    verdicts: dict = {p.what: [("every point", False, student_text(refused[p.owner].located(path, text).format()
                                                                   .splitlines()[0]))]
                      for p in exercise.parts if p.owner in refused}
    seen: dict = {}  # part -> per point, (the student's d line, backprop) where it was wrong: its fingerprint
    for name, at, seed in points if points is not None else grad_points(exercise, secret, hidden, student):
        report = check(program, source=path, at=at, settings=Settings(seed=seed))
        if report.error is not None:
            why = report.error.message
            for p in exercise.parts:
                verdicts.setdefault(p.what, []).append((name, False, student_text(f"the program fails here: {why}")))
                seen.setdefault(p.what, []).append(None)
            continue
        for p in (p for p in exercise.parts if p.owner not in refused):
            # its calls' own checks at this point (gradcheck's second point is a random one: the hidden points are ours)
            rows = [g for g in report.gates if g.gate == p.owner and g.input == "d" + p.input and g.point == 1]
            right = bool(rows) and all(g.status != "fail" for g in rows)
            # at a kink any valid subgradient is right; elsewhere the d line must also be backprop's own
            if right and not any(g.status == "kink" for g in rows) and not _same_as_backprop(program, at, seed, p):
                right = False
            wrong_at: list = []
            how = None if right else _grad_diagnosis(program, at, seed, p, rows, wrong_at)
            verdicts.setdefault(p.what, []).append((name, right, how))
            seen.setdefault(p.what, []).append(wrong_at[0] if wrong_at else None)
    return score(exercise, student, path, verdicts, seen)


def grad_points(exercise: Exercise, secret: int, hidden: int, student: str | None = None) -> list:
    """[(name, at, seed)]: the exercise's own point, then `hidden` random ones where the exercise's
    own solution is defined (each leaf drawn again; consts stay): under --variants, the student's own."""
    graph = load(exercise.text, exercise.path)
    leaves = graph.leaves()
    points = [("the exercise's point", None, 0)]
    rng = (stream(hidden_seed(secret), Stream.GRADE_VARIANT, name_key(student)) if exercise.variants and student
           else stream(hidden_seed(secret), Stream.GRADE_POINTS))
    tries = 0
    while len(points) < hidden + 1 and tries < (hidden + 1) * RETRIES:
        tries += 1
        at = {n.name: rng.standard_normal(n.shape) for n in leaves}
        seed = int(rng.integers(1, 2 ** 31))
        if check(exercise.text, source=exercise.path, at=at, settings=Settings(seed=seed, symbolic=False)).error is None:
            points.append((f"random point {len(points)}", at, seed))
    return points


def _grad_diagnosis(program: str, at, seed: int, part, rows, seen: list | None = None) -> str:
    """How the student's d line differs from backprop through the gate's forward, at its first call
    (both kept in `seen`, for the part's fingerprint)."""
    note = next((g.note for g in rows if g.status == "fail" and g.note), None)
    found = _vjps(program, at, seed, part)
    if found is None:
        return note or "wrong"
    theirs, right = found
    if seen is not None:
        seen.append(found)
    return diagnose(theirs, right, part.input) or note or "wrong"


def _vjps(program: str, at, seed: int, part) -> tuple | None:
    """(the student's d line, backprop through the gate's forward) at the gate's first call, with the
    upstream gradient gradcheck's own check of that call uses; None where either cannot be had."""
    try:
        graph = load(program, at=at, seed=seed)
        values = forward(graph)
        node = next(n for n in graph.nodes if n.composite is not None and n.composite.name == part.owner)
    except (GradcheckError, StopIteration):
        return None
    composite = node.composite
    if composite is None or composite.backward is None:  # a gate without d lines: nothing of the student's
        return None
    args = [values[i] for i in node.inputs]
    u = upstream(Settings(seed=seed), 1, node)[None]
    slot = list(composite.params).index(part.input)
    body = forward(composite.body, dict(zip([n.id for n in composite.body.leaves()], args)))
    right = backprop(composite.body, body, seed=u)[composite.body.leaves()[slot].id][0]
    try:
        theirs = run_graph(composite.backward, list(args) + [values[node.id], u],
                           outputs=[composite.backward.names["d" + part.input]])[0]
        theirs = np.asarray(theirs, dtype=float)
        if theirs.shape != right.shape and theirs.ndim and theirs.shape[0] == 1:
            theirs = theirs[0]  # the d line's leading row axis (one upstream row)
    except (GradcheckError, KeyError, ValueError, IndexError):
        return None
    return theirs, np.asarray(right, dtype=float)


def _same_as_backprop(program: str, at, seed: int, part) -> bool:
    """Is the student's d line backprop through the gate's forward, to float64's rounding of the terms
    (both are exact formulas)? Where a row passed only by a tolerance its own measured rounding widened
    (a d line that jumps when its inputs move by a few ulps), it is not."""
    found = _vjps(program, at, seed, part)
    if found is None:
        return False
    theirs, right = found
    if theirs.shape != right.shape or not np.all(np.isfinite(theirs)):
        return False
    scale = max(float(np.max(np.abs(right), initial=0.0)), 1e-300)
    return bool(np.allclose(theirs, right, rtol=REFERENCE_RTOL, atol=REFERENCE_RTOL * scale))


def grade_python(exercise: Exercise, ours, source: bytes, display: str, student: str, secret: int, hidden: int,
                 limits: Limits, *, pairs: dict | None = None) -> Graded:
    """A Python submission: its functions for each pair, called in a process of its own
    (sandbox.Submission; started again for the pairs left when a call past its limit killed it);
    every verdict here, against the exercise's own pair (`pairs`: the class's, class_pairs)."""
    pairs = exercise_pairs(exercise, ours) if pairs is None else pairs
    names = list(dict.fromkeys(n for p in pairs.values() for n in p.functions))
    session = Session(source, limits, names)
    try:
        loaded = session.start()
        has = loaded.get("has")
        if not loaded["ok"]:
            _, text, line, col = failure(loaded)
            at = f"{display}:{line}:{col or 1}: error: " if line else ""
            graded = zero(exercise, student, display, f"{at}cannot import it: {text}")
        elif not isinstance(has, dict):
            raise Stopped(NOT_THE_FORMAT)
        else:
            who = Student(display=display, lines=function_lines(source),
                          has={n: has.get(n) is True for n in names}, source=source.decode("utf-8", "replace"))
            graded = grade_functions(exercise, pairs, lambda pair: Remote(session.live(), pair, who), display,
                                     student, secret, hidden, on_stop=session.stopped)
    except Stopped as stop:
        graded = zero(exercise, student, display, stop.why)
    finally:
        session.close()
    if session.survivors:
        graded.notes.append(f"{session.survivors} process(es) it started were still running after it ended: killed")
    return graded


class Session:
    """A submission's process for the pairs still to grade: started with its module loaded, and started
    again after a call past its limit (or anything else) ended it; `--timeout` counts the waiting for
    all of them together, and once it is spent every pair left gets 0 with that reason."""

    def __init__(self, source: bytes, limits: Limits, names: list):
        self.source, self.limits, self.names = source, limits, names
        self.process: Submission | None = None
        self.waited, self.survivors, self.spent = 0.0, 0, ""

    def start(self) -> dict:
        """A new process, its reply to loading the submission."""
        self.close()
        if self.spent:
            raise Stopped(self.spent)
        self.process = Submission(self.source, limits=self.limits, waited=self.waited)
        return self.process.ask({"op": "load", "names": self.names}, max_elements=0)

    def live(self) -> Submission:
        if self.process is None or getattr(self.process, "_closed", False):
            loaded = self.start()
            if not loaded.get("ok") or not isinstance(loaded.get("has"), dict):
                raise Stopped("could not be started again after a call that did not finish")
        assert self.process is not None
        return self.process

    def stopped(self, stop: Stopped) -> None:
        """After a Stopped: the process is ended; past --timeout, nothing more is asked."""
        self.close()
        if self.waited >= self.limits.seconds:
            self.spent = stop.why

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
            self.waited = self.process.waited
            self.survivors += self.process.survivors
            self.process = None


@dataclass(frozen=True, kw_only=True)
class PointFile:
    """A point written beside a student's feedback: where a part of theirs failed (their own failing
    case, never another part's point or the secret), or under --variants their own first point."""
    what: str            # the part (affine.db), or the pair (affine) for a variant's own point
    point: int           # its number, the exercise's own point first
    file: str            # relative to the feedback folder: ada.points/affine-point2.json (the pair's inputs)
    values: dict         # input -> nested lists of floats (exact: JSON keeps every digit of a float64)
    command: str | None  # the check-py command that reproduces it, when the student wrote NAME_forward


def point_files(graded: Graded, exercise: Exercise, stem: str) -> list:
    """The PointFiles of a student's feedback named `stem` (its file's name without the suffix): one
    per wrong part of a Python exercise at the first point it fails at; under --variants also each
    pair's own first point, so the feedback shows the student's own values."""
    found = []
    source = os.path.basename(graded.source)
    for p in exercise.parts:
        done = next((r for r in graded.parts if r.what == p.what), None)
        points = graded.points.get(p.owner, [])
        if done is None or done.point is None or not 0 < done.point <= len(points):
            continue
        file = f"{stem}.points/{safe_name(p.owner)}-point{done.point}.json"  # the pair's inputs there
        values = {k: np.asarray(v, dtype=float).tolist() for k, v in points[done.point - 1].items()}
        command = _reproduce(source, p.owner, file, exercise) if graded.own_forward.get(p.owner) else None
        found.append(PointFile(what=p.what, point=done.point, file=file, values=values, command=command))
    if exercise.variants:
        for owner, points in graded.points.items():
            file = f"{stem}.points/{safe_name(owner)}-point1.json"
            if points and not any(f.file == file for f in found):
                values = {k: np.asarray(v, dtype=float).tolist() for k, v in points[0].items()}
                command = _reproduce(source, owner, file, exercise) if graded.own_forward.get(owner) else None
                found.append(PointFile(what=owner, point=1, file=file, values=values, command=command))
    return found


def _reproduce(source: str, owner: str, file: str, exercise: Exercise) -> str:
    """The check-py command that checks a student's pair at a point file, with the exercise's
    `# params:` for it (bn_param, y, ...) as check-py's --param takes them."""
    params = "".join(f" --param {shell_quote(f'{k}={json.dumps(v)}')}" for k, v in exercise.params.get(owner, {}).items())
    return f"gradcheck check-py {shell_quote(source)}::{owner} --at @{shell_quote(file)}{params}"


def safe_name(text: str) -> str:
    """A name as a file name: ASCII letters, digits, `.`, `-` and `_` (others as `_`), at most 80."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text)[:80].strip(".") or "student"


def load_reference(exercise: Exercise):
    """A Python exercise's module (the teacher's code, run here, trusted), with each pair's backward
    checked by gradcheck against its own forward at the exercise's point (a random forward: by its
    rule, as a student's is): a wrong reference is the teacher's error (exit 2), never every student's
    0. None for a `.grad` exercise."""
    if exercise.kind != "python":
        return None
    ours = load_module(exercise.path)
    for owner, pair in exercise_pairs(exercise, ours).items():
        _, inputs = _python_points(exercise, owner, 0, 0)[0]
        line = next((p.line for p in exercise.parts if p.owner == owner), 1)
        if pair.keep is not None:
            itself = Local(vars(ours), pair, Student(display="the exercise", lines={}, has={}))
            wrong = [why for right, why in check_random_point(pair, itself, inputs, 0).values() if not right]
            if wrong:
                raise GradcheckError(f"the exercise's own {owner} pair does not follow its `# random:` rule: "
                                     f"{wrong[0]}", line, 1)
            continue
        ordered = {n: inputs[n] for n in pair.names}
        params = arguments(copy.deepcopy(pair.params))
        report = (check_loss(pair.forward, ordered, params) if pair.loss
                  else check_layer(pair.forward, pair.backward, ordered, params))
        if report.error is not None:
            raise GradcheckError(f"the exercise's {owner} pair cannot be checked: {report.error.message}", line, 1)
        wrong = [r.name for r in report.nodes + report.gates if r.status == "fail"]
        if wrong:
            raise GradcheckError(f"the exercise's own {pair.backward_name or owner} fails gradcheck for d{wrong[0]}: "
                                 "a reference must be right before it grades anyone", line, 1)
    return ours


def exercise_pairs(exercise: Exercise, ours) -> dict:
    """owner -> Pair: the exercise's own functions for each pair its parts name (pairs.py)."""
    return pairs_of(exercise, ours)


def class_pairs(exercise: Exercise, ours) -> dict:
    """The exercise's pairs for grading a class: their forward's outputs kept across its students
    (pairs.Outputs: each computed once, the same bytes)."""
    kept = Outputs()
    return {owner: dataclasses.replace(pair, memo=kept) for owner, pair in exercise_pairs(exercise, ours).items()}


def grade_functions(exercise: Exercise, pairs: dict, remote_of, display: str, student: str, secret: int,
                    hidden: int, on_stop=None) -> Graded:
    """Each pair's parts judged at every point: `remote_of(pair)` calls the student's functions. A
    pair whose process stops (a call past its limit) gets 0 with the reason; `on_stop(stop)` is
    told, and the next pair asks again."""
    verdicts: dict = {}
    seen: dict = {}  # part -> per point, (the student's gradient, the right one) where it was wrong
    dims = variant_dims(exercise, secret, student)
    points, own_forward = {}, {}
    for owner, pair in pairs.items():
        parts = [p for p in exercise.parts if p.owner == owner]
        try:
            remote = remote_of(pair)
            own_forward[owner] = bool(remote.own_forward)
            missing = [n for n in pair.functions if not remote.student.has.get(n)]
            if pair.backward_name in missing or pair.loss and missing:
                for p in parts:
                    verdicts[p.what] = [(None, False, f"missing: {missing[-1]} is not defined")]
                continue
            check = check_random_point if pair.keep is not None else check_point
            points[owner] = _python_points(exercise, owner, secret, hidden, student, dims)
            broadcast = "broadcast-shapes" in exercise.accept
            for k, (name, inputs) in enumerate(points[owner]):
                wrong_at: dict = {}
                found = check(pair, remote, inputs, seed=k, seen=wrong_at, broadcast=broadcast)
                for p in parts:
                    if p.forward and missing:
                        right, how = False, f"missing: {missing[0]} is not defined"
                    else:
                        right, how = found.get(p.input, (False, "not checked"))
                    verdicts.setdefault(p.what, []).append((name, right, how))
                    seen.setdefault(p.what, []).append(wrong_at.get(p.input))
        except Stopped as stop:
            if on_stop is not None:
                on_stop(stop)
            for p in parts:
                verdicts[p.what] = [(None, False, stop.why)]  # not at a point: said as it is
    graded = score(exercise, student, display, verdicts, seen)
    graded.points = {owner: [inputs for _, inputs in found] for owner, found in points.items()}
    graded.own_forward = own_forward
    graded.variant = {k: v for k, v in dims.items() if ".." not in k} if exercise.variants else {}
    return graded


def _python_points(exercise: Exercise, owner: str, secret: int, hidden: int, student: str | None = None,
                   dims: dict | None = None) -> list:
    """[(name, inputs)]: the exercise's fixed values (or seeded ones of its shapes), then hidden ones.
    Under --variants (exercise.variants) the shapes' dims are the student's and every point not fixed
    by the exercise is drawn from the secret and the student's name."""
    dims = variant_dims(exercise, secret, None) if dims is None else dims
    shapes = {**{k: np.shape(parse_value(v)) for k, v in exercise.values.get(owner, {}).items()},
              **{k: tuple(dims[s] if isinstance(s, str) else s for s in shape)
                 for k, shape in exercise.shapes.get(owner, {}).items()}}
    fixed = {k: parse_value(v) for k, v in exercise.values.get(owner, {}).items()}
    own = exercise.variants and student is not None
    # each pair's hidden points its own (keyed by the pair's name): a failing point shown to a student is
    # that pair's, never another pair's hidden one
    rng = (stream(hidden_seed(secret), Stream.GRADE_VARIANT, name_key(student), name_key(owner)) if own
           else stream(hidden_seed(secret), Stream.GRADE_PYTHON_POINTS, name_key(owner)))
    rng0 = rng if own else stream(0, Stream.GRADE_EXERCISE_POINT)
    points = [("the exercise's point", {k: np.asarray(fixed[k], dtype=float) if k in fixed else rng0.standard_normal(s)
                                        for k, s in shapes.items()})]
    points += [(f"random point {k + 1}", {n: rng.standard_normal(s) for n, s in shapes.items()}) for k in range(hidden)]
    return points


def name_key(student: str) -> int:
    """A student's (or a pair's) name as a stream key (its SHA-256, 56 bits): the variant of one name under
    one secret."""
    return int.from_bytes(hashlib.sha256(student.encode("utf-8", "surrogatepass")).digest()[:7], "big")


def variant_dims(exercise: Exercise, secret: int, student: str | None) -> dict:
    """{dim: size}: each `# dims:` range's low end, or under --variants the student's own size, drawn
    from the secret and the student's name (sorted by dim, so adding a student changes no one's)."""
    if not (exercise.variants and student is not None):
        return {name: low for name, (low, _) in exercise.dims.items()}
    rng = stream(hidden_seed(secret), Stream.GRADE_VARIANT_DIMS, name_key(student))
    return {name: int(rng.integers(low, high + 1)) for name, (low, high) in sorted(exercise.dims.items())}


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
    pairs = exercise_pairs(exercise, load_module(exercise.path))
    who = Student(display="notebook", lines={}, has={name: callable(namespace.get(name))
                                                     for p in pairs.values() for name in p.functions})
    graded = grade_functions(exercise, pairs, lambda pair: Local(namespace, pair, who), "notebook", "notebook",
                             secret, hidden)
    credit = Credit(graded.earned)
    credit.graded = graded
    return credit
