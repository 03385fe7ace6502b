"""The user's code as plain calls, and what crosses back from it validated: a layer's forward and
backward on lists of arrays, its output and gradients checked for type, shape and finiteness, its
errors placed at the user's line, and the second, random point."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import select
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import GradcheckError
from ..core.text import student_text
from ..core.limits import MAX_ELEMENTS, size_error
from ..core.meter import active, count
from .pysource import (USER_ERRORS, PythonError, describe, exception_text, qualname, return_line, user_position)


@dataclass
class Layer:
    """A forward and its backward, as plain calls on a list of input arrays."""
    name: str
    forward: object        # list of arrays -> output array
    backward: object       # (dout, list of arrays) -> list of gradients, one per input
    names: list            # the inputs' names
    path: str              # the backward's file (the rows' lines are in it), or a description
    line: int              # the backward's first line
    forward_at: tuple      # the forward's (file, first line): its errors are there
    grad_lines: dict       # input name -> (line, col) where its gradient is last assigned in the backward
    batched: bool | None = None  # does the forward take a leading axis of copies? (found on first use)
    backward_name: str = "backward"  # the backward's name, as its own checks are labelled
    code: object = None    # the user's function that computes the gradients (its source is read)
    first: int = 0         # how many of its returned values come before the gradients (a loss: 1)
    output: str = "out"    # what the report calls the output
    work: object = None    # the check's predicted cost (cost.Cost), once its first point is known
    reference: object = None  # (dout, list of arrays) -> exact gradients (autodiff through the forward), or None
    rerun: bool = True     # may backprop's rounding be measured by calling the backward again, nudged? (not when
                           # the backward is a submission being graded: it could answer the nudge)
    none_is_zero: bool = False  # a gradient returned as None is zero (autograd's reading), not a missing one
    structure: dict = field(default_factory=dict)  # input name -> its stated Structure (structure.py)
    diagnose: bool = True  # may a failing gradient's numbers be read for its slip (blame.py)? (not for a double
                           # backward, whose backward is autograd's, nor a graded submission: grading says its own)
    branches: dict = field(default_factory=dict)  # input name -> the statements that write its gradient, when
    # more than one does (pysource.branch_writes): the one that ran at a point is its line there (`ran_lines`)


def check_deterministic(layer: Layer, args: list, out: np.ndarray) -> None:
    """A forward that answers twice differently at one point (dropout drawing a new mask) has no
    gradient to check: an input error, never a gradient verdict."""
    again = call_forward(layer, args)
    scale = max(float(np.max(np.abs(out))), 1e-300)
    if again.shape != out.shape or float(np.max(np.abs(again - out))) > 1e-12 * scale:
        raise PythonError("the forward is not deterministic: called twice at the same point it gave different "
                          "outputs (a random mask drawn anew?), so no gradient can be checked; seed it "
                          "(CS231n: --param dropout_param='{\"mode\": \"train\", \"p\": 0.5, \"seed\": 0}')")


def call_forward(layer: Layer, args: list) -> np.ndarray:
    out = _call(layer.forward_at[0], "forward", lambda: layer.forward([a.copy() for a in args]))
    if out is None:
        raise PythonError("the forward returned None as its output: is it written yet?")
    out = output_values(out)
    if out.size == 0 or not np.all(np.isfinite(out)):
        raise PythonError("the forward's output is empty" if out.size == 0 else
                          "the forward's output is not finite (nan or inf) at this point")
    return out


def output_values(out, shape: tuple | None = None) -> np.ndarray:
    """The forward's output as float64, checked: numbers (its `__array__` is the user's code too), real
    (a complex output is not cast and its imaginary part dropped), and of `shape` when given (an output
    whose shape changes as the inputs move has no derivative to check). The first output (no `shape`)
    is counted against MAX_ELEMENTS before it is copied or an upstream is drawn for it. Raises PythonError."""
    try:
        raw = np.asarray(out)
    except USER_ERRORS as exc:  # noqa: BLE001
        raise PythonError(f"the forward's output could not be read as numbers: {exception_text(exc)}") from None
    if raw.dtype.kind == "c":
        raise PythonError("the forward's output is complex: gradcheck checks real functions (return the real "
                          "part, or its real and imaginary parts as two outputs)")
    if raw.dtype.kind not in "biuf":
        raise PythonError(f"the forward's output must be an array of numbers, not {describe(out)}")
    if raw.dtype.kind == "f" and raw.dtype.itemsize < 8:  # differenced at float64's steps, its rounding is read
        # as its slope: a right layer would fail, beside kinks that are not there
        raise PythonError(f"the forward's output is {raw.dtype}: a Python layer is checked in float64, where finite "
                          f"differences resolve its slope, and differences of a {raw.dtype} function measure its "
                          "rounding; compute it in float64 (a torch or JAX version is checked in "
                          f"{raw.dtype} too with --dtype {raw.dtype})")
    if shape is None and raw.size > MAX_ELEMENTS:
        raise PythonError(f"the forward's output has {raw.size:,} elements (at most {MAX_ELEMENTS:,}; "
                          "GRADCHECK_MAX_ELEMENTS raises it)")
    if shape is not None and raw.shape != tuple(shape):
        raise PythonError(f"the forward's output has shape {raw.shape} here but {tuple(shape)} where it was first "
                          "called: its shape must not change as its inputs move")
    return raw.astype(float)


def call_backward(layer: Layer, u: np.ndarray, args: list, zeroed: set | None = None):
    """The backward's gradients (NaN where it failed) and, per input it failed for, (why, the line
    to blame or None). One cause, one line: a gradient of the wrong shape fails that input alone; an
    exception fails every input at the line that raised. A None taken as zero (`layer.none_is_zero`)
    adds the input's name to `zeroed`."""
    try:
        grads = call_on_copies(layer.backward, u, args)
    except PythonError as err:
        return [np.full(a.shape, np.nan) for a in args], {n: (err.message, None) for n in layer.names}
    except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
        line, col = user_position(exc, layer.path)
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):  # it means to stop: an error at its line, not a gradient
            raise PythonError(f"the backward raised {exception_text(exc)}", line, col, layer.path if line else None) from None
        if line is None and user_position(exc, layer.forward_at[0])[0] is None:
            # raised by the framework on what the backward returned (torch: "returned an invalid gradient"): its return
            line, col = return_line(layer.code, layer.first) or (None, None)
        why = (f"the backward raised {exception_text(exc)}", (line, col) if line else None)
        return [np.full(a.shape, np.nan) for a in args], {n: why for n in layer.names}
    failures = {}
    for k, (name, g, a) in enumerate(zip(layer.names, grads, args)):
        if g is None and layer.none_is_zero:
            grads[k] = np.zeros(a.shape)
            if zeroed is not None:
                zeroed.add(name)
        elif g is None:
            failures[name] = (f"the backward returned None for {name}, which is differentiable", None)
            grads[k] = np.full(a.shape, np.nan)
        elif g.shape != a.shape:
            failures[name] = (f"the backward's d{name} has shape {g.shape}, but {name} has {a.shape}", None)
            grads[k] = np.full(a.shape, np.nan)
    return grads, failures


def traced(function, thunk):
    """(thunk(), the lines of `function`'s own frames that ran, in order): Python's line tracer on that
    function's code alone, and only where no other tracer is set (a debugger's, coverage's), else no
    lines (None)."""
    code = getattr(inspect.unwrap(function), "__code__", None) if function is not None else None
    if code is None or sys.gettrace() is not None:
        return thunk(), None
    ran: list = []

    def local(frame, event, arg):
        if event == "line":
            ran.append(frame.f_lineno)
        return local

    def calls(frame, event, arg):
        return local if frame.f_code is code else None
    sys.settrace(calls)
    try:
        result = thunk()
    finally:
        sys.settrace(None)
    return result, ran


def ran_lines(branches: dict, ran: list | None) -> dict:
    """Input name -> (line, col) of the statement writing its gradient that ran last, for the names
    several statements write (`branches`: Layer.branches); {} when nothing was traced."""
    if not ran:
        return {}
    order = {line: k for k, line in enumerate(ran)}  # each line's last run
    chosen = {}
    for name, writes in branches.items():
        runs = [(max((order[n] for n in range(lo, hi + 1) if n in order), default=-1), at) for at, (lo, hi) in writes]
        last = max(runs, key=lambda r: r[0])
        if last[0] >= 0:
            chosen[name] = last[1]
    return chosen


def node_line(layer: Layer, name: str) -> tuple:
    """Where the backward last assigns the gradient it returns for this input."""
    return layer.grad_lines.get(name, (layer.line, 1))


def call_on_copies(function, u: np.ndarray, args: list, *, calls: int = 1):
    """`function(u, args)` on copies of the upstream and of the inputs, quietly, counted by the work
    meter as `calls` calls of the user's Python."""
    if active():
        count("python", calls)
        count("element", calls * (u.size + sum(a.size for a in args)))
    with quiet():
        return function(u.copy(), [a.copy() for a in args])


@contextlib.contextmanager
def quiet():
    """numpy's warnings and floating-point errors silenced while the user's code runs: what they
    would say, the check says in its own words (a nan, an exception at its line)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


SHOWN_OUTPUT = 300  # characters of what the user's code printed, shown in the report's warning
LEFT_BEHIND_SECONDS = 5.0  # how long output is still read from processes the code started and left running
LEFT_BEHIND_QUIET = 0.25   # ... unless they have written nothing for this long (a daemon that keeps the pipe)


@dataclass
class Printed:
    """What the user's code wrote to standard output and error while it was checked."""
    size: int = 0
    head: bytearray = field(default_factory=bytearray)

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if len(self.head) < 4096:
            self.head += data[: 4096 - len(self.head)]

    def warning(self) -> str | None:
        """A sentence for the report, or None when it printed nothing."""
        if not self.size:
            return None
        first = student_text(self.head.decode("utf-8", "replace").strip().split("\n")[0], SHOWN_OUTPUT)
        return (f"the code printed {self.size:,} bytes while it was checked (kept out of this report's output)"
                + (f"; it began: {first}" if first else ""))


class _Sink(io.RawIOBase):
    """The bytes under sys.stdout or sys.stderr while the user's code runs: counted, the first lines kept,
    never shown. Its descriptor is the process's own (1 or 2), which goes to the same reader meanwhile."""

    def __init__(self, printed: Printed, fd: int):
        super().__init__()
        self.printed, self.fd = printed, fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.printed.add(data)
        return len(data)

    def fileno(self) -> int:
        return self.fd


class _Text(io.TextIOWrapper):
    """sys.stdout or sys.stderr while the user's code runs: a text stream as Python's own are (its
    `buffer`, `fileno()`, `encoding`), every write passed on at once. Closed by the code (a backward's
    `sys.stdout.close()`), it stays open for the code's next call, which prints as before."""

    def close(self) -> None:
        self.flush()


def _writer(printed: Printed, fd: int) -> io.TextIOWrapper:
    return _Text(_Sink(printed, fd), encoding="utf-8", errors="replace", write_through=True)


@contextlib.contextmanager
def contained_output():
    """Run the user's code with its output kept from ours: Python's sys.stdout and sys.stderr, and the
    process's descriptors 1 and 2 (what C code and subprocesses write), go to a reader that counts them
    and keeps the first lines; afterwards ours are back, whatever the code did to them (closed,
    replaced). Yields the Printed record."""
    printed = Printed()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    saved_streams, saved_fds = (sys.stdout, sys.stderr), (os.dup(1), os.dup(2))
    read_end, write_end = os.pipe()
    wake_read, wake_write = os.pipe()  # written once: stop reading (what is left behind keeps the pipe open)
    last = [0.0]  # when the reader last got output

    def drain():
        left = None  # once woken: what the pipe holds, at most 16 reads more (a flood is not waited for)
        poller = select.poll()  # not select.select: a process with many files open has descriptors past 1024
        for fd in (read_end, wake_read):
            poller.register(fd, select.POLLIN)
        while left is None or left > 0:
            ready = {fd for fd, _ in poller.poll()}
            if wake_read in ready and left is None:
                left = 16
            if read_end not in ready:
                return
            data = os.read(read_end, 1 << 16)
            if not data:
                return
            printed.add(data)
            last[0] = time.monotonic()
            if left is not None:
                left -= 1
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    ours: tuple = ()
    try:
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        ours = (_writer(printed, 1), _writer(printed, 2))
        sys.stdout, sys.stderr = ours
        yield printed
    finally:
        sys.stdout, sys.stderr = saved_streams
        for stream in ours:
            try:
                stream.flush()  # what the user wrote to `buffer` and did not flush
            except (OSError, ValueError):  # closed by the code
                pass
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in (*saved_fds, write_end):
            os.close(fd)
        _read_what_is_left(reader, last)
        os.write(wake_write, b"x")
        reader.join(timeout=5)
        if not reader.is_alive():
            for fd in (read_end, wake_read, wake_write):
                os.close(fd)


def _read_what_is_left(reader: threading.Thread, last: list) -> None:
    """Wait for the end of the user's output: at once when no process it started still holds the
    pipe; otherwise while those processes write, up to LEFT_BEHIND_SECONDS, and not past
    LEFT_BEHIND_QUIET of their silence (a daemon that keeps the pipe and writes nothing)."""
    closed = time.monotonic()
    deadline = closed + LEFT_BEHIND_SECONDS
    while reader.is_alive():
        now = time.monotonic()
        if now >= deadline or now - max(closed, last[0]) >= LEFT_BEHIND_QUIET:
            return
        reader.join(timeout=min(0.05, deadline - now))


def _call(path: str, what: str, thunk):
    try:
        with quiet():
            return thunk()
    except PythonError:
        raise
    except USER_ERRORS as exc:  # noqa: BLE001 - the user's code may raise anything
        line, col = user_position(exc, path)
        raise PythonError(f"the {what} raised {exception_text(exc)}", line, col,
                          path if line else None) from None


def gradients_of(result, names: list, backward) -> list:
    """The backward's result as one float array per input."""
    if isinstance(result, dict):
        missing = [n for n in names if n not in result and f"d{n}" not in result]
        if missing:
            raise PythonError(f"{qualname(backward)} returned no gradient for {', '.join(missing)}")
        result = [result[n] if n in result else result[f"d{n}"] for n in names]
    elif len(names) == 1 and not isinstance(result, (tuple, list)):
        result = [result]
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise PythonError(f"{qualname(backward)} must return {len(names)} gradient(s) "
                          f"(d{', d'.join(names)}), not {describe(result)}")
    try:
        raw = [None if g is None else np.asarray(g) for g in result]  # None: said per input
        for name, g in zip(names, raw):
            if g is not None and g.dtype.kind == "c":  # not cast, its imaginary part dropped: as an output
                raise PythonError(f"{qualname(backward)} returned a complex gradient for {name}: the gradient "
                                  "of a real function is real (return its real part)")
        return [None if g is None else g.astype(float) for g in raw]
    except (TypeError, ValueError):
        raise PythonError(f"{qualname(backward)} must return arrays of numbers") from None


def split_outputs(flat: np.ndarray, shapes: list) -> list:
    """A flat array cut into one array per output, in the outputs' shapes: several outputs are
    checked as one flat output, and each gets its own part of the upstream gradient."""
    cuts = np.cumsum([int(np.prod(s, dtype=np.int64)) for s in shapes])[:-1]
    return [part.reshape(s) for part, s in zip(np.split(np.ravel(flat), cuts), shapes)]


def joined(outputs: list) -> np.ndarray:
    """Several outputs as one flat array; a single output as it is."""
    return outputs[0] if len(outputs) == 1 else np.concatenate([np.ravel(o) for o in outputs])


def flat_size(shapes: list) -> int:
    """How many elements arrays of these shapes hold together."""
    return sum(int(np.prod(s, dtype=np.int64)) for s in shapes)


def checked_array(layer: Layer, name: str, value) -> np.ndarray:
    try:
        a = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise PythonError(f"input '{name}' must be an array of numbers, not {describe(value)}") from None
    if a.size > MAX_ELEMENTS:
        raise PythonError(size_error(f"input '{name}'", a.size, MAX_ELEMENTS, name="MAX_ELEMENTS"))
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise PythonError(f"input '{name}' must be a non-empty array of finite numbers")
    return a


def placed_at_forward(err: GradcheckError, layer: Layer) -> GradcheckError:
    """An error about the layer as a whole: at the forward's first line."""
    err.source, err.line, err.col = layer.forward_at[0], layer.forward_at[1], 1
    return err
