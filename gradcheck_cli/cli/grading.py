"""`gradcheck grade EXERCISE SUBMISSIONS...`: a class graded with partial credit and reasons."""

from __future__ import annotations

import os
import sys

import click

from . import main
from .common import SEED, _console, _fail, _fail_usage, _guard_output, _write_atomically


@main.command(short_help="Grade submissions against an exercise.")
@click.argument("exercise", type=click.Path())
@click.argument("submissions", nargs=-1, required=True, type=click.Path())
@click.option("--secret", type=SEED, metavar="N", envvar="GRADCHECK_SECRET",
              help="The seed of the hidden points: a number only you know (or $GRADCHECK_SECRET).")
@click.option("--hidden", type=click.IntRange(min=0, max=20), default=3, show_default=True,
              help="Random points each part is checked at, besides the exercise's own.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Submissions graded at once (at most one per core).")
@click.option("--timeout", type=click.FloatRange(min=1, max=3600), default=60, show_default=True,
              help="Seconds per submission; past it, 0 for every part with the reason.")
@click.option("--call-timeout", type=click.FloatRange(min=0.5, max=3600), default=10, show_default=True,
              help="CPU seconds one call of a student's function may take; past it, 0 for that pair's parts.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=200, max=1_000_000), default=2000, show_default=True,
              help="Megabytes of memory per submission.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Also write the gradebook as CSV.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write everything as JSON.")
@click.option("--feedback", "feedback_dir", type=click.Path(file_okay=False),
              help="Write one feedback file per student into this directory.")
@click.option("--feedback-format", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--gradescope", "gradescope_path", type=click.Path(),
              help="Write Gradescope's results.json: to PATH if it ends in .json (one submission), "
                   "else PATH/STUDENT/results.json for each.")
@click.option("--lms-csv", "lms_path", type=click.Path(dir_okay=False),
              help="Also write student,score,out_of as CSV, for a learning management system.")
@click.option("--parts", "show_parts", is_flag=True,
              help="In the table, every part (one table per pair when they do not fit in one).")
@click.option("--similarity", is_flag=True,
              help="Also list students whose wrong answers agree (the same values at the same points).")
@click.option("--variants", is_flag=True,
              help="Each student's own points (and `# dims:` sizes), drawn from the secret and their name.")
def grade(exercise, submissions, secret, hidden, jobs, timeout, call_timeout, memory_mb, fmt, csv_path, json_path, feedback_dir,
          feedback_format, gradescope_path, lms_path, show_parts, similarity, variants):
    """Grade SUBMISSIONS against EXERCISE, part by part, at the exercise's point and at hidden ones.

    \b
    EXERCISE is the teacher's solution with `# points:` lines: a .grad file (the
    parts are d lines of its gates: `# points: dW=2 dx=2 db=1`), or a Python module
    of NAME_forward/NAME_backward pairs (`# points: affine.dx=2 ...` and
    `# shapes: affine x=4,2,3 w=6,5 b=5`). Each submission runs in a process of its
    own with --timeout and --memory; one that does not parse, raises or loops gets 0
    for what it broke, with the reason, and the class run goes on.
    Exit codes: 0 graded · 2 the exercise or the command line is wrong ·
    130 interrupted (Ctrl-C).
    """
    from ..core.errors import GradcheckError
    from ..teaching.exercise import load_exercise
    from ..teaching.graderun import Limits, grade_class
    from ..teaching.grading import load_reference
    from ..render.grades import feedback_html, feedback_markdown, grades_csv
    from ..teaching.similarity import similar
    if secret is None:
        _fail_usage("give --secret N (or set GRADCHECK_SECRET): the seed of the hidden points, a number only you know")
    for path in submissions:
        if not os.path.lexists(path):  # a link or an odd file is that student's 0, with the reason
            _fail_usage(f"'{path}': no such submission file")
    _guard_output(csv_path, [exercise, *submissions])
    _guard_output(json_path, [exercise, *submissions])
    _guard_output(lms_path, [exercise, *submissions])
    one_results = _one_results(gradescope_path, exercise, submissions)
    try:
        ex = load_exercise(exercise)
        ex.variants = variants
        ours = load_reference(ex)  # the teacher's module, loaded and checked before any submission runs
    except GradcheckError as err:
        _fail(err, err.source or exercise, None)
    if ex.kind == "python":
        _sandbox_or_say()
    kind = ".py" if ex.kind == "python" else ".grad"
    wrong = [p for p in submissions if not p.endswith(kind)]
    if wrong:
        _fail_usage(f"'{wrong[0]}': the exercise is a {kind} file, so are its submissions")
    _import_what_grading_needs()
    progress = _progress(len(submissions))
    graded = grade_class(ex, list(submissions), secret, hidden, jobs, Limits(seconds=timeout, call_seconds=call_timeout,
                                                                                 memory_mb=memory_mb),
                         progress, ours=ours)
    for g in graded:
        for note in g.notes:
            click.echo(f"note: {g.student}: {note}", err=True)
    groups = similar(graded) if similarity else None
    inputs = [exercise, *submissions]
    if csv_path:
        _write_atomically(csv_path, grades_csv(graded, ex), inputs)
    if json_path:
        _write_atomically(json_path, _json(graded, ex, groups), inputs)
    if feedback_dir:
        _feedback(graded, ex, feedback_dir, feedback_format, feedback_html if feedback_format == "html" else feedback_markdown)
    _gradebooks(graded, ex, inputs, lms_path, gradescope_path, one_results)
    _show(graded, ex, fmt, groups, show_parts)


def _show(graded, ex, fmt, groups, show_parts) -> None:
    """The gradebook on standard output (--format), and the similarity report when asked for: after
    the table, in the JSON, or on standard error beside the CSV."""
    from ..render.grades import grades_csv, grades_table
    from ..render.gradebooks import similarity_table, similarity_text
    if fmt == "csv":
        click.echo(grades_csv(graded, ex), nl=False)
        if groups is not None:
            click.echo(similarity_text(groups), nl=False, err=True)
    elif fmt == "json":
        click.echo(_json(graded, ex, groups), nl=False)
    else:
        grades_table(graded, ex, _console(), show_parts)
        if groups is not None:
            similarity_table(groups, _console())


def _json(graded, ex, groups) -> str:
    """The JSON gradebook, with the similarity report when it was asked for."""
    import json
    from ..render.grades import grades_json
    from ..render.gradebooks import similarity_dict
    text = grades_json(graded, ex)
    return text if groups is None else json.dumps({**json.loads(text), "similar": similarity_dict(groups)}, indent=2) + "\n"


def _gradebooks(graded, ex, inputs, lms_path, gradescope_path, one_results) -> None:
    """The LMS's CSV, and Gradescope's results.json: one file, or one per student in a folder."""
    from ..render.gradebooks import gradescope_results, lms_csv
    if lms_path:
        _write_atomically(lms_path, lms_csv(graded, ex), inputs)
    if one_results:
        _write_atomically(gradescope_path, gradescope_results(graded[0], ex), inputs)
    elif gradescope_path:
        for g, name in zip(graded, _file_names(graded)):
            _folder(os.path.join(gradescope_path, name))
            _write_atomically(os.path.join(gradescope_path, name, "results.json"), gradescope_results(g, ex), [ex.path])


def _folder(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        _fail_usage(f"cannot make the folder {path}: {err.strerror or err}")


def _one_results(path, exercise, submissions) -> bool:
    """Is --gradescope one results.json (a path ending in .json: one submission), not a folder?"""
    if not path or not path.endswith(".json"):
        return False
    _guard_output(path, [exercise, *submissions])
    if len(submissions) != 1:
        _fail_usage(f"--gradescope {path}: a results.json holds one submission, not {len(submissions)} "
                    "(give a folder for a class: one STUDENT/results.json each)")
    return True


def _feedback(graded, ex, folder, suffix, render) -> None:
    """One file per student, named after the student (_file_names), and beside it the points where
    each wrong part failed (the student's own case, to reproduce)."""
    import json
    from ..teaching.grading import point_files
    _folder(folder)
    for g, name in zip(graded, _file_names(graded)):
        files = point_files(g, ex, name)
        if files:
            os.makedirs(os.path.join(folder, f"{name}.points"), exist_ok=True)
        for file, values in {f.file: f.values for f in files}.items():
            _write_atomically(os.path.join(folder, file), json.dumps(values) + "\n", [ex.path])
        _write_atomically(os.path.join(folder, f"{name}.{suffix}"), render(g, ex, files), [ex.path])


def _file_names(graded) -> list:
    """A file or folder name per student: its ASCII letters, digits, - and _; names that would meet
    (`a b` and `a_b`, or names differing only in case) are told apart by a number."""
    taken: set = set()
    names = []
    for g in graded:
        base = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in g.student)[:80] or "student"
        name, k = base, 1
        while name.lower() in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name.lower())
        names.append(name)
    return names


def _import_what_grading_needs() -> None:
    """Every module the run will need, imported before any submission runs: without the sandbox a
    submission may write `rich.py` or `csv.py` into this process's working folder (first on its path
    under `python -m`), and a later import would run it here."""
    import csv  # noqa: F401
    import html  # noqa: F401
    import tomllib  # noqa: F401

    import rich.console  # noqa: F401
    import rich.table  # noqa: F401
    import rich.text  # noqa: F401

    from ..render import gradebooks, grades, html as html_face  # noqa: F401
    from ..teaching import graderun, sandbox, sealed, similarity  # noqa: F401


def _sandbox_or_say() -> None:
    """Python submissions run in bubblewrap's sandbox where it works; $GRADCHECK_SANDBOX=required
    refuses to grade without it, and without it the teacher is told (once, on standard error)."""
    from ..teaching.sandbox import MODES, bubblewrap, mode
    if mode() is None:
        _fail_usage(f"GRADCHECK_SANDBOX must be one of {', '.join(MODES)}, not "
                    f"{os.environ.get('GRADCHECK_SANDBOX', '')[:40]!r}")
    if bubblewrap() is not None:
        return
    if mode() == "required":
        _fail_usage("GRADCHECK_SANDBOX=required, but bubblewrap (bwrap) cannot start a sandbox here: install "
                    "Debian's package bubblewrap, or allow unprivileged user namespaces")
    why = "GRADCHECK_SANDBOX=off" if mode() == "off" else "bubblewrap (bwrap) cannot start a sandbox here"
    click.echo(f"note: {why}: submissions run without the OS sandbox (what still holds: docs/grading.md)", err=True)


def _progress(total: int):
    """`graded 3/25` on standard error when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    done = [0]

    def tell(_graded):
        done[0] += 1
        click.echo(f"\rgraded {done[0]}/{total}", err=True, nl=done[0] == total)
    return tell
