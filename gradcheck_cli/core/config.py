"""`[tool.gradcheck]` in the nearest pyproject.toml: the defaults a run starts from."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError
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
        elif in_table and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


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
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise UsageError(f"cannot read: {err.strerror or err}", source=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"not valid TOML: {err}", source=str(path)) from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise UsageError("'tool' must be a table", _line_of(text, "tool"), 1, str(path), text)
    table = tool.get("gradcheck", {})
    if not isinstance(table, dict):
        raise UsageError("[tool.gradcheck] must be a table", source=str(path))

    def locate(key):
        line = _line_of(text, key)
        return line, 1 if line else None
    try:
        return Settings.from_mapping(table, locate), path
    except UsageError as err:
        raise err.located(str(path), text) from None
