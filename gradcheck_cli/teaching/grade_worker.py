"""One `.grad` submission graded in a worker process (graderun starts it with its limits): reads the
request (JSON: the exercise, the submission's text, the student's name) on standard input, writes the
Graded (JSON) as its last line on standard output. The submission is text gradcheck evaluates; no code
of the student's runs here."""

from __future__ import annotations

import json
import sys

from ..core.errors import GradcheckError
from .exercise import Exercise, Part
from .grading import grade_grad, zero


def main() -> int:
    request = json.loads(sys.stdin.read())
    data = request["exercise"]
    exercise = Exercise(**{**data, "parts": [Part(**p) for p in data["parts"]]})
    display, student = request["display"], request["student"]
    try:
        graded = grade_grad(exercise, request["text"], display, student, int(request["secret"]), int(request["hidden"]))
    except GradcheckError as err:
        graded = zero(exercise, student, display, err.message)
    except MemoryError:
        graded = zero(exercise, student, display, "ran out of memory")
    except RecursionError:
        graded = zero(exercise, student, display, "nested too deeply to grade")
    sys.stdout.write("\n" + json.dumps(graded.to_dict(private=True)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
