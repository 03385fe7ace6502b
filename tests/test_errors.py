"""Bad input is an error with a position, never a traceback: exit 2 and FILE:LINE:COL: error: ..."""

import re

import pytest
from click.testing import CliRunner

from gradcheck_cli import check
from gradcheck_cli.cli import main
from conftest import EXPRESSIONS, assert_positioned_error

# (source, a fragment of the message, line, col)
BAD_SOURCES = [
    ("f = (x + ", "unexpected end of input", 1, 10),
    ("f = x +* y", "unexpected '*'", 1, 8),
    ("x = 1\nf = x @@ 2", "unexpected '@'", 2, 8),
    ("f = 3 4", "unexpected number '4'", 1, 7),
    ("x = 1\nf = (x + 1", "unexpected end of input", 2, 11),
    ("x = 1\nf = x + 1)", "unexpected ')'", 2, 10),
    ("x = = 1", "unexpected '='", 1, 5),
    ("x = 1 $ 2", "unexpected character '$'", 1, 7),
    ("x = 1\n  y = 2", "unexpected indentation", 2, 3),
    ("f = x.y", "attributes are not part of the language", 1, 6),
    ('f = "hi"', "strings are not part of the language", 1, 5),
    ("f = __import__('os')", "strings are not part of the language", 1, 16),
    ("f = lambda x: x", "'lambda' is Python", 1, 5),
    ("import os", "'import' is Python", 1, 1),
    ("x = 1\nf = expp(x)", "unknown function 'expp' (did you mean 'exp'?)", 2, 5),
    ("xx = 1; f = x*2", "unknown name 'x' (did you mean 'xx'?)", 1, 13),
    ("x = 1\nf = max(x, x, x)", "max() takes 1 or 2 arguments, got 3", 2, 5),
    ("x = 1\nf = exp(x, x)", "exp() takes 1 argument, got 2", 2, 5),
    ("x = 1\nf = exp()", "exp() takes 1 argument, got 0", 2, 5),
    ("x = [1, 2]\nf = sum(x, bogus=1)", "sum() has no parameter 'bogus'", 2, 12),
    ("x = [1, 2]\nf = sum(x, axis=x)", "'axis' must be a number", 2, 12),
    ("x = [1, 2]\nf = sum(x, axis=3)", "axis 3 is out of range", 2, 5),
    ("x = 1\nf = x(2)", "'x' is a value, not a function", 2, 5),
    ("x = 1\nf = exp", "'exp' is a function", 2, 5),
    ("x = 1\nx = 2\nf = x", "'x' is already defined (line 1)", 2, 1),
    ("const c = 1\nx = 2\nconst d = x * 2", "const d must be a value", 3, 7),
    ("x = 1\noutput nope\nf = x*x", "unknown name 'nope'", 2, 8),
    ("x = 1\ny = 2", "nothing to differentiate", 2, 1),
    ("x = 1\nf = 3 * 4", "nothing to differentiate", 2, 1),
    ("x = 1\nx * 2\nf = x", "a bare expression is only allowed as the last statement", 2, 1),
    ("", "the input is empty", 1, 1),
    ("# only a comment\n\n", "the input is empty", 1, 1),
    # values that are not finite, or outside a gate's domain, at the given point
    ("x = log(0)", "the constant log(0) is not finite", 1, 5),
    ("x = 1\nf = log(x - 1)", "'f' is infinite", 2, 5),
    ("x = 2\nf = sqrt(-x)", "'f' is nan", 2, 5),
    ("x = 3\nf = 1 / (x - 3)", "'f' is infinite", 2, 5),
    ("x = 1\ny = exp(x * 1000)\nf = y + 1", "'y' is infinite", 2, 5),
    ("x = 2\nf = x ^ 1e300", "'f' is infinite", 2, 5),
    # huge literals and towers of powers: no hang
    ("x = 1e999\nf = x*x", "this number is not finite", 1, 5),
    ("x = " + "9" * 100_000 + "\nf = x*x", "this number is not finite", 1, 5),
    ("x = 9^9^9^9\nf = x*x", "is not finite", 1, 7),
    ("x = 2\nf = x^x^x^x^x^x^x", "'x^x^x^x^x' is infinite", 2, 9),
    # shapes
    ("W = randn(2, 3); x = randn(2)\nf = sum(W @ x)", "cannot multiply shapes (2, 3) @ (2,)", 2, 11),
    ("a = randn(3); b = randn(4)\nf = sum(a + b)", "shapes (3,) and (4,) do not broadcast", 2, 11),
    ("x = [[1, 2], [3]]", "the rows of an array literal must all have the same length", 1, 14),
    ("x = 1\nf = [x, 2]", "array literals hold numbers and consts only", 2, 6),
    ("x = randn(-1)", "positive integer sizes", 1, 5),
    ("x = zeros(3, 0, 2)", "positive integer sizes", 1, 5),
    ("x = eye(0)", "positive integer sizes", 1, 5),
    ("x = randn(1.5)", "positive integer sizes", 1, 5),
    ("x = randn(100000, 100000)", "too large", 1, 5),
    ("x = 2\nf = dot(x, x)", "dot takes two vectors", 2, 5),
    ("x = 2\nf = x @ x", "@ needs vectors or matrices", 2, 7),
]


@pytest.mark.parametrize("source,fragment,line,col", BAD_SOURCES, ids=[s[1][:40] for s in BAD_SOURCES])
def test_bad_source_is_a_positioned_error(source, fragment, line, col):
    assert_positioned_error(source, fragment, line, col)


@pytest.mark.parametrize("source,fragment,line,col", BAD_SOURCES[:12], ids=[s[1][:40] for s in BAD_SOURCES[:12]])
def test_cli_bad_file_exits_2_with_message_and_no_traceback(tmp_path, source, fragment, line, col):
    path = tmp_path / "bad.grad"
    path.write_text(source, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert f"bad.grad:{line}:{col}: error: {fragment}" in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_deep_nesting_5000_parentheses():
    report = check("x = 2\nf = " + "(" * 5000 + "x * x" + ")" * 5000)
    assert report.error is None and report.passed
    assert float(report.nodes[0].grad) == 4.0


def test_deep_unary_nesting_is_iterative():
    report = check("x = 0.5\nf = " + "-(" * 3000 + "x * x" + ")" * 3000)
    assert report.error is None and report.passed
    assert len(report.nodes) == 3002


def test_ten_thousand_gate_chain_works():
    src = "x0 = 0.5\n" + "\n".join(f"x{i} = x{i - 1} * 0.999 + 0.001" for i in range(1, 5001))
    report = check(src, symbolic=False)
    assert report.error is None and report.passed
    assert len(report.nodes) == 10001
    assert float(report.nodes[0].grad) == pytest.approx(0.999 ** 5000, rel=1e-9)


def test_crlf_and_bom_are_accepted():
    report = check("\ufeffx = 3\r\ny = 2\r\nf = x * y\r\n")
    assert report.error is None and report.passed
    assert float(report.value) == 6


def test_positions_are_right_after_crlf():
    report = check("x = 1\r\nf = expp(x)\r\n", source="crlf.grad")
    assert (report.error.line, report.error.col) == (2, 5)


def test_error_format_shows_the_line_and_a_caret():
    err = check("x = 1\nf = x +* 2", source="a.grad").error
    assert err.format().splitlines() == ["a.grad:2:8: error: unexpected '*'", "  f = x +* 2", "         ^"]


# --- files, paths and options --------------------------------------------------------------------

def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_binary_file(tmp_path):
    p = tmp_path / "b.grad"
    p.write_bytes(b"x = 1\n\x00\x01\x02f = x")
    result = _run("check", str(p))
    assert result.exit_code == 2 and "binary file" in result.output


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin.grad"
    p.write_bytes("x = 1\n# caf\xe9\nf = x*x\n".encode("latin-1"))
    result = _run("check", str(p))
    assert result.exit_code == 2 and "latin.grad:2:1: error: not UTF-8 text" in result.output


def test_missing_path():
    result = _run("check", "no/such/file.grad")
    assert result.exit_code == 2 and "no such file or directory" in result.output


def test_empty_directory(tmp_path):
    result = _run("check", str(tmp_path))
    assert result.exit_code == 2 and "no .grad files" in result.output


def test_nothing_to_check():
    result = _run("check")
    assert result.exit_code == 2 and "nothing to check" in result.output


def test_both_files_and_expr(tmp_path):
    result = _run("check", str(tmp_path), "-e", "x*x")
    assert result.exit_code == 2 and "not both" in result.output


@pytest.mark.parametrize("at,fragment", [
    ("x", "expected NAME=VALUE"),
    ("x=", "expected NAME=VALUE"),
    ("=3", "expected NAME=VALUE"),
    ("1x=3", "expected NAME=VALUE"),
    ("x=foo", "--at x:1:1: error: unknown name 'foo'"),
    ("x=1+", "--at x:1:3: error: unexpected end of line"),
    ("x=1e999", "this number is not finite"),
    ("q=1", "no leaf named 'q'"),
])
def test_bad_at(at, fragment):
    result = _run("check", "-e", "x*y", "--at", at)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_at_given_twice():
    result = _run("check", "-e", "x*y", "--at", "x=1", "--at", "x=2")
    assert result.exit_code == 2 and "given twice" in result.output


@pytest.mark.parametrize("opt", [["--rtol", "0"], ["--rtol", "-1"], ["--atol", "-1"], ["--step", "0"],
                                 ["--format", "xml"], ["--seed", "abc"], ["--budget", "0"]])
def test_bad_options_exit_2(opt):
    result = _run("check", "-e", "x*y", *opt)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_a_broken_file_in_a_batch_does_not_stop_the_others(tmp_path):
    (tmp_path / "a_good.grad").write_text("x = 2\nf = x * x\n")
    (tmp_path / "b_bad.grad").write_text("f = (\n")
    (tmp_path / "c_good.grad").write_text("y = 3\ng = exp(y)\n")
    result = _run("check", str(tmp_path), "--format", "json")
    assert result.exit_code == 2
    import json
    data = json.loads(result.stdout)
    assert [r["passed"] for r in data["results"]] == [True, False, True]
    assert data["results"][1]["error"]["line"] == 1
    assert re.search(r"b_bad\.grad:1:\d+: error:", result.stderr)


def test_at_a_name_that_is_no_leaf_lists_the_leaves_and_suggests_one():
    sigmoid = str(EXPRESSIONS / "cs231n_sigmoid.grad")
    result = _run("check", sigmoid, "--at", "q=1")
    assert result.exit_code == 2
    assert "--at q: no leaf named 'q'; the leaves are: w0, x0, w1, x1, w2" in result.output
    close = _run("check", sigmoid, "--at", "w00=1")
    assert "no leaf named 'w00' (did you mean 'w0'?); the leaves are: w0, x0, w1, x1, w2" in close.output
    computed = _run("check", sigmoid, "--at", "dot=1")
    assert computed.exit_code == 2 and "'dot' is a computed node, not a leaf" in computed.output
    # many leaves: the list is capped
    many = "".join(f"a{i} = {i}\n" for i in range(30)) + "f = " + " + ".join(f"a{i}" for i in range(30)) + "\n"
    result = _run("check", "-e", many.replace("\n", "; ").rstrip("; "), "--at", "zz=1")
    assert "the leaves are: a0, a1," in result.output and "a19, … (30 in all)" in result.output
