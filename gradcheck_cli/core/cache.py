"""Where gradcheck keeps what it derives once and reuses between runs: SymPy's partials of the
elementwise gates (`oracles/partials_cache.py`), SymPy's local Jacobians of user gate calls at their points
(`oracles/jacobian_cache.py`) and the parser's LALR tables (`language/syntax.py`),
each a JSON file named by what made it, never code and never a pickle.

`GRADCHECK_CACHE_DIR` if set, else `$XDG_CACHE_HOME/gradcheck`, else `~/.cache/gradcheck`;
`GRADCHECK_NO_CACHE=1` turns it off (everything is derived again on every run). A folder that cannot
be read or written, or a file damaged or cut short, is as no cache.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def directory() -> Path | None:
    """Where derived files are kept, or None when the cache is off."""
    if os.environ.get("GRADCHECK_NO_CACHE", "") not in ("", "0"):
        return None
    chosen = os.environ.get("GRADCHECK_CACHE_DIR")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gradcheck"


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
    try:
        with open(path, "rb") as f:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:
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
        path.parent.mkdir(parents=True, exist_ok=True)
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
