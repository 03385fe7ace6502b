"""The `gradcheck` command line: parse options, call the library, render, set the exit code."""

from __future__ import annotations

import os
import re
import sys
import tempfile

import click

from . import __version__

FORMATS = ("table", "json", "junit", "github", "markdown")
_AT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", re.S)


def _parse_at(values) -> dict:
    out = {}
    for item in values:
        m = _AT.match(item)
        if not m or not m.group(2).strip():
            raise click.BadParameter(f"'{item}': expected NAME=VALUE, e.g. --at x=1.5 or --at W='[[1,2],[3,4]]'",
                                     param_hint="--at")
        if m.group(1) in out:
            raise click.BadParameter(f"'{m.group(1)}' is given twice", param_hint="--at")
        out[m.group(1)] = m.group(2).strip()
    return out


def _console(file=None, width=None):
    from rich.console import Console
    return Console(file=file, width=width, highlight=False, soft_wrap=False)


def _write_atomically(path: str, text: str) -> None:
    """Write all of `text` or nothing: a temporary file renamed into place."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gradcheck-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _reuse_freed_memory() -> None:
    """Keep glibc from mmapping (and page-faulting) every large batch array afresh.

    The finite differences allocate many equal 8 MB arrays; glibc's default serves each from a new
    mmap until a free raises its threshold, which here cost ~40% of a tensor check. Process-wide,
    so the CLI sets it, not the library; a no-op where glibc's mallopt is absent.
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)
    except (OSError, AttributeError):
        pass


def _fail_usage(message: str):
    click.echo(f"gradcheck: error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gradcheck")
def main():
    """Check backpropagation at every node of a gate graph, three ways:
    backprop, centered finite differences, and SymPy's exact derivative.

    \b
    Exit codes: 0 every check passed · 1 a gradient check failed ·
                2 the input or the command line is wrong.
    """


@main.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("-e", "--expr", "expr", metavar="SRC", help="Check this source text instead of files; free names become leaves.")
@click.option("--at", "at", multiple=True, metavar="NAME=VALUE",
              help="Set a leaf's value (repeatable): a number, [1, 2], randn(3), ...")
@click.option("--seed", type=int, default=None, help="Seed for randn/rand and unset leaves [default: 0].")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Output format [default: table].")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Write the report to FILE.")
@click.option("--rtol", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Relative tolerance against finite differences [default: 1e-5].")
@click.option("--atol", type=click.FloatRange(min=0), default=None,
              help="Values both below this count as equal [default: 1e-8].")
@click.option("--step", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Relative step h (h = step·max(1,|v|)) [default: cbrt(eps) ≈ 6.1e-6].")
@click.option("--no-symbolic", "no_symbolic", is_flag=True, default=None, help="Skip the SymPy oracle.")
@click.option("--strict", is_flag=True, default=None, help="Count kink and warn rows as failures.")
@click.option("--expand", metavar="NODE", help="Also print every element of this tensor node.")
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Elements per file differenced one by one, leaves first; the rest by random "
                   "projections [default: 10000].")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Check files in N parallel processes (results keep their order) [default: 1].")
def check(targets, expr, at, seed, fmt, output, rtol, atol, step, no_symbolic, strict, expand, budget, jobs):
    """Check gradients at every node of TARGET files (or directories of *.grad files), or of -e SRC.

    Defaults come from [tool.gradcheck] in the nearest pyproject.toml; options given here win.
    """
    from .checker import DEFAULT_ATOL, DEFAULT_RTOL, check as run_check, check_paths_parallel, expand_targets
    from .config import load
    from .errors import GradcheckError
    from .numeric import DEFAULT_BUDGET
    from .report import RunReport

    _reuse_freed_memory()
    if expr is not None and targets:
        _fail_usage("give either TARGET files or -e SRC, not both")
    if expr is None and not targets:
        _fail_usage("nothing to check: give TARGET files or directories, or -e SRC (see --help)")
    try:
        config, _ = load()
    except GradcheckError as err:
        click.echo(err.format(), err=True)
        sys.exit(2)

    def pick(given, key, default):
        return given if given is not None else config.get(key, default)

    options = dict(at=_parse_at(at), seed=pick(seed, "seed", 0), rtol=pick(rtol, "rtol", DEFAULT_RTOL),
                   atol=pick(atol, "atol", DEFAULT_ATOL), step=pick(step, "step", None),
                   symbolic_check=not no_symbolic if no_symbolic else config.get("symbolic", True),
                   strict=pick(strict, "strict", False), budget=pick(budget, "budget", DEFAULT_BUDGET))
    fmt = pick(fmt, "format", "table")
    if expr is not None:
        run = RunReport([run_check(expr, source="<expr>", free_names=True, **options)])
    else:
        try:
            files = expand_targets(targets)
        except GradcheckError as err:
            _fail_usage(err.message)
        run = check_paths_parallel(files, pick(jobs, "jobs", 1), **options)
    _emit(run, fmt, output, expand)
    _github_step_summary(run, fmt)
    sys.exit(run.exit_code())


def _github_step_summary(run, fmt: str) -> None:
    """With --format github inside GitHub Actions, append a Markdown summary to the job's page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if fmt != "github" or not path:
        return
    from .render import render_markdown
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(render_markdown(run))
    except OSError as err:
        click.echo(f"gradcheck: warning: cannot write $GITHUB_STEP_SUMMARY ({err})", err=True)


def _emit(run, fmt: str, output: str | None, expand: str | None) -> None:
    from io import StringIO
    from .render import render_github, render_json, render_junit, render_markdown, render_table

    for report in run.results:
        if report.error is not None:
            click.echo(report.error.format(), err=True)
    ok = type(run)([r for r in run.results if r.error is None])
    machine = {"json": lambda r: render_json(r) + "\n", "junit": render_junit, "github": render_github,
               "markdown": render_markdown}
    if fmt in machine:
        text = machine[fmt](run)
    else:
        if not ok.results and not output:
            return
        buffer = StringIO()
        width = None if output is None else 120
        console = _console(buffer, width) if output else _console()
        if output is None:
            render_table(ok, console, expand)
            return
        render_table(ok, console, expand)
        text = buffer.getvalue()
    if output:
        _write_atomically(output, text)
    else:
        click.echo(text, nl=False)


@main.command()
def gates():
    """List every gate with its local gradient and how it routes the gradient."""
    from rich.table import Table
    from .gates import REGISTRY

    table = Table(show_edge=False, header_style="bold")
    table.add_column("gate", no_wrap=True)
    table.add_column("written", no_wrap=True)
    table.add_column("local gradient")
    table.add_column("routes the gradient")
    for gate in REGISTRY.values():
        written = gate.operator or (f"{gate.call}(...)" if gate.call else "")
        if gate.const_forms:
            written = ", ".join(f"{'c ' + f.operator + ' x' if f.side == 'left' else 'x ' + f.operator + ' c'}"
                                if f.side != "either" else f"x {f.operator} c" for f in gate.const_forms)
        table.add_row(gate.display({"c": 1.0}) if gate.const_forms else gate.display({}), written,
                      gate.local, gate.routes)
    _console().print(table)
