"""No data lost by a slip of the shell: -o never replaces an input, keeps a file's mode, never splits
hard links; standard input is read once."""

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


MODULE = "def f(x):\n    return 2 * x\n\n\ndef f_vjp(dout, x):\n    return 2 * dout\n"


@pytest.mark.parametrize("kept", ["sibling", "pyproject", "at_file"])
def test_check_py_o_never_replaces_a_file_the_run_reads_besides_the_module(tmp_path, monkeypatch, kept):
    # a sibling the module imports (a package's layers.py; any Python source, the --reference file among them),
    # the pyproject.toml the settings come from, an --at @FILE.json: each was replaced by the report
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text("from sibling import TWO\n\n\n" + MODULE.replace("2 *", "TWO *"))
    (tmp_path / "sibling.py").write_text("TWO = 2\n")
    (tmp_path / "pyproject.toml").write_text("[tool.gradcheck]\nrtol = 1e-5\n")
    (tmp_path / "at_file.json").write_text('{"x": [1, 2]}')
    target = {"sibling": "sibling.py", "pyproject": "pyproject.toml", "at_file": "at_file.json"}
    path = tmp_path / target[kept]
    before = path.read_text()
    result = run("check-py", "m.py::f", "--at", "@at_file.json", "-o", target[kept])
    assert result.exit_code == 2 and "elsewhere" in result.output, result.output
    assert path.read_text() == before
    if kept == "pyproject":  # `check` reads it too
        (tmp_path / "f.grad").write_text(SOURCE)
        assert run("check", "f.grad", "-o", "pyproject.toml").exit_code == 2 and path.read_text() == before


def test_o_to_a_fifo_nobody_reads_is_an_error_not_a_hang(source, tmp_path):
    fifo = tmp_path / "report"
    os.mkfifo(fifo)
    import subprocess
    import sys
    # opening it for writing waited for a reader for ever: a process of its own, so that the test cannot hang
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", str(source), "-o", str(fifo)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot write" in done.stderr, done.stderr


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


def _dies_on_die(path, settings, texts, at=None):
    """A stand-in for files._check_one whose worker dies on one file (as an out-of-memory kill would)."""
    from gradcheck_cli.checking import files
    if str(path).endswith("die.grad"):
        os._exit(9)
    return files.check_file(path, settings, at=at)


def test_a_dead_worker_is_an_error_for_its_file_and_the_rest_are_checked(tmp_path, monkeypatch):
    import multiprocessing
    if multiprocessing.get_start_method() != "fork" or (os.cpu_count() or 1) < 2:
        pytest.skip("needs forked workers on two cores")
    from gradcheck_cli.checking import files
    from gradcheck_cli.core.settings import Settings
    for name in ("a.grad", "die.grad", "c.grad", "d.grad"):
        (tmp_path / name).write_text(SOURCE)
    monkeypatch.setattr(files, "_check_one", _dies_on_die)
    run_ = files.check_files(sorted(tmp_path.glob("*.grad")), Settings(jobs=2))
    by_name = {os.path.basename(r.source): r for r in run_.results}
    assert sorted(by_name) == ["a.grad", "c.grad", "d.grad", "die.grad"]
    assert "died" in by_name["die.grad"].error.message
    assert all(by_name[n].passed for n in ("a.grad", "c.grad", "d.grad"))
    assert run_.exit_code() == 2


def _checking(proc, settle: float = 0.5) -> None:
    """Wait until the command is running its check: numpy, which the command line imports only to check,
    is mapped into the process (Python's start-up, where Ctrl-C would be a KeyboardInterrupt, is over);
    then `settle` seconds more, inside the run. Where /proc is not, a fixed pause past start-up."""
    import time
    maps = f"/proc/{proc.pid}/maps"
    if not os.path.exists(maps):
        time.sleep(2.5)
        return
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with open(maps) as f:
            if "_multiarray_umath" in f.read():
                break
        time.sleep(0.02)
    time.sleep(settle)


def test_ctrl_c_stops_the_run_and_its_workers_with_exit_130(tmp_path):
    import signal
    import subprocess
    import sys
    slow = "x = randn(60)\nW = randn(60, 60)\nf = sum(softmax(softmax(softmax(tanh(W @ x)))))\n"
    # 240 files: the run is interrupted half a second in, so its length costs nothing, and no load lets it end
    # first (24 files, 2 s once SymPy's partials are cached, had once ended before the signal came: exit 0)
    for i in range(240):
        (tmp_path / f"f{i}.grad").write_text(slow)
    report = tmp_path.parent / f"{tmp_path.name}-report.json"
    for jobs in ("1", "2"):
        report.write_text("an earlier report")
        proc = subprocess.Popen([sys.executable, "-m", "gradcheck_cli", "check", str(tmp_path), "-j", jobs,
                                 "--format", "json", "-o", str(report)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _checking(proc)  # inside the run (240 files take over 10 s with -j 2), past start-up
        assert proc.poll() is None, (jobs, proc.communicate())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, (jobs, err[-500:])
        assert "interrupted" in err and "Traceback" not in err
        assert report.read_text() == "an earlier report"  # -o is written whole at the end, or not at all
