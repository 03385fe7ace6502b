"""What every command shares: option parsing, consoles, writing -o FILE, errors and the exit."""

from __future__ import annotations

import os
import re
import sys

import click

from ..core.settings import FORMATS

_AT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", re.S)


class _Seed(click.ParamType):
    """A seed: a whole number from 0 to 2**63 - 1, checked as click's IntRange would, without its
    `[0<=x<=9223372036854775807]` in every --help."""
    name = "integer"

    def convert(self, value, param, ctx):
        try:
            n = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a valid integer.", param, ctx)
        if not 0 <= n <= 2 ** 63 - 1:
            self.fail(f"{n} is not a seed: give a whole number from 0 to 2**63 - 1.", param, ctx)
        return n


SEED = _Seed()


def _parse_at(values) -> dict:
    out = {}
    for item in values:
        if item.strip().startswith("@"):  # --at @FILE.json: a point's values, {"x": [[...]], ...}
            for name, value in _at_file(item.strip()[1:]).items():
                if name in out:
                    raise click.BadParameter(f"'{name}' is given twice", param_hint="--at")
                out[name] = value
            continue
        m = _AT.match(item)
        if not m or not m.group(2).strip():
            raise click.BadParameter(f"'{item}': expected NAME=VALUE, e.g. --at x=1.5 or --at W='[[1,2],[3,4]]'",
                                     param_hint="--at")
        if m.group(1) in out:
            raise click.BadParameter(f"'{m.group(1)}' is given twice", param_hint="--at")
        out[m.group(1)] = m.group(2).strip()
    return out


def _at_file(path: str) -> dict:
    """`--at @FILE`: a JSON object of input names and values (numbers, or arrays as nested lists), as
    `gradcheck grade --feedback` writes the point a part failed at; its size and nesting are checked
    before it is decoded."""
    import json
    from ..core.limits import MAX_FILE_BYTES, MAX_NDIM
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # (a FIFO nobody writes: no hang)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise click.BadParameter(f"'@{path}': not a regular file", param_hint="--at")
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise click.BadParameter(f"'@{path}': {err.strerror}", param_hint="--at") from None
    if len(data) > MAX_FILE_BYTES:
        raise click.BadParameter(f"'@{path}': more than {MAX_FILE_BYTES:,} bytes", param_hint="--at")
    depth = deepest = 0
    for c in data:
        depth += (c in b"[{") - (c in b"]}")
        deepest = max(deepest, depth)
    try:
        if deepest > MAX_NDIM + 1:
            raise ValueError(f"nested more than {MAX_NDIM} deep")
        value = json.loads(data.decode("utf-8"))
        if not isinstance(value, dict) or not all(_AT.match(f"{k}=") for k in value):
            raise ValueError('expected an object of input names and values, {"x": [[1, 2]], ...}')
    except ValueError as err:
        raise click.BadParameter(f"'@{path}': {err}", param_hint="--at") from None
    return value


def _console(file=None, width=None, color: bool | None = None):
    """A rich console: colour as the terminal and NO_COLOR say, unless --color/--no-color decides."""
    from rich.console import Console
    options = {} if color is None else ({"force_terminal": True} if color else {"no_color": True, "color_system": None})
    # emoji=False: user text (a file's name, a gate's) is shown as written, never a `:name:` read as an emoji
    console = Console(file=file, width=width, highlight=False, soft_wrap=False, emoji=False, **options)
    console.on_broken_pipe = _raise_broken_pipe  # rich would exit 1; a closed pipe is not a failed check
    return console


def _raise_broken_pipe():
    raise BrokenPipeError


def _write_atomically(path: str, data, inputs=()) -> None:
    """Write to -o FILE (see writer.py), or exit 2 saying why it cannot be written."""
    from ..core.errors import GradcheckError
    from ..core.writer import write_file
    try:
        write_file(path, data, inputs)
    except GradcheckError as err:
        _fail_usage(err.message)


def _guard_output(output, inputs, *, python: bool = False) -> None:
    """Before any work: -o must not name a file this run reads (by any name), nor one with other hard links;
    with `python` (check-py, whose targets import what they like), nor an existing Python source file."""
    if not output:
        return
    from ..core.writer import refusal
    why = refusal(output, inputs)
    if why:
        _fail_usage(why)
    if python and str(output).endswith((".py", ".pyi")) and os.path.isfile(output):
        _fail_usage(f"-o {output} is Python source, which the code this run checks may import: the report would "
                    "replace it; write it elsewhere")


def _read_besides(config_path, at) -> list:
    """The files a run reads besides its targets: the pyproject.toml its settings came from, and each
    `--at @FILE.json`. -o must not replace them either."""
    return ([str(config_path)] if config_path else []) + [item.strip()[1:] for item in at or ()
                                                          if isinstance(item, str) and item.strip().startswith("@")]


def _silence_stdout() -> None:
    """The reader of our output went away (`| head`): drop the rest quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


class _AsciiFile:
    """A text stream that reports an ASCII encoding, so rich draws with ASCII characters only."""
    encoding = "ascii"

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(text)

    def flush(self):
        return self._stream.flush()

    def isatty(self):
        return False


def _pipe_safe(command):
    """A teaching command whose reader goes away (`| head`) stops quietly with exit 0."""
    import functools

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            _silence_stdout()
            sys.exit(0)
    return run


def _fail_usage(message: str):
    """Print a usage error and exit 2: a file name or value of the command line in it shown as itself
    (its control characters as escapes: `visible`), never acted on by the terminal."""
    click.echo(_shown(f"gradcheck: error: {message}"), err=True)
    sys.exit(2)


def _fail(err, source=None, text=None):
    """Print a GradcheckError (located at `source`, `text` when it is not yet) and exit 2."""
    if source is not None:
        err = err.located(source, text)
    click.echo(_shown(err.format()), err=True)
    sys.exit(2)


def _shown(text: str) -> str:
    from ..core.text import visible_lines
    return visible_lines(text)


class _Output(click.Path):
    """-o FILE: `-o -` is standard output, as without -o (never a file named "-")."""

    def convert(self, value, param, ctx):
        return None if value == "-" else super().convert(value, param, ctx)


OUTPUT = _Output(dir_okay=False)


def _report_options(f):
    """The options `check` and `check-py` share: the point's seed, the tolerances, what is printed and how."""
    options = [
        click.option("--seed", type=SEED, metavar="N", default=None,
                     help="Seed for randn/rand, unset leaves and the inputs [default: 0]."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Output format [default: table]."),
        click.option("-o", "--output", "output", type=OUTPUT, help="Write the report to FILE (-: standard output)."),
        click.option("--rtol", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
                     help="Relative tolerance against finite differences [default: 1e-5]."),
        click.option("--atol", type=click.FloatRange(min=0), default=None,
                     help="An absolute floor for every tolerance [default: 0: each row's own scale sets it]."),
        click.option("--step", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
                     help="Relative step h (h = step·max(1,|v|)) [default: cbrt(eps) ≈ 6.1e-6]."),
        click.option("--strict", is_flag=True, default=None, help="Count kink and warn rows as failures."),
        click.option("--expand", metavar="NODE", help="Also print every element of this tensor node (or input)."),
        click.option("--budget", type=click.IntRange(min=1), default=None,
                     help="Elements per check differenced one by one; the rest by random projections [default: 10000]."),
        click.option("-q", "--quiet", is_flag=True, help="Print only what fails, and the summary."),
        click.option("--exit-zero", "exit_zero", is_flag=True,
                     help="Exit 0 even when a check fails (input errors still exit 2)."),
        click.option("--color/--no-color", "color", default=None,
                     help="Force colour on or off [default: on for a terminal, off with NO_COLOR]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _check_expand(run, name: str) -> None:
    """--expand NODE must name a node of some checked file."""
    from ..core.errors import did_you_mean
    names = [r.name for report in run.results for r in report.nodes]
    if names and name not in names:
        _fail_usage(f"--expand: no node '{name}'{did_you_mean(name, names)} (nodes: {', '.join(dict.fromkeys(names))})"[:400])


def _finish(run, fmt: str, output, expand, quiet: bool = False, verbose: bool = False, color=None,
            exit_zero: bool = False):
    """Render the run, append the GitHub step summary, and exit with the run's code."""
    if expand is not None:
        _check_expand(run, expand)
    try:
        _emit(run, fmt, output, expand, quiet=quiet, verbose=verbose, color=color)
    except BrokenPipeError:  # a closed pipe is not a failed check: the exit code still says how it went
        _silence_stdout()
    _github_step_summary(run, fmt)
    code = run.exit_code()
    sys.exit(0 if exit_zero and code == 1 else code)


def _github_step_summary(run, fmt: str) -> None:
    """With --format github inside GitHub Actions, append a Markdown summary to the job's page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if fmt != "github" or not path:
        return
    from ..render import render
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(render(run, "markdown"))
    except OSError as err:
        click.echo(f"gradcheck: warning: cannot write $GITHUB_STEP_SUMMARY ({err})", err=True)


def _emit(run, fmt: str, output: str | None, expand: str | None, quiet: bool = False, verbose: bool = False,
          color: bool | None = None) -> None:
    from io import StringIO
    from ..render import MACHINE_FORMATS, render
    from ..render.table import print_table

    for report in run.results:
        if report.error is not None:  # a file name's control characters escaped, as every face shows them
            click.echo(_shown(report.error.format()), err=True)
    if fmt in MACHINE_FORMATS:
        text = render(run, fmt)
    elif output is None:
        if any(r.error is None for r in run.results) or len(run.results) > 1 or run.not_checked:
            print_table(run, _console(color=color), expand, quiet, verbose, errors_shown=True)
        return
    else:
        buffer = StringIO()
        print_table(run, _console(buffer, 120, color=False), expand, quiet, verbose, errors_shown=True)
        text = buffer.getvalue()
    if output:
        _write_atomically(output, text, [r.source for r in run.results] + [r.path for r in run.results if r.path])
    else:
        click.echo(text, nl=False)
