"""The cache folder holds data this run did not write: a folder another user can write into is as no
cache, a file is read only when it is a regular file of the user's (never a FIFO, never through a
symbolic link), pruning never follows a link out of the folder, and an answer holding a terminal's
escape is no answer gradcheck wrote."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from gradcheck_cli.oracles.jacobian_cache import MAX_FILES, PREFIX

EXPECT = "x = 2\ny = 3\nf = exp(x) * y\nexpect dx = 3*exp(x)\n"  # wrong: dx = y*exp(x)... equal at this point only
GATE = "gate g(t) = exp(t)\n  dt = dout * exp(t)\nx = 0.5\nf = g(x)\n"


def _check(folder, cache, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", "check", *args], cwd=folder, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "GRADCHECK_CACHE_DIR": str(cache)})


def _forge_answers(cache, verdict: list) -> int:
    """Every kept `expect` answer's verdict replaced, its checksum made again (as anyone who can write the
    folder can): how many."""
    forged = 0
    for path in cache.glob(f"{PREFIX}*/*.json"):
        data = json.loads(path.read_text())
        if "answer" in data and data["answer"].get("verdict"):
            data["answer"]["verdict"] = verdict
            body = {k: v for k, v in data.items() if k != "check"}
            data["check"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            path.write_text(json.dumps(data))
            forged += 1
    return forged


def test_a_cache_folder_others_can_write_into_is_as_no_cache(tmp_path):
    (tmp_path / "e.grad").write_text(EXPECT)
    cache = tmp_path / "cache"
    first = _check(tmp_path, cache, "e.grad")
    assert first.returncode == 1 and "equal at this point only" in first.stdout
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert _forge_answers(cache, [True, "x"]) >= 1
    assert _check(tmp_path, cache, "e.grad").returncode == 0  # a process of the user's can still forge it
    cache.chmod(0o777)  # ... but then so could anyone: it is read as no cache
    again = _check(tmp_path, cache, "e.grad")
    assert again.returncode == 1 and "equal at this point only" in again.stdout


def test_an_answer_holding_a_terminals_escape_is_no_answer(tmp_path):
    (tmp_path / "e.grad").write_text(EXPECT)
    cache = tmp_path / "cache"
    _check(tmp_path, cache, "e.grad")
    assert _forge_answers(cache, [False, "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ \x1b[2J"]) >= 1
    again = _check(tmp_path, cache, "e.grad")
    assert again.returncode == 1 and "\x1b" not in again.stdout + again.stderr
    assert "equal at this point only: dx = y*exp(x)" in again.stdout  # SymPy's own answer, again


def test_a_fifo_in_the_cache_does_not_hang_a_run(tmp_path):
    cache = tmp_path / "cache"
    first = _check(tmp_path, cache, "-e", "x*y")
    assert first.returncode == 0
    (grammar,) = cache.glob("grammar-*.json")
    grammar.unlink()
    os.mkfifo(grammar)
    assert _check(tmp_path, cache, "-e", "x*y", timeout=60).returncode == 0


def test_pruning_never_follows_a_link_out_of_the_cache(tmp_path):
    (tmp_path / "g.grad").write_text(GATE)
    cache = tmp_path / "cache"
    assert _check(tmp_path, cache, "g.grad").returncode == 0
    (kept,) = cache.glob(f"{PREFIX}*")
    victim = tmp_path / "victim"
    victim.mkdir()
    for k in range(MAX_FILES + 1):
        (victim / f"{k}.txt").write_text("")
    for entry in kept.iterdir():
        entry.unlink()
    kept.rmdir()
    kept.symlink_to(victim)
    assert _check(tmp_path, cache, "g.grad").returncode == 0
    assert len(list(victim.iterdir())) == MAX_FILES + 1


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_a_cache_file_of_another_user_is_not_read(tmp_path):
    (tmp_path / "e.grad").write_text(EXPECT)
    cache = tmp_path / "cache"
    _check(tmp_path, cache, "e.grad")
    assert _forge_answers(cache, [True, "x"]) >= 1
    for path in cache.glob(f"{PREFIX}*/*.json"):
        os.chown(path, 65534, 65534)
    again = _check(tmp_path, cache, "e.grad")
    assert again.returncode == 1 and "equal at this point only" in again.stdout
