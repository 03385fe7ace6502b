"""One `.grad` submission graded in a worker process (graderun starts it with its limits): reads the
request (JSON: the exercise, the submission's text, the student's name) on standard input, writes the
Graded (JSON) as its last line on standard output. The submission is text gradcheck evaluates; no code
of the student's runs here.

The worker is a child forked from a server that imported gradcheck, numpy and SymPy once for the class
(`forked`, python/forkserver.py), or a fresh Python (`main`) where there is no fork server."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

from ..core.errors import GradcheckError
from ..language import syntax
from ..python import forkserver
from .exercise import Exercise, Part
from .grading import grade_grad, zero
from .sandbox import Limits, limited
from .student_side import decode

MAX_POINT_ELEMENTS = 1 << 40  # (the points are the grader's own, drawn for the exercise's leaves)

# Made at import: in the fork server, once before it forks the workers. A worker's home is a new empty
# folder (no cache), so each would otherwise build the parser's tables again (0.2 s of CPU a submission).
syntax.warm()


def main() -> int:
    request = json.loads(sys.stdin.read())
    data = request["exercise"]
    exercise = Exercise(**{**data, "parts": [Part(**p) for p in data["parts"]]})
    display, student = request["display"], request["student"]
    try:
        points = None if "points" not in request else [
            (name, None if at is None else {k: decode(v, MAX_POINT_ELEMENTS) for k, v in at.items()}, int(seed))
            for name, at, seed in request["points"]]
        graded = grade_grad(exercise, request["text"], display, student, int(request.get("secret", 0)),
                            int(request["hidden"]), points)
    except GradcheckError as err:
        graded = zero(exercise, student, display, err.message)
    except MemoryError:
        graded = zero(exercise, student, display, "ran out of memory")
    except RecursionError:
        graded = zero(exercise, student, display, "nested too deeply to grade")
    sys.stdout.write("\n" + json.dumps(graded.to_dict(private=True)) + "\n")
    sys.stdout.flush()
    return 0


def forked(pipe_fd: int, stack_fd: int, orphaned: tuple | None = None) -> None:  # pragma: no cover - in the child
    """The worker as a fork server's child: standard output the pipe `pipe_fd`, standard error the file
    `stack_fd`; the request on standard input, its first line the limits (sandbox.Limits, as JSON),
    which are set before anything else is read; then `main`. It dies with the server (`orphaned`:
    (its signal, the server's pid))."""
    code = 70
    try:
        if orphaned is not None:
            if not forkserver.die_with_server(orphaned, signal.SIGKILL):
                os._exit(70)
        limits = json.loads(sys.stdin.readline())
        limited(Limits(**limits), False)()
        for fd, target in ((pipe_fd, 1), (stack_fd, 2)):
            os.dup2(fd, target)
            os.close(fd)
        code = main()
    except MemoryError:
        os.write(2, b"MemoryError\n")
    except BaseException:  # noqa: BLE001 - said on standard error, then ended
        os.write(2, traceback.format_exc().encode("utf-8", "replace")[-4000:])
    finally:
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
