"""The command line's faces for CI and the terminal: flags, order, counts, shapes, causes."""

from __future__ import annotations

import re
from pathlib import Path
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from gradcheck_cli.cli import main

GOOD = "x = 3\ny = -4\nf = x * y\n"
BAD = "gate f(t) = t^2\n  dt = dout * t\nx = 1.5\nf = f(x)\n"
FAN = "gate sq(t) = t^2\n  dt = dout * t\nx = 1.5\ny = sq(x)\nz = y * 3\nf = exp(x) + z\n"


def run(*args, **kw):
    return CliRunner().invoke(main, list(args), **kw)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a_good.grad").write_text(GOOD)
    (tmp_path / "b_bad.grad").write_text(BAD)
    (tmp_path / "c_broken.grad").write_text("x = 1\nf = x +\n")
    (tmp_path / "d_good.grad").write_text(GOOD)
    return tmp_path


def test_the_summary_counts_broken_files_and_keeps_their_place(files, monkeypatch):
    monkeypatch.chdir(files)  # names as short as typed: a long temporary folder (xdist's) would wrap the table
    result = run("check", ".")
    assert result.exit_code == 2
    assert "4 files: 2 passed, 1 failed, 1 with errors" in result.stdout
    out = result.stdout
    assert out.index("b_bad.grad") < out.index("c_broken.grad") < out.index("d_good.grad")
    assert "input error at line 2, column" in out and "c_broken.grad:2:" in result.stderr


def test_quiet_prints_only_what_fails(files):
    result = run("check", str(files), "-q")
    assert "a_good.grad" not in result.stdout and "d_good.grad" not in result.stdout
    assert "b_bad.grad" in result.stdout and "4 files:" in result.stdout


def test_exitfirst_stops_after_the_first_failing_file(files):
    result = run("check", str(files), "-x")
    assert result.exit_code == 1 and "2 files: 1 passed, 1 failed" in result.stdout
    assert "d_good.grad" not in result.stdout
    parallel = run("check", str(files), "-x", "-j", "2")
    assert parallel.exit_code == 1 and "d_good.grad" not in parallel.stdout


def test_exit_zero_keeps_failures_from_failing_the_job_but_not_input_errors(files):
    assert run("check", str(files / "b_bad.grad"), "--exit-zero").exit_code == 0
    assert run("check", str(files), "--exit-zero").exit_code == 2


def test_verbose_prints_each_gates_own_check(files):
    quiet = run("check", str(files / "b_bad.grad"))
    verbose = run("check", str(files / "b_bad.grad"), "-v", env={"COLUMNS": "160"})
    assert "┃ point" not in quiet.stdout and re.search(r"f\s+│\s+dt\s+│\s+2\s+│\s+1\s+│\s+5.0e-01\s+│\s+fail", verbose.stdout)


def test_color_flags():
    forced = run("check", "-e", "x*y", "--color")
    plain = run("check", "-e", "x*y", "--no-color", "--color")  # the last flag wins
    off = run("check", "-e", "x*y", "--no-color")
    assert "\x1b[" in forced.stdout and "\x1b[" in plain.stdout and "\x1b[" not in off.stdout


def test_expand_of_an_unknown_node_is_an_error():
    result = run("check", "-e", "x*y", "--expand", "xx")
    assert result.exit_code == 2 and "--expand: no node 'xx'" in result.output and "nodes: x, y" in result.output


def test_vectors_look_like_vectors():
    result = run("check", "-e", "sum(x * 2)", "--at", "x=[1, 2, 3, 4, 5, 6]", env={"COLUMNS": "120"})
    row = next(line for line in result.stdout.splitlines() if line.startswith("x "))
    assert "[6]" in row and not re.search(r"│\s+6\s+│", row)
    matrix = run("check", "-e", "sum(W)", "--at", "W=ones(4, 3)", env={"COLUMNS": "120"})
    assert "4×3" in matrix.stdout


def test_junit_has_time_attributes(files):
    suite = ET.fromstring(run("check", str(files / "a_good.grad"), "--format", "junit").stdout).find("testsuite")
    assert float(suite.get("time")) >= 0 and float(suite.find("testcase").get("time")) >= 0


def test_fan_out_gives_one_cause_first_in_every_face(tmp_path):
    p = tmp_path / "fan.grad"
    p.write_text(FAN)
    table = run("check", str(p), env={"COLUMNS": "200"}).stdout
    notes = [line.strip() for line in table.splitlines() if line.startswith("  fail") or line.startswith("    also")]
    assert notes[0].startswith("fail gate y: dt (line 2)") and notes[1].startswith("also: x (1 row inherits it)")
    assert "exp" not in " ".join(notes)  # the innocent sibling is never blamed
    github = [line for line in run("check", str(p), "--format", "github").stdout.splitlines() if line.startswith("::")]
    assert len(github) == 1 and ",line=2,col=3," in github[0]
    junit = ET.fromstring(run("check", str(p), "--format", "junit").stdout)
    assert junit.find(".//failure").text.startswith("gate y: dt (line 2): fail")


def test_an_infinite_backprop_gradient_fails_instead_of_passing_silently():
    result = run("check", "-e", "sqrt(x)", "--at", "x=0", env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "backprop's gradient is infinite here" in result.stdout
    assert run("check", "-e", "sqrt(x)", "--at", "x=0.5").exit_code == 0
    assert run("check", "-e", "abs(x)", "--at", "x=0").exit_code == 0  # a kink has finite one-sided slopes


QUIZ = "x = 3\ny = -4\nf = x * y\n"


def test_an_answer_file_may_start_with_the_output_and_unknown_names_are_listed(tmp_path):
    (tmp_path / "q.grad").write_text(QUIZ)
    (tmp_path / "a.txt").write_text("df = 1\ndy = 3\ndx = -4\n")
    result = run("quiz", str(tmp_path / "q.grad"), "--answers", str(tmp_path / "a.txt"))
    assert result.exit_code == 0 and "score: 2/2" in result.output
    (tmp_path / "b.txt").write_text("dz = 3\n")
    bad = run("quiz", str(tmp_path / "q.grad"), "--answers", str(tmp_path / "b.txt"))
    assert bad.exit_code == 2 and "b.txt:1:1:" in bad.output and "(the quiz asks for: dy, dx)" in bad.output


@pytest.mark.parametrize("key", ["C-d", "C-c"])
def test_the_quiz_can_be_left_at_a_real_terminal(tmp_path, key):
    import shutil
    import subprocess
    import sys
    import time
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux): the quiz's terminal test needs a real terminal")
    (tmp_path / "q.grad").write_text(QUIZ)
    session = f"gradcheck-quiz-{key}-{tmp_path.name}"
    transcript = tmp_path / "transcript.txt"
    command = f"{sys.executable} -m gradcheck_cli quiz {tmp_path / 'q.grad'} -o {transcript}; echo EXIT=$?; sleep 20"
    # A server of its own (-L): on the shared default socket, one test's server, exiting with its last
    # session, refused the other's new session ("server exited unexpectedly").
    tmux = ["tmux", "-L", session]
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "30", command], check=True)
    try:
        def screen():
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        deadline = time.time() + 30
        while "dy =" not in screen() and time.time() < deadline:
            time.sleep(0.2)
        subprocess.run([*tmux, "send-keys", "-t", session, "3", "Enter"], check=True)
        while "dx =" not in screen() and time.time() < deadline:
            time.sleep(0.2)
        subprocess.run([*tmux, "send-keys", "-t", session, key], check=True)
        while "EXIT=" not in screen() and time.time() < deadline:
            time.sleep(0.2)
        text = screen()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert "quiz stopped after 1 of 2 questions; score: 1/1" in text and "EXIT=1" in text
    assert "(no answer)" not in text
    saved = transcript.read_text()  # -o at a terminal: asked there, and the transcript kept
    assert "dy = 3\n" in saved and "right: dy = 3" in saved and "quiz stopped after 1 of 2" in saved


@pytest.mark.parametrize("src, at, says", [
    ("x^1000", "x=3", "overflows"), ("exp(x)", "x=1000", "overflows"),
    ("1/x", "x=0", "1/x is defined for x ≠ 0"), ("log(x)", "x=0", "log is defined for x > 0"),
])
def test_an_overflow_is_told_from_a_pole(src, at, says):
    result = run("check", "-e", src, "--at", at)
    assert result.exit_code == 2 and says in result.output
    assert ("overflows" in result.output) == (says == "overflows")


def test_gates_are_named_in_words():
    wide = run("gates", env={"COLUMNS": "400"}).stdout
    narrow = run("gates", env={"COLUMNS": "80"}).stdout
    for name in ("add", "mul", "matmul", "transpose", "reduce_max", "sigmoid", "pow"):
        assert re.search(rf"^\s*{name}\s+│", wide, re.M), name
        assert re.search(rf"^{name}  ", narrow, re.M), name


def test_gates_fit_a_narrow_terminal_without_wrapping_every_row():
    narrow = run("gates", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "│" not in narrow  # one block per gate, not a table whose every row wraps
    assert "local gradient: ∂(aᵇ)/∂a = b·aᵇ⁻¹" in narrow.replace("\n      ", " ")


def test_explain_and_descend_write_to_a_file(tmp_path):
    (tmp_path / "q.grad").write_text(QUIZ)
    shown = run("explain", str(tmp_path / "q.grad")).stdout
    assert run("explain", str(tmp_path / "q.grad"), "-o", str(tmp_path / "e.txt")).stdout == ""
    assert (tmp_path / "e.txt").read_text() == shown
    assert run("descend", str(tmp_path / "q.grad"), "--steps", "2", "-o", str(tmp_path / "d.txt")).exit_code == 0
    assert "-14.62" in (tmp_path / "d.txt").read_text() and "\x1b[" not in (tmp_path / "d.txt").read_text()
    bad = run("explain", str(tmp_path / "q.grad"), "-o", str(tmp_path / "missing" / "e.txt"))
    assert bad.exit_code == 2 and "cannot write" in bad.output


def test_latex_keeps_tensor_shapes_out_of_bare_math_text():
    out = run("explain", "-e", "sum(W @ X)", "--at", "W=ones(2,2)", "--at", "X=ones(2,2)", "--latex").stdout
    assert "array 2×2" not in out and r"\text{array } 2 \times 2 \times 2 \times 2" in out


def test_gradients_of_unnamed_nodes_are_written_unambiguously(tmp_path):
    out = run("explain", "-e", "(x+1)^2", "--at", "x=2").stdout
    assert "d(x+1) = 1 × 6 = 6" in out and "dx = 6 × 1 = 6" in out and "dx+1" not in out
    (tmp_path / "a.txt").write_text("d(x+1) = 6\ndx = 6\n")
    quiz = run("quiz", "-e", "(x+1)^2", "--at", "x=2", "--answers", str(tmp_path / "a.txt"))
    assert quiz.exit_code == 0 and "right: d(x+1) = 6" in quiz.stdout


@pytest.mark.parametrize("src", ["x = 3\nf = x\n", "x = 3\nf = ((x))\n", "x = 3\ny = x\nf = y * 2\n"])
def test_an_alias_is_an_identity_node_that_stays_in_the_table(tmp_path, src):
    p = tmp_path / "alias.grad"
    p.write_text(src)
    result = run("check", str(p), "--format", "json")
    assert result.exit_code == 0
    nodes = {n["name"]: n for n in __import__("json").loads(result.stdout)["results"][0]["nodes"]}
    alias = "y" if "y = x" in src else "f"
    assert nodes[alias]["op"] == "id" and nodes[alias]["status"] == "pass" and nodes["x"]["grad"] in (1.0, 2.0)


def test_progress_is_reported_per_file_and_never_into_a_log(files):
    from gradcheck_cli.checking.files import check_files, expand_targets
    from gradcheck_cli.core.settings import Settings
    seen = []
    check_files(expand_targets([str(files)]), Settings(), on_file=lambda done, total, path: seen.append((done, total)))
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4)]
    result = run("check", str(files))  # standard error is not a terminal here: errors only, no spinner
    assert "checking" not in result.stderr


def test_quiz_lines_wrap_at_80_columns(tmp_path, monkeypatch):
    (tmp_path / "none.txt").write_text("")
    # the file named as a user names it, from the project's folder: a token longer than the width (an
    # absolute path as long as the checkout's) is never broken, so it would make a longer line
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    out = run("quiz", "expressions/cs231n_sigmoid.grad", "--answers", str(tmp_path / "none.txt"),
              env={"COLUMNS": "80"}).stdout
    assert "from f [1/x" in out and max(len(line) for line in out.splitlines()) <= 80


def test_the_picture_shows_the_gradient_along_each_wire_and_a_legend():
    dot = run("graph", "-e", "(x+y)*max(y,z)", "--at", "x=1", "--at", "y=2", "--at", "z=0", "--format", "dot").stdout
    wires = {}
    for line in dot.splitlines():
        m = re.match(r'\s*"(n\d)" -> "(n\d|output)" \[label=<<font color="darkgreen">([^<]*)</font>'
                     r'(?:<br/><font color="red">([^<]*)</font>)?>\];', line)
        if m:
            wires[(m.group(1), m.group(2))] = m.group(4)
    y_wires = sorted(g for (src, _), g in wires.items() if src == "n1")
    assert y_wires == ["2", "3"]  # at fan-out each wire carries its own share, not the total 5
    assert "legend" in dot and "red: the gradient flowing back along it" in dot
    const = run("graph", "-e", "const c = 3\nf = c * x", "--at", "x=2", "--format", "dot").stdout
    assert '"n0" -> "n2" [label=<<font color="darkgreen">3</font>>];' in const  # a constant gets no gradient
    tensor = run("graph", "-e", "sum(W * 2)", "--at", "W=ones(4,3)", "--format", "dot").stdout
    assert "4×3 tensor" in tensor and "array 4×3" not in tensor


FAN_OUT_BUG = "gate sq(t) = t^2\n  dt = dout * t\nx = 1.5\ny = -0.5\nf = exp(x) * y + sq(x)\n"


def _edges(dot: str) -> dict:
    """(source, target) -> the edge's attribute text, from DOT lines `"nA" -> "nB" [...]`."""
    found = {}
    for line in dot.splitlines():
        m = re.match(r'\s*"(n\d+)" -> "(n\d+|output)" \[(.*)\];$', line)
        if m:
            found[(m.group(1), m.group(2))] = m.group(3)
    return found


def test_the_picture_marks_the_wrong_gate_and_only_the_wires_it_gets_wrong(tmp_path):
    (tmp_path / "bug.grad").write_text(FAN_OUT_BUG)
    dot = run("graph", str(tmp_path / "bug.grad"), "--format", "dot").stdout
    names = dict(re.findall(r'"(n\d+)" \[label="([^"\\]*)', dot))
    ids = {name: nid for nid, name in names.items()}
    culprit = next(line for line in dot.splitlines() if line.strip().startswith(f'"{ids["sq(x)"]}" [label'))
    assert "✗ backward fails its own check" in culprit and "color=red" in culprit
    innocent = [line for line in dot.splitlines() if line.strip().startswith(f'"{ids["exp(x)"]}" [label')]
    assert innocent and "color=red" not in innocent[0]  # the sibling at the fan-out is not blamed
    edges = _edges(dot)
    wrong = {pair for pair, attrs in edges.items() if "style=dashed" in attrs}
    assert wrong == {(ids["x"], ids["sq(x)"])}  # x's wire into exp(x) carries a right gradient
    assert "✗ 1.5" in edges[(ids["x"], ids["sq(x)"])]  # dout * t: 1.5, where 2t = 3 was due
    assert "a wrong gradient" in dot and "decorate=true" in dot
    tree = run("graph", str(tmp_path / "bug.grad"), "--ascii").stdout
    assert "sq(x) [sq]  2.25  grad 1  X its backward fails its own check" in tree
    assert next(line for line in tree.splitlines() if "exp(x) [exp]" in line).endswith("grad -0.5")  # unmarked
    assert "x [input]  1.5  grad -0.7408  X wrong gradient" in tree


def test_a_right_picture_has_no_marks():
    dot = run("graph", str(Path(__file__).resolve().parent.parent / "expressions" / "cs224n_max.grad"),
              "--format", "dot").stdout
    assert "✗" not in dot and "dashed" not in dot and "a wrong gradient" not in dot


QUIZ_ANSWERS = "3\n2\n0\n5\n2\n"


def test_the_quiz_writes_its_transcript_to_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # a short name, whatever the checkout's path
    maxcircuit = "expressions/cs224n_max.grad"
    out = tmp_path / "quiz.txt"
    result = run("quiz", maxcircuit, "-o", str(out), input=QUIZ_ANSWERS)
    assert result.exit_code == 0 and result.stdout == ""  # piped: the transcript goes to the file only
    text = out.read_text()
    assert text.startswith("Quiz on ") and "db = 3\n" in text and "right: dy = 5" in text
    assert text.rstrip().endswith("score: 5/5")
    plain = run("quiz", maxcircuit, input=QUIZ_ANSWERS).stdout
    assert plain == text  # the same lines as on standard output
    (tmp_path / "a.txt").write_text("db = 3\ndy = 4\n")
    graded = run("quiz", maxcircuit, "--answers", str(tmp_path / "a.txt"), "-o", str(out))
    assert graded.exit_code == 1 and "wrong: you said dy = 4; the answer is dy = 5" in out.read_text()
    assert "score: 1/5" in out.read_text()
    missing = run("quiz", maxcircuit, "-o", str(tmp_path / "no" / "such" / "dir.txt"), input=QUIZ_ANSWERS)
    assert missing.exit_code == 2 and "gradcheck: error:" in missing.output


def test_json_writes_each_tensor_on_one_line_and_stays_valid():
    import json
    out = run("check", str(Path(__file__).resolve().parent.parent / "expressions" / "cs231n_norm_wx.grad"),
              "--format", "json").stdout
    data = json.loads(out)
    w = data["results"][0]["nodes"][0]
    assert w["value"] == [[0.1, 0.5], [-0.3, 0.8]] and w["shape"] == [2, 2]
    assert '"value": [[0.1, 0.5], [-0.3, 0.8]],' in out  # one line, not one number a line
    assert '"tensor' not in out and "\\u0000" not in out


def test_a_projected_tensor_row_shows_one_element_in_every_column(tmp_path):
    # no worst element is singled out by projections: backprop's largest is shown, and the same
    # element (with its index) in the symbolic column, never each column's own largest
    path = tmp_path / "p.grad"
    path.write_text("W = randn(6, 5)\nx = randn(5)\nf = sum(tanh(W @ x) * [1, -3, 2, 0.5, -1, 4])\n")
    out = run("check", str(path), "--budget", "8", env={"COLUMNS": "160"}).stdout
    w = next(line for line in out.splitlines() if line.startswith("W "))
    cells = [c.strip() for c in w.split("│")]
    backprop, numeric, symbolic, at = cells[3], cells[4], cells[5], cells[6]
    assert numeric == "—" and backprop == symbolic and at.startswith("[")
