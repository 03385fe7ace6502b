"""A file name is shown as itself in every face: its control characters (an escape sequence, a bell, a
newline that would start a CI log line of its own, a right-to-left override) written as escapes, never
sent raw to a terminal or a log; JSON keeps the real name, as JSON escapes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
NAME = "bad\x1b[31mname\x07\u202e\n::warning::x.grad"
RAW = [b"\x1b", b"\x07", "\u202e".encode()]


def run(folder: Path, *args) -> subprocess.CompletedProcess:
    """`gradcheck check NAME ARGS` in `folder`, run in this process by click's CliRunner (the bytes it
    writes to stdout and stderr, as a subprocess's capture gives them); an exception that escaped fails."""
    from click.testing import CliRunner

    from gradcheck_cli.cli import main
    env = {"NO_COLOR": "1", "COLUMNS": "120", "GITHUB_STEP_SUMMARY": None}
    here = os.getcwd()
    try:
        os.chdir(folder)
        result = CliRunner().invoke(main, ["check", NAME, *args], env=env)
    finally:
        os.chdir(here)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["check", NAME, *args], result.exit_code, result.stdout_bytes,
                                       result.stderr_bytes)


@pytest.mark.parametrize("fmt", ["table", "github", "junit", "markdown", "html"])
def test_every_face_escapes_a_file_names_control_characters(tmp_path, fmt):
    shutil.copy(ROOT / "examples" / "mistakes" / "sq_forgot_2.grad", tmp_path / NAME)
    done = run(tmp_path, "--format", fmt)
    assert done.returncode == 1
    for stream in (done.stdout, done.stderr):
        assert not any(raw in stream for raw in RAW), stream[:400]
        assert not any(line.startswith(b"::warning::x") for line in stream.split(b"\n"))
    shown = b"bad\\x1b[31mname\\x07\\u202e\\n::warning::x.grad"
    if fmt == "github":  # the name is in the annotation's file property alone, its colons encoded as GitHub asks
        shown = shown.replace(b":", b"%3A")
    assert shown in done.stdout


def test_json_keeps_the_real_name(tmp_path):
    shutil.copy(ROOT / "examples" / "mistakes" / "sq_forgot_2.grad", tmp_path / NAME)
    done = run(tmp_path, "--format", "json")
    assert json.loads(done.stdout)["results"][0]["source"] == NAME


def test_an_input_errors_file_name_is_escaped_too(tmp_path):
    (tmp_path / NAME).write_text("f = (\n", encoding="utf-8")
    done = run(tmp_path)
    assert done.returncode == 2
    assert not any(raw in done.stderr + done.stdout for raw in RAW)
    assert b"bad\\x1b[31mname" in done.stderr
