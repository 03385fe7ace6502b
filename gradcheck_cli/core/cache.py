"""Where gradcheck keeps what it derives once and reuses between runs: SymPy's partials of the
elementwise gates (`oracles/partials_cache.py`), SymPy's local Jacobians of user gate calls at their points
(`oracles/jacobian_cache.py`) and the parser's LALR tables (`language/syntax.py`),
each a JSON file named by what made it, never code and never a pickle.

`GRADCHECK_CACHE_DIR` if set, else `$XDG_CACHE_HOME/gradcheck`, else `~/.cache/gradcheck`;
`GRADCHECK_NO_CACHE=1` turns it off (everything is derived again on every run). A folder that cannot
be read or written, or a file damaged or cut short, is as no cache.

A cache is data this run did not write, so it is read as such: the folder must be the user's own and
writable by no one else (made 0700 when a first file is written), else it is as no cache (a folder under a
shared /tmp another user made); a file is read only when it is a regular file of the user's (never
through a symbolic link, never a FIFO or a device, which could hang or feed a run without end), and
no more than MAX_FILE_BYTES of it. Processes of the same user can still write it, as they can the
installed package.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

MAX_FILE_BYTES = 64 << 20  # the most of one cache file read (the largest, the parser's tables, is ~0.2 MB)


def directory() -> Path | None:
    """Where derived files are kept, or None when the cache is off (or its folder is not private)."""
    if os.environ.get("GRADCHECK_NO_CACHE", "") not in ("", "0"):
        return None
    chosen = os.environ.get("GRADCHECK_CACHE_DIR")
    if chosen:
        folder = Path(chosen)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = Path(base) / "gradcheck"
    # (made only when a file is written: a run that only looks makes no folder, and never makes one again
    # in a tree that is being removed, a graded submission's home)
    return folder if not os.path.lexists(folder) or private(folder) else None


def private(folder: Path) -> bool:
    """Is `folder` a directory of this user's that no other user can write into? A symbolic link to such a
    folder is followed, as `~/.cache` may be one."""
    try:
        info = os.stat(folder)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def file(name: str) -> Path | None:
    """The path of the cache's file `name`, or None when the cache is off."""
    folder = directory()
    return None if folder is None else folder / name


def read_json(path: Path | None, object_hook=None, max_bytes: int | None = None):
    """The JSON value of a cache file, or None (no cache, no such file, unreadable, damaged, or longer than
    `max_bytes`: not read past them). `object_hook` (json's) turns each object into what it stands for as it
    is read; a ValueError from it is damage."""
    if path is None:
        return None
    limit = MAX_FILE_BYTES if max_bytes is None else min(max_bytes, MAX_FILE_BYTES)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > limit:
                return None
            data = f.read(limit + 1)
        if len(data) > limit:
            return None
        return json.loads(data.decode("utf-8"), object_hook=object_hook)
    except (OSError, ValueError, RecursionError):
        return None


def write_json(path: Path | None, value) -> None:
    """A cache file written whole and atomically (another process sees the old file or the new, never
    half of one); quietly nothing where the cache is off or cannot be written."""
    if path is None:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not private(path.parent):  # (made by another user first: not written into)
            return
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                json.dump(value, f)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except (OSError, TypeError, ValueError):
        pass
