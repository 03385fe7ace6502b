"""Teaching commands: explain, graph, quiz (stdin and a real terminal), descend, gates."""

import re
import json
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from click.testing import CliRunner

from gradcheck_cli.cli import main
from conftest import EXPRESSIONS

SIGMOID = str(EXPRESSIONS / "cs231n_sigmoid.grad")
MAXCIRCUIT = str(EXPRESSIONS / "cs224n_max.grad")


def run(*args, **kw):
    return CliRunner().invoke(main, list(args), **kw)


# --- explain ------------------------------------------------------------------------------------

def test_explain_shows_the_notes_numbers():
    out = run("explain", SIGMOID).output
    assert "forward pass" in out and "backward pass" in out
    for text in ("d(1 + exp(-dot)) = 1 × -0.5344 = -0.5344", "d(exp(-dot)) = -0.5344 × 1 = -0.5344",
                 "d(-dot) = -0.5344 × 0.3679 = -0.1966", "ddot = -0.1966 × -1 = 0.1966",
                 "dx0 = 0.1966 × 2 = 0.3932", "dx1 = 0.1966 × -3 = -0.5898"):
        assert text in out, text
    assert "[1/x: ∂(c/x)/∂x = -c/x²" in out  # the registry's local-gradient formula


def test_explain_shows_fan_out_as_accumulation():
    out = run("explain", MAXCIRCUIT).output
    assert "dy = 3 × 1 = 3" in out and "dy += 2 × 1 = 2   (total dy = 5, fan-out adds)" in out


def test_explain_json_steps():
    data = json.loads(run("explain", SIGMOID, "--format", "json").output)
    backward = [s for s in data["steps"] if s["pass"] == "backward"]
    first = backward[0]
    assert set(first) >= {"node", "input", "upstream", "local", "downstream"}
    assert (first["node"], first["input"], first["upstream"]) == ("f", "1 + exp(-dot)", 1.0)
    assert first["local"] == pytest.approx(-0.534446645)
    for s in backward:
        assert s["downstream"] == pytest.approx(s["upstream"] * s["local"])
    forward = [s for s in data["steps"] if s["pass"] == "forward"]
    assert forward[-1]["node"] == "f" and forward[-1]["value"] == pytest.approx(0.7310585786)


def test_explain_latex():
    out = run("explain", MAXCIRCUIT, "--latex").output
    assert out.startswith("\\begin{align*}") and out.rstrip().endswith("\\end{align*}")
    assert "\\mathrel{+}=" in out and "\\underbrace{2}_{\\text{upstream}}" in out
    out = run("explain", "-e", "w_1 * x_1", "--latex").output
    assert "w\\_1" in out  # names are escaped


def test_explain_tensors_show_their_shape_and_numbers():
    out = run("explain", str(EXPRESSIONS / "two_layer_softmax.grad")).output
    assert "× J =" in out  # a local Jacobian too large to print
    assert re.search(r"dW2 = 6×3 \[-?\d\.\d+, -?\d\.\d+, -?\d\.\d+, …, -?\d\.\d+\]", out), out[-400:]


def test_explain_needs_a_scalar_output():
    result = run("explain", str(EXPRESSIONS / "cs231n_matmul.grad"))
    assert result.exit_code == 2 and "needs a scalar output" in result.output


# --- graph --------------------------------------------------------------------------------------

def test_graph_in_the_terminal_fits_80_columns():
    result = run("graph", SIGMOID, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("f [1/x]") and max(len(l) for l in lines) <= 80
    assert any("w0 [input]  2  ∇ -0.1966" in l for l in lines)


def test_graph_ascii():
    out = run("graph", MAXCIRCUIT, "--ascii").output
    assert out.isascii() and "+-- a [+]" in out
    assert "(shown above)" in out  # fan-out: y is drawn once in full


def test_graph_dot_is_quoted_and_coloured():
    out = run("graph", MAXCIRCUIT, "--format", "dot").output
    assert out.startswith("digraph circuit {")
    assert '"n3" -> "n5" [label=<<font color="darkgreen">3</font><br/><font color="red">2</font>>];' in out
    assert '"n0" [label="x\\ninput", shape=plaintext];' in out


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (apt-get install graphviz): nothing to draw with")
@pytest.mark.parametrize("src", [SIGMOID, str(EXPRESSIONS / "cs231n_layers.grad"), "-e"])
def test_graph_dot_is_valid_graphviz(src, tmp_path):
    args = ["-e", "relu(x) * (x > 0) + max(x, 1e-3)"] if src == "-e" else [src]
    dot_text = run("graph", *args, "--format", "dot").output
    result = subprocess.run(["dot", "-Tsvg"], input=dot_text.encode(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    svg = tmp_path / "c.svg"
    assert run("graph", *args, "--format", "svg", "-o", str(svg)).exit_code == 0
    assert svg.read_text().lstrip().startswith("<?xml") and oct(svg.stat().st_mode & 0o777) != "0o600"


def test_graph_image_without_graphviz_says_how_to_install(tmp_path):
    result = run("graph", SIGMOID, "--format", "png", "-o", str(tmp_path / "c.png"), env={"PATH": str(tmp_path)})
    assert result.exit_code == 2 and "apt-get install graphviz" in result.output
    assert not (tmp_path / "c.png").exists()


def test_graph_image_needs_an_output_file():
    result = run("graph", SIGMOID, "--format", "svg")
    assert result.exit_code == 2 and "give -o FILE" in result.output


# --- quiz ---------------------------------------------------------------------------------------

def test_quiz_from_stdin_all_right():
    result = run("quiz", MAXCIRCUIT, input="3\n2\n0\n5\n2\n", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "score: 5/5" in result.output and "right: dy = 5" in result.output
    assert "upstream 2 × local 1 = 2  (added: fan-out)" in result.output


def test_quiz_wrong_answer_explains_and_exits_1():
    result = run("quiz", MAXCIRCUIT, input="3\n2\n0\n3\n2\n")
    assert result.exit_code == 1 and "the answer is dy = 5" in result.output and "score: 4/5" in result.output


def test_quiz_wrong_answer_says_what_was_said_and_what_the_answer_is():
    result = run("quiz", MAXCIRCUIT, input="3\n2\n0\n3\n2\n")
    assert "wrong: you said dy = 3; the answer is dy = 5" in result.output
    assert "wrong: dy = 5" not in result.output  # the right answer is never shown under "wrong:" alone


def test_quiz_piped_typo_is_asked_again_not_graded():
    result = run("quiz", MAXCIRCUIT, input="3\n2\noops\n0\n5\n2\n")
    assert result.exit_code == 0 and "score: 5/5" in result.output, result.output
    assert "dz = oops" in result.output and "not a value" in result.output and "dz = 0" in result.output
    # bounded: after three answers that are not values the question counts as unanswered, and the quiz goes on
    result = run("quiz", MAXCIRCUIT, input="3\n2\n(\n)\n[\n5\n2\n")
    assert result.exit_code == 1 and "score: 4/5" in result.output, result.output
    assert "no answer for dz after 3 tries" in result.output
    # end of input in the middle of the retries: unanswered, no error
    result = run("quiz", MAXCIRCUIT, input="3\n2\noops\n")
    assert result.exit_code == 1 and "score: 2/5" in result.output and "Traceback" not in result.output


def test_quiz_end_of_input_counts_as_unanswered():
    result = run("quiz", MAXCIRCUIT, input="3\n")
    assert result.exit_code == 1 and "score: 1/5" in result.output


def test_quiz_answers_file_covers_unnamed_gates_and_rounding(_answers_file):
    # every node of the written-out neuron, unnamed gates included, to the notes' two decimals
    good = _answers_file(
        "d1 + exp(-dot) = -0.53", "dexp(-dot) = -0.53", "d-dot = -0.20", "ddot = 0.20", "dw2 = 0.20",
        "dw0*x0 + w1*x1 = 0.20", "dw1*x1 = 0.20", "dx1 = -0.59", "dw1 = -0.39", "dw0 * x0 = 0.20",
        "dx0 = 0.39", "dw0 = -0.20")
    result = run("quiz", SIGMOID, "--answers", good)
    assert result.exit_code == 0 and "score: 12/12" in result.output
    # three decimals claim more precision: 0.200 is not 0.1966
    result = run("quiz", "-e", "sigmoid(x)", "--at", "x=1", "--answers", _answers_file("dx = 0.200"))
    assert result.exit_code == 1 and "wrong: you said dx = 0.200; the answer is dx = 0.1966" in result.output
    result = run("quiz", "-e", "sigmoid(x)", "--at", "x=1", "--answers", _answers_file("dx = 0.20"))
    assert result.exit_code == 0


@pytest.fixture
def _answers_file(tmp_path):
    """An answers file of these lines, in the test's own folder (each call a new one)."""
    made = []

    def write(*lines):
        made.append(tmp_path / f"answers{len(made)}.txt")
        made[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(made[-1])
    return write


def test_quiz_answers_file(_answers_file):
    good = _answers_file("# the CS224n example", "db = 3", "da = 2", "dz = 0", "dy = 5", "dx = 2")
    result = run("quiz", MAXCIRCUIT, "--answers", good)
    assert result.exit_code == 0 and "score: 5/5" in result.output
    partial = _answers_file("db = 3", "dy = 4")
    result = run("quiz", MAXCIRCUIT, "--answers", partial)
    assert result.exit_code == 1 and "da = (no answer)" in result.output and "score: 1/5" in result.output


@pytest.mark.parametrize("line,fragment", [
    ("dq = 2", ":1:1: error: 'dq' is not the gradient of a quiz node"),
    ("  db = (", ":1:9: error: unexpected end of input"),
    ("db = foo", ":1:6: error: unknown name 'foo'"),
    ("x = 2", ":1:1: error: 'x' is not the gradient of a quiz node"),
    ("db 2", ":1:1: error: expected d<node> = value"),
])
def test_quiz_bad_answers_file(line, fragment, _answers_file):
    result = run("quiz", MAXCIRCUIT, "--answers", _answers_file("# answers", line))
    fragment = fragment.replace(":1:", ":2:", 1)
    assert result.exit_code == 2 and fragment in result.output, result.output


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux): the quiz needs a real terminal")
def test_quiz_in_a_real_terminal(tmp_path):
    socket = f"gradcheck-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "exit"
    cmd = f"{sys.executable} -m gradcheck_cli quiz {MAXCIRCUIT}; echo $? > {done}; sleep 60"
    tmux = ["tmux", "-L", socket]
    subprocess.run(tmux + ["new-session", "-d", "-x", "100", "-y", "50", "sh", "-c", cmd], check=True)
    try:
        def screen():
            return subprocess.run(tmux + ["capture-pane", "-p", "-S", "-200"], capture_output=True, text=True).stdout
        for answer, prompt in (("3", "db ="), ("2", "da ="), ("oops", "dz ="), ("0", "dz ="), ("5", "dy ="),
                               ("2", "dx =")):
            deadline = time.time() + 20
            while prompt not in ([l for l in screen().splitlines() if l.strip()] or [""])[-1]:
                assert time.time() < deadline, screen()
                time.sleep(0.1)
            subprocess.run(tmux + ["send-keys", answer, "Enter"], check=True)
            time.sleep(0.2)
        deadline = time.time() + 20
        while not done.exists():
            assert time.time() < deadline, screen()
            time.sleep(0.1)
        text = screen()
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True)
    assert done.read_text().strip() == "0"
    assert "not a value" in text          # a typo is asked again, not graded
    assert "score: 5/5" in text and "right: dy = 5" in text


# --- descend ------------------------------------------------------------------------------------

def test_descend_json():
    data = json.loads(run("descend", "-e", "(x - 3)^2 + c*y^2", "--at", "x=0", "--at", "y=1", "--at", "c=1",
                          "--lr", "0.25", "--steps", "4", "--format", "json").output)
    steps = data["steps"]
    assert len(steps) == 5 and steps[0]["leaves"] == {"x": 0.0, "y": 1.0, "c": 1.0}
    assert steps[1]["leaves"]["x"] == pytest.approx(1.5)      # 0 − 0.25·2(0 − 3)
    values = [s["value"] for s in steps]
    assert values == sorted(values, reverse=True)


def test_descend_leaves_consts_alone():
    src = str(EXPRESSIONS / "two_layer_softmax.grad")
    data = json.loads(run("descend", src, "--steps", "3", "--format", "json").output)
    steps = data["steps"]
    assert "X" not in steps[0]["leaves"] and "W1" in steps[0]["leaves"]
    assert steps[-1]["value"] < steps[0]["value"]


def test_descend_table_and_errors():
    result = run("descend", "-e", "x*x", "--at", "x=2", "--steps", "2")
    assert result.exit_code == 0 and "step" in result.output and "1.6" in result.output
    assert run("descend", str(EXPRESSIONS / "cs231n_matmul.grad")).exit_code == 2
    assert run("descend", "-e", "exp(x)", "--at", "x=500", "--lr", "1e300", "--steps", "2").exit_code == 1


def test_teaching_commands_need_one_source():
    for cmd in ("explain", "graph", "quiz", "descend"):
        assert run(cmd).exit_code == 2
        assert run(cmd, SIGMOID, "-e", "x").exit_code == 2
        result = run(cmd, "missing.grad")
        assert result.exit_code == 2 and "missing.grad" in result.output


def test_gates_lists_routing():
    out = run("gates", env={"COLUMNS": "250"}).output
    assert "add distributes" in out and "max routes" in out and "mul switches" in out
