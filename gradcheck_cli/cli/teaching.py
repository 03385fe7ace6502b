"""The teaching commands: explain, graph, quiz, descend, gates."""

from __future__ import annotations

import sys

import click

from . import main
from .common import (OUTPUT, SEED, _AsciiFile, _console, _fail, _fail_usage, _guard_output, _parse_at, _pipe_safe,
                     _raise_broken_pipe, _write_atomically)

def _source_options(f):
    """TARGET or -e SRC, with --at and --seed: how the teaching commands take their function."""
    f = click.option("--seed", type=SEED, metavar="N", default=None, callback=_seed_here,
                     help="Seed for randn/rand and unset leaves [default: [tool.gradcheck]'s seed, else 0].")(f)
    f = click.option("--at", "at", multiple=True, metavar="NAME=VALUE", help="Set a leaf's value (repeatable).")(f)
    f = click.option("-e", "--expr", "expr", metavar="SRC", help="Use this source text; free names become leaves.")(f)
    return click.argument("target", required=False, type=click.Path())(f)


def _seed_here(ctx, param, seed):
    """--seed, else the seed `check` uses in this folder ([tool.gradcheck]'s, else 0): the same leaves get
    the same values in every command. A bad pyproject.toml is the error `check` gives for it."""
    if seed is not None:
        return seed
    from ..core.config import load as settings_here
    from ..core.errors import GradcheckError
    try:
        return settings_here()[0].seed
    except GradcheckError as err:
        _fail(err)


def _load(target, expr, at, seed):
    """The graph of TARGET or -e SRC, or exit 2 with the error."""
    from ..core.errors import GradcheckError
    from ..checking.files import read_source
    from ..language.frontend import load
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
    from ..core.errors import GradcheckError
    from ..teaching.teach import explain as run_explain
    graph = _load(target, expr, at, seed)
    try:
        return run_explain(graph)
    except GradcheckError as err:
        _fail(err, graph.source, graph.text)


def _newton(target, expr, at, seed, fmt, latex, output):
    """explain --order 2: one Newton step, as text."""
    from ..core.errors import GradcheckError
    from ..checking.hvp import newton
    from ..render.teach import newton_text
    if fmt != "text" or latex:
        _fail_usage("explain --order 2 writes text")
    graph = _load(target, expr, at, seed)
    try:
        step = newton(graph)
    except GradcheckError as err:
        _fail(err, graph.source, graph.text)
    text = newton_text(graph.source, graph.nodes[graph.output].name, step)
    if output:
        _write_atomically(output, text, [target])
    else:
        click.echo(text, nl=False)


def _faults(ex, seed):
    """What the check finds wrong in the circuit `ex` explains (the gates whose own backward fails)."""
    from ..checking.checker import check_graph
    from ..core.report import faults as faults_of
    from ..core.settings import Settings
    return faults_of(check_graph(ex.graph, Settings(seed=seed or 0)))


def _backward_failures(ex) -> None:
    """A hand-derived backward that could not run: say where (after the output), and exit 1."""
    _fail_backward(ex.errors, ex.source, ex.graph.text)


def _fail_backward(errors: list, source: str, text: str) -> None:
    from ..core.errors import GradcheckError
    if not errors:
        return
    for err in errors:
        located = GradcheckError(err.message, err.line, err.col).located(source, text)
        click.echo(located.format().replace(": error: ", ": error: the backward pass fails: ", 1), err=True)
    sys.exit(1)


@main.command(short_help="Show the chain rule step by step.")
@_source_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True,
              help="text, json, or html: one self-contained page with the circuit to step through.")
@click.option("--latex", is_flag=True, help="Print the backward steps as LaTeX (an align* block).")
@click.option("--order", type=click.IntRange(min=1, max=2), default=1, show_default=True,
              help="2: the gradient, the Hessian (forward-over-reverse) and one Newton step, for a small function.")
@click.option("-o", "--output", "output", type=OUTPUT, help="Write to FILE (whole or not at all).")
@_pipe_safe
def explain(target, expr, at, seed, fmt, latex, order, output):
    """The chain rule step by step: the forward pass, then each edge of the backward pass
    as upstream × local = downstream. --order 2: a Newton step."""
    from ..render.teach import explain_json, explain_latex, explain_text
    _guard_output(output, [target])
    if order == 2:
        _newton(target, expr, at, seed, fmt, latex, output)
        return
    ex = _explained(target, expr, at, seed)
    faults = _faults(ex, seed)
    if fmt == "html" and not latex:
        from ..render.html import explain_page
        text = explain_page(ex, faults)
    else:
        text = explain_latex(ex) if latex else explain_json(ex, faults) if fmt == "json" else explain_text(ex, faults)
    if output:
        _write_atomically(output, text, [target])
    else:
        click.echo(text, nl=False)
    _backward_failures(ex)


@main.command(short_help="Draw the circuit with its values and gradients.")
@_source_options
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "svg", "png"]), default="text", show_default=True,
              help="text: a tree in the terminal; dot: Graphviz source; svg/png: rendered by Graphviz (needs -o).")
@click.option("-o", "--output", "output", type=OUTPUT, help="Write to FILE.")
@click.option("--ascii", "ascii_only", is_flag=True, help="Draw the tree with ASCII characters only.")
@_pipe_safe
def graph(target, expr, at, seed, fmt, output, ascii_only):
    """The circuit: every gate with its value (green) and gradient (red); a gate whose own backward
    fails, and every wrong gradient, marked in red."""
    from ..core.errors import GradcheckError
    from ..render.circuit import circuit_dot, circuit_tree
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
        console = Console(file=target_file, highlight=False, emoji=False, width=120 if output else None,
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
    from ..render import graphviz
    try:
        _write_atomically(output, graphviz.render(dot_text, fmt, ex.graph.output + 1), [target])
    except GradcheckError as err:
        _fail_usage(err.message)
    _backward_failures(ex)


@main.command(short_help="Quiz yourself on each node's gradient.")
@_source_options
@click.option("--answers", type=click.Path(dir_okay=False, exists=True),
              help="Grade a file of `d<name> = value` lines instead of asking.")
@click.option("-o", "--output", "output", type=OUTPUT,
              help="Write the transcript to FILE (whole, at the end); at a terminal the quiz is still asked there.")
@_pipe_safe
def quiz(target, expr, at, seed, answers, output):
    """Asks for the gradient at each node in backward order, grades each answer and explains it.

    Exit 0 when every answer was right, 1 otherwise. Reads standard input when it is not a terminal.
    """
    import signal
    from ..render.teach import feedback_lines
    from ..teaching.teach import grad_name, quiz as questions_of
    from ..core.text import visible
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C leaves the quiz with its score (exit 1)
    _guard_output(output, [target, answers])
    ex = _explained(target, expr, at, seed)
    _backward_failures(ex)  # no quiz on a backward that cannot run
    questions = questions_of(ex)
    given = _answer_file(answers, [q.node for q in questions], ex.output) if answers else None
    interactive = given is None and sys.stdin is not None and sys.stdin.isatty()
    # With -o and nobody at a terminal, the transcript goes to FILE only; at a terminal, to both.
    say = _Transcript(echo=interactive or not output, inputs=[target, answers])
    say(f"Quiz on {visible(ex.source)}: the output is {ex.output}. Give d{ex.output}/d(node) for each node, "
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
        for line in feedback_lines(q, ok, written):
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


PIPED_TRIES = 3  # answers read from a pipe that are not values, before a question counts as unanswered


def _ask(prompt: str, interactive: bool, say: _Transcript) -> str | None:
    """One answer from the terminal or from stdin, asking again while it does not parse (from stdin,
    up to PIPED_TRIES lines); None when stdin runs out or every try was a typo."""
    from ..core.errors import GradcheckError
    from ..language.frontend import parse_value
    tries = 0
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
            tries += 1
            if interactive:
                say(f"  not a value: {err.message}")
            elif tries < PIPED_TRIES:
                left = PIPED_TRIES - tries
                say(f"  not a value: {err.message}; asked again ({left} {'tries' if left != 1 else 'try'} left)")
            else:
                say(f"  not a value: {err.message}")
                say(f"  no answer for {prompt} after {PIPED_TRIES} tries: counted as unanswered")
                return None


def _grade(written: str, answer) -> bool:
    from ..core.errors import GradcheckError
    from ..teaching.teach import grade
    try:
        return grade(written, answer)
    except GradcheckError:
        return False


def _answer_file(path: str, names: list, output: str) -> dict:
    """The answers in FILE, or exit 2 with the position of a bad line."""
    from ..teaching.answers import parse_answers
    from ..core.errors import GradcheckError
    from ..checking.files import read_source
    text = None
    try:
        text = read_source(path)
        return parse_answers(text, names, output)
    except GradcheckError as err:
        _fail(err, path, text)


@main.command(short_help="Run gradient descent on the leaves.")
@_source_options
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Learning rate η.")
@click.option("--steps", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many steps to take (0: just the starting point).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one row per step; json: every step's output and leaves, for a plot.")
@click.option("-o", "--output", "output", type=OUTPUT, help="Write to FILE (whole or not at all).")
@_pipe_safe
def descend(target, expr, at, seed, lr, steps, fmt, output):
    """Gradient descent x ← x − η∇f on the leaves (const leaves stay): the output and leaves per step."""
    from ..core.errors import BackwardError, GradcheckError
    from ..render.teach import descent_json, descent_table
    from ..teaching.teach import Diverged, descend as run_descend
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


@main.command(short_help="List every gate with its local gradient.")
@_pipe_safe
def gates():
    """List every gate with its local gradient and how it routes the gradient."""
    from ..render.gatelist import gate_lines, gate_table
    from ..render.notes import print_note
    console = _console()
    table = gate_table()
    if console.measure(table, options=console.options.update_width(100_000)).maximum <= console.width:
        console.print(table)
    else:  # a table that would wrap every row: one block per gate instead
        for line in gate_lines():
            print_note(console, line)
