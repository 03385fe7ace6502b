"""A Python submission graded across the process boundary: the student's functions run in their own
process (sandbox.Submission) and are only called there; here, on the grader's side, the exercise's own
forward is differenced and its own backward is the reference, and every verdict is computed.

The student's `NAME_backward` is checked as a Layer whose forward is the exercise's: finite differences
and the complex step see only the teacher's code, every element of the student's gradient is compared
with the teacher's backward, and where they disagree the elements are differenced — so at a kink or a
tie any valid subgradient of the exercise's forward earns the points. A student's `NAME_forward`, when
written, must give the exercise's output, and only makes the cache the student's backward reads.
"""

from __future__ import annotations

import ast
import copy
import warnings
from dataclasses import dataclass

import numpy as np

from ..core.settings import Settings
from ..core.streams import Stream, stream
from ..python.pycheck import check_python
from ..python.pysource import PythonError, exception_text, grad_lines_in
from ..python.usercode import Layer, gradients_of, joined
from .diagnose_grads import diagnose, unit_axes_only
from .pairs import Pair
from .sandbox import NOT_THE_FORMAT, Stopped, Submission
from .student_side import WireError, arguments, call_with, decode, encode
from ..core.text import student_text

SETTINGS = Settings(symbolic=False)


@dataclass(frozen=True, kw_only=True)
class Student:
    """What the grader knows of the submission, all from its own reading: the name shown, the lines
    of its functions (parsed here, never executed here), and which functions the process has."""
    display: str
    lines: dict          # function name -> its `def` line
    has: dict            # function name -> callable in the submission's module (as its process says)
    source: str = ""     # its text (read, never run here): the line that raised or computes a gradient is shown

    def at(self, line: int | None) -> str:
        """` at FILE:LINE: `the line`` for a line of the submission ("" when there is none)."""
        if not line:
            return ""
        lines = self.source.splitlines()
        code = student_text(lines[line - 1].strip(), 160) if 0 < line <= len(lines) else ""
        return f" at {self.display}:{line}" + (f": `{code}`" if code else "")


def function_lines(source: bytes) -> dict:
    """Each top-level function's `def` line, from the submission's text (parsed, not run)."""
    try:
        tree = ast.parse(source.decode("utf-8", "replace"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    return {node.name: node.lineno for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


class Remote:
    """The student's functions, called in its process at the grader's inputs and upstreams: its forward
    (whose cache stays there for its backward; the exercise's cache is sent as data when it writes no
    forward), its backward, or its loss. Each call is limited on its own (sandbox.Limits.call_seconds):
    one that does not finish is named in the reason."""

    def __init__(self, process: Submission, pair: Pair, student: Student):
        self.process, self.pair, self.student = process, pair, student
        self.own_forward = bool(student.has.get(pair.forward_name))
        self.exercise_out = None  # the exercise's output, when its forward made the cache the student's backward read

    def call(self, dout: np.ndarray, arrays: list) -> tuple:
        """(the student's forward output (several joined) or None, the gradients: one array or None
        per input). Raises PythonError for what the student's code raised, Stopped when its process
        is gone."""
        pair = self.pair
        biggest = max([int(np.size(a)) for a in arrays] + [int(np.size(dout))])
        cap = 8 * biggest + 1024  # a gradient of the wrong shape is still read (and named), within reason
        ask = {"names": list(pair.names), "order": list(pair.order), "params": pair.params,
               "inputs": [encode(a) for a in arrays]}
        if pair.loss:
            reply = self._ask({"op": "loss", "fn": pair.forward_name, **ask}, pair.forward_name, cap * (len(arrays) + 1))
            out = self._arrays(reply.get("outs"), cap, 1)[0]
            return out, [None if g is None else dout * g for g in self._gradients(reply, cap)]
        right_outs, right_cache = pair.run(arrays)
        out, cache = None, None
        if self.own_forward:
            reply = self._ask({"op": "forward", "fn": pair.forward_name, **ask}, pair.forward_name,
                              cap * (len(right_outs) + 1))
            out = joined(self._arrays(reply.get("outs"), cap, len(right_outs) + 8))
        else:
            self.exercise_out = joined(right_outs)
            try:
                cache = encode(right_cache)
            except WireError as err:
                raise PythonError(f"the exercise's {pair.forward_name} returns a cache the grader cannot send "
                                  f"to a submission ({err}): ask students to write {pair.forward_name} too") from None
        reply = self._ask({"op": "backward", "fn": pair.backward_name, "names": list(pair.names), "cache": cache,
                           "upstream": [encode(u) for u in pair.upstreams(dout, right_outs)]},
                          pair.backward_name, cap * (len(arrays) + 1))
        return out, self._gradients(reply, cap)

    def _ask(self, message: dict, function: str, max_elements: int) -> dict:
        reply = self.process.ask(message, max_elements=max_elements, function=function)
        if not reply["ok"]:
            raise self._raised(reply)
        return reply

    @staticmethod
    def _arrays(found, cap: int, most: int) -> list:
        """The arrays of a reply's `outs`: a non-empty list of arrays, or the submission broke the format."""
        try:
            if not isinstance(found, list) or not found or len(found) > most:
                raise WireError("outputs that are not a list of arrays")
            values = [decode(v, cap) for v in found]
        except Exception as err:  # noqa: BLE001 - whatever the reply holds, it is the submission's fault
            raise Stopped(f"{NOT_THE_FORMAT} ({err if isinstance(err, WireError) else 'an unreadable value'})") from None
        if not all(isinstance(v, np.ndarray) for v in values):
            raise Stopped(NOT_THE_FORMAT)
        return values

    def _gradients(self, reply: dict, cap: int) -> list:
        try:
            grads = reply.get("grads")
            if not isinstance(grads, list):
                raise WireError("gradients that are not a list")
            values = [None if g is None else decode(g, cap) for g in grads[: len(self.pair.names) + 1]]
        except Exception as err:  # noqa: BLE001 - whatever the reply holds, it is the submission's fault
            why = err if isinstance(err, WireError) else "a value the grader cannot read"
            raise Stopped(f"{NOT_THE_FORMAT} ({why})") from None
        if any(v is not None and not isinstance(v, np.ndarray) for v in values):
            raise Stopped(NOT_THE_FORMAT)
        if len(values) != len(self.pair.names):
            function = self.pair.backward_name or self.pair.forward_name
            raise PythonError(f"{function} must return {len(self.pair.names)} gradient(s) "
                              f"(d{', d'.join(self.pair.names)}), not {len(values)}")
        return values

    def _raised(self, reply: dict) -> PythonError:
        where, text, line, col = failure(reply)
        return PythonError(f"the {where} raised {text}{self.student.at(line)}", line, col,
                           self.student.display if line else None)

    def backward(self, dout: np.ndarray, arrays: list) -> list:
        return self.call(dout, arrays)[1]


class Local:
    """The student's functions called in this very process (a notebook's namespace, for nbgrader's
    cell): the same checks as Remote, with no boundary — see partial_credit."""

    def __init__(self, namespace: dict, pair: Pair, student: Student):
        self.pair, self.student = pair, student
        self.functions = (namespace.get(pair.forward_name), namespace.get(pair.backward_name))
        self.own_forward = callable(self.functions[0])
        self.exercise_out = None

    def call(self, dout: np.ndarray, arrays: list) -> tuple:
        forward, backward = self.functions
        pair = self.pair
        out = None
        values = {**dict(zip(pair.names, [a.copy() for a in arrays])), **arguments(copy.deepcopy(pair.params))}
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if pair.loss:
                try:
                    loss, grads = call_with(forward, list(pair.order), values)
                    return (np.asarray(loss, dtype=float),
                            [None if g is None else dout * g for g in gradients_of(grads, list(pair.names), forward)])
                except PythonError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the student's code may raise anything
                    raise PythonError(f"the loss raised {student_text(exception_text(exc))}") from None
            right_outs, right_cache = pair.run(arrays)
            try:
                if self.own_forward:
                    result = call_with(forward, list(pair.order), values)
                    out, cache = joined([np.asarray(o, dtype=float) for o in result[:-1]]), result[-1]
                else:
                    cache, self.exercise_out = right_cache, joined(right_outs)
            except Exception as exc:  # noqa: BLE001 - the student's code may raise anything
                raise PythonError(f"the forward raised {student_text(exception_text(exc))}") from None
            try:
                return out, gradients_of(backward(*pair.upstreams(dout, right_outs), cache), list(pair.names), backward)
            except PythonError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise PythonError(f"the backward raised {student_text(exception_text(exc))}") from None

    def backward(self, dout: np.ndarray, arrays: list) -> list:
        return self.call(dout, arrays)[1]


def failure(reply: dict) -> tuple:
    """(where: import, forward or backward; what was raised, made safe; line or None; column or None) of a
    reply saying the student's code raised — each field checked, whatever the process put there."""
    def number(value):
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10 ** 7 else None
    where = reply.get("where") if reply.get("where") in ("import", "forward", "backward", "loss") else "backward"
    text = reply.get("error") if isinstance(reply.get("error"), str) else "an error"
    # the length the student's side says its text had before it was shortened to MAX_TEXT: a count the
    # cut shows, never more than it can be (what arrived, when it says less; the student's own text either way)
    length = number(reply.get("length"))
    text = student_text(text, total=max(length or 0, len(text)))
    line = number(reply.get("line"))
    return where, text, line, number(reply.get("col")) if line else None


FORWARD = ""  # check_point's key for the forward's own verdict (a `NAME.forward` part)


def fitted(values: list, arrays: list) -> list:
    """The student's gradients with axes of length 1 dropped or added to fit the inputs' shapes
    (`# accept: broadcast-shapes`: a db of shape (1, 5) for a b of shape (5,))."""
    return [v.reshape(np.shape(a)) if isinstance(v, np.ndarray) and unit_axes_only(v.shape, np.shape(a)) else v
            for v, a in zip(values, arrays)]


def check_point(pair: Pair, remote: Remote, inputs: dict, seed: int, seen: dict | None = None, *,
                broadcast: bool = False) -> dict:
    """{input: (right, how it is wrong)} of the student's gradients at one point, and under FORWARD
    the same of its forward's output (a loss: its value) against the exercise's; `seen` gets
    {input: (the student's gradient, the right one)} where it is wrong (for its fingerprint);
    `broadcast`: a gradient whose shape differs from its input's only by axes of length 1 is taken as
    reshaped."""
    names = list(pair.names)
    function = pair.backward_name or pair.forward_name
    student_backward = remote.backward
    if broadcast:
        def student_backward(dout, arrays):
            return fitted(remote.backward(dout, arrays), arrays)
    layer = Layer(pair.owner, pair.output, student_backward, names, remote.student.display,
                  remote.student.lines.get(function, 1), ("the exercise", 1), {}, backward_name=function,
                  reference=pair.gradients, rerun=False, diagnose=False)
    if pair.loss:
        layer.output = "loss"
    ordered = {n: np.asarray(inputs[n], dtype=float) for n in names}
    report = check_python(layer, {k: v.copy() for k, v in ordered.items()}, Settings(seed=seed, symbolic=False))
    arrays = list(ordered.values())
    right_out = pair.output(arrays)
    dout = stream(0, Stream.GRADE_UPSTREAM).standard_normal(right_out.shape)
    mine = pair.gradients(dout, arrays)
    try:
        theirs_out, theirs = remote.call(dout, arrays)
        theirs = fitted(theirs, arrays) if broadcast else theirs
    except PythonError as err:
        return {**{n: (False, err.message) for n in names}, FORWARD: (False, err.message)}
    out: dict = {}
    if remote.own_forward or pair.loss:
        same = (theirs_out is not None and theirs_out.shape == right_out.shape
                and bool(np.allclose(theirs_out, right_out, rtol=1e-6, atol=1e-9)))
        what = "the loss" if pair.loss else "the forward's output"
        out[FORWARD] = (same, None if same else f"{what} differs from the exercise's")
        if not same and not pair.loss:
            return {**{n: (False, "the forward's output differs from the exercise's: fix the forward first")
                       for n in names}, **out}
    if report.error is not None:
        return {**{n: (False, student_text(report.error.message)) for n in names}, **out}
    # this point's own verdicts: check-py's second, random point is not one of the grader's (the hidden
    # points are), so a part wrong only there is said wrong at the hidden points, where it is reproduced
    status = {r.name: r.status for r in report.nodes}
    for k, name in enumerate(names):
        # A warning (the differences cannot resolve the tolerance) earns the points only where the
        # student's gradient is also the exercise's own: a gradient is never right by being unresolvable.
        agrees = theirs[k] is not None and np.shape(theirs[k]) == np.shape(mine[k]) and bool(
            np.allclose(theirs[k], mine[k], rtol=1e-7, atol=1e-12 * max(float(np.max(np.abs(mine[k]), initial=0)), 1.0)))
        if status.get(name) in ("pass", "kink") or (status.get(name) == "warn" and agrees):
            out[name] = (True, None)
            continue
        note = next((r.note for r in report.nodes if r.name == name and r.note), None)
        how = (diagnose(theirs[k], mine[k], name) if theirs[k] is not None
               else f"{function} returns None as d{name}")
        if note and (how is None or how.endswith("the right shape but the wrong values")) and (
                "tie" in note or "kink" in note):
            said = [c for c in note.split("; ") if c.startswith(("at a tie", "a tie", "a kink"))] or [note]
            how = f"d{name}: {'; '.join(said)}"  # check-py's own words: what the tie's or kink's slope says
        if seen is not None and theirs[k] is not None:
            seen[name] = (theirs[k], mine[k])
        line = _gradient_line(remote.student, function, pair, name)
        out[name] = (False, student_text(how or note or "wrong") + (f" (d{name} is set{line})" if line else ""))
    return out


def _gradient_line(student: Student, function: str, pair: Pair, name: str) -> str:
    """` at FILE:LINE: `code`` where the student's `function` last assigns the gradient it returns for `name`."""
    if not student.source:
        return ""
    found = grad_lines_in(student.source, function, tuple(pair.names))
    return student.at(found[name][0]) if name in found else ""
