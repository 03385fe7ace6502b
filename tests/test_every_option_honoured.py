"""Every word the user gives is honoured, and every face tells the same story."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from conftest import EXPRESSIONS, ROOT
from gradcheck_cli.cli import main

SQUARE = "x = 2\nf = x*x\n"
UNUSED_LINE = "gate g(t) = t * t\n  dt = 2 * dout * t\n  dz = 3\nx = 1.5\nf = g(x)\n"
LSTM = EXPRESSIONS / "cs231n_lstm_step.grad"
LAYERS = ROOT / "examples" / "python"


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def value_of(result) -> float:
    return json.loads(result.stdout)["results"][0]["value"]


@pytest.fixture
def square(tmp_path):
    path = tmp_path / "sq.grad"
    path.write_text(SQUARE)
    return path


# --- 1. --at is honoured by every command that takes targets ------------------------------------

def test_at_sets_the_point_of_a_file_of_stdin_and_of_a_directory(square):
    assert value_of(run("check", square, "--at", "x=5", "--format", "json")) == 25.0
    assert value_of(run("check", "-", "--at", "x=3", "--format", "json", input=SQUARE)) == 9.0
    directory = run("check", square.parent, "--at", "x=4", "--format", "json")
    assert directory.exit_code == 0 and value_of(directory) == 16.0


def test_at_reaches_the_reproduce_line(tmp_path):
    path = tmp_path / "bad.grad"
    path.write_text("gate g(t) = t * t\n  dt = dout * t\nx = 2\nf = g(x)\n")
    result = run("check", path, "--at", "x=3")
    assert result.exit_code == 1 and "--at x=3" in result.output


@pytest.mark.parametrize("command", ["check", "explain", "graph", "descend"])
def test_at_with_an_unknown_name_or_a_bad_value_is_exit_2(square, command):
    unknown = run(command, square, "--at", "nosuch=1")
    assert unknown.exit_code == 2 and "no leaf named 'nosuch'" in unknown.output
    bad = run(command, square, "--at", "x=abc")
    assert bad.exit_code == 2 and "unknown name 'abc'" in bad.output


@pytest.mark.parametrize("command", ["explain", "graph", "descend"])
def test_teaching_commands_honour_at_on_a_file(square, command):
    assert "25" in run(command, square, "--at", "x=5").output


def test_at_without_equals_is_a_malformed_at_not_a_file():
    result = run("check", "-e", "x^2", "--at", "x", "3")
    assert result.exit_code == 2 and "expected NAME=VALUE" in result.output


# --- 2. warnings reach every face ------------------------------------------------------------------

def test_a_warning_is_in_every_face(tmp_path):
    path = tmp_path / "w.grad"
    path.write_text(UNUSED_LINE)
    says = "line 'dz' in gate 'g' is not used"
    table = run("check", path)
    assert table.exit_code == 0 and "warning (line 3)" in table.output and says in table.output
    assert "· 1 warning" in table.output
    assert says in run("check", path, "-v").output
    github = run("check", path, "--format", "github").output
    assert re.search(r"^::warning file=[^\n]*w\.grad,line=3,col=3,title=gradcheck%3A warning::line 'dz'", github, re.M)
    assert says in run("check", path, "--format", "markdown").output
    junit = ET.fromstring(run("check", path, "--format", "junit").output)
    assert says in junit.find(".//testcase/system-out").text
    assert json.loads(run("check", path, "--format", "json").output)["results"][0]["warnings"][0]["line"] == 3


# --- 3. markdown leads with the culprit and folds what inherits it ---------------------------------

def test_markdown_leads_with_the_cause_and_folds_inherited_rows(tmp_path):
    text = LSTM.read_text().replace("df * f * (1 - f), do * o * (1 - o)", "do * o * (1 - o), df * f * (1 - f)")
    path = tmp_path / "lstm.grad"
    path.write_text(text)
    out = run("check", path, "--format", "markdown").output
    rows = [line for line in out.splitlines() if line.startswith("| `") and "lstm.grad" not in line]
    assert rows and rows[0].startswith("| `gate hc: da`"), rows[:3]
    assert "also:" in rows[0] and len(rows) == 1, rows


# --- 4, 5, 6: the summary line, -x, expects in JSON -----------------------------------------------

def test_github_prints_its_summary_plainly():
    out = run("check", EXPRESSIONS / "cs231n_circuit.grad", "--format", "github").output
    assert "symbolic: 100%" in out and "%25" not in out.splitlines()[-1]


def test_exitfirst_says_how_many_files_were_not_checked(tmp_path):
    for i in range(6):
        (tmp_path / f"f{i}.grad").write_text(SQUARE if i != 1 else "gate g(t) = t*t\n  dt = dout*t\nx = 2\nf = g(x)\n")
    result = run("check", tmp_path, "-x")
    assert "2 files: 1 passed, 1 failed" in result.output and "4 not checked" in result.output
    assert "not checked" not in run("check", tmp_path).output


def test_json_expects_carry_their_line_and_note():
    exp = json.loads(run("check", EXPRESSIONS / "gate_sigmoid.grad", "--format", "json").output)["results"][0]["expects"]
    formula = next(e for e in exp if e["target"] == "ddot")
    assert formula["line"] == 13 and formula["col"] == 8 and formula["note"] == "symbolically equal"


# --- 7. array answers and expects are graded by the digits written ---------------------------------

def test_an_array_expect_is_judged_by_its_written_digits(tmp_path):
    path = tmp_path / "a.grad"
    base = "x = [0.2298, 0, 0.1590, -0.3604]\nf = sum(x * x) / 2\n"
    path.write_text(base + "expect dx = [0.23, 0, 0.16, -0.36]\n")
    assert run("check", path).exit_code == 0
    path.write_text(base + "expect dx = [0.23, 0, 0.17, -0.36]\n")  # one element off by more than its digits
    assert run("check", path).exit_code == 1
    path.write_text(base + "expect dx = [0.2, 0, 0.2, -0.4]\n")     # one decimal: ±0.05 each
    assert run("check", path).exit_code == 0


def test_a_quiz_array_answer_is_graded_by_its_digits_and_shown_in_full(tmp_path):
    path = tmp_path / "q.grad"
    path.write_text("W = [[0.2298, -0.1], [0.1590, 0.5]]\nf = sum(W * W) / 2\n")
    right = tmp_path / "right.txt"
    right.write_text("dW = [[0.23, -0.1], [0.16, 0.5]]\n")
    assert "right: dW = [[0.2298, -0.1], [0.159, 0.5]]" in run("quiz", path, "--answers", right).output
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("dW = [[0.23, -0.1], [0.17, 0.5]]\n")
    result = run("quiz", path, "--answers", wrong)
    assert result.exit_code == 1 and "wrong: you said dW = [[0.23, -0.1], [0.17, 0.5]]" in result.output
    assert "the answer is dW = [[0.2298, -0.1], [0.159, 0.5]]" in result.output
    big = tmp_path / "big.grad"
    big.write_text("h = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [1, 1, 1, 1, 1], [2, 2, 2, 2, 2]]\nf = sum(h * h) / 2\n")
    none = tmp_path / "none.txt"
    none.write_text("dh = 0\n")
    out = run("quiz", big, "--answers", none).output
    assert "wrong: you said dh = 0" in out and "the answer is dh = [[1, 2, 3, 4, 5]," in out and "[2, 2, 2, 2, 2]]" in out


# --- 8, 9: check-py -------------------------------------------------------------------------------

AFFINE_SHAPES = ["--shape", "x=4,5", "--shape", "w=5,3", "--shape", "b=3"]
GOOD_AFFINE = '''
import numpy as np


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout @ w.T
    dw = x.T @ dout
    db = BODY
    return dx, dw, db
'''


def github_errors(out: str) -> list:
    return [line for line in out.splitlines() if line.startswith("::error")]


def test_check_py_a_wrong_shape_fails_that_input_alone(tmp_path):
    (tmp_path / "l.py").write_text(GOOD_AFFINE.replace("BODY", "dout"))
    result = run("check-py", f"{tmp_path}/l.py::affine", *AFFINE_SHAPES, "--format", "json")
    rows = {r["name"]: r["status"] for r in json.loads(result.output)["results"][0]["nodes"]}
    assert rows == {"x": "pass", "w": "pass", "b": "fail"}
    errors = github_errors(run("check-py", f"{tmp_path}/l.py::affine", *AFFINE_SHAPES, "--format", "github").output)
    assert len(errors) == 1 and "line=13," in errors[0] and "db has shape (4, 3)" in errors[0]


def test_check_py_an_exception_is_one_annotation_at_the_line_that_raised(tmp_path):
    (tmp_path / "l.py").write_text(GOOD_AFFINE.replace("BODY", "dout.sum(axis=7)"))
    errors = github_errors(run("check-py", f"{tmp_path}/l.py::affine", *AFFINE_SHAPES, "--format", "github").output)
    assert len(errors) == 1 and "line=13," in errors[0] and "AxisError" in errors[0]


def test_check_py_blames_a_composite_on_its_failing_helper():
    out = run("check-py", f"{LAYERS}/layers_wrong.py::affine_relu", "--shape", "x=10,20,3", "--shape", "w=60,5",
              "--shape", "b=5", "--format", "github").output
    source = (LAYERS / "layers_wrong.py").read_text().splitlines()
    relu_line = next(i for i, t in enumerate(source, 1) if "dx = (x > 0).astype(float)" in t)
    affine_line = next(i for i, t in enumerate(source, 1) if "db = dout.mean(axis=0)" in t)
    errors = github_errors(out)
    assert [re.search(r"line=(\d+)", e).group(1) for e in errors] == [str(relu_line), str(affine_line)]
    right = run("check-py", f"{LAYERS}/layers.py::affine_relu", "--shape", "x=10,20,3", "--shape", "w=60,5",
                "--shape", "b=5")
    assert right.exit_code == 0


def test_check_py_on_a_file_checks_every_layer_it_can_call():
    result = run("check-py", f"{LAYERS}/layers.py", "--shape", "x=10,20,3", "--shape", "w=60,5", "--shape", "b=5",
                 "--format", "json")
    data = json.loads(result.output)
    assert result.exit_code == 0
    checked = sorted(r["source"].rpartition("::")[2] for r in data["results"])
    assert checked == ["affine", "affine_relu", "relu"]
    assert {s["source"].rpartition("::")[2] for s in data["skipped"]} == {"batchnorm", "conv"}
    wrong = run("check-py", f"{LAYERS}/layers_wrong.py", "--shape", "x=10,20,3", "--shape", "w=60,5",
                "--shape", "b=5")
    assert wrong.exit_code == 1 and "3 layers: 0 passed, 3 failed" in wrong.output


def test_check_py_passing_report_shows_values_and_the_real_reason():
    result = run("check-py", f"{LAYERS}/layers.py::affine", "--shape", "x=10,20,3", "--shape", "w=60,5",
                 "--shape", "b=5", "--expand", "b", env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "[600]" not in result.output and "sym err" not in result.output
    assert "no batch axis" in result.output and "past the element budget" not in result.output
    assert "b: every element" in result.output


# --- 10. no quiet forgiveness on the command line -------------------------------------------------

def test_a_missing_file_that_looks_like_an_expression_suggests_e():
    result = run("check", "x^2")
    assert result.exit_code == 2 and "use -e" in result.output


def test_an_unset_leaf_of_e_is_said():
    result = run("check", "-e", "x * y", "--at", "x=1", env={"COLUMNS": "200"})
    assert "'y' has no --at value: checked at a seeded random y = " in result.output
    assert "has no --at value" not in run("check", "-e", "x * y", "--at", "x=1", "--at", "y=2").output


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1e9", "²", ""])
def test_a_limit_variable_that_is_not_a_positive_whole_number_is_exit_2(value, tmp_path):
    (tmp_path / "sq.grad").write_text(SQUARE)
    env = {**os.environ, "GRADCHECK_MAX_ELEMENTS": value}
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", str(tmp_path / "sq.grad")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "GRADCHECK_MAX_ELEMENTS" in done.stderr and "Traceback" not in done.stderr


def test_a_limit_variable_with_a_number_is_honoured(tmp_path):
    (tmp_path / "big.grad").write_text("x = randn(100)\nf = sum(x * x)\n")
    env = {**os.environ, "GRADCHECK_MAX_ELEMENTS": " 50 "}
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", str(tmp_path / "big.grad")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "at most 50" in done.stderr


# --- 11. explain ----------------------------------------------------------------------------------

def test_explain_flags_a_wrong_d_line():
    out = run("explain", ROOT / "examples" / "mistakes" / "sq_forgot_2.grad").output
    assert "✗ this gate's backward is wrong for this input" in out and "dx = -0.7408 ✗" in out
    assert "✗ the backward of 'sq(x)'" in out
    assert "✗" not in run("explain", EXPRESSIONS / "cs224n_max.grad").output


def test_explain_and_the_tree_give_consts_no_gradient(tmp_path):
    path = tmp_path / "c.grad"
    path.write_text("const c = [1, 2, 3]\nW = [[1, 2, 3], [4, 5, 6], [0.5, 1, 2]]\nf = sum(W @ c)\n")
    explain = run("explain", path).output
    assert "dc" not in explain and "dW" in explain
    tree = run("graph", path).output
    assert re.search(r"c \[const\]", tree) and not re.search(r"c \[const\].*∇", tree)


def test_a_kink_note_names_the_gate_that_kinks():
    out = run("check", "-e", "norm(x)", "--at", "x=[0, 0]").output
    assert "a kink of norm (line 1)" in out and "max/min/relu/abs" not in out


# --- 12. a narrow terminal -------------------------------------------------------------------------

LONG = ("v = [1, 2, 3]\nr = [0.5, -1, 2]\nq = [2, 2, 1]\ns = [1, 0, 1]\n"
        "f = sum(v * r) + sum(v * q) + sum(v * s) + sum(v * r * q)\n")


@pytest.mark.parametrize("width", [40, 50, 60, 70, 80, 100, 140])
def test_the_status_column_is_never_cut_and_rows_never_read_the_same(tmp_path, width):
    path = tmp_path / "long.grad"
    path.write_text(LONG)
    out = run("check", path, env={"COLUMNS": str(width)}).output
    assert all(len(line.rstrip()) <= width for line in out.splitlines() if "│" in line or "┃" in line)
    names = []
    for line in (line for line in out.splitlines() if "│" in line):
        name, *cells = (cell.strip() for cell in line.split("│"))
        if cells[-1] in ("pass", "fail", "kink", "warn", "skip"):
            names.append(name)
        else:  # a name wrapped to stay apart from another: its next line holds nothing else
            assert not any(cells) and names, line
            names[-1] += " " + name
    assert len(names) == 16
    assert len(set(names)) == len(names), names


def test_notes_wrap_under_their_own_indent(tmp_path):
    out = run("check", "-e", "x * y", "--at", "x=1", env={"COLUMNS": "60"}).output
    note = [line for line in out.splitlines() if "has no --at value" in line or "sets it" in line]
    assert note[0].startswith("  warning") and all(line.startswith("      ") for line in note[1:])


# --- 13, 14: pytest's reproduce line, nothing binary in the repository -------------------------------

def test_pytest_reproduce_line_has_the_path_as_typed(pytester):
    pytester.makefile(".grad", bad="gate g(t) = t * t\n  dt = dout * t\nx = 2\nf = g(x)\n")
    result = pytester.runpytest("bad.grad")
    result.assert_outcomes(failed=1)
    assert "reproduce: gradcheck check bad.grad --seed 0" in result.stdout.str()


def test_no_binary_or_generated_file_is_tracked():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("git is not available")
    files = [f for f in listed.stdout.split("\0") if f]
    assert not [f for f in files if f.endswith((".whl", ".pyc", ".so", ".tar.gz", ".zip", ".egg"))]
    assert not [f for f in files if (ROOT / f).is_file() and (ROOT / f).stat().st_size > 512 * 1024]


def test_check_py_blames_a_helper_in_another_file_of_a_package(tmp_path):
    # CS231n's layout: cs231n/layer_utils.py does `from .layers import *`; the bug is in layers.py
    package = tmp_path / "cs231n"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text(
        "import numpy as np\n\n\ndef affine_forward(x, w, b):\n    return x @ w + b, (x, w, b)\n\n\n"
        "def affine_backward(dout, cache):\n    x, w, b = cache\n    return dout @ w.T, x.T @ dout, dout.sum(axis=0)\n\n\n"
        "def relu_forward(x):\n    return np.maximum(0, x), x\n\n\n"
        "def relu_backward(dout, cache):\n    dx = (cache > 0).astype(float)  # forgets dout\n    return dx\n")
    (package / "layer_utils.py").write_text(
        "from .layers import *\n\n\ndef affine_relu_forward(x, w, b):\n    a, fc = affine_forward(x, w, b)\n"
        "    out, rc = relu_forward(a)\n    return out, (fc, rc)\n\n\ndef affine_relu_backward(dout, cache):\n"
        "    fc, rc = cache\n    da = relu_backward(dout, rc)\n    return affine_backward(da, fc)\n")
    shapes = ["--shape", "x=4,5", "--shape", "w=5,3", "--shape", "b=3"]
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        one = run("check-py", "cs231n/layer_utils.py::affine_relu", *shapes, "--format", "github").output
        module = run("check-py", "cs231n/layer_utils.py", *shapes, "--format", "json").output
    finally:
        os.chdir(old)
    errors = github_errors(one)
    assert len(errors) == 1 and errors[0].startswith("::error file=cs231n/layers.py,line=18,")
    assert "line 18 of cs231n/layers.py" in errors[0]
    sources = [r["source"] for r in json.loads(module)["results"]]
    assert sources == ["cs231n/layer_utils.py::affine_relu"]  # its own layers, not those it imports


def test_check_py_on_a_file_with_a_layer_and_its_naive_twin_checks_both(tmp_path):
    (tmp_path / "l.py").write_text(
        "import numpy as np\n\n\ndef relu_forward(x):\n    return np.maximum(0, x), x\n\n\n"
        "def relu_backward(dout, x):\n    return dout * (x > 0)\n\n\n"
        "def relu_forward_naive(x):\n    return np.maximum(0, x), x\n\n\n"
        "def relu_backward_naive(dout, x):\n    return dout * (x > 0)\n")
    data = json.loads(run("check-py", tmp_path / "l.py", "--shape", "x=3,4", "--format", "json").output)
    assert [r["source"].rpartition("::")[2] for r in data["results"]] == [
        "relu", "relu_forward_naive,relu_backward_naive"]
