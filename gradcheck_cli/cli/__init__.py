"""The `gradcheck` command line: parse options, call the library, render, set the exit code.

numpy, sympy and rich are imported inside the commands, so `gradcheck --help` stays instant.
"""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from .common import _fail_usage, _silence_stdout

class Interrupted(BaseException):
    """Ctrl-C. A BaseException of our own, so click does not turn it into 'Aborted!' and exit 1."""


def _interrupt(signum, frame):
    raise Interrupted


def entry() -> None:
    """The `gradcheck` console script: run the command (`invoke`), then leave without tearing the
    interpreter down.

    A check builds many SymPy objects; freeing them one by one at exit, and the cyclic collector's
    passes over SymPy's import, took a quarter of a short run (0.25 s of ~1 s). Output is flushed
    and every file is closed by then (-o writes are atomic and done; a -j pool has been shut down).
    """
    one_blas_thread(os.environ)
    closed_to_our_user()
    code = invoke()
    forks = sys.modules.get("gradcheck_cli.python.forkserver")
    if forks is not None:  # check-py's fork server ended and waited for: its CPU time is counted in ours
        forks.shutdown()
    os._exit(code)


_PR_SET_DUMPABLE = 4


def closed_to_our_user() -> None:
    """The console script's process made not dumpable (prctl PR_SET_DUMPABLE 0): the code it runs, check-py's
    layer or a submission graded without the sandbox, is a process of the same user, which could otherwise
    open our descriptors and memory through /proc (write into our standard output, read our environment's
    secret) or trace us. A process that is not dumpable admits neither to any process without
    CAP_SYS_PTRACE (root's keep it). The processes it starts are dumpable again once they run a program (the fork
    server, the submissions). Linux only; elsewhere, and where prctl fails, nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: as before
        pass


BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")  # what OpenBLAS reads, in its order


def one_blas_thread(environ) -> None:
    """OpenBLAS on one thread in the console script's process and in those it starts (check-py's), unless
    the user set a count it reads (`BLAS_THREADS`); before numpy is imported, which reads it once.

    A check runs many small products, where a pool of threads costs more CPU than it saves (a small
    file: 0.31 s of CPU with two threads, 0.19 s with one; the reference network's check as fast), and a
    dot product or a matrix-vector product split among threads sums in an order that depends on how
    many cores the machine has, so its last bits did too."""
    if not any(name in environ for name in BLAS_THREADS):
        environ["OPENBLAS_NUM_THREADS"] = "1"


def invoke() -> int:
    """Run the command of `sys.argv` as the console script does, and give its exit code, its output
    flushed. The process stays as it was otherwise: check-py's fork servers are kept for the next
    call (a process that runs several commands, as the docs' tests do, imports torch or JAX once)."""
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
    return code or 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gradcheck")
def main():
    """Check backpropagation at every node of a gate graph: backprop against a
    numeric derivative (the complex step where the function is analytic, centered
    finite differences elsewhere) and SymPy's exact derivative.

    \b
    Exit codes: 0 every check passed · 1 a gradient check failed ·
                2 the input or the command line is wrong ·
                130 interrupted (Ctrl-C).
    """
    from ..core.errors import GradcheckError
    from ..core.limits import check_environment
    try:
        check_environment()
    except GradcheckError as err:
        _fail_usage(err.message)


from . import checking, grading, lsp, teaching  # noqa: E402,F401  (registers the commands on `main`)
