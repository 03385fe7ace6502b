"""CI integration: JUnit, GitHub annotations, Markdown, configuration, -j, reproduce, pytest plugin, pre-commit."""

import json
import shlex
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from gradcheck_cli.cli import main
from conftest import ROOT

GOOD = "x = 3\ny = -4\nf = 2 * (x*y + max(x, y))\n"
BAD_GATE = "gate sig(t) = 1 / (1 + exp(-t))\n  dt = -dout * out * (1 - out)\nx = 0.5\nf = sig(x)\n"
BROKEN = "f = (x +\n"


def run(*args, env=None, cwd=None):
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture
def batch(tmp_path):
    (tmp_path / "a_good.grad").write_text(GOOD)
    (tmp_path / "b_bad_gate.grad").write_text(BAD_GATE)
    (tmp_path / "c_broken.grad").write_text(BROKEN)
    return tmp_path


def test_junit_is_valid_xml_with_one_case_per_file(batch):
    result = run("check", str(batch), "--format", "junit")
    assert result.exit_code == 2  # an input error in the batch
    root = ET.fromstring(result.stdout)
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    names = [c.get("name") for c in cases]
    assert len(set(names)) == 3 and names[0].endswith("a_good.grad")
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    failure = cases[1].find("failure")
    # the root cause leads (the gate's d line), the rows that only inherit it are folded into one line
    assert failure is not None and failure.text.startswith("gate f: dt (line 2): fail")
    assert "also: x" in failure.text
    assert "its d line 'dt' (line 2)" in failure.text and "reproduce: gradcheck check" in failure.text
    error = cases[2].find("error")
    assert error is not None and "c_broken.grad:1:9: error:" in error.text


def test_junit_names_are_unique_when_a_file_repeats(tmp_path):
    p = tmp_path / "a.grad"
    p.write_text(GOOD)
    root = ET.fromstring(run("check", str(p), str(p), "--format", "junit").stdout)
    names = [c.get("name") for c in root.iter("testcase")]
    assert names == [str(p), f"{p} #2"]


def test_github_annotations_point_at_the_d_line_and_escape(tmp_path):
    name = tmp_path / "we,ird:name.grad"
    name.write_text(BAD_GATE)
    result = run("check", str(name), "--format", "github")
    assert result.exit_code == 1
    line = next(l for l in result.stdout.splitlines() if l.startswith("::error"))
    props, message = line[len("::error "):].split("::", 1)
    assert "we%2Cird%3Aname.grad" in props          # , and : escaped in properties
    assert ",line=2,col=3," in props                 # the faulty d line, not the row
    assert "title=gradcheck fail%3A gate f%3A dt" in props  # the root cause names the gate and d line
    assert len([l for l in result.stdout.splitlines() if l.startswith("::")]) == 1  # one annotation per cause
    assert "also%3A x" not in props and "also: x" in message.replace("%3A", ":")
    assert "%0Areproduce: gradcheck check" in message  # newline escaped in the message
    assert "\n" not in message


def test_github_escapes_percent_and_carriage_returns():
    from gradcheck_cli.render.github import gh_data as _gh_data, gh_property as _gh_property
    assert _gh_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert _gh_property("a:b,c") == "a%3Ab%2Cc"


def test_github_step_summary_is_appended(batch, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("previous\n")
    run("check", str(batch / "a_good.grad"), "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    text = summary.read_text()
    assert text.startswith("previous\n") and "## gradcheck ✅ passed" in text and "| file |" in text


def test_markdown_report(batch):
    result = run("check", str(batch), "--format", "markdown")
    md = result.stdout
    assert "## gradcheck ❌ failed" in md and "| file | output | nodes | result |" in md
    assert "❌ error: unexpected end of input" in md and "Reproduce: `gradcheck check" in md


def test_reproduce_line_reruns_the_same_check(tmp_path):
    p = tmp_path / "bad.grad"
    p.write_text(BAD_GATE)
    result = run("check", str(p), "--seed", "3", "--rtol", "1e-6", "--strict")
    line = next(l for l in result.output.splitlines() if "reproduce:" in l)
    argv = shlex.split(line.split("reproduce:", 1)[1])
    assert argv[:2] == ["gradcheck", "check"] and "--seed" in argv and "3" in argv and "--strict" in argv
    again = run(*argv[1:], "--format", "json")
    assert again.exit_code == result.exit_code == 1
    assert json.loads(again.stdout)["results"][0]["seed"] == 3


def test_reproduce_for_inline_sources():
    result = run("check", "-e", "max(x, 1) * 2", "--at", "x=1", "--strict")
    line = next(l for l in result.output.splitlines() if "reproduce:" in l)
    argv = shlex.split(line.split("reproduce:", 1)[1])
    assert argv[2:4] == ["-e", "max(x, 1) * 2"] and "x=1" in argv
    assert run(*argv[1:]).exit_code == 1


def test_parallel_results_keep_their_order(batch):
    one = json.loads(run("check", str(batch), "--format", "json").stdout)
    two = json.loads(run("check", str(batch), "--format", "json", "-j", "2").stdout)
    assert [r["source"] for r in one["results"]] == [r["source"] for r in two["results"]]
    assert [r["passed"] for r in one["results"]] == [r["passed"] for r in two["results"]]
    assert two["results"][2]["error"]["line"] == 1  # positions survive the process boundary


def test_many_paths_as_pre_commit_passes_them(tmp_path):
    paths = []
    for i in range(30):
        p = tmp_path / f"f{i}.grad"
        p.write_text(f"x = {i}.5\nf = x * x + sin(x)\n")
        paths.append(str(p))
    result = run("check", *paths, "--format", "json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["results"]) == 30


def test_pre_commit_hook_file():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    for needle in ("- id: gradcheck", "name: gradcheck", "entry: gradcheck check", "language: python",
                   r"files: \.grad$"):
        assert needle in text


# --- configuration --------------------------------------------------------------------------------

def _in(tmp_path, monkeypatch, toml: str):
    (tmp_path / "pyproject.toml").write_text(toml)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.grad").write_text("W = randn(2)\nf = sum(W * W)\n")
    monkeypatch.chdir(tmp_path / "sub")  # the nearest pyproject.toml is one level up


def test_config_sets_defaults_and_the_command_line_wins(tmp_path, monkeypatch):
    _in(tmp_path, monkeypatch, "[tool.gradcheck]\nseed = 7\nformat = 'json'\nrtol = 1e-6\n")
    data = json.loads(run("check", "a.grad").stdout)
    assert data["results"][0]["seed"] == 7
    data = json.loads(run("check", "a.grad", "--seed", "1").stdout)
    assert data["results"][0]["seed"] == 1
    assert run("check", "a.grad", "--format", "table").stdout.startswith("✓")


@pytest.mark.parametrize("toml,fragment,line", [
    ("[tool.gradcheck]\nrtoll = 1e-6\n", "unknown key 'rtoll' (did you mean 'rtol'?)", 2),
    ("[tool.gradcheck]\nseed = 1\nrtol = 'tight'\n", "rtol must be a number between 0 and 1, not 'tight'", 3),
    ("[tool.gradcheck]\nformat = 'xml'\n", "format must be one of", 2),
    ("[tool.gradcheck]\nstrict = 1\n", "strict must be true or false", 2),
    ("[tool.gradcheck\nseed = 1\n", "not valid TOML", (1, 16)),
    ("[tool.gradcheck]\nseed = = 1\n", "not valid TOML: Invalid value", (2, 8)),
    ("[tool]\ngradcheck = 5\n", "[tool.gradcheck] must be a table", 2),
    ("tool.gradcheck = 3\n", "[tool.gradcheck] must be a table", 1),
])
def test_bad_config_is_an_input_error_naming_file_and_key(tmp_path, monkeypatch, toml, fragment, line):
    _in(tmp_path, monkeypatch, toml)
    result = run("check", "a.grad")
    assert result.exit_code == 2 and fragment in result.output
    line, col = line if isinstance(line, tuple) else (line, 1)
    assert f"{tmp_path / 'pyproject.toml'}:{line}:{col}: error:" in result.output
    assert "^" in result.output  # the line, and a caret under the place


@pytest.mark.parametrize("command", [("explain",), ("graph",), ("descend", "--steps", "0")])
def test_the_teaching_commands_use_the_seed_check_uses_here(tmp_path, monkeypatch, command):
    _in(tmp_path, monkeypatch, "[tool.gradcheck]\nseed = 7\n")
    shown = run(*command, "-e", "x*y").stdout  # (its unset leaves x and y drawn from the seed)
    assert shown == run(*command, "-e", "x*y", "--seed", "7").stdout != run(*command, "-e", "x*y", "--seed", "0").stdout


def test_a_bad_config_is_the_teaching_commands_error_too(tmp_path, monkeypatch):
    _in(tmp_path, monkeypatch, "[tool.gradcheck]\nrtoll = 1e-6\n")
    result = run("explain", "-e", "x*y")
    assert result.exit_code == 2 and "unknown key 'rtoll'" in result.output


# --- the pytest plugin ------------------------------------------------------------------------------

def test_pytest_plugin_collects_grad_files(pytester):
    pytester.makefile(".grad", good=GOOD, bad=BAD_GATE)
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "gradcheck bad.grad" in out and "its d line 'dt' (line 2)" in out and "reproduce: gradcheck check" in out


def test_pytest_plugin_leaves_other_projects_alone(pytester):
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    pytester.makefile(".txt", notes="not a grad file")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_junit_failure_message_counts_failing_checks_not_lines_of_text(tmp_path):
    # one failing expect, plus a warning line in the text: one check failed
    root = ET.fromstring(run("check", "-e", "f = x * x; expect dx = 5", "--format", "junit").stdout)
    assert root.find("testsuite/testcase/failure").get("message") == "1 gradient check failed"
    # a wrong d line and the leaf row that inherits it: two failing checks, one root cause
    (tmp_path / "bad.grad").write_text(BAD_GATE)
    root = ET.fromstring(run("check", str(tmp_path / "bad.grad"), "--format", "junit").stdout)
    assert root.find("testsuite/testcase/failure").get("message") == "2 gradient checks failed (1 root cause)"
