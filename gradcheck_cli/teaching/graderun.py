"""Grading a class: every submission read once by the grader (a symbolic link or a special file is
that student's 0), a Python one run in a sealed process of its own (sandbox.py) while the verdicts are
computed here, a `.grad` one (text gradcheck evaluates, no code of the student's) checked in a worker
process with the same limits, several at once (`-j`). A submission that does not parse, raises, loops
or runs out of memory gets 0 for what it broke, with the reason; the run always ends with a full
gradebook."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import select
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.limits import MAX_FILE_BYTES
from ..python import forkserver
from .exercise import Exercise
from .grading import Graded, PartResult, class_pairs, grad_points, grade_python, zero
from . import sandbox
from .sandbox import Limits, environment, limited
from .student_side import encode
from ..core.text import student_name, student_text

__all__ = ["Limits", "grade_class", "students"]

# The worker runs this very package (isolated, `-I`, its path is not the caller's: another installed
# copy would be found first); the package's folder is on its path only while the package is found,
# so nothing else there (a file a submission left beside it) is ever imported.
_HERE = str(Path(__file__).resolve().parents[2])
WORKER = (f"import sys; sys.path.insert(0, {_HERE!r}); import gradcheck_cli; sys.path.remove({_HERE!r}); "
          "from gradcheck_cli.teaching.grade_worker import main; sys.exit(main())")



def students(paths: list, exercise: str | None = None) -> list:
    """(student name, path, the path shown) for each submission. The name is the file's stem, or its
    folder's name when the file is named like the others (alice/affine.py, bob/affine.py), like the
    exercise, or, alone in its folder, like a file in a sibling folder (class/ada/layers.py graded
    alone: ada); duplicates
    get their path in the class folder. The path shown is relative to the class folder (the deepest
    folder holding every submission, or the one above a lone student's folder): never absolute.
    Names are the grader's, made from the paths, never the submission's."""
    stems = [Path(p).stem for p in paths]
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    by_folder = [bool(Path(p).parent.name) and (stems.count(Path(p).stem) > 1 or Path(p).name == Path(exercise or "").name
                                                or folders.count(d) == 1 and _per_student_folder(Path(p)))
                 for p, d in zip(paths, folders)]
    names = [Path(p).parent.name if folder else Path(p).stem for p, folder in zip(paths, by_folder)]
    root = class_folder(paths)
    if any(by_folder) and all(os.path.dirname(os.path.abspath(p)) == root for p in paths):
        root = os.path.dirname(root)  # one student's folder graded: shown as ada/layers.py
    shown = [os.path.relpath(os.path.abspath(p), root) for p in paths]
    return [(student_name(n if names.count(n) == 1 else os.path.splitext(s)[0] if not folder else os.path.dirname(s)),
             str(p), student_text(s, 200)) for n, p, s, folder in zip(names, paths, shown, by_folder)]


def class_folder(paths: list) -> str:
    """The folder graded: the deepest one holding every submission (absolute; never shown)."""
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if paths else os.getcwd()
    except ValueError:  # paths on different drives
        return os.path.dirname(os.path.abspath(paths[0]))


def _per_student_folder(path: Path, looked: int = 200) -> bool:
    """Does a sibling of the file's folder hold a file of the same name (class/*/layers.py)?"""
    parent = path.parent
    try:
        with os.scandir(parent.parent if parent.name else ".") as entries:
            for k, entry in enumerate(entries):
                if k >= looked:
                    return False
                if entry.name != parent.name and entry.is_dir(follow_symlinks=False) and os.path.lexists(
                        os.path.join(entry.path, path.name)):
                    return True
    except OSError:
        return False
    return False


_ABSOLUTE = re.compile(r"(?<![\w.~-])(?:/[\w.@+-]+){2,}/([\w.@+-]+)")  # /a/b/file (a/b: not `dout /n/2`)


def relative_paths(text: str, root: str) -> str:
    """`text` with no absolute path: the class folder's own paths relative to it, the grader's folders
    (working, temporary, home, Python's) left out, and any other path its file's name."""
    text = text.replace(root.rstrip(os.sep) + os.sep, "")
    for folder in (os.getcwd(), tempfile.gettempdir(), os.path.expanduser("~"), sys.prefix):
        if len(folder) > 1:
            text = text.replace(folder.rstrip(os.sep) + os.sep, "")
    return _ABSOLUTE.sub(lambda m: m.group(1), text)


def read_submission(path: str) -> bytes | str:
    """The submission's bytes, or why it cannot be graded (a str): only a regular file, not a link."""
    try:
        info = os.lstat(path)
    except OSError as err:
        return f"cannot be read: {err.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link, not a file of its own: submit the file itself"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return f"is {info.st_size:,} bytes, past the {MAX_FILE_BYTES:,} a submission may have"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return "is not a regular file"
            return f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except OSError as err:
        return f"cannot be read: {err.strerror}"


def grade_class(exercise: Exercise, submissions: list, secret: int, hidden: int, jobs: int = 1,
                limits: Limits = Limits(), on_done=None, *, ours=None) -> list:
    """Graded for every submission, in their order. `ours` is the exercise's module (a Python
    exercise, loaded by the caller before any submission runs). `on_done(graded)` is told as each
    finishes."""
    root = class_folder(submissions)
    workers = max(1, min(jobs, os.cpu_count() or 1))
    slots: queue.Queue = queue.Queue()  # each running grade's own fork server (a .grad worker's)
    for k in range(workers):
        slots.put(k)
    shared = _SharedPoints(exercise, secret, hidden)
    pairs = class_pairs(exercise, ours) if exercise.kind == "python" and ours is not None else None

    def one(item):
        student, path, shown = item
        slot = slots.get()
        try:
            graded = _grade_one(exercise, ours, path, student, secret, hidden, limits, shown, slot, shared, pairs)
        finally:
            slots.put(slot)
        graded = _masked(graded, secret, root)
        if on_done is not None:
            on_done(graded)
        return graded
    # Warnings ignored for the class, around its threads: each call into the exercise's code (pairs.py, sealed.py)
    # ignores them in a block of its own, which saves the process's filters and puts them back at its end, and
    # catch_warnings is not thread-safe: one thread's block ending while another's call ran put the caller's
    # filters back under that call (`-W error`: the exercise's warning raised, its student got 0). Now every
    # block a thread enters finds "ignore", and whatever order they end in, puts "ignore" back.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            graded = list(pool.map(one, students(submissions, exercise.path)))
    sandbox.removed()  # the submissions' private folders gone before the grader is
    return graded


def _masked(graded: Graded, secret: int, root: str = "/") -> Graded:
    """The secret never shown: a submission run without the sandbox may read it (from the grader's
    command line) and put it in what it raises; any reason holding it has it masked. No absolute
    path either (relative_paths): the teacher's folders are not the student's business."""
    for part in graded.parts:
        part.reason = relative_paths(part.reason, root)
        if len(str(secret)) >= 4:
            part.reason = part.reason.replace(str(secret), "[the secret]")
    return graded


class _SharedPoints:
    """A `.grad` exercise's points (grading.grad_points), drawn here once for the class and sent to each
    worker, which then holds no secret; None under --variants (each student's own, drawn by its worker)
    or when drawing them fails (each worker draws them, and says why as before)."""

    def __init__(self, exercise: Exercise, secret: int, hidden: int):
        self.exercise, self.secret, self.hidden = exercise, secret, hidden
        self.lock = threading.Lock()
        self.drawn: list = []  # [the points as the request carries them, or None]

    def get(self) -> list | None:
        if self.exercise.variants:
            return None
        with self.lock:
            if not self.drawn:
                try:
                    self.drawn.append([[name, None if at is None else {k: encode(v) for k, v in at.items()}, seed]
                                       for name, at, seed in grad_points(self.exercise, self.secret, self.hidden)])
                except Exception:  # noqa: BLE001 - each worker draws them and reports what it meets
                    self.drawn.append(None)
            return self.drawn[0]


def _grade_one(exercise: Exercise, ours, path: str, student: str, secret: int, hidden: int, limits: Limits,
               shown: str | None = None, slot: int = 0, shared: _SharedPoints | None = None,
               pairs: dict | None = None) -> Graded:
    display = shown or student_text(os.path.basename(path), 200)
    source = read_submission(path)
    if isinstance(source, str):
        return zero(exercise, student, display, f"the submission {source}")
    try:
        if exercise.kind == "python":
            return grade_python(exercise, ours, source, display, student, secret, hidden, limits, pairs=pairs)
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as err:
            return zero(exercise, student, display, f"the submission is not UTF-8 text (byte {err.start + 1})")
        return _grad_worker(exercise, text, display, student, secret, hidden, limits, slot,
                            None if shared is None else shared.get())
    except RecursionError:
        return zero(exercise, student, display, "the submission is nested too deeply to grade")
    except MemoryError:
        return zero(exercise, student, display, "ran out of memory")
    except Exception as err:  # noqa: BLE001 - one submission never loses the class its gradebook
        return zero(exercise, student, display, f"could not be graded: {student_text(type(err).__name__)} "
                    "in the grader (reported to the teacher as this 0)")


def _grad_worker(exercise: Exercise, text: str, display: str, student: str, secret: int, hidden: int,
                 limits: Limits, slot: int = 0, points: list | None = None) -> Graded:
    """A `.grad` submission checked in a worker process (gradcheck's own code, with the limits: a
    submission within the language's limits may still be slow): a child of the fork server of the
    grade's `slot` (grade_worker.forked), or a fresh Python where there is none. With the class's
    `points` (as _SharedPoints gives them) the worker gets them and not the secret."""
    request = json.dumps({"exercise": dataclasses.asdict(exercise), "text": text, "display": display,
                          "student": student, "hidden": hidden,
                          **({"secret": secret} if points is None else {"points": points})})
    with tempfile.TemporaryDirectory(prefix="gradcheck-grade-") as cwd:
        # no cache read or written (SymPy's Jacobians, the partials): a worker's home is this folder, deleted
        # after it, and its time limit is the submission's
        env = {**environment(cwd), "PYTHONIOENCODING": "utf-8", "GRADCHECK_NO_CACHE": "1"}
        done = _forked_worker(request, limits, cwd, env, slot)
        if done is _NO_SERVER:
            try:
                done = subprocess.run([sys.executable, "-I", "-c", WORKER], input=request,
                                      capture_output=True, text=True, encoding="utf-8", errors="replace",
                                      timeout=limits.seconds, cwd=cwd, env=env, preexec_fn=limited(limits, False))
            except subprocess.TimeoutExpired:
                done = None
        if done is None:
            return zero(exercise, student, display, f"ran out of time ({limits.seconds:g} s)")
    if done.returncode == 0:
        try:
            data = json.loads(done.stdout.strip().splitlines()[-1])
            return Graded(student, display, [PartResult(**p) for p in data["parts"]])
        except (ValueError, KeyError, TypeError, IndexError):
            pass
    tail = (done.stderr.strip().splitlines() or [""])[-1]
    why = ("ran out of memory" if "MemoryError" in tail or done.returncode in (-9, 137) else
           f"could not be graded (the worker ended with code {done.returncode})")
    return zero(exercise, student, display, why)


OUT_BYTES = 1 << 26  # the most of a worker's standard output read (its Graded: far less)


def _forked_worker(request: str, limits: Limits, cwd: str, env: dict, slot: int):
    """The worker's CompletedProcess (returncode, stdout, stderr) as a fork server's child (the same
    limits, folder and environment as a fresh Python's), None when it ran past `limits.seconds`;
    `_NO_SERVER` when there is no fork server to be had (then a fresh Python is started)."""
    if not forkserver.enabled():
        return _NO_SERVER
    server = forkserver.server(WORKER_PRELOAD, _HERE, child=forkserver.Work.GRADE,
                               environ={**environment(tempfile.gettempdir()), "PYTHONIOENCODING": "utf-8",
                                        "GRADCHECK_NO_CACHE": "1"},  # (its home /tmp: no cache read or written)
                               isolated=True, slot=slot)
    if server is None:
        return _NO_SERVER
    out_read, out_write = os.pipe()
    task_read, task_write = os.pipe()
    err = tempfile.TemporaryFile(dir=cwd)
    try:
        try:
            child = server.fork([out_write, err.fileno(), task_read], cwd=cwd, environ=env)
        except forkserver.ServerGone:
            server.release()
            return _NO_SERVER
        except BaseException:
            server.release()
            raise
        finally:
            os.close(out_write)
            os.close(task_read)
        started = time.monotonic()  # (the server's imports, done before it forked, are not the submission's time)
        out, timed_out, code = bytearray(), True, None
        try:
            try:
                with os.fdopen(task_write, "wb") as task:
                    task_write = -1
                    task.write(json.dumps(dataclasses.asdict(limits)).encode("utf-8") + b"\n" + request.encode("utf-8"))
            except OSError:  # it is gone already: its exit status says why
                pass
            poller = select.poll()  # (not select.select: no limit on the descriptor's number)
            poller.register(out_read, select.POLLIN)
            while (left := limits.seconds - (time.monotonic() - started)) > 0:
                if not poller.poll(left * 1000):
                    continue
                chunk = os.read(out_read, 1 << 16)
                if not chunk:
                    timed_out = False
                    break
                if len(out) < OUT_BYTES:
                    out += chunk
        finally:  # (Ctrl-C too: it is ended, its server free)
            code = child.stop(grace=0.0 if timed_out else max(1.0, limits.seconds - (time.monotonic() - started)))
        if timed_out:
            return None
        err.seek(0)
        return subprocess.CompletedProcess([], -9 if code is None else code, out.decode("utf-8", "replace"),
                                           err.read(1 << 20).decode("utf-8", "replace"))
    finally:
        os.close(out_read)
        if task_write >= 0:
            os.close(task_write)
        err.close()


_NO_SERVER = object()  # _forked_worker's answer when there is no fork server: a fresh Python is started
# What a worker imports as it grades (SymPy among them, for the d lines' partials, and the part of it SymPy
# imports on its first sum): its fork server imports them once, before it forks a worker for each
# submission; grade_worker's import makes the .grad parser there too.
WORKER_PRELOAD = ("gradcheck_cli.teaching.grade_worker", "gradcheck_cli.oracles.symbolic", "sympy", "sympy.tensor.tensor",
                  "lark")
