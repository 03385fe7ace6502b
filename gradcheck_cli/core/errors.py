"""Errors a user can cause, each carrying the source position it points at."""

from __future__ import annotations

from .text import cut

MESSAGE_MAX = 2000  # characters of an error's message (what it quotes of the input is cut past it)


class GradcheckError(Exception):
    """A user error: bad input or a bad command line (exit code 2)."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None,
                 source: str | None = None, text: str | None = None):
        message = cut(message, MESSAGE_MAX)  # a name of 100,000 characters, quoted: the message stays readable
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.source = source
        self.text = text

    def __reduce__(self):
        # keep the position when a report crosses processes (-j N)
        return (type(self), (self.message, self.line, self.col, self.source, self.text))

    def located(self, source: str, text: str | None) -> "GradcheckError":
        """Attach the file name and source text, if not already known."""
        if self.source is None:
            self.source = source
        if self.text is None:
            self.text = text
        return self

    def source_line(self) -> str | None:
        """The line of the source the error points at, if known."""
        if self.text is None or self.line is None:
            return None
        lines = self.text.split("\n")  # as the lexer counts lines (splitlines also breaks at \r, \f, \x1c, ...)
        return lines[self.line - 1].removesuffix("\r") if 0 < self.line <= len(lines) else None

    def format(self) -> str:
        """`FILE:LINE:COL: error: message`, then the source line and a caret."""
        where = self.source or "<input>"
        if self.line is not None:
            where += f":{self.line}:{self.col or 1}"
        out = f"{where}: error: {self.message}"
        line = self.source_line()
        if line is not None:
            # one visible character per unprintable one, so the caret stays aligned and the terminal safe
            shown = "".join(c if c.isprintable() else "\ufffd" for c in line.expandtabs(1))
            shown, caret = _window(shown, max(0, (self.col or 1) - 1))
            out += f"\n  {shown}\n  {' ' * caret}^"
        return out

    def to_dict(self) -> dict:
        """The JSON form of an error (DESIGN.md, schema 1)."""
        return {"message": self.message, "line": self.line, "col": self.col}


class GradSyntaxError(GradcheckError):
    """The text is not in the language."""


class GradNameError(GradcheckError):
    """An unknown or clashing name or function."""


class GradShapeError(GradcheckError):
    """Operand shapes that do not fit the gate."""


class GradValueError(GradcheckError):
    """A value that is not finite, or outside a gate's domain, at the given point."""


class UsageError(GradcheckError):
    """A bad command-line option or path."""


class BackwardError(Exception):
    """A gate's backward could not be computed (a hand-written d line): a failed check, not bad input."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None, grads=None):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col
        self.grads = grads  # the inputs' gradients that could be computed (NaN where not), if any


def did_you_mean(word: str, candidates) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close."""
    import difflib  # only here: a suggestion is made after something went wrong
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


SHOWN = 100  # characters of a long source line shown around the caret


def _window(line: str, caret: int) -> tuple[str, int]:
    """At most SHOWN characters of `line` around column `caret`, elided with '…'; the caret's new column."""
    if len(line) <= SHOWN:
        return line, caret
    start = min(max(0, caret - SHOWN // 2), len(line) - SHOWN)
    shown = line[start:start + SHOWN]
    if start > 0:
        shown, caret = "…" + shown[1:], caret - start
    if start + SHOWN < len(line):
        shown = shown[:-1] + "…"
    return shown, caret if start > 0 else caret
