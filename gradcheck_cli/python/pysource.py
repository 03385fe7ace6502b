"""What the user's Python says about itself: where a function is written, which line assigns the
gradient it returns, the user's line in a traceback, names and descriptions for messages."""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import os
import textwrap
import traceback

from ..core.errors import GradcheckError, did_you_mean
from ..core.text import student_text


class PythonError(GradcheckError):
    """The user's Python could not be called as a layer: it raised, or returned the wrong things."""


@functools.lru_cache(maxsize=256)
def takes_keywords(fn, names: tuple) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names)


@functools.lru_cache(maxsize=256)
def where(fn) -> tuple:
    """(the file, the line of `def`) where `fn` is written: a function under decorators that keep
    `__wrapped__` (functools.wraps: torch's once_differentiable and custom_bwd, the user's own) is
    the function the user wrote, not the wrapper in the decorator's file."""
    fn = unwrapped(fn)
    try:
        path = inspect.getsourcefile(fn) or fn.__code__.co_filename
        return display(path), _def_line(fn)
    except (TypeError, AttributeError):
        return qualname(fn), 1


def no_parameter(fn, name: str, parameters: list, label: str | None = None) -> "PythonError":
    """The error for a --shape, --at or --param NAME that `fn` (the forward) has no parameter for, at
    its `def` line (the column of `def`), with the names it has."""
    path, line = where(fn)
    text = source_text(path)
    shown = [n for n in parameters if not n.startswith("input")] or list(parameters)
    return PythonError(f"{label or qualname(fn)} has no parameter '{name}'" + did_you_mean(name, shown)
                       + f" (its parameters: {', '.join(shown)})", line, indent(text, line), path if text else None)


def indent(text: str | None, line: int) -> int:
    """The column of the first non-blank character of `line` in `text` (1 when it is not there)."""
    lines = (text or "").split("\n")
    at = lines[line - 1] if 0 < line <= len(lines) else ""
    return len(at) - len(at.lstrip()) + 1


def unwrapped(fn):
    """`fn` with its decorators' wrappers taken off (those that keep `__wrapped__`)."""
    try:
        return inspect.unwrap(fn)
    except ValueError:  # a cycle of __wrapped__
        return fn


def _def_line(fn) -> int:
    """The line of `def` (a decorated function's code starts at its first decorator)."""
    first = fn.__code__.co_firstlineno
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return first
    for k, text in enumerate(lines):
        if text.lstrip().startswith(("def ", "async def ")):
            return start + k
    return first


def display(path: str) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


@functools.lru_cache(maxsize=256)
def _parsed(fn):
    """(the function's AST, its first line, its indent, the values its last return gives), or None."""
    try:
        lines, start = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
        indent = len(lines[0]) - len(lines[0].lstrip())
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    func = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda))), None)
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return) and n.value is not None] if func else []
    if not returns:
        return None
    ret = returns[-1]
    values = ret.value.elts if isinstance(ret.value, (ast.Tuple, ast.List)) else [ret.value]
    return func, start, indent, values


@functools.lru_cache(maxsize=256)
def grad_lines(backward, names: tuple, first: int = 0) -> dict:
    """Input name -> (line, col) of the last assignment to the name the backward returns for it
    (`first`: how many returned values come before the gradients, 1 for a loss's `(loss, dx)`)."""
    parsed = _parsed(backward)
    return {} if parsed is None else _assigned_lines(*parsed, names, first)


def grad_lines_in(source: str, function: str, names: tuple, first: int = 0) -> dict:
    """grad_lines of the top-level function `function` of a module's text, read without running it
    (a submission being graded): {} when the text does not parse or has no such function."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    returns = [n for n in ast.walk(func) if isinstance(n, ast.Return) and n.value is not None] if func else []
    if not returns:
        return {}
    values = returns[-1].value.elts if isinstance(returns[-1].value, (ast.Tuple, ast.List)) else [returns[-1].value]
    return _assigned_lines(func, 1, 0, values, names, first)


def _assigned_lines(func, start: int, indent: int, values: list, names: tuple, first: int) -> dict:
    values = values[first:]
    found = {}
    for name, value in zip(names, values):
        where = (start + value.lineno - 1, value.col_offset + indent + 1)
        if isinstance(value, ast.Name):
            assigned = _writers(func, value.id)
            if assigned:
                last = max(assigned, key=lambda t: (t.lineno, t.col_offset))
                where = (start + last.lineno - 1, last.col_offset + indent + 1)
        found[name] = where
    return found


def branch_writes(backward, names: tuple, first: int = 0) -> dict:
    """Input name -> every statement that writes the name the backward returns for it, as ((line, col),
    (its first line, its last line)), in source order: only for the names written by more than one
    statement (a branch, `if mode == "train": dx = ... else: dx = ...`), where the statement that ran
    is the one to blame (`usercode.traced`); {} when unread."""
    parsed = _parsed(backward)
    if parsed is None:
        return {}
    func, start, indent, values = parsed
    found = {}
    for name, value in zip(names, values[first:]):
        if isinstance(value, ast.Name):
            writes = sorted(_writers(func, value.id), key=lambda t: (t.lineno, t.col_offset))
            if len(writes) > 1:
                found[name] = [((start + t.lineno - 1, t.col_offset + indent + 1),
                                (start + t.lineno - 1, start + (t.end_lineno or t.lineno) - 1)) for t in writes]
    return found


def return_line(backward, first: int = 0) -> tuple | None:
    """(line, col) of the `return` that gives the gradients (its last), or None when unread."""
    parsed = _parsed(backward)
    if parsed is None:
        return None
    func, start, indent, _ = parsed
    ret = [n for n in ast.walk(func) if isinstance(n, ast.Return) and n.value is not None][-1]
    return start + ret.lineno - 1, ret.col_offset + indent + 1


@functools.lru_cache(maxsize=256)
def unused_parameters(fn) -> tuple:
    """The parameters `fn`'s body never reads (its source parsed), or () when unread."""
    parsed = _parsed(fn)
    if parsed is None or isinstance(parsed[0], ast.Lambda):
        return ()
    func = parsed[0]
    read = {n.id for n in ast.walk(func) if isinstance(n, ast.Name)}
    params = func.args.posonlyargs + func.args.args + func.args.kwonlyargs
    return tuple(p.arg for p in params if p.arg not in read)


RESIDUALS = ("res", "residuals")  # what a JAX custom_vjp rule's bwd names what its fwd saved


def shared_line(backward, names: tuple, failing: set, first: int = 0):
    """(line, col, variable) of the one assignment that every failing gradient is computed from, no
    passing one is, and that carries `dout` (`dout_t = dout`, its .T forgotten, feeding dx, dgamma and
    dbeta): the cause they share. None when fewer than two fail or no single assignment fits.
    Control flow is ignored: every assignment to a name counts (an over-approximation)."""
    parsed = _parsed(backward)
    if parsed is None or len(failing) < 2 or isinstance(parsed[0], ast.Lambda):
        return None
    func, start, indent, values = parsed
    args = [a.arg for a in func.args.args]
    if args[:1] in (["ctx"], ["self"]):  # a torch Function's backward(ctx, grad_output, ...)
        args = args[1:]
    # the upstream: a JAX rule's cotangent comes last, after its residuals (`bwd(res, g)`, `bwd(f, res, g)`);
    # else first (`backward(dout, cache)`, torch's after ctx)
    dout = set(args[-1:]) if any(a in RESIDUALS for a in args[:-1]) else set(args[:1])
    stmts = _writes(func)
    reads = [{n.id for n in ast.walk(t.value) if isinstance(n, ast.Name)} if t.value is not None else set()
             for t in stmts]
    writers: dict = {}
    for k, t in enumerate(stmts):
        for name in assigned_names(t):
            writers.setdefault(name, []).append(k)

    def deps(read: set) -> set:
        found, todo = set(), [k for name in read for k in writers.get(name, [])]
        while todo:
            k = todo.pop()
            if k not in found:
                found.add(k)
                todo += [j for name in reads[k] for j in writers.get(name, [])]
        return found
    per_input = {name: deps({n.id for n in ast.walk(v) if isinstance(n, ast.Name)})
                 for name, v in zip(names, values[first:])}
    if not failing <= set(per_input):
        return None
    common = set.intersection(*(per_input[n] for n in failing))
    for name, used in per_input.items():
        if name not in failing:
            common -= used
    carries = [k for k in common if reads[k] & dout or any(reads[j] & dout for j in deps(reads[k]))]
    if len(carries) != 1:
        return None
    t = stmts[carries[0]]
    return start + t.lineno - 1, t.col_offset + indent + 1, sorted(assigned_names(t))[0]


def _writers(func, name: str) -> list:
    """The statements of `func` that write `name` (`_writes`)."""
    return [t for t in _writes(func) if name in assigned_names(t)]


def _writes(func) -> list:
    """The statements of `func` that write a name: assignments, and calls that update a name in place
    (`grad.addcmul_(a, b)`, `g.mul_(s).add_(t)`, `torch.mul(a, b, out=g)`)."""
    return [t for t in ast.walk(func) if isinstance(t, (ast.Assign, ast.AugAssign, ast.AnnAssign))
            or isinstance(t, ast.Expr) and _updated(t.value)]


def _updated(node) -> set:
    """The names an expression statement updates in place: the receiver of a chain of in-place
    methods (a name ending in `_`, torch's convention), and the `out=` of a call."""
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        names |= {k.value.id for k in call.keywords if k.arg == "out" and isinstance(k.value, ast.Name)}
        receiver = call
        while isinstance(receiver, ast.Call) and _in_place(receiver.func):
            receiver = receiver.func.value  # g.mul_(s).add_(t): g
        if isinstance(receiver, ast.Subscript):
            receiver = receiver.value  # g[:, 0].zero_(): g
        if receiver is not call and isinstance(receiver, ast.Name):
            names.add(receiver.id)
    return names


def _in_place(func) -> bool:
    return isinstance(func, ast.Attribute) and func.attr.endswith("_") and not func.attr.startswith("_")


def assigned_names(node) -> set:
    if isinstance(node, ast.Expr):
        return _updated(node.value)
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = set()
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.add(n.id)
            elif isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name):
                names.add(n.value.id)  # dx[...] = ... writes dx
    return names


def user_line(exc: BaseException, path: str) -> int | None:
    """The innermost line of the traceback that is in the user's file."""
    return user_position(exc, path)[0]


def user_position(exc: BaseException, path: str) -> tuple:
    """(line, column) of the innermost traceback frame in the user's file, or (None, None): the column
    of the expression that raised where Python records it (3.11+), else the line's first non-blank
    character — never column 1 of an indented line."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if display(frame.filename) == path:
            found = frame
    if found is None:
        return None, None
    text = linecache.getline(found.filename, found.lineno).rstrip("\r\n")
    colno = getattr(found, "colno", None)
    if colno is not None and 0 <= colno <= len(text.encode("utf-8")):
        return found.lineno, len(text.encode("utf-8")[:colno].decode("utf-8", "replace")) + 1
    return found.lineno, len(text) - len(text.lstrip()) + 1


def source_text(path: str) -> str | None:
    """A Python file's text, to show the line an error is at (None when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except (OSError, ValueError):
        return None


# What the user's code may raise that is its own error, never the tool's: any exception, and sys.exit
# or a KeyboardInterrupt it raises itself (a real Ctrl-C reaches the command line as its own signal).
USER_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


def exception_text(exc: BaseException) -> str:
    """`Type: message`, made safe to show (an exception whose str() raises, a message of megabytes)."""
    if isinstance(exc, SystemExit):
        return f"SystemExit (it called sys.exit({student_text(repr(exc.code), 80)}))"
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - its __str__ is the user's code too
        message = ""
    return student_text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def describe(value) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return type(value).__name__


def qualname(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def base_name(forward) -> str:
    name = getattr(forward, "__name__", "layer")
    return name[: -len("_forward")] if name.endswith("_forward") else name


def parameter_names(fn) -> list:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)]
    except (TypeError, ValueError):
        return []
