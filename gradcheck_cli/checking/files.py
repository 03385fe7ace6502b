"""Files and directories: read `.grad` sources safely, check many of them (in parallel with `jobs`)."""

from __future__ import annotations

import functools
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from .checker import check
from ..core.errors import GradcheckError, UsageError
from ..core.limits import MAX_FILE_BYTES
from ..core.report import CheckReport, RunReport
from ..core.settings import Settings


def read_source(path) -> str:
    """A `.grad` file's text (`-`: standard input); a file that cannot be read, is not a regular
    file, is longer than MAX_FILE_BYTES or is not UTF-8 text is a GradcheckError."""
    source = str(path)
    try:
        if source == "-":
            if sys.stdin is None:  # started with standard input closed (`<&-`)
                raise OSError(0, "standard input is closed")
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb", opener=_regular_only) as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise GradcheckError(f"cannot read: {err.strerror or err}").located(source, None) from None
    if len(data) > MAX_FILE_BYTES:
        raise GradcheckError(f"longer than {MAX_FILE_BYTES:,} bytes: not read (a .grad source is text, "
                             "a few kilobytes)").located(source, None)
    return decode_source(data, source)


def _regular_only(path, flags):
    """Open without blocking (a FIFO would wait for a writer forever), then refuse anything but a file."""
    fd = os.open(path, flags | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def decode_source(data: bytes, source: str) -> str:
    """Bytes of a source as text: UTF-8, no NUL bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise GradcheckError(f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})",
                             line, 1).located(source, None) from None
    if "\x00" in text:
        raise GradcheckError("this is a binary file, not a .grad source", 1, 1).located(source, None)
    return text


def check_file(path, settings: Settings | None = None, at: dict | None = None, **overrides) -> CheckReport:
    """Check one `.grad` file (leaves set by `at`); a file that cannot be read becomes a report with an error."""
    try:
        text = read_source(path)
    except GradcheckError as err:
        return CheckReport(source=str(path), error=err, settings=(settings or Settings()).with_flags(**overrides))
    return check(text, source=str(path), at=at, settings=settings, **overrides)


def expand_targets(targets) -> list[str | Path]:
    """Files named, and every `*.grad` under directories named (sorted, recursive)."""
    files: list[str | Path] = []  # "-" for standard input
    if list(targets).count("-") > 1:
        raise UsageError("standard input (-) can be read only once: give - at most once")
    for target in targets:
        if target == "-":
            files.append("-")
            continue
        p = Path(target)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.grad") if q.is_file())
            if not found:
                raise UsageError(f"{target}: no .grad files in this directory")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            hint = "" if target.endswith(".grad") else f" (to check source text, use -e: gradcheck check -e '{target}')"
            raise UsageError(f"{target}: no such file or directory{hint}")
    return files


def check_paths(targets, settings: Settings | None = None, at: dict | None = None, **overrides) -> RunReport:
    """Check every file a list of targets names; a broken file is reported, the rest still run."""
    settings = (settings or Settings()).with_flags(**overrides)
    return check_files(expand_targets(targets), settings, at=at)


def check_files(files: list, settings: Settings, exitfirst: bool = False,
                on_file: Callable[[int, int, str | Path], None] | None = None, at: dict | None = None) -> RunReport:
    """Check files in `settings.jobs` processes (at most one per core); results keep the order of `files`.
    `at` sets leaves in every file (a name a file lacks is that file's error).
    With `exitfirst`, stop after the first file that does not pass. `on_file(done, total, path)` is
    told as each file starts (one process) or ends (several), for a progress display.

    Standard input (`-`) is read here, once, before any worker starts."""
    jobs = min(settings.jobs, os.cpu_count() or 1, len(files))
    results: list = []
    if jobs <= 1:
        for f in files:
            if on_file:
                on_file(len(results), len(files), f)
            results.append(check_file(f, settings, at=at))
            if exitfirst and not results[-1].passed:
                break
        return RunReport(results, total=len(files))
    texts = {f: _read_or_error(f) for f in files if str(f) == "-"}
    work = functools.partial(_check_one, settings=settings, texts=texts, at=at)
    for report in _in_workers(work, files, jobs):
        if report is None:  # the worker died: the file gets the error, the others are still checked
            report = CheckReport(source=str(files[len(results)]), settings=settings,
                                 error=GradcheckError("the process checking this file died (killed, or out of "
                                                      "memory); the other files were checked"))
        results.append(report)
        if on_file:
            on_file(len(results), len(files), report.source)
        if exitfirst and not report.passed:
            break
    return RunReport(results, total=len(files))


def _in_workers(work, files: list, jobs: int):
    """work(file) for every file in `jobs` processes, in order; None for a file whose worker died
    (each such file is tried once more alone, so one bad file does not sink its neighbours).
    Stopping early, or an interrupt, kills the workers at once: nothing is left running."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    def pool(n):
        return ProcessPoolExecutor(max_workers=n, initializer=_worker_setup, initargs=(os.getpid(),))

    def alone(f):
        single = pool(1)
        try:
            return single.submit(work, f).result()
        except BrokenProcessPool:
            return None
        finally:
            _kill(single)
    executor = pool(jobs)
    try:
        pending = {i: executor.submit(work, f) for i, f in enumerate(files)}
        for i, f in enumerate(files):
            try:
                yield pending[i].result()
                continue
            except BrokenProcessPool:
                pass
            # A worker died and took the pool with it: this file once more on its own, the rest in a new pool.
            _kill(executor)
            yield alone(f)
            executor = pool(jobs)
            pending.update({j: executor.submit(work, files[j]) for j in range(i + 1, len(files))})
    finally:
        _kill(executor)


def _kill(executor) -> None:
    """Stop a pool now: its workers are killed, its queued work dropped."""
    for process in list(getattr(executor, "_processes", {}).values()):
        try:
            process.kill()
        except (OSError, AttributeError):
            pass
    executor.shutdown(wait=False, cancel_futures=True)


def _read_or_error(path):
    try:
        return read_source(path)
    except GradcheckError as err:
        return err


def _check_one(path, settings: Settings, texts: dict, at: dict | None = None) -> CheckReport:
    if path in texts:
        text = texts[path]
        if isinstance(text, GradcheckError):
            return CheckReport(source=str(path), error=text, settings=settings)
        return check(text, source=str(path), at=at, settings=settings)
    return check_file(path, settings, at=at)


def _worker_setup(parent: int) -> None:
    """A worker leaves Ctrl-C to its parent (which kills it) and dies with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """A worker is killed when the gradcheck process that started it dies (even by SIGKILL)."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's own handlers stop the pool
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
