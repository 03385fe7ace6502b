"""Jupyter: the `%%gradcheck` cell magic (the cell is a `.grad` program), the `%gradcheck FILE...`
line magic, and what every report shows itself as in a notebook — HTML that leads with the culprit
(with a plain-text fallback for consoles and exports)."""

from __future__ import annotations

import argparse
import shlex

from .checking.checker import check, check_graph
from .core.errors import GradcheckError, UsageError
from .checking.files import check_file, check_paths
from .render.common import failure_lines, summary
from .render.html import explain_frame, fragment, picture, report_block
from .render.teach import explain_text
from .core.report import CheckReport, RunReport
from .core.report import faults as faults_of
from .core.settings import Settings
from .teaching.teach import Explanation


def bundle(obj) -> dict:
    """The MIME bundle of a report (a check, a Python check, a run) or of an explanation."""
    if isinstance(obj, Explanation):
        faults = faults_of(check_graph(obj.graph))
        # the page with its circuit to step through, in an iframe: its script and ids stay its own
        return {"text/html": explain_frame(obj, faults), "text/plain": explain_text(obj, faults)}
    reports = obj.results if isinstance(obj, RunReport) else [obj]
    run = obj if isinstance(obj, RunReport) else RunReport([obj], noun="layer" if obj.path else "file")
    html = "".join(f"<section>{report_block(r, r.picture)}</section>" for r in reports)
    if len(reports) > 1:
        html = f"<p>{summary(run)}</p>{html}"
    text = [summary(run)] + [line for r in reports for line in
                             ([r.error.format()] if r.error is not None else failure_lines(r))]
    return {"text/html": fragment(html), "text/plain": "\n".join(text)}


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, add_help=False, exit_on_error=False)
    parser.add_argument("--at", action="append", default=[], help="NAME=VALUE: set a leaf")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--rtol", type=float)
    parser.add_argument("--atol", type=float)
    parser.add_argument("--step", type=float)
    parser.add_argument("--budget", type=int)
    parser.add_argument("--symbolic-budget", type=int)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--no-symbolic", action="store_true")
    parser.add_argument("--no-complex-step", action="store_true")
    parser.add_argument("--order", type=int, choices=(1, 2))
    parser.add_argument("--no-picture", action="store_true", help="leave the circuit out")
    return parser


def options(line: str, prog: str) -> tuple:
    """(check keyword arguments, --at values, the remaining words, draw the circuit?) from a magic's
    line; a bad option is a UsageError naming it (shown by IPython without a traceback)."""
    try:
        words = shlex.split(line)
        found, rest = _parser(prog).parse_known_args(words)
    except (ValueError, argparse.ArgumentError) as err:
        raise UsageError(f"%{prog}: {err}") from None
    unknown = [w for w in rest if w.startswith("-") and w != "-"]
    if unknown:
        raise UsageError(f"%{prog}: unknown option {unknown[0]} (options: --at NAME=VALUE, --seed, --rtol, --atol, "
                         "--step, --budget, --symbolic-budget, --strict, --no-symbolic, --no-complex-step, "
                         "--order 2, --no-picture)")
    at = {}
    for item in found.at:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"%{prog}: --at takes NAME=VALUE, not {item!r}")
        at[name.strip()] = value
    flags = {k: v for k, v in (("seed", found.seed), ("rtol", found.rtol), ("atol", found.atol),
                               ("step", found.step), ("budget", found.budget),
                               ("symbolic_budget", found.symbolic_budget), ("order", found.order)) if v is not None}
    if found.strict:
        flags["strict"] = True
    if found.no_symbolic:
        flags["symbolic"] = False
    if found.no_complex_step:
        flags["complex_step"] = False
    return flags, at, rest, not found.no_picture


def check_cell(line: str, cell: str) -> CheckReport:
    """`%%gradcheck [options]`: the cell checked as a `.grad` program."""
    flags, at, rest, draw = options(line, "%gradcheck")
    if rest:
            raise UsageError(f"%%gradcheck takes options only, not {rest[0]!r} (the cell is the program)")
    settings = Settings().with_flags(**flags)
    report = check(cell, source="cell", at=at, settings=settings)
    report.text = cell
    report.rerun = f"%%gradcheck --seed {settings.seed}" + "".join(f" --at {shlex.quote(f'{k}={v}')}" for k, v in at.items())
    if draw and report.error is None:
        report.picture = picture(report)
    return report


def check_files_line(line: str):
    """`%gradcheck FILE... [options]`: `.grad` files or directories, one report (or a run of several)."""
    flags, at, paths, draw = options(line, "gradcheck")
    if not paths:
        raise UsageError("%gradcheck FILE...: name a .grad file or a directory (or use %%gradcheck on a cell)")
    settings = Settings().with_flags(**flags)
    try:
        if len(paths) == 1 and paths[0].endswith(".grad"):
            reports = [check_file(paths[0], settings, at=at)]
            result = reports[0]
        else:
            result = check_paths(paths, settings, at=at)
            reports = result.results
    except GradcheckError as err:
        raise UsageError(f"%gradcheck: {err.message}") from None
    for r in reports:
        if draw and r.error is None:
            r.picture = picture(r)
    return result


def register(ipython) -> None:
    """Register the magics with an IPython shell (`%load_ext gradcheck_cli`)."""
    from IPython.core.error import UsageError as IPythonUsageError


    def run(fn, *args):
        try:
            return fn(*args)
        except UsageError as err:  # shown as one line, never a traceback
            raise IPythonUsageError(err.message) from None

    ipython.register_magic_function(lambda line, cell: run(check_cell, line, cell), "cell", "gradcheck")
    ipython.register_magic_function(lambda line: run(check_files_line, line), "line", "gradcheck")
