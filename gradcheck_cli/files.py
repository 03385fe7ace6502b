"""Files and directories: read `.grad` sources safely, check many of them (in parallel with `jobs`)."""

from __future__ import annotations

import functools
from pathlib import Path

from .checker import check
from .errors import GradcheckError, UsageError
from .report import CheckReport, RunReport
from .settings import Settings


def read_source(path) -> str:
    """A `.grad` file's text; a file that cannot be read, or is not UTF-8 text, is a GradcheckError."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise GradcheckError(f"cannot read: {err.strerror or err}").located(source, None) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise GradcheckError(f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})",
                             line, 1).located(source, None) from None
    if "\x00" in text:
        raise GradcheckError("this is a binary file, not a .grad source", 1, 1).located(source, None)
    return text


def check_file(path, settings: Settings | None = None, **overrides) -> CheckReport:
    """Check one `.grad` file; a file that cannot be read becomes a report with an error."""
    try:
        text = read_source(path)
    except GradcheckError as err:
        return CheckReport(source=str(path), error=err, settings=(settings or Settings()))
    return check(text, source=str(path), settings=settings, **overrides)


def expand_targets(targets) -> list:
    """Files named, and every `*.grad` under directories named (sorted, recursive)."""
    files = []
    for target in targets:
        p = Path(target)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.grad") if q.is_file())
            if not found:
                raise UsageError(f"{target}: no .grad files in this directory")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"{target}: no such file or directory")
    return files


def check_paths(targets, settings: Settings | None = None, **overrides) -> RunReport:
    """Check every file a list of targets names; a broken file is reported, the rest still run."""
    settings = (settings or Settings()).with_flags(**overrides)
    return check_files(expand_targets(targets), settings)


def check_files(files: list, settings: Settings) -> RunReport:
    """Check files in `settings.jobs` processes; the results keep the order of `files`."""
    if settings.jobs <= 1 or len(files) <= 1:
        return RunReport([check_file(f, settings) for f in files])
    from concurrent.futures import ProcessPoolExecutor
    chunk = max(1, len(files) // (settings.jobs * 4))
    with ProcessPoolExecutor(max_workers=settings.jobs) as pool:
        work = functools.partial(check_file, settings=settings)
        return RunReport(list(pool.map(work, files, chunksize=chunk)))
