"""A row's status, one type everywhere: the verdict's per-element codes (0 pass ... 3 fail) and the
words every face and the JSON show are the same enum. It is a `str`, so `status == "pass"`, JSON and
formatting read as the word."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """pass < kink < warn < fail by severity (an element's code); skip is a const, nothing checked."""
    PASS = "pass"
    KINK = "kink"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    __hash__ = str.__hash__  # a dict keyed by the word finds the member, and the other way round

    @property
    def code(self) -> int:
        """The per-element code the verdict computes with: 0 pass, 1 kink, 2 warn, 3 fail (skip: -1)."""
        return _CODES[self]

    @classmethod
    def of_code(cls, code: int) -> Status:
        """The status of a per-element code (0 ... 3)."""
        return _BY_CODE[int(code)]


_CODES = {Status.PASS: 0, Status.KINK: 1, Status.WARN: 2, Status.FAIL: 3, Status.SKIP: -1}
_BY_CODE = {code: status for status, code in _CODES.items() if code >= 0}
