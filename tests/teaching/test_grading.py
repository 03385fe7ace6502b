"""`gradcheck grade`: a class of generated submissions with known mistakes, scored exactly, each
wrong part with the reason a learner can act on; submissions that do not parse, raise, loop, eat
memory or write files get 0 for what they broke and never stop the run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import grade_in_process, gradcheck_in_process

ROOT = Path(__file__).resolve().parent.parent.parent
PY_EXERCISE = ROOT / "examples" / "grading" / "affine.py"
GRAD_EXERCISE = ROOT / "examples" / "grading" / "affine_gate.grad"

RIGHT = {"dx": "(dout @ w.T).reshape(x.shape)", "dw": "x.reshape(x.shape[0], -1).T @ dout", "db": "dout.sum(axis=0)"}


def backward(**slips) -> str:
    lines = {**RIGHT, **slips}
    return ("import numpy as np\n\n\ndef affine_backward(dout, cache):\n    x, w, b = cache\n"
            + "".join(f"    {k} = {v}\n" for k, v in lines.items()) + "    return dx, dw, db\n")


# name: (source, {part: points earned}, {part: a phrase its reason must hold})
PY_CLASS = {
    "ada": (backward(), {"dx": 2, "dw": 2, "db": 1}, {}),
    "ben": (backward(db="dout"), {"dx": 2, "dw": 2, "db": 0}, {"db": "not summed over the batch"}),
    "cai": (backward(dw="dout.T @ x.reshape(x.shape[0], -1)"), {"dx": 2, "dw": 0, "db": 1},
            {"dw": "transpose of the right answer"}),
    "dee": (backward(dx="dout @ w.T"), {"dx": 0, "dw": 2, "db": 1}, {"dx": "right values in the wrong shape"}),
    "eve": (backward(dx="2 * (dout @ w.T).reshape(x.shape)"), {"dx": 0, "dw": 2, "db": 1}, {"dx": "factor of 2"}),
    "fay": (backward(db="-dout.sum(axis=0)"), {"dx": 2, "dw": 2, "db": 0}, {"db": "wrong sign"}),
    "gus": (backward(dw="0.5 * x.reshape(x.shape[0], -1).T @ dout"), {"dx": 2, "dw": 0, "db": 1},
            {"dw": "factor of 0.5 (a forgotten 2?)"}),
    "hal": (backward(db="dout.mean(axis=0)"), {"dx": 2, "dw": 2, "db": 0}, {"db": "factor of 0.25"}),
    "ivy": (backward(db="dout.sum(axis=0) * np.nan"), {"dx": 2, "dw": 2, "db": 0}, {"db": "not finite"}),
    "jon": (backward(db="None"), {"dx": 2, "dw": 2, "db": 0}, {"db": "db"}),
    "kim": ("import numpy as np\n\ndef affine_backward(dout, cache):\n    raise NotImplementedError('todo')\n",
            {"dx": 0, "dw": 0, "db": 0}, {"dx": "raised NotImplementedError", "db": "raised NotImplementedError"}),
    "lou": ("def affine_backward(dout, cache)\n    return 1\n", {"dx": 0, "dw": 0, "db": 0}, {"dx": "lou.py:1:33: error: cannot import"}),
    "max": ("def affine_backward(dout, cache):\n    while True:\n        pass\n", {"dx": 0, "dw": 0, "db": 0},
            {"dx": "affine_backward did not finish"}),  # in --call-timeout's 0.5 s of CPU, or in --timeout
    "ned": ("import numpy as np\n\ndef affine_backward(dout, cache):\n    big = np.ones((10 ** 5, 10 ** 5))\n"
            "    return big, big, big\n", {"dx": 0, "dw": 0, "db": 0}, {"dx": "MemoryError"}),
    "ola": ("def affine_bwd(dout, cache):\n    return None\n", {"dx": 0, "dw": 0, "db": 0},
            {"dx": "missing: affine_backward is not defined"}),
    "pam": (backward(dw="x.T @ dout"), {"dx": 2, "dw": 0, "db": 1}, {"dw": "dw has shape (3, 2, 5), but the input has shape (6, 5)"}),
    "quin": ("import sys\nsys.exit(3)\n", {"dx": 0, "dw": 0, "db": 0}, {"dx": "sys.exit(3)"}),
    "rae": ("print('hello ' * 1000)\n" + backward(), {"dx": 2, "dw": 2, "db": 1}, {}),
    "sol": (backward().replace("    x, w, b = cache\n", "    x, w, b = cache\n    open('junk.bin', 'wb').write(b'0' * 10 ** 7)\n"),
            {"dx": 0, "dw": 0, "db": 0}, {"dx": "File too large"}),  # a 1 MB limit on files it writes
    "tia": (backward() + "\n\ndef affine_forward(x, w, b):\n    return x.reshape(x.shape[0], -1) @ w + b + 1, (x, w, b)\n",
            {"dx": 0, "dw": 0, "db": 0}, {"dx": "forward's output differs"}),
    "uma": (backward(dx="(dout @ w.T).reshape(x.shape) / x.shape[0]"), {"dx": 0, "dw": 2, "db": 1},
            {"dx": "factor of 0.25"}),
    "vic": (backward(dw="x.reshape(x.shape[0], -1).T @ dout + 1e-3"), {"dx": 2, "dw": 0, "db": 1},
            {"dw": "wrong values"}),
    "wes": (backward().replace("    x, w, b = cache\n", "    x, w, b = cache\n    print('x' * 10 ** 7)\n"),
            {"dx": 2, "dw": 2, "db": 1}, {}),  # 10 MB printed per call: thrown away, graded as usual
    "xia": ("import sys\nwhile True:\n    sys.stderr.write('y' * 10 ** 6)\n", {"dx": 0, "dw": 0, "db": 0},
            {"dx": "File too large"}),  # a flood on standard error is cut at the file limit
}


def _grade(exercise, folder: Path, *extra):
    files = sorted(str(p) for p in folder.iterdir())
    args = [str(exercise), *files, "--secret", "424242", "--timeout", "12", "-j", "2", "--format", "json", *extra]
    # in this process (not about the process: each submission still runs in its own, sandboxed or a fork
    # server's child)
    done = grade_in_process(*args, cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    return {s["student"]: s for s in json.loads(done.stdout)["submissions"]}


@pytest.fixture(scope="module")
def python_class(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class") / "submissions"
    folder.mkdir()
    for name, (source, _, _) in PY_CLASS.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    feedback = folder.parent / "feedback"
    # (--call-timeout: the endless loop's call stopped after 0.5 s of CPU, where each call of the others takes
    # well under a millisecond of it)
    graded = _grade(PY_EXERCISE, folder, "--csv", str(folder.parent / "grades.csv"), "--feedback", str(feedback),
                    "--call-timeout", "0.5")
    return graded, folder.parent


@pytest.mark.parametrize("name", list(PY_CLASS))
def test_a_python_class_is_scored_exactly_with_reasons(python_class, name):
    graded, _ = python_class
    _, expected, phrases = PY_CLASS[name]
    parts = {p["what"].split(".")[-1]: p for p in graded[name]["parts"]}
    assert {k: p["earned"] for k, p in parts.items()} == expected, parts
    assert graded[name]["score"] == sum(expected.values()) and graded[name]["out_of"] == 5
    for part, phrase in phrases.items():
        assert phrase in parts[part]["reason"], (name, part, parts[part]["reason"])
    for part, p in parts.items():
        assert (p["status"] == "right") == (expected[part] > 0)


def test_the_gradebook_and_the_feedback_files(python_class):
    graded, folder = python_class
    rows = list(csv.DictReader(io.StringIO((folder / "grades.csv").read_text(encoding="utf-8"))))
    assert len(rows) == len(PY_CLASS) and {r["student"] for r in rows} == set(PY_CLASS)
    ben = next(r for r in rows if r["student"] == "ben")
    assert (ben["score"], ben["out_of"], ben["affine.db"]) == ("4", "5", "0") and "not summed" in ben["reasons"]
    note = (folder / "feedback" / "ben.md").read_text(encoding="utf-8")
    assert "**4 / 5**" in note and "not summed over the batch" in note
    assert len([p for p in (folder / "feedback").iterdir() if p.is_file()]) == len(PY_CLASS)
    points = {p.name for p in (folder / "feedback").iterdir() if p.is_dir()}
    assert {"ben.points", "kim.points"} <= points and not {"ada.points", "lou.points", "max.points"} & points


def _submissions(tmp_path: Path, **sources) -> Path:
    """A folder of submissions: NAME.py holding each source given."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name, source in sources.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    return folder


def _assert_scored(graded: dict, name: str) -> None:
    """The student `name` of PY_CLASS earned exactly its points, part by part."""
    parts = {p["what"].split(".")[-1]: p for p in graded[name]["parts"]}
    assert {k: p["earned"] for k, p in parts.items()} == PY_CLASS[name][1], {k: p["reason"] for k, p in parts.items()}


def test_a_grader_with_more_than_1024_files_open_grades_as_any_other(tmp_path):
    """The grader waits on each submission's pipes with poll, not select (whose descriptors stop at
    1,024): in a process with many files open (a notebook, a long-lived test process) the second
    submission's pipes were past that, and a right student got 0 on every part ("ValueError in the
    grader"). Here every descriptor the grade opens is past 1,024, two submissions at once (-j 2)."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows {hard} open files, fewer than the test needs")
    folder = _submissions(tmp_path, ada=PY_CLASS["ada"][0], ben=PY_CLASS["ben"][0])
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held: list = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        graded = _grade(PY_EXERCISE, folder)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    _assert_scored(graded, "ada")
    _assert_scored(graded, "ben")
    assert "not summed over the batch" in {p["what"]: p for p in graded["ben"]["parts"]}["affine.db"]["reason"]


def test_a_call_that_waits_is_not_charged_its_wall_clock_time_as_cpu(tmp_path, monkeypatch):
    """--call-timeout counts CPU: a right backward whose first call waits 1.5 s (sleeping: no CPU, as a
    call stretched by a loaded machine) earns its points under a 0.5 s limit, though the grader's
    first look at its processes comes 1 s into the call (as it does when the grader itself is
    starved). That look once charged the call the wall-clock time before it: 1 s, past the limit."""
    from gradcheck_cli.teaching import sandbox
    monkeypatch.setattr(sandbox, "WATCH_SECONDS", 1.0)
    slow = PY_CLASS["ada"][0].replace("    x, w, b = cache\n", "    x, w, b = cache\n    if not SLEPT:\n"
                                      "        SLEPT.append(time.sleep(1.5))\n").replace("import numpy as np\n",
                                                                                     "import time\nimport numpy as np\nSLEPT = []\n")
    assert "time.sleep(1.5)" in slow
    _assert_scored(_grade(PY_EXERCISE, _submissions(tmp_path, ada=slow), "--call-timeout", "0.5"), "ada")


def _nest(folder: Path, depth: int) -> None:
    """Folders `depth` deep under `folder` (made by relative names, as a submission makes them: past what a
    path can name), a file at the bottom and a folder there whose permissions are all taken away."""
    import os
    here = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=here)
            below = os.open("d", os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = below
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=here), "w") as f:
            f.write("x")
        os.mkdir("locked", dir_fd=here)
        os.chmod("locked", 0, dir_fd=here)
    finally:
        os.close(here)


@pytest.mark.parametrize("depth", [1_500, 2_500])  # deeper than Python's recursion; and than a path can name
def test_a_submissions_private_folder_is_removed_however_deep_it_made_it(tmp_path, depth, capfd):
    from gradcheck_cli.teaching import sandbox
    folder = tmp_path / "private"
    (folder / "work").mkdir(parents=True)
    _nest(folder / "work", depth)
    stderr = open(folder / "stderr", "wb")
    try:
        sandbox._remove(str(folder), stderr)  # the removal thread's own function: it must never raise
        assert not folder.exists() and stderr.closed
        assert capfd.readouterr() == ("", "")
    finally:
        _rm_deep(folder)


def _rm_deep(*folders) -> None:
    """What a failing test left removed by the tools (pytest's own removal of its temporary folders recurses,
    and a tree this deep would end it, run after run)."""
    import subprocess
    for folder in folders:
        subprocess.run(["chmod", "-R", "u+rwx", "--", str(folder)], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", "--", str(folder)], capture_output=True, check=False)


@pytest.mark.parametrize("mode", ["auto", "off"])  # in the sandbox where bwrap runs here; and without it
def test_the_grader_ends_after_the_submissions_folders_are_removed(tmp_path, monkeypatch, mode):
    """A submission that nests 1,500 folders in its private folder (deeper than the recursion of os.walk and
    shutil.rmtree): its folder is gone when the grade returns, as every other's, and the right student
    beside it keeps its points. The folder was left in the temporary folder for good: its removal, in
    a thread of its own, ended in a RecursionError (and a grader could end before such a thread did)."""
    import os
    import tempfile
    monkeypatch.setenv("GRADCHECK_SANDBOX", mode)
    marker = f"# deep folder {os.getpid()} {tmp_path.name}"
    deep = ("import os\n" + marker + "\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
            "os.chdir(os.path.dirname(__file__))\n" + PY_CLASS["ada"][0])
    _assert_scored(_grade(PY_EXERCISE, _submissions(tmp_path, deep=deep, ada=PY_CLASS["ada"][0])), "ada")
    left = []
    with os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            if entry.name.startswith("gradcheck-submission-"):
                try:
                    source = (Path(entry.path) / "work" / "submission.py").read_text(encoding="utf-8")
                except OSError:
                    continue
                if marker in source:
                    left.append(entry.path)
    _rm_deep(*left)
    assert not left, left


def test_the_grading_threads_find_warnings_ignored_when_they_ignore_them(tmp_path, monkeypatch):
    """Each call into the exercise's code ignores warnings in a block of its own (`warnings.catch_warnings`), which
    saves the filters it finds and puts them back at its end, and that is not thread-safe: under -j 2, one
    thread's block ending while the other's call ran put the caller's filters back under that call (under
    `-W error` the exercise's warning raised there, and its student got 0). Every block a grading thread
    enters must find warnings ignored already, so that whatever order they end in, "ignore" is what they put
    back."""
    import threading
    import warnings
    found = []
    real = warnings.catch_warnings

    class Recording(real):
        def __enter__(self):
            if threading.current_thread() is not threading.main_thread():
                found.append(list(warnings.filters))
            return super().__enter__()
    monkeypatch.setattr(warnings, "catch_warnings", Recording)
    _assert_scored(_grade(PY_EXERCISE, _submissions(tmp_path, ada=PY_CLASS["ada"][0], ben=PY_CLASS["ben"][0])), "ada")
    assert found, "no block was entered in a grading thread"
    assert all(f and f[0][:4] == ("ignore", None, Warning, None) for f in found), [f[:2] for f in found]


GATE = "gate affine(x, W, b) = x @ W + b\n"
POINT = ("\nx = [[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]]\nW = [[1.0, 2.0], [2.0, -1.0]]\nb = [0.5, -0.5]\n"
         "L = sum(tanh(affine(x, W, b)))\n")


def gate(dx="dout @ W.T", dW="x.T @ dout", db="sum(dout, axis=0)") -> str:
    return GATE + f"  dx = {dx}\n  dW = {dW}\n  db = {db}\n" + POINT


GRAD_CLASS = {
    "ann": (gate(), {"dW": 2, "dx": 2, "db": 1}, {}),
    "bo": (gate(dx="dout @ W"), {"dW": 2, "dx": 0, "db": 1}, {"dx": "right only at the exercise's own point"}),
    "cy": (gate(db="dout"), {"dW": 2, "dx": 2, "db": 0}, {"db": "not summed over the batch"}),
    "di": (gate(dW="(x.T @ dout).T"), {"dW": 0, "dx": 2, "db": 1}, {"dW": "transpose of the right answer"}),
    "ed": (gate(dW="x.T @ dout / 2"), {"dW": 0, "dx": 2, "db": 1}, {"dW": "factor of 0.5"}),
    "flo": (gate(db="sum(dout, axis=0"), {"dW": 0, "dx": 0, "db": 0}, {"dW": "flo.grad:6:1: error: unexpected"}),
    "gil": ("x = 1\nf = x * x\n", {"dW": 0, "dx": 0, "db": 0}, {"dx": "no `gate affine(...)`"}),
    "hu": (gate(dx="dout"), {"dW": 2, "dx": 0, "db": 1}, {"dx": "shape"}),
}


@pytest.fixture(scope="module")
def grad_class(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gclass") / "submissions"
    folder.mkdir()
    for name, (source, _, _) in GRAD_CLASS.items():
        (folder / f"{name}.grad").write_text(source, encoding="utf-8")
    return _grade(GRAD_EXERCISE, folder)


@pytest.mark.parametrize("name", list(GRAD_CLASS))
def test_a_grad_class_is_scored_exactly_with_reasons(grad_class, name):
    _, expected, phrases = GRAD_CLASS[name]
    parts = {p["what"]: p for p in grad_class[name]["parts"]}
    assert {k: p["earned"] for k, p in parts.items()} == expected, parts
    for part, phrase in phrases.items():
        assert phrase in parts[part]["reason"], (name, part, parts[part]["reason"])


def test_the_hidden_points_depend_on_the_secret_only(tmp_path):
    from gradcheck_cli.teaching.exercise import load_exercise
    from gradcheck_cli.teaching.grading import _python_points
    ex = load_exercise(str(PY_EXERCISE))
    a, b, c = (_python_points(ex, "affine", s, 2) for s in (1, 1, 2))
    assert all((a[i][1]["w"] == b[i][1]["w"]).all() for i in range(3))
    assert (a[0][1]["w"] == c[0][1]["w"]).all() and not (a[1][1]["w"] == c[1][1]["w"]).all()


@pytest.mark.parametrize("variants", [False, True])
def test_each_pair_has_hidden_points_of_its_own(variants):
    """relu, svm_loss and softmax_loss take an x of their own shapes (4×5, 5×4, 5×4): a failing hidden point
    shown to a student (their point file) must not be another pair's hidden point, nor start as one."""
    from gradcheck_cli.teaching.exercise import load_exercise
    from gradcheck_cli.teaching.grading import _python_points
    ex = load_exercise(str(ROOT / "examples" / "grading" / "cs231n_a2.py"))
    ex.variants = variants
    hidden = {owner: [inputs for _, inputs in _python_points(ex, owner, 11, 3, "ada")[1:]]
              for owner in ("relu", "svm_loss", "softmax_loss", "affine", "batchnorm")}
    firsts = {owner: [p[next(iter(p))].ravel()[:4].tolist() for p in points] for owner, points in hidden.items()}
    seen = [tuple(v) for points in firsts.values() for v in points]
    assert len(set(seen)) == len(seen), firsts  # 15 hidden points, no two alike, even in their first values


@pytest.mark.parametrize("text, fragment, line", [
    ("# points: dq=2\n" + gate(), "no gate of the exercise has a parameter 'q'", 1),
    ("# points: dW=two\n" + gate(), "NAME=POINTS", 1),
    (gate(), "names no parts", 1),
    ("# points: dW=1\n" + GATE + "  dx = dout\n" + POINT, "has no line `dW = ...`", 2),
])
def test_bad_exercises_are_positioned_errors(tmp_path, text, fragment, line):
    path = tmp_path / "ex.grad"
    path.write_text(text, encoding="utf-8")
    sub = tmp_path / "s.grad"
    sub.write_text(gate(), encoding="utf-8")
    done = gradcheck_in_process("grade", path, sub, "--secret", "1")  # the exercise read before any submission runs
    assert done.returncode == 2 and fragment in done.stderr and f"ex.grad:{line}:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_grade_needs_a_secret_and_matching_submissions(tmp_path):
    sub = tmp_path / "s.py"
    sub.write_text(backward(), encoding="utf-8")
    base = ["grade", str(PY_EXERCISE), str(sub)]  # refused before any submission runs: in this process
    done = gradcheck_in_process(*base, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "--secret" in done.stderr
    other = tmp_path / "s.grad"
    other.write_text(gate(), encoding="utf-8")
    done = gradcheck_in_process(*base[:-1], str(other), "--secret", "3")
    assert done.returncode == 2 and "its submissions" in done.stderr


def test_partial_credit_for_an_nbgrader_cell(tmp_path):
    from gradcheck_cli import partial_credit
    from gradcheck_cli.core.errors import GradcheckError
    from gradcheck_cli.python.pymodule import load_module
    (tmp_path / "cell.py").write_text(backward(db="dout"), encoding="utf-8")
    namespace = vars(load_module(str(tmp_path / "cell.py")))  # what a notebook's globals() holds
    credit = partial_credit(str(PY_EXERCISE), namespace)
    assert credit == 4.0 and credit._repr_mimebundle_()["text/plain"] == "4.0"  # nbgrader reads the number
    assert "not summed over the batch" in credit._repr_mimebundle_()["text/html"]
    assert partial_credit(str(PY_EXERCISE), namespace, "affine.db") == 0.0
    assert partial_credit(str(PY_EXERCISE), namespace, ["affine.dx", "affine.dw"]) == 4.0
    with pytest.raises(GradcheckError, match="no part 'affine.dz'"):
        partial_credit(str(PY_EXERCISE), namespace, "affine.dz")


def test_points_from_a_toml_beside_the_exercise_and_html_feedback(tmp_path):
    exercise = tmp_path / "ex.grad"
    exercise.write_text(gate(), encoding="utf-8")  # no `# points:` line
    (tmp_path / "points.toml").write_text('[points]\ndb = 3\n"affine.dW" = 1\n', encoding="utf-8")
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "zed.grad").write_text(gate(db="dout"), encoding="utf-8")
    graded = _grade(exercise, folder, "--feedback", str(tmp_path / "fb"), "--feedback-format", "html")
    parts = {p["what"]: p["earned"] for p in graded["zed"]["parts"]}
    assert parts == {"db": 0, "affine.dW": 1} and graded["zed"]["out_of"] == 4
    page = (tmp_path / "fb" / "zed.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "1 / 4" in page and "not summed over the batch" in page
    (tmp_path / "points.toml").write_text("[points]\ndb = -1\n", encoding="utf-8")
    done = grade_in_process(exercise, folder / "zed.grad", "--secret", "1")
    assert done.returncode == 2 and "must be a number ≥ 0" in done.stderr


@pytest.mark.parametrize("server", ["on", "off"])
def test_grad_workers_forked_from_a_server_grade_as_fresh_ones_within_the_limits(tmp_path, monkeypatch, server):
    """A `.grad` worker is a child of a fork server that imported gradcheck and SymPy once (one server per
    job slot, each used again), or a fresh Python (GRADCHECK_FORKSERVER=0): the same Graded either way
    (the scores and reasons of GRAD_CLASS above), and the same limits: past --timeout, or past the
    memory (less than a Python with SymPy imported takes), the student's 0 with the reason."""
    from gradcheck_cli.python import forkserver
    from gradcheck_cli.teaching import graderun
    from gradcheck_cli.teaching.exercise import load_exercise
    from gradcheck_cli.teaching.graderun import Limits, grade_class
    monkeypatch.setenv("GRADCHECK_FORKSERVER", "1" if server == "on" else "0")
    # the servers of this test alone (started, counted and ended here); the process's kept ones, other
    # grades', are back after it (conftest.grade_in_process)
    monkeypatch.setattr(forkserver, "_SERVERS", {})
    # a worker reads and writes no cache (SymPy's Jacobians of the student's gates, the partials): shown by a
    # cache folder put in its environment, which it must leave empty
    cache, given = tmp_path / "cache", graderun.environment
    monkeypatch.setattr(graderun, "environment", lambda home: {**given(home), "GRADCHECK_CACHE_DIR": str(cache)})
    paths = []
    for name in ("cy", "flo", "gil"):  # graded, does not parse, has no gate
        (tmp_path / f"{name}.grad").write_text(GRAD_CLASS[name][0], encoding="utf-8")
        paths.append(str(tmp_path / f"{name}.grad"))
    ex = load_exercise(str(GRAD_EXERCISE))
    before = forkserver.STARTS[0]
    try:
        graded = grade_class(ex, paths, 424242, 3, jobs=1)
        for g in graded:
            _, expected, phrases = GRAD_CLASS[g.student]
            parts = {p.what: p for p in g.parts}
            assert {k: p.earned for k, p in parts.items()} == expected, parts
            assert all(phrase in parts[part].reason for part, phrase in phrases.items()), parts
        assert forkserver.STARTS[0] - before == (1 if server == "on" and forkserver.enabled() else 0)
        assert not [p for p in cache.rglob("*") if p.is_file()], sorted(cache.rglob("*"))
        slow = grade_class(ex, paths[:1], 424242, 20, limits=Limits(seconds=0.01))[0]
        assert slow.earned == 0 and slow.parts[0].reason == "ran out of time (0.01 s)", slow
        # past the memory: a forked worker, which holds what its server imported and needs little more, is
        # given cy's text with 2 MB of comments to read in; a fresh Python cannot even start (no MemoryError to tell)
        forked = server == "on" and forkserver.enabled()
        (tmp_path / "cy_long.grad").write_text(GRAD_CLASS["cy"][0] + ("# " + "x" * 98 + "\n") * 20_000, encoding="utf-8")
        small = grade_class(ex, [str(tmp_path / "cy_long.grad")] if forked else paths[:1], 424242, 3,
                            limits=Limits(memory_mb=120))[0]
        assert small.earned == 0, small
        assert small.parts[0].reason == ("ran out of memory" if forked else
                                         "could not be graded (the worker ended with code 1)"), small
    finally:
        forkserver.shutdown(forkserver.Work.GRADE)


# --- the exercise's outputs kept for a class (pairs.Outputs) --------------------------------------

def _pair(forward):
    from gradcheck_cli.teaching.pairs import Outputs, Pair
    return Pair(owner="f", forward=forward, backward=lambda dout, cache: dout, names=("x",), order=("x",),
                forward_name="f_forward", backward_name="f_backward", memo=Outputs())


def test_a_deterministic_forward_is_computed_once_per_input_and_handed_out_as_copies():
    calls = []

    def f_forward(x):
        calls.append(x.copy())
        return np.sin(x).T, None   # (transposed: its layout is kept too)
    pair = _pair(f_forward)
    points = [np.arange(6.0).reshape(2, 3), np.ones((2, 3)), np.arange(6.0).reshape(2, 3) + 1e-300]
    for _ in range(3):
        for x in points:
            got = pair.output([x])
            assert got.tobytes() == np.sin(x).T.tobytes() and got.shape == (3, 2) and got.flags.f_contiguous
            got[...] = 7.0  # a caller's own copy: what it does to it changes no later answer
    # each point once, and the first asked for twice once more (the check that the forward repeats itself)
    assert len(calls) == len(points) + 1
    assert pair.output([np.arange(6.0).reshape(2, 3).astype(np.float32)]).dtype == float  # a dtype is another input
    assert len(calls) == len(points) + 2


def test_a_forward_that_touches_the_random_state_or_does_not_repeat_itself_is_computed_every_time():
    """A dropout-like forward seeds numpy's global random state (its own output the same each time, the
    state it leaves not): a forward drawn from that state after it sees the draws it would see with every
    call made. A forward that gives another answer each time is computed each time."""
    from gradcheck_cli.teaching.pairs import Pair

    def seeds(x):
        np.random.seed(1)
        return x * (np.random.random_sample(x.shape) < 0.5), None

    def draws(x):
        return x + np.random.standard_normal(x.shape), None
    first = _pair(seeds)
    second = Pair(**{**vars(_pair(draws)), "owner": "g", "memo": first.memo})
    x = np.ones(3)
    got = [(first.output([x]), second.output([x + k])) for k in range(4)]  # (the seeding forward asked again)
    expected = []
    for k in range(4):
        np.random.seed(1)
        expected.append((x * (np.random.random_sample(3) < 0.5), x + k + np.random.standard_normal(3)))
    assert [(a.tobytes(), b.tobytes()) for a, b in got] == [(a.tobytes(), b.tobytes()) for a, b in expected]
    count = []

    def counts(x):  # the same random state, another answer each call
        count.append(1)
        return x + len(count), None
    pair = _pair(counts)
    assert [float(pair.output([x])[0]) for _ in range(4)] == [2.0, 3.0, 4.0, 5.0]


def test_a_submission_whose_process_cannot_start_leaves_no_folder(monkeypatch):
    """A process that cannot be started (no more processes to be had, a failing pre-exec step): its private
    folder, made first, goes with the error, rather than staying in the temporary folder for good."""
    import os
    import subprocess
    import tempfile
    from gradcheck_cli.teaching import sandbox

    def refused(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("gradcheck-submission-")}
    monkeypatch.setattr(subprocess, "Popen", refused)
    with pytest.raises(OSError):
        sandbox.Submission(b"x = 1\n", limits=sandbox.Limits())
    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("gradcheck-submission-")}
    assert after <= before
