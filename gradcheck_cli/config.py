"""`[tool.gradcheck]` in the nearest pyproject.toml: defaults for the command line's options."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError, did_you_mean

FORMATS = ("table", "json", "junit", "github", "markdown")


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


KEYS = {
    # key: (check, what it must be)
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "rtol": (_positive, "a positive number"),
    "atol": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "a number ≥ 0"),
    "step": (_positive, "a positive number"),
    "strict": (lambda v: isinstance(v, bool), "true or false"),
    "symbolic": (lambda v: isinstance(v, bool), "true or false"),
    "format": (lambda v: v in FORMATS, "one of " + ", ".join(FORMATS)),
    "budget": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
    "jobs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer"),
}


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


def load(start: Path | None = None) -> tuple[dict, Path | None]:
    """The validated `[tool.gradcheck]` settings and the file they came from ({} when none)."""
    path = find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return {}, None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"not valid TOML: {err}", source=str(path)) from None
    settings = data.get("tool", {}).get("gradcheck", {})
    if not isinstance(settings, dict):
        raise UsageError("[tool.gradcheck] must be a table", source=str(path))
    for key, value in settings.items():
        line = _line_of(text, key)
        if key not in KEYS:
            raise UsageError(f"[tool.gradcheck] has an unknown key '{key}'" + did_you_mean(key, KEYS)
                             + f" (known: {', '.join(KEYS)})", line, 1 if line else None, str(path), text)
        check, what = KEYS[key]
        if not check(value):
            raise UsageError(f"[tool.gradcheck] {key} must be {what}, not {value!r}", line, 1 if line else None,
                             str(path), text)
    return dict(settings), path
