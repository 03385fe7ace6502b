"""Wrong answers that agree: for the teacher, students whose gradients for a part are wrong in the
same way at the same points (the same values, rounded, and the same diagnosis).

Grading keeps, per student and failing part, a fingerprint of the student's gradient at the points
where it was wrong: its values relative to the right answer's scale, rounded, hashed. It is computed
on the grader's side from what the student returned and is never shown to anyone: the report names
the students, the parts and how many wrong values they share. Right answers agree trivially and
have no fingerprint; neither do gradients that are all zeros (a stub left as it was) or not finite.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

DIGITS = 6    # decimals kept of each value / the right answer's largest: summation order cannot move them
RTOL = 1e-6   # an element is wrong when it differs from the right one by more than this (relative to the largest)


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    digest: str     # the rounded wrong values at every point, hashed ("" where there is nothing to compare)
    values: int     # how many of them are wrong (finite, and not a stub's zeros)


NONE = Fingerprint(digest="", values=0)


def fingerprint(seen: list) -> Fingerprint:
    """The fingerprint of one part: `seen` holds, for each point in order, (the student's gradient,
    the right one) where the student's was wrong, else None."""
    digest = hashlib.sha256(b"gradcheck: wrong values")
    values = 0
    for k, item in enumerate(seen):
        if item is None:
            digest.update(f"|{k}:-".encode())
            continue
        theirs, right = (np.asarray(a, dtype=float) for a in item)
        wrong = _wrong_values(theirs, right)
        if wrong == 0:
            digest.update(f"|{k}:-".encode())
            continue
        values += wrong
        scale = max(float(np.max(np.abs(right), initial=0.0)), 1e-300)
        with np.errstate(all="ignore"):
            rounded = np.round(theirs / scale, DIGITS) + 0.0   # + 0.0: -0.0 is 0.0
        rounded = np.where(np.isnan(rounded), np.nan, rounded)  # one bit pattern for every nan
        digest.update(f"|{k}:{theirs.shape}:".encode() + np.ascontiguousarray(rounded, dtype="<f8").tobytes())
    return Fingerprint(digest=digest.hexdigest(), values=values) if values else NONE


def _wrong_values(theirs: np.ndarray, right: np.ndarray) -> int:
    """How many of the student's finite values are wrong; 0 for a gradient of zeros only."""
    finite = np.isfinite(theirs)
    if not np.any(theirs[finite]):
        return 0
    if theirs.shape != right.shape:
        return int(np.count_nonzero(finite))
    scale = max(float(np.max(np.abs(right), initial=0.0)), 1e-300)
    return int(np.count_nonzero(finite & ~(np.abs(theirs - right) <= RTOL * scale)))


@dataclass(frozen=True, kw_only=True)
class Similar:
    """Students whose wrong answers agree on `parts` (and on no other part together)."""
    students: tuple
    parts: tuple        # part names
    reasons: tuple      # each part's diagnosis, as the students were told it
    values: int         # wrong values they share, over those parts and every point


_WHERE = re.compile(r" \(d\w+ is set at [^\n]*\)$")


def diagnosis(reason: str) -> str:
    """A reason without where the student's own file sets the gradient (`(db is set at ann.py:12:
    `...`)`): two students with one slip, written in their own words and files, say the same."""
    return _WHERE.sub("", reason)


def similar(graded: list) -> list:
    """Groups of at least two students whose wrong answers to one or more parts agree (the same
    fingerprint and the same reason), most shared values first. Students who agree on several
    parts are one group, listing those parts."""
    clusters: dict = {}
    for g in graded:
        for p in g.parts:
            if p.status == "wrong" and p.fingerprint:
                clusters.setdefault((p.what, p.fingerprint, diagnosis(p.reason)), []).append((g.student, p.wrong_values))
    together: dict = {}
    for (what, _, reason), members in clusters.items():
        names = tuple(sorted({name for name, _ in members}))
        if len(names) < 2:
            continue
        entry = together.setdefault(names, [])
        entry.append((what, reason, members[0][1]))
    groups = [Similar(students=names, parts=tuple(w for w, _, _ in found), reasons=tuple(r for _, r, _ in found),
                      values=sum(v for _, _, v in found)) for names, found in together.items()]
    return sorted(groups, key=lambda s: (-s.values, -len(s.parts), s.students))
