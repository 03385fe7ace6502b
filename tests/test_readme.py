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
and what it prints must also be the same under each (wall-clock times aside): one answer on any
machine, as `test_same_answer.py` holds for the examples.

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
from pathlib import Path

import pytest

from conftest import ROOT
from blas_kernels import under_each_kernel

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


def run(command: str) -> str:
    env = {k: v for k, v in os.environ.items() if k == "GRADCHECK_CACHE_DIR" or not k.startswith(("GRADCHECK_", "GITHUB_", "PYTEST_"))}
    env.update(COLUMNS="80", LINES="50", NO_COLOR="1", TERM="dumb",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    env.pop("CI", None)
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    # Where bubblewrap cannot start a sandbox, `grade` says so on standard error; the docs show the
    # sandboxed run, which prints nothing more.
    return "".join(line for line in done.stdout.splitlines(keepends=True)
                   if not (line.startswith("note: ") and "without the OS sandbox" in line))


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
def test_console_block_prints_what_it_shows(path, line, runs):
    if missing_extra(path, line):
        pytest.skip(f"needs {missing_extra(path, line)}, an optional extra")
    for command, expected in runs:
        outputs = under_each_kernel(lambda c: normalise(run(c)), command)
        want = pattern([e for e in "\n".join(expected).rstrip().splitlines()])
        for kernel, got in outputs.items():
            assert want.fullmatch(got), (f"{path.name}:{line}: `$ {command}` under the {kernel} kernel printed\n{got}\n"
                                         f"but the block shows\n" + "\n".join(expected))
        first, *others = outputs.items()
        for kernel, got in others:
            assert TIMINGS.sub("<time>", got) == TIMINGS.sub("<time>", first[1]), \
                f"`{command}` under {kernel}:\n{got}\nunder {first[0]}:\n{first[1]}"


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
