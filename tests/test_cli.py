"""The command line through click's CliRunner: exit codes, JSON, the table, output files."""

import json
import re
import subprocess
import sys

from click.testing import CliRunner

from gradcheck_cli import __version__
from gradcheck_cli.cli import main
from conftest import EXPRESSIONS


def run(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env)


def test_version_and_help():
    assert run("--version").output.strip().endswith(__version__)
    for cmd in ([], ["check"], ["gates"]):
        result = run(*cmd, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_examples_directory_exits_0():
    result = run("check", str(EXPRESSIONS))
    assert result.exit_code == 0, result.output
    assert "passed, 0 failed, 0 with errors" in result.output


def test_inline_expression_from_the_design():
    result = run("check", "-e", "(x+y)*max(y,z)", "--at", "x=1", "--at", "y=2", "--at", "z=0", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    nodes = {n["name"]: n for n in data["results"][0]["nodes"]}
    assert data["results"][0]["value"] == 6.0
    assert (nodes["x"]["grad"], nodes["y"]["grad"], nodes["z"]["grad"]) == (2.0, 5.0, 0.0)


def test_inline_free_names_are_seeded():
    a = json.loads(run("check", "-e", "x*y + sin(z)", "--format", "json").stdout)
    b = json.loads(run("check", "-e", "x*y + sin(z)", "--format", "json").stdout)
    c = json.loads(run("check", "-e", "x*y + sin(z)", "--format", "json", "--seed", "1").stdout)
    assert a == b and a != c


def test_json_schema_1_shape():
    result = run("check", str(EXPRESSIONS / "cs231n_circuit.grad"), "--format", "json")
    data = json.loads(result.stdout)
    assert data["schema"] == 1 and data["passed"] is True
    res = data["results"][0]
    assert set(res) == {"source", "output", "value", "seed", "passed", "error", "nodes", "expects", "gates",
                        "warnings", "symbolic_coverage", "symbolic_rules", "precision"}
    assert res["symbolic_coverage"] == 1.0
    assert {g["gate"] for g in res["gates"]} == {"+", "*"} and all(g["status"] == "pass" for g in res["gates"])
    assert set(res["gates"][0]) == {"name", "gate", "input", "line", "col", "call_line", "point", "status",
                                    "numeric_error", "symbolic_error", "numeric_error_at_rounding",
                                    "symbolic_error_at_rounding", "tolerance", "note"}
    assert res["output"] == "f" and res["value"] == -12.0 and res["seed"] == 0 and res["error"] is None
    x = res["nodes"][0]
    for key in ("name", "op", "shape", "line", "col", "value", "grad", "numeric", "symbolic",
                "numeric_error", "symbolic_error", "status", "note"):
        assert key in x
    assert (x["name"], x["op"], x["shape"], x["line"], x["col"]) == ("x", "input", [], 3, 1)
    assert x["grad"] == -4.0 and x["symbolic"] == -4.0 and abs(x["numeric"] + 4) < 1e-8
    assert x["status"] == "pass" and x["numeric_error"] < 1e-9
    # the complex step and SymPy agree with backprop to rounding: figures marked as such, not as measured errors
    assert x["numeric_error_at_rounding"] is True and x["symbolic_error_at_rounding"] is True


def test_json_tensors_are_nested_lists():
    data = json.loads(run("check", str(EXPRESSIONS / "cs231n_norm_wx.grad"), "--format", "json").stdout)
    w = data["results"][0]["nodes"][0]
    assert w["shape"] == [2, 2] and len(w["grad"]) == 2 and len(w["grad"][0]) == 2
    assert w["worst_index"] is not None and w["numeric_method"] == "complex step"
    data = json.loads(run("check", str(EXPRESSIONS / "cs231n_norm_wx.grad"), "--format", "json", "--no-complex-step").stdout)
    assert data["results"][0]["nodes"][0]["numeric_method"] == "exhaustive"


def test_json_pipes_into_json_tool():
    # what the command writes to standard output (here, in this process: the process's own exit and
    # flushing are the next test's) is read by another program's JSON parser
    out = run("check", str(EXPRESSIONS), "--format", "json")
    assert out.exit_code == 0
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=out.stdout, capture_output=True, text=True)
    assert tool.returncode == 0


def test_console_script_flushes_everything_and_keeps_the_exit_code(tmp_path):
    """The entry point leaves with os._exit: a redirected report must still be whole, codes kept."""
    wrong = tmp_path / "wrong.grad"
    wrong.write_text("gate sq(t) = t^2\n  dt = dout * t\nx = 1.5\nf = exp(x) + sq(x)\n")
    report = tmp_path / "report.json"
    right = [EXPRESSIONS / "cs231n_layers.grad", EXPRESSIONS / "two_layer_softmax.grad"]  # a report of 56 KB
    with open(report, "w") as sink:
        code = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", *map(str, right), str(wrong),
                               "--format", "json"], stdout=sink).returncode
    assert code == 1
    data = json.loads(report.read_text())
    assert len(data["results"]) == len(right) + 1 and data["passed"] is False
    bad = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", "-e", "x +"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("<expr>:1:") and "^" in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "gradcheck_cli", "nosuch"], capture_output=True, text=True)
    assert usage.returncode == 2 and "No such command" in usage.stderr


def test_the_console_script_runs_openblas_on_one_thread_unless_the_user_chose(tmp_path):
    """OpenBLAS reads its thread count once, as numpy is imported: the console script sets one thread
    where the user set none, before that import, and the processes it starts (check-py's) inherit it; a
    count the user set (OPENBLAS_NUM_THREADS, or OMP_NUM_THREADS, which OpenBLAS also reads) is kept."""
    import os
    target = tmp_path / "threads.py"
    target.write_text("import os\n\n\ndef double(x):\n"
                      "    assert str(os.environ.get('OPENBLAS_NUM_THREADS')) == os.environ['EXPECTED'], 'threads'\n"
                      "    return float((x * x).sum()), 2 * x\n")  # a loss and its gradient
    base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}
    for chosen, expected in (({}, "1"), ({"OPENBLAS_NUM_THREADS": "2"}, "2"), ({"OMP_NUM_THREADS": "2"}, "None")):
        done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", f"{target}::double", "--shape", "x=3"],
                              env={**base, **chosen, "EXPECTED": expected}, capture_output=True, text=True)
        assert done.returncode == 0, (chosen, done.stdout + done.stderr)
    wrong = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", f"{target}::double", "--shape", "x=3"],
                           env={**base, "EXPECTED": "2"}, capture_output=True, text=True)
    assert wrong.returncode == 2 and "AssertionError: threads" in wrong.stderr  # the test can tell


def test_failing_check_exits_1(monkeypatch):
    import dataclasses
    from gradcheck_cli import gates
    wrong = dataclasses.replace(gates.REGISTRY["exp"], vjp=lambda g, args, out, a: (g * out * 2,))
    monkeypatch.setitem(gates.REGISTRY, "exp", wrong)
    result = run("check", str(EXPRESSIONS / "cs231n_sigmoid.grad"), env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "fail gate exp(-dot)" in result.output
    assert "fail" in result.output and "the gradient goes wrong in the backward of 'exp(-dot)'" in result.output


def test_strict_turns_kinks_into_failures():
    assert run("check", "-e", "max(x, y)", "--at", "x=1", "--at", "y=1").exit_code == 0
    assert run("check", "-e", "max(x, y)", "--at", "x=1", "--at", "y=1", "--strict").exit_code == 1


def test_table_fits_80_columns_without_color():
    result = run("check", str(EXPRESSIONS / "two_layer_softmax.grad"), env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "\x1b[" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for header in ("node", "gate", "value", "backprop", "num err", "sym err", "status"):
        assert header in result.output


def test_wide_table_shows_every_oracle():
    result = run("check", str(EXPRESSIONS / "cs231n_circuit.grad"), env={"COLUMNS": "140"})
    assert "numeric" in result.output and "symbolic" in result.output
    header = next(l for l in result.output.splitlines() if "backprop" in l)
    assert "tol" in header  # the tolerance applied is shown
    assert "1.0e-09" in result.output  # the complex step's: exact to rounding
    result = run("check", str(EXPRESSIONS / "cs231n_circuit.grad"), "--no-complex-step", env={"COLUMNS": "140"})
    assert "1.0e-05" in result.output and "1.0e-09" not in result.output


def test_a_failing_tensor_row_names_its_worst_element_at_80_columns(tmp_path):
    p = tmp_path / "affine.grad"
    p.write_text("gate affine(x, W, b) = x @ W + b\n  dx = dout @ W.T\n  dW = x.T @ dout\n  db = dout * 1.5\n"
                 "x = randn(4, 3)\nW = randn(3, 2)\nb = randn(4, 2)\nf = sum(affine(x, W, b)^2)\n")
    result = run("check", str(p), env={"COLUMNS": "80"})
    assert result.exit_code == 1
    # the cause leads (the d line of the gate), the leaf that inherits it follows with its worst element
    assert re.search(r"fail gate affine\(x, W, b\): db \(line 4\)", result.output)
    assert re.search(r"also: b \[\d, \d\]", result.output)


def test_output_file_is_written_whole(tmp_path):
    out = tmp_path / "report.json"
    result = run("check", str(EXPRESSIONS / "cs231n_circuit.grad"), "--format", "json", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["passed"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_expand_lists_every_element():
    result = run("check", str(EXPRESSIONS / "cs231n_norm_wx.grad"), "--expand", "W", env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "W: every element" in result.output
    for idx in ("[0, 0]", "[0, 1]", "[1, 0]", "[1, 1]"):
        assert idx in result.output


def test_gates_lists_the_registry():
    from gradcheck_cli.gates import REGISTRY
    result = run("gates", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for gate in REGISTRY.values():
        assert gate.local in result.output


def test_help_is_fast_because_imports_are_lazy():
    code = "import sys, gradcheck_cli.cli; print('numpy' in sys.modules, 'sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    assert out == ["False", "False"]


def test_library_check_from_python():
    out = subprocess.run([sys.executable, "-c", "import gradcheck_cli as g; print(g.check('x = 2\\nf = x*x').passed)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "True"


def test_exitfirst_on_a_broken_first_file_still_prints_the_summary(tmp_path):
    (tmp_path / "a.grad").write_text("x = 1\nf = x *\n")
    for name in ("b", "c"):
        (tmp_path / f"{name}.grad").write_text("x = 1\nf = x * x\n")
    result = run("check", str(tmp_path), "-x")
    assert result.exit_code == 2
    assert f"{tmp_path / 'a.grad'}:2:" in result.stderr  # the error, positioned, on standard error
    assert "1 file: 0 passed, 0 failed, 1 with errors" in result.stdout
    assert "2 not checked" in result.stdout


COMMANDS = ["check", "check-py", "descend", "explain", "gates", "grade", "graph", "lsp", "quiz"]


def test_help_texts_read_whole_and_say_what_the_tool_does():
    top = run("--help").output
    assert "three ways" not in top and "complex step" in top
    assert "130 interrupted" in top  # every exit code, Ctrl-C's too
    listed = top.split("Commands:")[1].splitlines()
    summaries = {line.split()[0]: line.split(None, 1)[1] for line in listed if line.strip()}
    assert sorted(summaries) == COMMANDS
    assert not any(s.endswith("...") for s in summaries.values()), summaries  # never cut mid-sentence
    assert "130 interrupted" in run("grade", "--help").output
    steps = next(line for line in run("descend", "--help").output.splitlines() if line.strip().startswith("--steps"))
    fmt = next(line for line in run("descend", "--help").output.splitlines() if line.strip().startswith("--format"))
    assert not steps.split(None, 2)[2].startswith("[") and not fmt.split(None, 2)[2].startswith("[")
    check_help = run("check", "--help").output
    assert "Examples:" in check_help
    assert "\n    gradcheck check expressions/\n" in check_help  # one example per line, as written


def test_seed_help_hides_its_range_but_a_negative_seed_is_still_refused():
    for cmd in COMMANDS:
        out = run(cmd, "--help").output
        assert "9223372036854775807" not in out, cmd
    assert run("check", "-e", "x * x", "--seed", "-1").exit_code == 2
    assert run("explain", "-e", "x * x", "--seed", "-3").exit_code == 2
    assert run("check", "-e", "x * x", "--seed", "abc").exit_code == 2
    assert run("check", "-e", "x * x", "--seed", str(2 ** 63)).exit_code == 2
    assert run("check", "-e", "x * x", "--seed", "7").exit_code == 0


def test_expand_drops_the_worst_element_hint_once_every_tensor_row_is_expanded(tmp_path):
    hint = "tensor rows show the worst element; --expand NODE lists them all"
    (tmp_path / "v.grad").write_text("x = randn(3)\nf = sum(x * 2)\n")
    assert hint in run("check", str(tmp_path / "v.grad")).output
    assert hint in run("check", str(tmp_path / "v.grad"), "--expand", "x").output  # x * 2 is a tensor row too
    (tmp_path / "s.grad").write_text("x = randn(3)\nf = sum(x)\n")
    expanded = run("check", str(tmp_path / "s.grad"), "--expand", "x")
    assert expanded.exit_code == 0 and "x: every element" in expanded.output
    assert hint not in expanded.output
