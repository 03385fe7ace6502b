"""`[tool.gradcheck]` in the nearest pyproject.toml: the defaults a run starts from."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError
from .limits import MAX_FILE_BYTES, MAX_NESTING
from .settings import Settings


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start`."""
    for directory in [start, *start.parents]:
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _line_of(text: str, key: str) -> int | None:
    """The line of `key = ...` inside the [tool.gradcheck] table, for the error's position."""
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped.replace(" ", "") == "[tool.gradcheck]"
        elif in_table and re.match(rf"{re.escape(key)}\s*[=.]", stripped):
            return number
    return None


# What opens or closes a nesting, or hides brackets: strings (multi-line ones first) and comments.
# Each string alternative also ends where its text does (a string left open is bad TOML, which the parser
# says): a token always matches and the scan goes on past it, so text full of quotes is read in linear time.
_TOML_TOKEN = re.compile(r'"""(?:[^\\]|\\.)*?(?:"""(?:"{0,2})|\Z)|' + r"'''.*?(?:'''(?:'{0,2})|\Z)|"
                         + r'"(?:[^"\\\n]|\\.)*"?|' + r"'[^'\n]*'?|#[^\n]*|[\[\]{}]", re.S)


def _too_deep(text: str) -> tuple[int, int] | None:
    """(line, column) where TOML text's arrays and inline tables first nest past MAX_NESTING (strings
    and comments skipped), found without parsing it; None when they never do."""
    depth = 0
    for token in _TOML_TOKEN.finditer(text):
        c = token.group()
        if c in "[{":
            depth += 1
            if depth > MAX_NESTING:
                start = token.start()
                return text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)
        elif c in "]}":
            depth = max(0, depth - 1)
    return None


def _depth(value, limit: int = MAX_NESTING) -> int:
    """How deep a decoded TOML value nests tables and arrays, counted no further than `limit` + 1."""
    if limit < 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)


def load(start: Path | None = None) -> tuple[Settings, Path | None]:
    """The validated settings of the nearest `[tool.gradcheck]` and the file they came from."""
    path = find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return Settings(), None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read: {err.strerror or err}", source=str(path)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"longer than {MAX_FILE_BYTES:,} bytes: not read (GRADCHECK_MAX_FILE_BYTES raises it)",
                         source=str(path))
    text = raw.decode("utf-8", errors="replace")
    deep = _too_deep(text)
    if deep is not None:  # Python's TOML parser recurses: a deep enough file would crash it
        raise UsageError(f"arrays and tables nest more than {MAX_NESTING} deep here", *deep, str(path), text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:  # "... (at line 2, column 9)": the error at that place, with its line
        where = re.search(r"\(at line (\d+), column (\d+)\)$", str(err))
        message = str(err)[: where.start()].rstrip() if where else str(err)
        line, col = (int(where.group(1)), int(where.group(2))) if where else (None, None)
        raise UsageError(f"not valid TOML: {message}", line, col, str(path), text) from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise UsageError("'tool' must be a table", _line_of(text, "tool"), 1, str(path), text)
    table = tool.get("gradcheck", {})
    if not isinstance(table, dict):
        line = next((k for k, t in enumerate(text.split("\n"), 1) if re.match(r"\s*(tool\s*\.\s*)?gradcheck\s*=", t)), None)
        raise UsageError("[tool.gradcheck] must be a table", line, 1 if line else None, str(path), text)

    def locate(key):
        line = _line_of(text, key)
        return line, 1 if line else None
    for key, value in table.items():
        if _depth(value) > MAX_NESTING:  # dotted keys nest without brackets
            line, col = locate(key)
            raise UsageError(f"[tool.gradcheck] {key} nests more than {MAX_NESTING} deep", line, col, str(path), text)
    try:
        return Settings.from_mapping(table, locate), path
    except UsageError as err:
        raise err.located(str(path), text) from None
