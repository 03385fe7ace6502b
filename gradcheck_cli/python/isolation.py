"""The user's code in a process of its own: whatever it does there — `os._exit`, a crash, an endless
loop, a sleep — cannot end, hang or write into the process that holds the verdicts and the exit code.

`run_isolated(work, jobs, seconds=...)` runs `work(job, send)` for each job, in order, in one fresh
Python (started once: it imports the user's module once for every job). What `send` is given comes
back to the caller, each message as it is sent, through a pipe the user's code is never handed: a
length-prefixed pickle read by an unpickler that builds only gradcheck's own report types and numpy
arrays, so a forged message cannot run code here. When the process ends before a job is done, the
caller gets a `Died` for that job — what happened and the user's line it happened at, read from the
stack `faulthandler` wrote — and the jobs after it run in a new process.

A job may use `seconds` of CPU time and three times that of wall-clock time (`GRADCHECK_MAX_SECONDS`):
a backstop for code that never returns, not a budget (budgets count work).
"""

from __future__ import annotations

import ast
import faulthandler
import importlib
import io
import math
import os
import pickle
import re
import resource
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..core.errors import GradcheckError
from . import forkserver

HEADER = struct.Struct("<Q")
MAX_MESSAGE = 1 << 31  # bytes of one message: a report with its arrays, far below this
WALL_FACTOR = 3  # wall-clock seconds per second of CPU time: code that computes meets the CPU limit first on a
# machine that is not overloaded, code that waits or sleeps meets this one
LAST_RESORT = 2.0  # seconds past the wall-clock limit: faulthandler's own thread ends a process whose code
# kept the interval timer's signal from being handled (a SIGALRM handler of its own, or signal.alarm)
EXIT_MARK = "gradcheck: os._exit("  # written to the stack file before a patched os._exit ends the process


@dataclass(frozen=True, kw_only=True)
class Started:
    """The child began job `index` (a message of the protocol, not of the work)."""
    index: int


@dataclass(frozen=True, kw_only=True)
class Finished:
    """The child finished job `index`."""
    index: int


@dataclass(frozen=True, kw_only=True)
class Died:
    """The process ended (or was stopped) before job `index` was done: `error` says how, at the user's
    line where the stack shows it (`error.source` is that file)."""
    index: int
    error: GradcheckError


@dataclass(frozen=True, kw_only=True)
class _Task:
    """What the parent sends the child on its standard input: the work (module and function name,
    resolved in the child) and the jobs."""
    module: str
    function: str
    jobs: list
    seconds: int


def run_isolated(work: Callable, jobs: list, *, seconds: int, sources: tuple = ()) -> Iterator[tuple[int, object]]:
    """(job index, message) for every message `work(job, send)` sends, job by job, in order; a `Died`
    message for a job whose process ended before finishing it (the next jobs then run in a new one).
    `work` must be a module-level function of gradcheck's (the child imports it by name). `sources`:
    the user's files the jobs import, read (never run) for the frameworks worth importing before the
    process is forked (`forkserver`)."""
    modules = (work.__module__, *(m for name in forkserver.preloads(sources) for m in forkserver.PRELOADS[name]))
    start = 0
    while start < len(jobs):
        start = (yield from _one_process(work, jobs, start, seconds, modules)) + 1


def _one_process(work: Callable, jobs: list, start: int, seconds: int, modules: tuple):
    """Jobs from `start` on, in one child; returns the index of the last job it finished or died in."""
    task = _Task(module=work.__module__, function=work.__name__, jobs=jobs[start:], seconds=seconds)
    for stream in (sys.stdout, sys.stderr):  # nothing of ours buffered twice
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    read_end, write_end = os.pipe()
    stack = tempfile.TemporaryFile()
    try:
        child, task_file = _start(write_end, stack.fileno(), modules)
    finally:
        os.close(write_end)
    finished, current, unreadable, read_all = start - 1, None, None, False
    try:
        try:
            task_file.write(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
            task_file.close()
        except OSError:  # it is gone already: what it left says why
            pass
        with os.fdopen(read_end, "rb") as pipe:
            while finished < len(jobs) - 1:
                try:
                    message = _read(pipe)
                except _Unreadable as err:
                    unreadable = err
                    break
                if message is None:
                    break
                if isinstance(message, Started):
                    current = start + message.index
                elif isinstance(message, Finished):
                    finished, current = start + message.index, None
                else:
                    yield (current if current is not None else finished + 1), message
        read_all = True
    finally:
        try:
            task_file.close()
        except OSError:
            pass
        code = child.stop(grace=5.0 if read_all else 0.0)
        stack.seek(0)
        dump = stack.read(1 << 20).decode("utf-8", "replace")
        stack.close()
    if finished == len(jobs) - 1:
        return finished
    index = current if current is not None else finished + 1
    yield index, Died(index=index, error=_death(code, dump, seconds, unreadable))
    return index


def _start(write_end: int, stack_fd: int, modules: tuple):
    """The process that runs the jobs (forked by a fork server, else a fresh Python), and the file its
    task is written to; it holds `write_end` and `stack_fd` as its own."""
    if forkserver.enabled():
        server = forkserver.server(modules, _package_root())
        if server is not None:
            task_read, task_write = os.pipe()
            try:
                child = server.fork([write_end, stack_fd, task_read])
            except forkserver.ServerGone:  # it could not start, or ended: a fresh Python this time
                server.release()
                child = None
            except BaseException:
                server.release()
                os.close(task_write)
                raise
            finally:
                os.close(task_read)
            if child is not None:
                return child, os.fdopen(task_write, "wb")
            os.close(task_write)
    popen = subprocess.Popen(
        [sys.executable, "-c", _BOOT, _package_root(), str(write_end), str(stack_fd)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=(write_end, stack_fd), start_new_session=True)
    assert popen.stdin is not None
    return _Fresh(popen), popen.stdin


class _Fresh:
    """A child started as a fresh Python (`GRADCHECK_FORKSERVER=0`, or no fork server)."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen

    def stop(self, grace: float) -> int:
        return _stop(self.popen, grace)


def _stop(child: subprocess.Popen, grace: float) -> int:
    """The child's exit status (negative: a signal). It has `grace`
    seconds to end by itself (it has said all it will); then it is killed with everything it started
    (its own session), as it is at once when the caller stopped early (Ctrl-C)."""
    deadline = time.monotonic() + grace
    try:
        while True:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
            if pid or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        if not pid:
            os.killpg(child.pid, signal.SIGKILL)
            _, status = os.waitpid(child.pid, 0)
    except ChildProcessError:  # reaped already
        return child.returncode or 0
    child.returncode = os.waitstatus_to_exitcode(status)
    try:
        os.killpg(child.pid, signal.SIGKILL)  # what the code started and left behind
    except (ProcessLookupError, PermissionError):
        pass
    return child.returncode


class _Unreadable(Exception):
    """A message that is not one of gradcheck's (too long, cut short, or not a report)."""


def _read(pipe) -> object | None:
    """The next message, None at the end."""
    head = pipe.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise _Unreadable("a message cut short")
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE:
        raise _Unreadable(f"a message of {size:,} bytes")
    data = pipe.read(size)
    if len(data) < size:
        raise _Unreadable("a message cut short")
    try:
        return _Restricted(io.BytesIO(data)).load()
    except Exception as err:  # noqa: BLE001 - whatever the bytes are, they are not a report
        raise _Unreadable(f"a message that is not a report ({type(err).__name__})") from None


_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
          ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
          ("numpy._core.numeric", "_frombuffer")}
_BUILTINS = {"complex", "set", "frozenset", "slice", "range", "bytearray"}
_OURS = ("gradcheck_cli.core.", "gradcheck_cli.checking.", "gradcheck_cli.python.", "gradcheck_cli.cli.")


class _Restricted(pickle.Unpickler):
    """Builds only gradcheck's own classes (never its functions), numpy arrays and plain values."""

    def find_class(self, module, name):
        if (module, name) in _NUMPY or (module == "numpy.dtypes" and name.endswith("DType")) \
                or (module == "builtins" and name in _BUILTINS):
            return super().find_class(module, name)
        if module.startswith(_OURS):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not a report's part")


# --- why the process ended, and where ---------------------------------------------------------------

# (line ???: Python 3.11 gives some instructions no line, the POP_TOP after an expression statement among them,
# and a signal can stop the code at one)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"\n]+)", line (?P<line>\d+|\?\?\?) in (?P<name>\S+)', re.M)


def _death(code: int | None, dump: str, seconds: int, unreadable: _Unreadable | None) -> GradcheckError:
    """The error for a process that ended with `code` (negative: a signal; None: unknown, the fork
    server that started it ended first, and the process with it) having written `dump`."""
    stopped = code in (-signal.SIGPROF, -signal.SIGXCPU, -signal.SIGALRM) or dump.lstrip().startswith("Timeout (")
    frame = _user_frame(dump, in_loop=stopped) or _user_frame(dump)
    who = f"'{frame[2]}'" if frame else "the code"
    if unreadable is not None:
        why = f"the process running the code sent {unreadable} (did the code write to gradcheck's pipe?)"
    elif EXIT_MARK in dump:
        status = dump.split(EXIT_MARK, 1)[1].split(")", 1)[0]
        why = (f"{who} called os._exit({status}), which ends the process at once: return, or raise an "
               "exception, to stop a check")
    elif stopped:  # (which limit came first depends on the machine's load: one message for both)
        why = (f"{who} did not return, and was stopped after {seconds} s of CPU time or {WALL_FACTOR * seconds} s "
               "in all (an endless loop, or waiting for something?); GRADCHECK_MAX_SECONDS raises the limit")
    elif code is None:
        why = (f"the process that started the one running the code (gradcheck's fork server) ended while {who} "
               "ran, and so did the code's process (did the code kill its parent, os.getppid()?)")
    elif code == -signal.SIGKILL:
        why = "the process running the code was killed (SIGKILL: out of memory?)"
    elif code < 0:
        name = _signal_name(-code)
        why = f"{who} crashed the process ({name}{': ' + signal.strsignal(-code) if signal.strsignal(-code) else ''})"
    elif _INTERNAL in dump:
        last = dump.split(_INTERNAL, 1)[1].strip().splitlines()
        why = f"gradcheck failed in the process running the code ({last[-1] if last else 'no message'})"
        frame = None
    else:
        why = f"the process running the code ended (exit status {code}) before the check was done"
    if frame is None:
        return GradcheckError(why, None, None)
    path, line, _ = frame
    return GradcheckError(why, line, _column(path, line), path)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _user_frame(dump: str, in_loop: bool = False) -> tuple[str, int, str] | None:
    """The most recent frame of the stack in a file that is neither gradcheck's, Python's nor an
    installed package's: (file, line, function). With `in_loop`, the most recent such frame inside a
    loop, at the line of the outermost loop around it in its function: a process stopped at any
    moment of an endless loop is shown at the same line. A frame stopped at an instruction with no
    line (`line ???`) is at its function's one outermost loop (with `in_loop`) or its `def` line."""
    for m in _FRAME.finditer(dump):
        path = m.group("file")
        if path.startswith("<") or not os.path.isfile(path) or _installed(path):
            continue
        if m.group("line").isdigit():
            line = _loop_around(path, int(m.group("line"))) if in_loop else int(m.group("line"))
        else:
            line = _line_of_function(path, m.group("name"), in_loop)
        if line is None:
            continue
        return _shown(path), line, m.group("name")
    return None


def _line_of_function(path: str, name: str, in_loop: bool) -> int | None:
    """For a frame of `name` whose line is unknown: with `in_loop`, the first line of the function's
    outermost loop when it has one only; else its `def` line (None for the module, or a name defined
    twice)."""
    tree = _parsed(path)
    if tree is None:
        return None
    defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    scope: ast.AST | None = tree if name == "<module>" else defs[0] if len(defs) == 1 else None
    if scope is None:
        return None
    if not in_loop:
        return None if scope is tree else getattr(scope, "lineno", None)
    loops: list = []

    def outermost(node) -> None:  # the loops of this scope not inside another (nor in a function within it)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.For, ast.AsyncFor, ast.While)):
                loops.append(child)
            elif not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                outermost(child)
    outermost(scope)
    return loops[0].lineno if len(loops) == 1 else None


def _parsed(path: str) -> ast.Module | None:
    """The user's file parsed (its first 4 MiB), or None when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return ast.parse(f.read(1 << 22))
    except (OSError, SyntaxError, ValueError, RecursionError):
        return None


def _loop_around(path: str, line: int) -> int | None:
    """The first line of the outermost `for`/`while` around `line` in the innermost function holding
    it (None when it is in no loop)."""
    tree = _parsed(path)
    if tree is None:
        return None

    def inside(node) -> bool:
        return node.lineno <= line <= (node.end_lineno or node.lineno)
    scope: ast.AST = tree
    while True:  # the innermost function (or the module) holding the line
        inner = [n for n in ast.walk(scope) if n is not scope and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and inside(n)]
        if not inner:
            break
        scope = min(inner, key=lambda n: (n.end_lineno or n.lineno) - n.lineno)
    loops = [n for n in ast.walk(scope) if isinstance(n, (ast.For, ast.AsyncFor, ast.While)) and inside(n)]
    return min(loops, key=lambda n: n.lineno).lineno if loops else None


def _shown(path: str) -> str:
    """A path under the working folder as relative to it (as the user named the file), else as it is."""
    here = os.getcwd()
    real = os.path.abspath(path)
    return os.path.relpath(real, here) if real.startswith(here + os.sep) else path


def _installed(path: str) -> bool:
    real = os.path.realpath(path)
    roots = {os.path.realpath(os.path.dirname(os.path.dirname(__file__)))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(os.path.realpath(sysconfig.get_paths()[key]))
        except KeyError:
            pass
    return any(real == r or real.startswith(r + os.sep) for r in roots)


def _column(path: str, line: int) -> int:
    """The first non-blank column of a line (the stack gives lines, not columns)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for k, text in enumerate(f, 1):
                if k == line:
                    return len(text) - len(text.lstrip()) + 1
    except OSError:
        pass
    return 1


def _package_root() -> str:
    """The folder gradcheck_cli is imported from: the child imports this very copy."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- the child ----------------------------------------------------------------------------------------

# The child's first line: import this copy of gradcheck (the parent's) with the working folder off the
# path (a student's random.py there must not break numpy's import), then leave sys.path as the console
# script has it; the user's module puts its own folder first when it is imported (pymodule.load_module).
_BOOT = ("import sys; sys.path[0] = sys.argv[1]; from gradcheck_cli.python.isolation import _child; "
         "del sys.path[0]; _child(int(sys.argv[2]), int(sys.argv[3]))")
_INTERNAL = "gradcheck: internal error\n"


def _child(pipe_fd: int, stack_fd: int, orphaned: tuple | None = None) -> None:  # pragma: no cover - in the child
    """Read the task, then run each job with the limits armed and os._exit reported. `orphaned`
    (signal, pid): forked by the fork server `pid`, the process ends by that signal, its stack written,
    when the server does."""
    real_exit = os._exit
    task = pickle.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # the user's code reads nothing (an input() is an EOFError, not a hang)
    sys.argv[:] = ["-c"]
    for fd in (pipe_fd, stack_fd):
        os.set_inheritable(fd, False)  # never handed to a process the code starts
    pipe = os.fdopen(pipe_fd, "wb", buffering=0)
    stack = os.fdopen(stack_fd, "w", encoding="utf-8")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    faulthandler.enable(file=stack, all_threads=True)
    _limit_signals(stack)
    if orphaned is not None:
        faulthandler.register(orphaned[0], file=stack, all_threads=True, chain=True)
        if not forkserver.die_with_server(orphaned, orphaned[0]):  # the server ended already
            os.kill(os.getpid(), orphaned[0])

    def reported_exit(status=0):
        stack.write(f"{EXIT_MARK}{status})\n")
        stack.flush()
        faulthandler.dump_traceback(file=stack, all_threads=False)
        real_exit(status)
    os._exit = reported_exit  # type: ignore[assignment]

    def send(message) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        pipe.write(HEADER.pack(len(data)) + data)

    try:
        work = getattr(importlib.import_module(task.module), task.function)
        # numpy loads numpy.random on first use, and it imports `secrets`: before the user's folder goes
        # first on the path (as their module is imported), or a secrets.py there would be taken
        importlib.import_module("numpy.random")
        for index, job in enumerate(task.jobs):
            os.ftruncate(stack_fd, 0)
            os.lseek(stack_fd, 0, os.SEEK_SET)
            _arm(task.seconds, stack)
            send(Started(index=index))
            work(job, send)
            signal.setitimer(signal.ITIMER_PROF, 0)  # the job's CPU time ends with it, not while it is sent
            send(Finished(index=index))
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
        faulthandler.cancel_dump_traceback_later()
    except BaseException:  # noqa: BLE001 - ours, not the user's (the work catches theirs): said, then ended
        stack.write(_INTERNAL + traceback.format_exc())
        stack.flush()
        real_exit(70)
    pipe.close()
    real_exit(0)


_CPU_SIGNALS = {signal.SIGPROF, signal.SIGXCPU}


def _limit_signals(stack) -> None:  # pragma: no cover - runs in the child process
    """The limits' signals: each writes the stopped code's stack from the code's own thread (whose
    frames are still, as they are not while faulthandler's watchdog thread reads them: on a loaded
    machine that cut the stack short), then ends the process by that signal.

    The CPU's (SIGPROF, the job's timer; SIGXCPU, RLIMIT_CPU) in faulthandler's own handler, at once,
    even inside C code (chain=True: then the signal's default action). The wall clock's (SIGALRM) in a
    Python handler, at the code's next line (a sleep or a wait is interrupted for it), the CPU's
    blocked while it writes. On a machine so loaded that the code gets a third of a core, its CPU
    second and its 3 s in all come together; when both were faulthandler's, the second signal,
    arriving while the first one's stack was written, entered faulthandler's handler again, which
    writes nothing then and ended the process at once, the stack half written: the user's line lost.
    Now the wall clock's, arriving during the CPU's, only marks itself for later (the process ends
    first), and the CPU's waits while the wall clock's stack is written."""
    faulthandler.register(signal.SIGPROF, file=stack, all_threads=True, chain=True)
    faulthandler.register(signal.SIGXCPU, file=stack, all_threads=True, chain=True)

    def wall_clock(signum, frame):
        signal.pthread_sigmask(signal.SIG_BLOCK, _CPU_SIGNALS)
        faulthandler.dump_traceback(file=stack, all_threads=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    signal.signal(signal.SIGALRM, wall_clock)


def _arm(seconds: int, stack) -> None:  # pragma: no cover - runs in the child process
    """`seconds` more of CPU time (then SIGPROF: the stack written, the process ended) and of wall-clock
    time (the stack written, the process ended) for the next job.

    The CPU time is the profiling timer's, to the scheduler's tick: RLIMIT_CPU counts whole seconds of
    the process's CPU time, so that alone it let a job run for up to a second more than its limit (code
    that reset the timer still meets it: SIGXCPU, the same stack and message)."""
    signal.setitimer(signal.ITIMER_PROF, seconds)  # the process's CPU time, user and system, every thread
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    # a whole second past the timer at the least: the two never fall together (a dump the other signal cut
    # into lost the code's line; at a usage of 0.0 s, or 0.999 s, they were the same moment)
    want = math.ceil(usage.ru_utime + usage.ru_stime + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (want, hard))
    signal.setitimer(signal.ITIMER_REAL, WALL_FACTOR * seconds)  # SIGALRM, to the main thread
    faulthandler.dump_traceback_later(WALL_FACTOR * seconds + LAST_RESORT, exit=True, file=stack)
