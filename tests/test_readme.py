"""The README and the docs are executable: every `console` block of README.md and of every page in
docs/ (docs/*.md) is run, and what it prints must be what the block shows.

Each `$ COMMAND` line is run by bash from the repository's root, standard error merged into
standard output, in an 80-column terminal that is not a tty (`COLUMNS=80`, `NO_COLOR=1`), with this
Python's scripts first on PATH. The output after it, up to the next `$` line, is compared line by
line, with these normalisations only:

- trailing spaces are ignored, and so are blank lines at the end;
- a line that is `...` alone stands for any number of lines (none included);
- `...` inside a line stands for any text on that line (as doctest's ELLIPSIS).

Where this machine runs three OpenBLAS kernels (`blas_kernels.py`), each command runs under each of them,
and what it prints must also be the same under each (wall-clock times aside), its exit status too: one
answer on any machine, as `test_same_answer.py` holds for the examples. The run above, as a user runs it
(no `OPENBLAS_CORETYPE`), is under OpenBLAS's own kernel for this CPU (`blas_kernels.own`: the newest of
the three here). Under each other kernel:

- a simple `gradcheck ARGS...` command (quotes, a `#` comment and globs, no other shell syntax and no
  `NAME=value` before it: `warm_runner.words`) runs in that kernel's warm runner (`warm_runner.py`), a
  Python started once per pytest worker with `OPENBLAS_CORETYPE` and the environment above, that runs
  each command through the console script's own function (`gradcheck_cli.cli.invoke`), its output
  taken from descriptors 1 and 2: it keeps check-py's fork servers, so torch and JAX are imported
  once per kernel, not once per command;
- any other command (a pipe, `$(...)`, `python -c`, `pytest`, a variable set for it) runs by bash as
  above, `OPENBLAS_CORETYPE` set, with that kernel's warm runner's shim first on PATH: each `gradcheck`
  it runs is run by the warm runner (its arguments, folder and standard input sent; what it writes to
  descriptors 1 and 2 written back to them, one file where they are one), unless the command sets a
  variable for it, for which the shim starts the real console script.

What a warm runner prints must be what bash printed, so a command that prints otherwise when called
again in one process (state kept between calls, which a notebook or the language server would meet)
fails here.

A simple command that two blocks show (the same line in two pages) runs once in a pytest worker, and
both blocks are held to what it printed: no block changes the repository's files it reads.

A block that cannot run here says so on the line before its fence:
`<!-- readme: not run (the reason) -->`; one that needs an optional extra names its module there,
`<!-- readme: needs jax -->`, and is skipped where that is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import ROOT
from blas_kernels import ENOUGH, others, own, threads
from warm_runner import Result, Runner, words

NOT_RUN = re.compile(r"<!--\s*readme:\s*not run\b.*-->")
NEEDS = re.compile(r"<!--\s*readme:\s*needs\s+([A-Za-z_][A-Za-z0-9_]*)\s*-->")
LINK = re.compile(r"\]\(((?!https?:)[^)#\s]+\.md)\)")
TIMINGS = re.compile(r"\b\d+(\.\d+)?\s?m?s\b")  # a wall-clock time is not a figure of the check


def documents() -> list:
    """README.md and every Markdown page of docs/, sorted."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def console_blocks(path: Path) -> list:
    """(line number, [(command, expected output lines)]) of each console block that is run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            start, j = i, i + 1
            while not lines[j].strip().startswith("```"):
                j += 1
            skipped = start > 0 and NOT_RUN.search(lines[start - 1])
            if not skipped:
                runs = []
                for text in lines[start + 1:j]:
                    if text.startswith("$ "):
                        runs.append((text[2:], []))
                    elif runs:
                        runs[-1][1].append(text)
                    else:
                        raise AssertionError(f"{path.name}:{start + 1}: a console block starts with output, not '$ '")
                blocks.append((start + 1, runs))
            i = j
        i += 1
    return blocks


def pattern(expected: list) -> re.Pattern:
    """The regular expression of the expected lines, with the normalisations above."""
    parts = []
    for line in expected:
        line = line.rstrip()
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + "\n")
    return re.compile("".join(parts))


def normalise(output: str) -> str:
    return "\n".join(line.rstrip() for line in output.rstrip().splitlines()) + "\n"


def environment(kernel: str | None = None) -> dict:
    """The environment of a command: this one's without GRADCHECK_ (but the cache folder), GITHUB_,
    PYTEST_, CI and PYTHONDONTWRITEBYTECODE, in an 80-column terminal, this Python's scripts first on
    PATH; OpenBLAS's own kernel, or `kernel`. Python writes its bytecode, as a user's does: the modules
    pytest rewrites (gradcheck's, for its plugin) are rewritten by the first `pytest` a block runs, not
    by each (~0.45 s of CPU a run)."""
    env = {k: v for k, v in os.environ.items() if k == "GRADCHECK_CACHE_DIR" or not k.startswith(("GRADCHECK_", "GITHUB_", "PYTEST_"))}
    env.update(COLUMNS="80", LINES="50", NO_COLOR="1", TERM="dumb",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    for name in ("CI", "OPENBLAS_CORETYPE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    if kernel is not None:
        env["OPENBLAS_CORETYPE"] = kernel
    return env


def shown(output: str) -> str:
    """Where bubblewrap cannot start a sandbox, `grade` says so on standard error; the docs show the
    sandboxed run, which prints nothing more."""
    return "".join(line for line in output.splitlines(keepends=True)
                   if not (line.startswith("note: ") and "without the OS sandbox" in line))


def bash(command: str, kernel: str | None = None, env: dict | None = None) -> Result:
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env or environment(kernel), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    return Result(output=shown(done.stdout), code=done.returncode)


def run(command: str) -> str:
    """What `command` prints, run by bash as a user runs it."""
    return bash(command).output


@pytest.fixture(scope="session")
def warm_runners():
    """{kernel: its warm runner} for the kernels other than OpenBLAS's own; each started at its first
    command, all ended (and waited for) when the session ends."""
    runners = {k: Runner(environment(k), k) for k in others()} if ENOUGH else {}
    yield runners
    for runner in runners.values():
        runner.close()


RAN: dict = {}  # command -> its runs_of, for a simple command a second block shows too


def runs_of(command: str, runners: dict) -> dict:
    """{how it ran: Result}: by bash under OpenBLAS's own kernel, then under each other kernel by its warm
    runner (bash where the command is not a simple `gradcheck` one), as many at a time as `threads`. The
    first run ends before the others start, as they do one at a time under pytest-xdist: the caches it
    fills (SymPy's partials, JAX's compiled operations: `tests/conftest.py`) serve them, not the same
    work done by each at once (a JAX command's compilation: ~1 s of CPU a run). A simple command that a
    block has run already (the same line in two pages) is not run again: what it prints depends on its
    words and the repository's files alone, which no block changes."""
    simple = words(command)
    if simple is not None and command in RAN:
        return RAN[command]
    first = f"its own kernel ({own() or 'as OpenBLAS picks it'}), by bash"
    jobs = {}
    for kernel, runner in runners.items():
        if simple is None:
            jobs[f"the {kernel} kernel, by bash, its gradcheck by the warm runner"] = \
                lambda r=runner: bash(command, env=r.shell())
        else:
            jobs[f"the {kernel} kernel, by its warm runner"] = lambda r=runner: r.run(simple)
    ran = {first: bash(command)}
    with ThreadPoolExecutor(max_workers=threads()) as pool:
        ran.update(zip(jobs, pool.map(lambda job: job(), jobs.values())))
    if simple is not None:
        RAN[command] = ran
    return ran


CASES = [(path, line, runs) for path in documents() for line, runs in console_blocks(path)]


def missing_extra(path: Path, line: int) -> str | None:
    """The optional module the block whose fence is at `line` needs, when it is not installed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    needs = NEEDS.search(lines[line - 2]) if line >= 2 else None
    return needs.group(1) if needs and importlib.util.find_spec(needs.group(1)) is None else None


def test_the_readme_has_console_blocks_to_run():
    assert len(CASES) >= 8


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.name)
def test_the_markdown_links_point_at_files_that_exist(path):
    missing = [m for m in LINK.findall(path.read_text(encoding="utf-8")) if not (path.parent / m).exists()]
    assert not missing, f"{path.name} links to Markdown files that do not exist: {missing}"


@pytest.mark.parametrize("path, line, runs", CASES, ids=[f"{p.name}:{n}" for p, n, _ in CASES])
def test_console_block_prints_what_it_shows(path, line, runs, warm_runners):
    if missing_extra(path, line):
        pytest.skip(f"needs {missing_extra(path, line)}, an optional extra")
    for command, expected in runs:
        want = pattern([e for e in "\n".join(expected).rstrip().splitlines()])
        (first, real), *others_ = runs_of(command, warm_runners).items()
        for how, got in [(first, real), *others_]:
            assert want.fullmatch(normalise(got.output)), (
                f"{path.name}:{line}: `$ {command}` under {how} printed\n{got.output}\nbut the block shows\n"
                + "\n".join(expected))
        for how, got in others_:
            assert (TIMINGS.sub("<time>", normalise(got.output)), got.code) == \
                (TIMINGS.sub("<time>", normalise(real.output)), real.code), \
                f"`{command}` under {how} (exit {got.code}):\n{got.output}\nunder {first} (exit {real.code}):\n{real.output}"


@pytest.mark.parametrize("expected, output, matches", [
    (["a", "...", "d"], "a\nb\nc\nd\n", True),
    (["a", "...", "d"], "a\nd\n", True),
    (["a", "x...z"], "a\nxyz\n", True),
    (["a", "b"], "a\nc\n", False),
    (["a"], "a\nb\n", False),            # nothing printed beyond what is shown, unless `...` says so
    (["a ... b"], "a\nb\n", False),      # an inline `...` never spans lines
])
def test_the_normalisations_are_the_documented_ones(expected, output, matches):
    assert bool(pattern(expected).fullmatch(normalise(output))) == matches
