"""The `gradcheck` command line: parse options, call the library, render, set the exit code.

numpy, sympy and rich are imported inside the commands, so `gradcheck --help` stays instant.
"""

from __future__ import annotations

import os
import re
import sys

import click

from . import __version__
from .settings import FORMATS

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


def _console(file=None, width=None, color: bool | None = None):
    """A rich console: colour as the terminal and NO_COLOR say, unless --color/--no-color decides."""
    from rich.console import Console
    options = {} if color is None else ({"force_terminal": True} if color else {"no_color": True, "color_system": None})
    console = Console(file=file, width=width, highlight=False, soft_wrap=False, **options)
    console.on_broken_pipe = _raise_broken_pipe  # rich would exit 1; a closed pipe is not a failed check
    return console


def _raise_broken_pipe():
    raise BrokenPipeError


def _write_atomically(path: str, data, inputs=()) -> None:
    """Write to -o FILE (see writer.py), or exit 2 saying why it cannot be written."""
    from .errors import GradcheckError
    from .writer import write_file
    try:
        write_file(path, data, inputs)
    except GradcheckError as err:
        _fail_usage(err.message)


def _guard_output(output, inputs) -> None:
    """Before any work: -o must not name a file this run reads (by any name), nor one with other hard links."""
    from .writer import refusal
    why = refusal(output, inputs) if output else None
    if why:
        _fail_usage(why)


def _silence_stdout() -> None:
    """The reader of our output went away (`| head`): drop the rest quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


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
    click.echo(f"gradcheck: error: {message}", err=True)
    sys.exit(2)


def _fail(err, source=None, text=None):
    """Print a GradcheckError (located at `source`, `text` when it is not yet) and exit 2."""
    if source is not None:
        err = err.located(source, text)
    click.echo(err.format(), err=True)
    sys.exit(2)


class Interrupted(BaseException):
    """Ctrl-C. A BaseException of our own, so click does not turn it into 'Aborted!' and exit 1."""


def _interrupt(signum, frame):
    raise Interrupted


def entry() -> None:
    """The `gradcheck` console script: run the command, then leave without tearing the interpreter down.

    A check builds many SymPy objects; freeing them one by one at exit, and the cyclic collector's
    passes over SymPy's import, took a quarter of a short run (0.25 s of ~1 s). Output is flushed
    and every file is closed by then (-o writes are atomic and done; a -j pool has been shut down).
    """
    import gc
    gc.set_threshold(20_000, 20, 20)
    import signal
    for name in ("stdout", "stderr"):  # started with that stream closed (`>&-`): write nowhere, keep the exit code
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
    signal.signal(signal.SIGINT, _interrupt)
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    except Interrupted:  # Ctrl-C: not "a check failed" (1) but the shell's 128 + SIGINT
        click.echo("\ngradcheck: interrupted", err=True)
        code = 130
    if code is not None and not isinstance(code, int):
        click.echo(code, err=True)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        _silence_stdout()
    os._exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gradcheck")
def main():
    """Check backpropagation at every node of a gate graph, three ways:
    backprop, centered finite differences, and SymPy's exact derivative.

    \b
    Exit codes: 0 every check passed · 1 a gradient check failed ·
                2 the input or the command line is wrong.
    """
    from .errors import GradcheckError
    from .limits import check_environment
    try:
        check_environment()
    except GradcheckError as err:
        _fail_usage(err.message)


def _report_options(f):
    """The options `check` and `check-py` share: the point's seed, the tolerances, what is printed and how."""
    options = [
        click.option("--seed", type=click.IntRange(min=0, max=2 ** 63 - 1), default=None,
                     help="Seed for randn/rand, unset leaves and the inputs [default: 0]."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Output format [default: table]."),
        click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Write the report to FILE."),
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


@main.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("-e", "--expr", "expr", metavar="SRC", help="Check this source text instead of files; free names become leaves.")
@click.option("--at", "at", multiple=True, metavar="NAME=VALUE",
              help="Set a leaf's value (repeatable): a number, [1, 2], randn(3), ...")
@_report_options
@click.option("--no-symbolic", "no_symbolic", is_flag=True, default=None, help="Skip the SymPy oracle.")
@click.option("--symbolic-budget", "symbolic_budget", type=click.IntRange(min=1), default=None,
              help="Expression nodes SymPy's derivatives may visit per file (work, not time) [default: 1000000].")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Check files in N parallel processes (results keep their order) [default: 1].")
@click.option("-v", "--verbose", is_flag=True, help="Also print each gate's own check.")
@click.option("-x", "--exitfirst", is_flag=True, help="Stop after the first file that fails.")
def check(targets, expr, at, seed, fmt, output, rtol, atol, step, no_symbolic, strict, expand, budget,
          symbolic_budget, jobs, quiet, verbose, exitfirst, exit_zero, color):
    """Check gradients at every node of TARGET files (or directories of *.grad files), or of -e SRC.

    Defaults come from [tool.gradcheck] in the nearest pyproject.toml; options given here win.
    """
    from .checker import check as check_text
    from .config import load
    from .errors import GradcheckError
    from .files import check_files, expand_targets
    from .report import RunReport

    _reuse_freed_memory()
    at = _parse_at(at)  # first: `--at x 3` is a malformed --at, not a file named 3
    if expr is not None and targets:
        _fail_usage("give either TARGET files or -e SRC, not both")
    if expr is None and not targets:
        _fail_usage("nothing to check: give TARGET files or directories, or -e SRC (see --help)")
    try:
        config, _ = load()
        settings = config.with_flags(seed=seed, format=fmt, rtol=rtol, atol=atol, step=step, strict=strict,
                                     symbolic=False if no_symbolic else None, budget=budget,
                                     symbolic_budget=symbolic_budget, jobs=jobs)
    except GradcheckError as err:
        _fail(err)
    if expr is not None:
        run = RunReport([check_text(expr, source="<expr>", at=at, free_names=True, settings=settings)])
    else:
        try:
            files = expand_targets(targets)
        except GradcheckError as err:
            _fail_usage(err.message)
        _guard_output(output, files)
        with _progress(settings.format) as on_file:
            run = check_files(files, settings, exitfirst=exitfirst, on_file=on_file, at=at)
    _finish(run, settings.format, output, expand, quiet=quiet, verbose=verbose, color=color, exit_zero=exit_zero)


class _progress:
    """A spinner on standard error naming the file being checked: only for the table with standard
    error a terminal, so logs, pipes, CI and machine formats never see it."""

    def __init__(self, fmt: str):
        self.status = None
        if fmt == "table" and sys.stderr.isatty() and not os.environ.get("CI"):
            from rich.console import Console
            self.status = Console(stderr=True).status("checking ...")

    def __enter__(self):
        if self.status is None:
            return None
        self.status.start()
        return lambda done, total, path: self.status.update(f"checking {path} ({done + 1 if done < total else done}/{total})")

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.stop()
        return False


def _check_expand(run, name: str) -> None:
    """--expand NODE must name a node of some checked file."""
    from .errors import did_you_mean
    names = [r.name for report in run.results for r in report.nodes]
    if names and name not in names:
        _fail_usage(f"--expand: no node '{name}'{did_you_mean(name, names)} (nodes: {', '.join(dict.fromkeys(names))})"[:400])


_SHAPE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\d+(?:\s*[,x×]\s*\d+)*)?\s*$")


def _parse_shapes(values) -> dict:
    out = {}
    for item in values:
        m = _SHAPE.match(item)
        if not m:
            raise click.BadParameter(f"'{item}': expected NAME=D1,D2,..., e.g. --shape x=10,20,3 (NAME= for a scalar)",
                                     param_hint="--shape")
        dims = tuple(int(d) for d in re.split(r"\s*[,x×]\s*", m.group(2))) if m.group(2) else ()
        out[m.group(1)] = dims
    return out


def _parse_params(values) -> dict:
    import json
    import numpy as np
    out = {}
    for item in values:
        m = _AT.match(item)
        try:
            value = json.loads(m.group(2)) if m else None
        except ValueError as err:
            raise click.BadParameter(f"'{item}': the value is not JSON ({err})", param_hint="--param") from None
        if not m:
            raise click.BadParameter(f"'{item}': expected NAME=JSON, e.g. --param conv_param='{{\"stride\": 1, \"pad\": 1}}'",
                                     param_hint="--param")
        out[m.group(1)] = np.array(value) if isinstance(value, list) else value
    return out


@main.command("check-py")
@click.argument("targets", nargs=-1, required=True, metavar="FILE.py[::NAME]...")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D1,D2",
              help="A differentiated input and its shape, filled with seeded normal values (repeatable).")
@click.option("--at", "at", multiple=True, metavar="NAME=VALUE", help="A differentiated input's value: 1.5, [1, 2], randn(3), ...")
@click.option("--param", "params", multiple=True, metavar="NAME=JSON",
              help="An argument that is not differentiated (labels, conv_param, ...), as JSON (repeatable).")
@_report_options
def check_py(targets, shapes, at, params, seed, fmt, output, rtol, atol, step, strict, expand, budget, quiet,
             exit_zero, color):
    """Check your Python layers: FILE.py::NAME finds NAME_forward and NAME_backward (CS231n's
    convention; or NAME with NAME_vjp, or FILE.py::FORWARD,BACKWARD) and checks every input's
    gradient against finite differences, at the given point and at a second random one. FILE.py
    alone checks every NAME_forward/NAME_backward pair whose inputs are given (each takes the
    --shape, --at and --param entries it has parameters for). A composite layer that fails is
    blamed on the helper layer it calls whose own check fails.

    This imports FILE.py and runs its code, as pytest does. .grad files are never executed.

    \b
    gradcheck check-py layers.py::affine --shape x=10,20,3 --shape w=60,5 --shape b=5
    gradcheck check-py layers.py::conv --shape x=2,3,5,5 --shape w=4,3,3,3 --shape b=4 \\
        --param conv_param='{"stride": 1, "pad": 1}'
    """
    from .config import load
    from .errors import GradcheckError
    from .frontend import parse_value
    from .pycheck import source_text
    from .pymodule import check_spec, collect, used_params
    from .report import CheckReport, RunReport

    try:
        config, _ = load()
        settings = config.with_flags(seed=seed, format=fmt, rtol=rtol, atol=atol, step=step, strict=strict,
                                     budget=budget)
    except GradcheckError as err:
        _fail(err)
    shapes, params = _parse_shapes(shapes), _parse_params(params)
    _guard_output(output, [t.rpartition("::")[0] if "::" in t else t for t in targets])
    values = {}
    for name, text in _parse_at(at).items():
        try:
            values[name] = parse_value(text, settings.seed, f"--at {name}")
        except GradcheckError as err:
            _fail(err)
    results, skipped = [], []

    def failed(spec, err):
        report = CheckReport(spec, settings=settings)
        path = spec.rpartition("::")[0] or spec
        report.error = err.located(path, source_text(path))
        results.append(report)
    for target in targets:
        try:
            specs, left = ([target], []) if "::" in target else collect(target, shapes, values, params, settings)
        except GradcheckError as err:
            failed(target, err)
            continue
        skipped += left
        for spec in specs:
            try:
                chosen = (shapes, values, params) if "::" in target else used_params(spec, shapes, values, params)
                results.append(check_spec(spec, *chosen, settings))
            except GradcheckError as err:
                failed(spec, err)
    if not results:
        _fail_usage("no layer was checked:\n" + "\n".join(f"  {spec}: not checked: {why}" for spec, why in skipped))
    run = RunReport(results, skipped=skipped, noun="layer")
    _finish(run, settings.format, output, expand, quiet=quiet, color=color, exit_zero=exit_zero)


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
    from .render import render
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(render(run, "markdown"))
    except OSError as err:
        click.echo(f"gradcheck: warning: cannot write $GITHUB_STEP_SUMMARY ({err})", err=True)


def _emit(run, fmt: str, output: str | None, expand: str | None, quiet: bool = False, verbose: bool = False,
          color: bool | None = None) -> None:
    from io import StringIO
    from .render import MACHINE_FORMATS, render
    from .render.table import print_table

    for report in run.results:
        if report.error is not None:
            click.echo(report.error.format(), err=True)
    if fmt in MACHINE_FORMATS:
        text = render(run, fmt)
    elif output is None:
        if any(r.error is None for r in run.results) or len(run.results) > 1:
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


def _source_options(f):
    """TARGET or -e SRC, with --at and --seed: how the teaching commands take their function."""
    f = click.option("--seed", type=click.IntRange(min=0, max=2 ** 63 - 1), default=0, show_default=True,
                     help="Seed for randn/rand and unset leaves.")(f)
    f = click.option("--at", "at", multiple=True, metavar="NAME=VALUE", help="Set a leaf's value (repeatable).")(f)
    f = click.option("-e", "--expr", "expr", metavar="SRC", help="Use this source text; free names become leaves.")(f)
    return click.argument("target", required=False, type=click.Path())(f)


def _load(target, expr, at, seed):
    """The graph of TARGET or -e SRC, or exit 2 with the error."""
    from .errors import GradcheckError
    from .files import read_source
    from .frontend import load
    if (target is None) == (expr is None):
        _fail_usage("give one TARGET file or -e SRC")
    source, text = ("<expr>", expr) if expr is not None else (target, None)
    try:
        if text is None:
            text = read_source(target)
        return load(text, source, _parse_at(at), seed, free_names=expr is not None)
    except GradcheckError as err:
        _fail(err, source, text)


def _explained(target, expr, at, seed):
    from .errors import GradcheckError
    from .teach import explain as run_explain
    graph = _load(target, expr, at, seed)
    try:
        return run_explain(graph)
    except GradcheckError as err:
        _fail(err, graph.source, graph.text)


def _faults(ex, seed):
    """What the check finds wrong in the circuit `ex` explains (the gates whose own backward fails)."""
    from .checker import check_graph
    from .report import faults as faults_of
    from .settings import Settings
    return faults_of(check_graph(ex.graph, Settings(seed=seed or 0)))


def _backward_failures(ex) -> None:
    """A hand-derived backward that could not run: say where (after the output), and exit 1."""
    _fail_backward(ex.errors, ex.source, ex.graph.text)


def _fail_backward(errors: list, source: str, text: str) -> None:
    from .errors import GradcheckError
    if not errors:
        return
    for err in errors:
        located = GradcheckError(err.message, err.line, err.col).located(source, text)
        click.echo(located.format().replace(": error: ", ": error: the backward pass fails: ", 1), err=True)
    sys.exit(1)


@main.command()
@_source_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--latex", is_flag=True, help="Print the backward steps as LaTeX (an align* block).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Write to FILE (whole or not at all).")
@_pipe_safe
def explain(target, expr, at, seed, fmt, latex, output):
    """The chain rule step by step: the forward pass, then each edge of the backward pass
    as upstream × local = downstream."""
    from .render.teach import explain_json, explain_latex, explain_text
    _guard_output(output, [target])
    ex = _explained(target, expr, at, seed)
    faults = _faults(ex, seed)
    text = explain_latex(ex) if latex else explain_json(ex, faults) if fmt == "json" else explain_text(ex, faults)
    if output:
        _write_atomically(output, text, [target])
    else:
        click.echo(text, nl=False)
    _backward_failures(ex)


@main.command()
@_source_options
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "svg", "png"]), default="text", show_default=True,
              help="text: a tree in the terminal; dot: Graphviz source; svg/png: rendered by Graphviz (needs -o).")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Write to FILE.")
@click.option("--ascii", "ascii_only", is_flag=True, help="Draw the tree with ASCII characters only.")
@_pipe_safe
def graph(target, expr, at, seed, fmt, output, ascii_only):
    """The circuit: every gate with its value (green) and gradient (red); a gate whose own backward
    fails, and every wrong gradient, marked in red."""
    from .errors import GradcheckError
    from .render.circuit import circuit_dot, circuit_tree
    _guard_output(output, [target])
    ex = _explained(target, expr, at, seed)
    faults = _faults(ex, seed)
    if fmt == "text":
        from io import StringIO
        from rich.console import Console
        buffer = StringIO() if output else None
        target_file = buffer if output else sys.stdout
        if ascii_only:
            target_file = _AsciiFile(target_file)
        console = Console(file=target_file, highlight=False, width=120 if output else None,
                          **({"color_system": None} if output else {}))
        console.on_broken_pipe = _raise_broken_pipe
        console.print(circuit_tree(ex, ascii_only, faults))
        if output:
            _write_atomically(output, buffer.getvalue(), [target])
        _backward_failures(ex)
        return
    dot_text = circuit_dot(ex, faults)
    if fmt == "dot":
        if output:
            _write_atomically(output, dot_text, [target])
        else:
            click.echo(dot_text, nl=False)
        _backward_failures(ex)
        return
    if not output:
        _fail_usage(f"--format {fmt} writes an image: give -o FILE")
    from . import graphviz
    try:
        _write_atomically(output, graphviz.render(dot_text, fmt, ex.graph.output + 1), [target])
    except GradcheckError as err:
        _fail_usage(err.message)
    _backward_failures(ex)


@main.command()
@_source_options
@click.option("--answers", type=click.Path(dir_okay=False, exists=True),
              help="Grade a file of `d<name> = value` lines instead of asking.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
              help="Write the transcript to FILE (whole, at the end); at a terminal the quiz is still asked there.")
@_pipe_safe
def quiz(target, expr, at, seed, answers, output):
    """Asks for the gradient at each node in backward order, grades each answer and explains it.

    Exit 0 when every answer was right, 1 otherwise. Reads standard input when it is not a terminal.
    """
    import signal
    from .render.teach import feedback_lines
    from .teach import grad_name, quiz as questions_of
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C leaves the quiz with its score (exit 1)
    _guard_output(output, [target, answers])
    ex = _explained(target, expr, at, seed)
    _backward_failures(ex)  # no quiz on a backward that cannot run
    questions = questions_of(ex)
    given = _answer_file(answers, [q.node for q in questions], ex.output) if answers else None
    interactive = given is None and sys.stdin is not None and sys.stdin.isatty()
    # With -o and nobody at a terminal, the transcript goes to FILE only; at a terminal, to both.
    say = _Transcript(echo=interactive or not output, inputs=[target, answers])
    say(f"Quiz on {ex.source}: the output is {ex.output}. Give d{ex.output}/d(node) for each node, "
        "in backward order. Numbers or arrays, e.g. 0.39 or [1, 2].")
    right = 0
    for number, q in enumerate(questions):
        if given is not None:
            written = given.get(q.node)
            say(f"{grad_name(q.node)} = {written if written is not None else '(no answer)'}", wrap=False)
        else:
            try:
                written = _ask(grad_name(q.node), interactive, say)
            except click.exceptions.Abort:  # Ctrl-C or Ctrl-D at the terminal: leave the quiz
                say(f"\nquiz stopped after {number} of {len(questions)} questions; score: {right}/{number}")
                say.save(output)
                sys.exit(1)
        ok = written is not None and _grade(written, q.answer)
        right += ok
        for line in feedback_lines(q, ok):
            say(line)
    say(f"\nscore: {right}/{len(questions)}")
    say.save(output)
    sys.exit(0 if right == len(questions) else 1)


class _Transcript:
    """The quiz's lines: echoed, wrapped at the terminal's width (80 when unknown, at most 100,
    keeping indents), unless they go to -o FILE only; and kept for -o FILE."""

    def __init__(self, echo: bool = True, inputs=()):
        import shutil
        self.echo, self.lines, self.inputs = echo, [], [i for i in inputs if i]
        self.width = min(shutil.get_terminal_size((80, 24)).columns, 100)

    def __call__(self, text: str, wrap: bool = True, typed: bool = False) -> None:
        """A line of the quiz; `typed`: the answer someone typed at the terminal (already on it)."""
        import textwrap
        for line in text.split("\n"):
            indent = " " * (len(line) - len(line.lstrip(" ")))
            if wrap and line.strip():
                line = textwrap.fill(line, width=self.width, subsequent_indent=indent + "    ",
                                     break_long_words=False, break_on_hyphens=False)
            self.lines.append(line)
            if self.echo and not typed:
                click.echo(line)

    def save(self, output: str | None) -> None:
        if output:
            _write_atomically(output, "\n".join(self.lines) + "\n", self.inputs)


def _ask(prompt: str, interactive: bool, say: _Transcript) -> str | None:
    """One answer from the terminal (asking again if it does not parse) or one line of stdin."""
    from .errors import GradcheckError
    from .frontend import parse_value
    while True:
        if interactive:
            try:
                text = click.prompt(prompt, prompt_suffix=" = ", default="", show_default=False)
            except (click.exceptions.Abort, EOFError):
                raise click.exceptions.Abort() from None
            say(f"{prompt} = {text}", wrap=False, typed=True)
        else:
            line = sys.stdin.readline() if sys.stdin is not None else ""  # closed (`<&-`): no answers
            if not line:
                say(f"{prompt} = (no answer)", wrap=False)  # piped answers ran out
                return None
            text = line.rstrip("\r\n")
            say(f"{prompt} = {text}", wrap=False)
        try:
            parse_value(text, name="the answer")
            return text
        except GradcheckError as err:
            say(f"  not a value: {err.message}")
            if not interactive:
                return None


def _grade(written: str, answer) -> bool:
    from .errors import GradcheckError
    from .teach import grade
    try:
        return grade(written, answer)
    except GradcheckError:
        return False


def _answer_file(path: str, names: list, output: str) -> dict:
    """The answers in FILE, or exit 2 with the position of a bad line."""
    from .answers import parse_answers
    from .errors import GradcheckError
    from .files import read_source
    text = None
    try:
        text = read_source(path)
        return parse_answers(text, names, output)
    except GradcheckError as err:
        _fail(err, path, text)


@main.command()
@_source_options
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Learning rate η.")
@click.option("--steps", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="Write to FILE (whole or not at all).")
@_pipe_safe
def descend(target, expr, at, seed, lr, steps, fmt, output):
    """Gradient descent x ← x − η∇f on the leaves (const leaves stay): the output and leaves per step."""
    from .errors import BackwardError, GradcheckError
    from .render.teach import descent_json, descent_table
    from .teach import Diverged, descend as run_descend
    _guard_output(output, [target])
    graph = _load(target, expr, at, seed)
    try:
        history = run_descend(graph, lr, steps)
    except BackwardError as err:
        _fail_backward([err], graph.source, graph.text)
    except Diverged as err:
        click.echo(err.error.located(graph.source, graph.text).format(), err=True)
        click.echo(f"gradcheck: the descent diverged at step {err.step} (the function left its domain "
                   "or overflowed); try a smaller --lr", err=True)
        sys.exit(1)
    except GradcheckError as err:
        _fail(err, graph.source, graph.text)
    if fmt == "json":
        text = descent_json(history)
    else:
        from io import StringIO
        buffer = StringIO() if output else None
        _console(buffer, 120 if output else None, color=False if output else None).print(descent_table(history))
        if not output:
            return
        text = buffer.getvalue()
    if output:
        _write_atomically(output, text, [target])
    else:
        click.echo(text, nl=False)


@main.command()
@_pipe_safe
def gates():
    """List every gate with its local gradient and how it routes the gradient."""
    from .render.gatelist import gate_lines, gate_table
    from .render.table import print_note
    console = _console()
    table = gate_table()
    if console.measure(table, options=console.options.update_width(100_000)).maximum <= console.width:
        console.print(table)
    else:  # a table that would wrap every row: one block per gate instead
        for line in gate_lines():
            print_note(console, line)
