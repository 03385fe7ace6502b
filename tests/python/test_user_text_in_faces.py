"""Text the user's code gives (its functions' names, the messages it raises, a file's name) reaches every
face as text: no face carries a control, format or separator character from it (a terminal's clipboard
write, a screen clear, a bidi override), the JSON face stays JSON, and the process that runs the code
cannot undo the cleaning, because what it sends is cleaned again where the verdict is made."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
import xml.etree.ElementTree as ET

import pytest

ESCAPES = "\x1b]52;c;cHduZWQ=\x1b\\\x1b[2J\u202e\x07"
AFFINE = ["--shape", "x=2,3", "--shape", "w=3,2"]
LAYER = '''import numpy as np
def affine_forward(x, w):
    return x @ w, (x, w)
def affine_backward(dout, cache):
    x, w = cache
    return {dx} @ w.T, x.T @ dout
'''


def _run(tmp_path, source: str, *args, fmt: str = "table"):
    (tmp_path / "layer.py").write_text(source, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", "layer.py::affine", *AFFINE,
                           "--format", fmt, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"})


def _controls(text: str) -> list:
    """The control, format and separator characters in `text` (newlines and tabs aside)."""
    return sorted({repr(ch) for ch in text if ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")})


@pytest.mark.parametrize("fmt", ["table", "json", "github", "junit", "markdown", "html"])
def test_a_backwards_own_name_reaches_no_face_as_escapes(tmp_path, fmt):
    named = LAYER.format(dx="2 * dout") + f"affine_backward.__qualname__ = {('bw' + ESCAPES)!r}\n"
    done = _run(tmp_path, named, fmt=fmt)
    assert done.returncode == 1, done.stderr
    assert _controls(done.stdout + done.stderr) == []
    if fmt != "markdown":  # (which names the failing inputs, not the backward)
        assert "x1b]52" in done.stdout  # shown as itself
    if fmt == "json":
        json.loads(done.stdout)
    if fmt == "junit":
        ET.fromstring(done.stdout)


@pytest.mark.parametrize("name,code", [('a"\x00tensor0\x00', 0), ("\x00tensor999\x00", 0)])
def test_a_name_that_spells_the_json_faces_tensor_mark_leaves_it_json(tmp_path, name, code):
    named = LAYER.format(dx="dout") + f"affine_backward.__qualname__ = {name!r}\n"
    done = _run(tmp_path, named, fmt="json")
    assert done.returncode == code, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and "Traceback" not in done.stderr
    gates = report["results"][0]["gates"]
    assert gates and all(g["name"] == name.replace("\x00", "\\x00") for g in gates)


@pytest.mark.parametrize("fmt", ["table", "json", "github", "junit"])
def test_code_that_undoes_the_cleaning_in_its_process_still_reaches_no_face(tmp_path, fmt):
    # the user's module runs where its check does: it can replace gradcheck's cleaning there
    message = ESCAPES + " a\nb"
    source = ("import gradcheck_cli.python.pysource as s, gradcheck_cli.python.usercode as u\n"
              "s.exception_text = u.exception_text = lambda exc: str(exc)\n"
              + LAYER.format(dx="dout").replace("    x, w = cache\n", f"    raise ValueError({message!r})\n"))
    done = _run(tmp_path, source, fmt=fmt)
    assert done.returncode == 1, done.stderr
    assert _controls(done.stdout + done.stderr) == []
    assert "the backward raised" in done.stdout and "x1b]52" in done.stdout
    if fmt == "json":
        json.loads(done.stdout)


def test_a_reproduce_line_shows_a_values_escapes_as_text(tmp_path):
    (tmp_path / "ex.grad").write_text("x = 2\nf = x*x\nexpect dx = 5\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", "ex.grad", "--at", f"x=2 # {ESCAPES}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "reproduce: " in done.stdout
    assert _controls(done.stdout + done.stderr) == []


@pytest.mark.parametrize("kind", ["grad", "py"])
def test_a_reproduce_line_for_a_name_with_escapes_is_printable_and_reruns_the_check_in_bash(tmp_path, kind):
    # the line is what the user pastes: bash's $'...' gives the name back byte for byte, so it runs the
    # same check (the same failure, the same exit code); shown raw it would have cleared the terminal
    name = f"n{ESCAPES}\n{kind}.{kind}"
    if kind == "grad":
        (tmp_path / name).write_text("x = 2\nf = x*x\nexpect dx = 5\n", encoding="utf-8")
        args = ["check", name]
    else:
        (tmp_path / name).write_text(LAYER.format(dx="2 * dout"), encoding="utf-8")
        args = ["check-py", f"{name}::affine", *AFFINE]
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1 and _controls(done.stdout + done.stderr) == []
    (line,) = [ln.split("reproduce: ", 1)[1] for ln in done.stdout.splitlines() if "reproduce: " in ln]
    assert line.startswith(f"gradcheck {args[0]} $'n\\x1b]52;c;")
    again = subprocess.run(["bash", "-c", line.replace("gradcheck ", f"{sys.executable} -m gradcheck_cli ", 1)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and again.stdout == done.stdout


@pytest.mark.parametrize("command", ["explain", "quiz", "check"])
def test_a_files_name_is_shown_as_itself_by_explain_quiz_and_errors(tmp_path, command):
    name = f"a{ESCAPES}.grad"
    (tmp_path / name).write_text("x = 2\nf = x*x\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", command, name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, input="4\n4\n")
    assert done.returncode in (0, 1), done.stderr
    assert _controls(done.stdout + done.stderr) == []
    missing = subprocess.run([sys.executable, "-m", "gradcheck_cli", command, "no" + name], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and _controls(missing.stdout + missing.stderr) == []
    assert "\\x1b]52" in missing.stderr


def test_an_errors_line_is_the_line_the_lexer_counts(tmp_path):
    # a carriage return or form feed inside a line is no line break to the language: the line quoted is
    # the line the error is on
    (tmp_path / "cr.grad").write_text("x = 2 # a\rb\ny = 3\nf = x*y $\n", newline="")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", "cr.grad"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cr.grad:3:" in done.stderr
    assert "f = x*y $" in done.stderr


def test_junit_quotes_a_source_line_holding_a_bidi_override_as_text(tmp_path):
    (tmp_path / "bidi.grad").write_text("x = 2\nf = x\u202e*x\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", "bidi.grad", "--format", "junit"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    ET.fromstring(done.stdout)
    assert _controls(done.stdout) == [] and "\\u202e" in done.stdout


def test_an_error_quoting_a_huge_name_is_cut(tmp_path):
    (tmp_path / "long.grad").write_text("x = 2\nf = " + "a" * 100_000 + "\n")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", "long.grad", "--format", "json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    message = json.loads(done.stdout)["results"][0]["error"]["message"]
    assert message.startswith("unknown name 'aaa") and len(message) <= 2000 and "characters in all" in message
    assert len(done.stdout) < 10_000 and len(done.stderr) < 10_000


def test_a_file_name_that_is_not_utf8_leaves_the_json_well_formed(tmp_path):
    name = b"bad\xff.grad"
    (tmp_path / name.decode("utf-8", "surrogateescape")).write_text("x = 2\nf = x*x\n")
    done = subprocess.run([sys.executable.encode(), b"-m", b"gradcheck_cli", b"check", name, b"--format", b"json"],
                          cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.decode("utf-8"))  # strict UTF-8: no lone surrogate escapes in it
    source = report["results"][0]["source"]
    source.encode("utf-8")
    assert source == "bad\\udcff.grad"
