"""Files and directories: read `.grad` sources safely, check many of them (in parallel with `jobs`)."""

from __future__ import annotations

import functools
import os
import signal
import stat
import sys
from pathlib import Path

from .checker import check
from .errors import GradcheckError, UsageError
from .limits import MAX_FILE_BYTES
from .report import CheckReport, RunReport
from .settings import Settings


def read_source(path) -> str:
    """A `.grad` file's text (`-`: standard input); a file that cannot be read, is not a regular
    file, is longer than MAX_FILE_BYTES or is not UTF-8 text is a GradcheckError."""
    source = str(path)
    try:
        if source == "-":
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


def expand_targets(targets) -> list:
    """Files named, and every `*.grad` under directories named (sorted, recursive)."""
    files = []
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


def check_files(files: list, settings: Settings, exitfirst: bool = False, on_file=None,
                at: dict | None = None) -> RunReport:
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
    from concurrent.futures import ProcessPoolExecutor
    chunk = max(1, len(files) // (jobs * 4))
    with ProcessPoolExecutor(max_workers=jobs, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        work = functools.partial(_check_one, settings=settings, texts=texts, at=at)
        for report in pool.map(work, files, chunksize=chunk):
            results.append(report)
            if on_file:
                on_file(len(results), len(files), report.source)
            if exitfirst and not report.passed:
                pool.shutdown(wait=True, cancel_futures=True)
                break
    return RunReport(results, total=len(files))


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
