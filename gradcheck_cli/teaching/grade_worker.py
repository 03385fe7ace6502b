"""One submission graded in a process of its own (graderun starts it with its limits): reads the
request (JSON) on standard input, writes the Graded (JSON) as its last line on standard output."""

from __future__ import annotations

import json
import os
import sys

from ..core.errors import GradcheckError
from .exercise import load_exercise
from .grading import grade_grad, grade_python, zero


def main() -> int:
    request = json.loads(sys.stdin.read())
    # what the submission prints goes nowhere (a print in a loop must not flood the grader's memory);
    # the result goes to the standard output this process started with
    result = os.fdopen(os.dup(1), "w", encoding="utf-8")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")
    exercise = load_exercise(request["exercise"])
    path, student = request["submission"], request["student"]
    grade = grade_python if exercise.kind == "python" else grade_grad
    try:
        graded = grade(exercise, path, student, int(request["secret"]), int(request["hidden"]))
    except GradcheckError as err:
        graded = zero(exercise, student, path, err.message)
    except MemoryError:
        graded = zero(exercise, student, path, "ran out of memory")
    except RecursionError:
        graded = zero(exercise, student, path, "recursed too deeply")
    result.write("\n" + json.dumps(graded.to_dict()) + "\n")
    result.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
