"""Shared helpers for the test suite."""

pytest_plugins = ["pytester"]

import atexit
import compileall
import gc
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from gradcheck_cli.cli import one_blas_thread

# Under CI the property tests draw the same examples every run: a red job is reproducible, never luck.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
EXPRESSIONS = ROOT / "expressions"

# The checks run in this process collect garbage as the console script's do (cli.entry): a check allocates
# many objects (SymPy's, a deep graph's), and the default thresholds' passes over them took 5-10% of a test's
# CPU (the side-by-side, cost and error tests, the 10,000-gate chain).
gc.set_threshold(20_000, 20, 20)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The suite runs in parallel where pytest-xdist is installed (the test extra): one worker per core
    unless `-n` is given (`-n0`: in this process), `--dist loadgroup` unless `--dist` is. Here, not in
    pyproject's addopts, so that `pytest FILE.grad` elsewhere in the repository (the docs' plugin
    example) runs as in the user's project. Before xdist's own hook reads the options (tryfirst,
    registered after it). A worker is handed the command line only, so it is told of loadgroup here."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    dist_given = any(a in ("-d", "--distload") or a.startswith("--dist") for a in config.invocation_params.args)
    if "PYTEST_XDIST_WORKER" in os.environ:
        if not dist_given:
            config.option.loadgroup = True
        return
    if config.getoption("numprocesses", None) is None:
        config.option.numprocesses = "auto"
    if config.option.dist == "no" and not dist_given:
        config.option.dist = "loadgroup"


def pytest_configure(config):
    """Once per run, before any worker starts (workers inherit the environment): gradcheck's bytecode
    compiled, so that the many processes the suite starts read it rather than compile every module
    again where PYTHONDONTWRITEBYTECODE is set; and SymPy's partials and Jacobians kept in a folder of this run's
    (GRADCHECK_CACHE_DIR), removed at its end, not in the user's cache; JAX's compiled operations shared
    by the run's processes in another (JAX_CACHE). And OpenBLAS on one thread, as the console script runs
    it (cli.one_blas_thread), in the workers and the processes they start: a pool of threads spinning
    between the many small products of a check cost the in-process tests about a tenth more CPU."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        atexit.register(_end_worker, config)
        return
    one_blas_thread(os.environ)
    compileall.compile_dir(str(ROOT / "gradcheck_cli"), quiet=2)
    if "GRADCHECK_CACHE_DIR" not in os.environ:
        config.gradcheck_cache = tempfile.mkdtemp(prefix="gradcheck-test-cache-")
        os.environ["GRADCHECK_CACHE_DIR"] = config.gradcheck_cache
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ and importlib.util.find_spec("filelock") is not None:
        config.jax_cache = tempfile.mkdtemp(prefix="gradcheck-test-jax-cache-")
        os.environ.update(JAX_COMPILATION_CACHE_DIR=config.jax_cache, **JAX_CACHE)


# JAX's persistent compilation cache, for this run's processes (check-py's children forked one per call, the
# JAX bodies' process, the oracles): each compiled every operation it ran afresh (XLA, ~25 ms an operation and
# shape, most of a JAX check's time), and now loads what another compiled: the same executable, the same bits.
# Every entry kept, however small or quick to compile; its size bounded, which makes JAX lock the folder
# (filelock) while it reads or writes it, so that the processes of the run never read an entry half written.
JAX_CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
             "JAX_COMPILATION_CACHE_MAX_SIZE": str(1 << 30)}


def _end_worker(config) -> None:
    """A worker whose session ended ends its process here, after the exit handlers registered since it
    started (check-py's fork servers, torch's, JAX's) and before those registered earlier: skipped is
    Python's own teardown of a heap of a thousand tests' modules and caches, a second or more of CPU
    for each worker while the run waits for it (nothing in it is the suite's to check)."""
    if getattr(config, "gradcheck_ended", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def pytest_unconfigure(config):
    config.gradcheck_ended = True
    folder = getattr(config, "gradcheck_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("GRADCHECK_CACHE_DIR", None)
    folder = getattr(config, "jax_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        for name in ("JAX_COMPILATION_CACHE_DIR", *JAX_CACHE):
            os.environ.pop(name, None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """A worker under loadgroup sends the controller each grouped test as `NODEID@GROUP`: xdist 3.8 does
    it by setting `item._nodeid`, which pytest 9 no longer reads (its node id is `_id`), so that every
    test was sent alone and a module's fixture ran once per worker. Done here where it did not take."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        marks = [m.args[0] if m.args else m.kwargs.get("name", "default") for m in item.iter_markers("xdist_group")]
        group = "_".join(sorted(set(map(str, marks))))
        if marks and not item.nodeid.endswith(f"@{group}") and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id
            item._id = coerce_node_id(f"{item.nodeid}@{group}")


def pytest_itemcollected(item):
    """Under pytest-xdist (see pytest_cmdline_main) the tests are spread over the workers one by one,
    except those sharing a fixture of this suite wider than a test (a module's graded class, its
    files, its language server): each such group runs on one worker, so that fixture runs once, not
    once per worker. Marked as each test is collected, before xdist reads the marks."""
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(info, "names_closure", ()):
        defs = info.name2fixturedefs.get(name)
        if defs and defs[-1].scope != "function" and defs[-1].baseid:  # ours (plugins' have no baseid)
            item.add_marker(pytest.mark.xdist_group(defs[-1].baseid))  # its module's (or conftest's folder)
            break


def gradcheck_in_process(*args, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m gradcheck_cli ARGS` (text mode, as `subprocess.run(..., capture_output=True,
    text=True, cwd=cwd, env=env)` gives it) run in this process by click's CliRunner: for the tests that
    are not about the process itself (its exit through the console script, signals, flushing, what it
    imports), it saves starting one. `env`, when given, is the whole environment, as for subprocess.
    An exception that escaped the command is raised here: a subprocess would have shown a traceback."""
    from click.testing import CliRunner

    from gradcheck_cli.cli import main
    overlay = None if env is None else {**{k: None for k in os.environ if k not in env}, **env}
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, [str(a) for a in args], env=overlay)
    finally:
        os.chdir(here)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def grade_in_process(*args, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`gradcheck grade ARGS` in this process (gradcheck_in_process): each submission still runs in a
    process of its own (a Python one sealed, a `.grad` one's worker a child of a fork server of the
    grade's). Those fork servers are kept for the next grade in this process, as a grade keeps them from
    one submission to the next: each worker is still forked from a server that has run nothing but its
    imports (their environment is the grade's own, not the caller's), and a server's start (gradcheck and
    SymPy imported, ~0.5 s of CPU) is paid once per slot, not once per command. They end with the process
    (forkserver's atexit), when a check-py family needs their room (forkserver.KEEP), or before a test
    outside tests/teaching/ (grade_servers_for_grading_tests)."""
    return gradcheck_in_process("grade", *args, cwd=cwd, env=env)


@pytest.fixture(autouse=True)
def grade_servers_for_grading_tests(request):
    """The fork servers grade_in_process keeps serve the grading tests (tests/teaching/) alone: any other
    test starts without them, as in a process of its own (the fork server's tests count the servers)."""
    forkserver = sys.modules.get("gradcheck_cli.python.forkserver")
    if forkserver is not None and not request.node.path.is_relative_to(ROOT / "tests" / "teaching"):
        forkserver.shutdown(forkserver.Work.GRADE)


@pytest.fixture(scope="session")
def jax_bodies(tmp_path_factory) -> dict:
    """The bodies of the JAX API test modules (tests/python/one_process.py's `share`), all in one process
    (JAX imported once, not once per module): {module: {"folder": its folder, name: its outcome}}."""
    from one_process import SHARED, run_shared
    return run_shared({module: tmp_path_factory.mktemp(module) for module in SHARED}, ROOT)


def rows(report) -> dict:
    """A report's node rows by name."""
    return {r.name: r for r in report.nodes}


def assert_positioned_error(source: str, fragment: str, line: int, col: int, name: str = "bad.grad"):
    """check() of `source` fails with a GradcheckError at line:col whose message has `fragment`,
    formatted as FILE:LINE:COL: error: ..., the source line and a caret under the column."""
    from gradcheck_cli import check
    from gradcheck_cli.core.errors import GradcheckError
    report = check(source, source=name)
    err = report.error
    assert isinstance(err, GradcheckError), f"no error for {source!r}"
    assert fragment in err.message, err.format()
    assert (err.line, err.col) == (line, col), err.format()
    text = err.format()
    assert text.startswith(f"{name}:{line}:{col}: error: ")
    if err.source_line() is not None and err.source_line().strip():
        shown, caret_line = text.splitlines()[-2:]
        assert caret_line.rstrip().endswith("^")
        at = caret_line.index("^")
        source_line = err.source_line().expandtabs(1)
        if len(source_line) <= 100:
            assert at == 2 + col - 1
        else:  # a long line is shown as a window around the column; the caret still points at it
            assert len(shown) <= 2 + 100 and shown[at] in (source_line[col - 1], "…")
    assert report.passed is False
    return err


def grad(report, name):
    return np.asarray(rows(report)[name].grad, dtype=float)


@pytest.fixture
def expressions_dir() -> Path:
    return EXPRESSIONS
