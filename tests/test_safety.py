"""No data lost by a slip of the shell: -o never replaces an input, keeps a file's mode, never splits
hard links; standard input is read once (issue 22)."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from gradcheck_cli.cli import main

SOURCE = "x = 2\nf = x*x\n"


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "f.grad"
    path.write_text(SOURCE)
    return path


@pytest.mark.parametrize("command", [["check"], ["explain"], ["graph"], ["graph", "--format", "dot"], ["descend"]])
def test_o_never_replaces_the_file_being_read(source, command):
    result = run(*command, source, "-o", source)
    assert result.exit_code == 2 and "an input of this run" in result.output
    assert source.read_text() == SOURCE


def test_o_never_replaces_an_input_through_a_symlink_or_a_directory(source, tmp_path):
    link = tmp_path / "link.grad"
    link.symlink_to(source)
    assert run("check", link, "-o", source).exit_code == 2
    assert run("check", tmp_path / "f.grad", "-o", link).exit_code == 2
    assert run("check", tmp_path, "-o", source).exit_code == 2  # a directory's files are inputs too
    assert source.read_text() == SOURCE


def test_quiz_o_never_replaces_its_answers(source, tmp_path):
    answers = tmp_path / "answers.txt"
    answers.write_text("dx = 4\n")
    result = run("quiz", source, "--answers", answers, "-o", answers)
    assert result.exit_code == 2 and answers.read_text() == "dx = 4\n"


def test_check_py_o_never_replaces_the_module(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(x):\n    return 2 * x\n\n\ndef f_vjp(dout, x):\n    return 2 * dout\n")
    before = module.read_text()
    assert run("check-py", f"{module}::f", "--at", "x=[1, 2]", "-o", module).exit_code == 2
    assert module.read_text() == before


def test_o_keeps_a_private_reports_mode(source, tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("old")
    report.chmod(0o600)
    assert run("check", source, "-o", report).exit_code == 0
    assert stat.S_IMODE(os.stat(report).st_mode) == 0o600 and "f.grad" in report.read_text()


def test_o_refuses_a_file_with_other_hard_links(source, tmp_path):
    report, other = tmp_path / "report.txt", tmp_path / "other.txt"
    report.write_text("old")
    os.link(report, other)
    result = run("check", source, "-o", report)
    assert result.exit_code == 2 and "hard link" in result.output
    assert report.read_text() == other.read_text() == "old"


def test_standard_input_is_read_once():
    result = run("check", "-", "-", input=SOURCE)
    assert result.exit_code == 2 and "at most once" in result.output
