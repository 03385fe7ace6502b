"""Gradebooks: Gradescope's results.json (checked against its documented format), the LMS CSV, the
table with many parts at 60, 140 and 200 columns, and the report of wrong answers that agree."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from conftest import grade_in_process, gradcheck_in_process

from gradcheck_cli.render.gradebooks import class_table
from gradcheck_cli.teaching.exercise import Exercise, Part
from gradcheck_cli.teaching.grading import Graded, PartResult
from gradcheck_cli.teaching.similarity import fingerprint, similar

ROOT = Path(__file__).resolve().parent.parent.parent
PY_EXERCISE = ROOT / "examples" / "grading" / "affine.py"
GRAD_EXERCISE = ROOT / "examples" / "grading" / "affine_gate.grad"

RIGHT = {"dx": "(dout @ w.T).reshape(x.shape)", "dw": "x.reshape(x.shape[0], -1).T @ dout", "db": "dout.sum(axis=0)"}


def backward(**slips) -> str:
    lines = {**RIGHT, **slips}
    return ("import numpy as np\n\n\ndef affine_backward(dout, cache):\n    x, w, b = cache\n"
            + "".join(f"    {k} = {v}\n" for k, v in lines.items()) + "    return dx, dw, db\n")


def grade(exercise, files: list, *extra, cwd=None):
    args = [str(exercise), *map(str, files), "--secret", "424242", "--timeout", "20", *extra]
    # in this process (not about the process: each submission still runs in its own, sandboxed or a fork
    # server's child)
    done = grade_in_process(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done


# --- Gradescope's results.json ------------------------------------------------------------------
# The format as Gradescope documents it (gradescope-autograders.readthedocs.io, "Autograder
# Specifications", "Output format"): every key optional, with these types and values.
FORMATS = {"text", "simple_format", "html", "md", "ansi"}
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
NUMBER = (int, float)
TOP = {"score": NUMBER, "execution_time": NUMBER, "output": str, "output_format": FORMATS,
       "test_output_format": FORMATS, "test_name_format": FORMATS, "visibility": VISIBILITY,
       "stdout_visibility": VISIBILITY, "extra_data": dict, "tests": list, "leaderboard": list}
TEST = {"score": NUMBER, "max_score": NUMBER, "status": {"passed", "failed"}, "name": str, "name_format": FORMATS,
        "number": str, "output": str, "output_format": FORMATS, "tags": list, "visibility": VISIBILITY,
        "extra_data": dict}


def _conforms(value, kind) -> bool:
    if isinstance(kind, set):
        return isinstance(value, str) and value in kind
    if kind is NUMBER:
        return isinstance(value, NUMBER) and not isinstance(value, bool)
    return isinstance(value, kind)


def assert_gradescope_format(results: dict) -> None:
    assert isinstance(results, dict)
    for key, value in results.items():
        assert key in TOP, f"results.json has a key Gradescope does not document: {key}"
        assert _conforms(value, TOP[key]), (key, value)
    for test in results.get("tests", []):
        for key, value in test.items():
            assert key in TEST, f"a test has a key Gradescope does not document: {key}"
            assert _conforms(value, TEST[key]), (key, value)
        assert "score" in results or "score" in test  # "optional, but required if not on each test case"


def test_the_format_checker_refuses_what_gradescope_does_not_document():
    with pytest.raises(AssertionError):
        assert_gradescope_format({"score": "4"})
    with pytest.raises(AssertionError):
        assert_gradescope_format({"score": 4, "max_score": 5})  # not a documented top-level key
    with pytest.raises(AssertionError):
        assert_gradescope_format({"tests": [{"name": "a", "visibility": "students"}]})
    with pytest.raises(AssertionError):
        assert_gradescope_format({"tests": [{"name": "a"}]})  # no score anywhere


def test_one_submission_as_gradescopes_autograder_runs_it(tmp_path):
    submission = tmp_path / "autograder" / "submission"
    submission.mkdir(parents=True)
    (submission / "layers.py").write_text(backward(db="dout"), encoding="utf-8")  # db not summed over the batch
    results = tmp_path / "autograder" / "results" / "results.json"
    results.parent.mkdir()
    grade(PY_EXERCISE, [submission / "layers.py"], "--gradescope", results)
    data = json.loads(results.read_text(encoding="utf-8"))
    assert_gradescope_format(data)
    # dx and dw right (2 + 2 points), db wrong (0 of 1): the exercise's `# points:` line
    assert data["score"] == 4
    tests = {t["name"]: t for t in data["tests"]}
    assert [(t["score"], t["max_score"], t["status"]) for t in tests.values()] == [
        (2, 2, "passed"), (2, 2, "passed"), (0, 1, "failed")]
    assert "not summed over the batch" in tests["affine.db"]["output"]
    # student text shown as text: Gradescope's default top-level format renders HTML
    assert data["output_format"] == "text" and all(t["output_format"] == "text" for t in data["tests"])
    assert str(tmp_path) not in results.read_text(encoding="utf-8")


def test_a_results_json_holds_one_submission(tmp_path):
    files = []
    for name in ("a", "b"):
        files.append(tmp_path / f"{name}.py")
        files[-1].write_text(backward(), encoding="utf-8")
    done = gradcheck_in_process("grade", PY_EXERCISE, *files, "--secret", "1", "--gradescope", tmp_path / "results.json")
    assert done.returncode == 2 and "one submission" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results.json").exists()


def test_a_class_for_gradescope_and_an_lms(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    hostile = "<b onmouseover=alert(1)>"
    sources = {"ada": backward(), "ben": backward(dw="0.5 * x.reshape(x.shape[0], -1).T @ dout"),
               "=cmd": backward(),
               "cy": f"def affine_backward(dout, cache):\n    raise ValueError({hostile!r} + 'x' * 2000)\n"}
    for name, source in sources.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    out = tmp_path / "gradescope"
    done = grade(PY_EXERCISE, sorted(folder.iterdir()), "--gradescope", out, "--lms-csv", tmp_path / "lms.csv",
                 "--csv", tmp_path / "grades.csv", "--format", "csv")
    assert sorted(p.name for p in out.iterdir()) == ["_cmd", "ada", "ben", "cy"]
    scores = {}
    for student in out.iterdir():
        data = json.loads((student / "results.json").read_text(encoding="utf-8"))
        assert_gradescope_format(data)
        scores[student.name] = data["score"]
        assert len(data["tests"]) == 3
    assert scores == {"ada": 5, "ben": 3, "_cmd": 5, "cy": 0}  # ben: dw off by 0.5 (2 points lost)
    cy = json.loads((out / "cy" / "results.json").read_text(encoding="utf-8"))
    reason = cy["tests"][0]["output"]
    assert "ValueError" in reason and len(reason) < 600 and "cut:" in reason  # cut as every reason is
    rows = list(csv.reader(io.StringIO((tmp_path / "lms.csv").read_text(encoding="utf-8"))))
    assert rows[0] == ["student", "score", "out_of"]
    assert sorted(rows[1:]) == sorted([["ada", "5", "5"], ["ben", "3", "5"], ["'=cmd", "5", "5"], ["cy", "0", "5"]])
    # the whole gradebook too, printed and written: a student's name a spreadsheet would run is text there
    for text in (done.stdout, (tmp_path / "grades.csv").read_text(encoding="utf-8")):
        students = [row[0] for row in csv.reader(io.StringIO(text))][1:]
        assert sorted(students) == ["'=cmd", "ada", "ben", "cy"]


# --- the table with many parts ------------------------------------------------------------------
# CS231n assignment 2's layers: 26 parts in 10 pairs.
PAIRS = {"affine": ["dx", "dw", "db"], "relu": ["dx"], "batchnorm": ["dx", "dgamma", "dbeta"],
         "layernorm": ["dx", "dgamma", "dbeta"], "dropout": ["dx"], "conv": ["dx", "dw", "db"],
         "max_pool": ["dx"], "spatial_batchnorm": ["dx", "dgamma", "dbeta"], "svm_loss": ["dx"],
         "softmax_loss": ["dx"], "conv_relu_pool": ["dx", "dw", "db"], "affine_relu": ["dx", "dw", "db"]}


def _many_parts(students: int = 5):
    parts = [Part(f"{o}.{i}", o, i[1:], 2.0 if i == "dx" else 1.0) for o, ins in PAIRS.items() for i in ins]
    exercise = Exercise("layers.py", "python", "", parts)
    graded = []
    for s in range(students):
        results = []
        for k, p in enumerate(parts):
            right = (k + s) % 7 != 0
            results.append(PartResult(p.what, p.points, p.points if right else 0.0, "right" if right else "wrong",
                                      "right at every point (4)" if right else f"wrong at every point: d{p.input} "
                                      "has the right shape but the wrong values"))
        graded.append(Graded(f"student{s}", f"s{s}.py", results))
    return exercise, graded


def _render(exercise, graded, width, parts=False) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False)
    class_table(graded, exercise, console, parts)
    return console.file.getvalue()


@pytest.mark.parametrize("width", [60, 140, 200])
def test_the_table_stays_readable_with_many_parts(width):
    exercise, graded = _many_parts()
    assert len(exercise.parts) == 26
    text = _render(exercise, graded, width)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    for g in graded:  # each student's name and score, whole, on one row
        row = next(line for line in text.splitlines() if line.startswith(f"│ {g.student} "))
        assert row.split("│")[2].strip() == f"{g.earned:g}"
    assert "--parts shows each part" in text
    if width == 200:  # the pairs fit as columns: each pair's total, by hand
        assert "spatial_batchnorm" in text and "conv_relu_pool" in text
        row = next(line for line in text.splitlines() if line.startswith("│ student0 "))
        cells = [c.strip() for c in row.split("│")[1:-1]]
        # student0 misses every 7th part from the first: affine.dx (2), layernorm.dx (2), max_pool.dx (2)
        # and conv_relu_pool.dw (1): 38 - 7 = 31
        assert cells[:14] == ["student0", "31", "2", "2", "4", "2", "2", "4", "0", "4", "2", "2", "3", "4"]
    else:  # too narrow for 12 columns: each student's pairs not full, said in words
        assert "affine 2/4" in text


@pytest.mark.parametrize("width", [60, 140, 200])
def test_the_parts_on_demand(width):
    exercise, graded = _many_parts()
    text = _render(exercise, graded, width, parts=True)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    for owner in PAIRS:
        assert f"{owner}: out of" in text
    heads = [line for line in text.splitlines() if line.startswith("┃")]
    for i in ("dx", "dw", "db", "dgamma", "dbeta"):
        assert any(f" {i} " in line for line in heads), i


def test_a_long_name_is_folded_and_leaves_the_class_its_reasons():
    exercise, graded = _many_parts()
    exercise.parts = exercise.parts[:3]
    for g in graded:
        g.parts = g.parts[:3]
    long = "a" * 150 + "z" * 50  # a student's file name: the student's choice
    graded[1].student = long
    text = _render(exercise, graded, 120)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert long in "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2)
    row = next(line for line in text.splitlines() if line.startswith("│ student0 "))  # its reason, not a word a line
    assert "wrong at every point: dx has the" in row, text


def test_a_small_exercise_keeps_its_table():
    exercise, graded = _many_parts()
    exercise.parts = exercise.parts[:3]
    for g in graded:
        g.parts = g.parts[:3]
    text = _render(exercise, graded, 80)
    assert "dx (2)" in text and "dw (1)" in text and "--parts" not in text


# --- wrong answers that agree -------------------------------------------------------------------

def test_a_fingerprint_is_the_wrong_values_only():
    right = np.array([1.0, 2.0, 3.0])
    a = fingerprint([(right * 2, right), None])
    b = fingerprint([(right * 2 + 1e-13, right), None])  # another summation order
    assert a.digest == b.digest and a.values == 3
    assert fingerprint([(right * 3, right), None]).digest != a.digest
    assert fingerprint([None, (right * 2, right)]).digest != a.digest  # wrong at another point
    assert fingerprint([(np.zeros(3), right)]).values == 0 and not fingerprint([(np.zeros(3), right)]).digest
    assert not fingerprint([(np.full(3, np.nan), right)]).digest
    assert fingerprint([(np.array([1.0, 2.0, 4.0]), right)]).values == 1


SIMILAR_CLASS = {
    "ann": backward(db="dout"),                        # db not summed over the batch ...
    "bob": backward(db="dout * 1.0"),                  # ... the same values, written otherwise
    "cal": backward(db="dout.mean(axis=0)"),           # db off by a factor: another slip
    "eve": backward(dw="dout.T @ x.reshape(x.shape[0], -1)", db="-dout.sum(axis=0)"),   # two slips ...
    "fin": backward(dw="(x.reshape(x.shape[0], -1).T @ dout).T", db="-1 * dout.sum(axis=0)"),  # ... the same two
    "gus": backward(),                                 # right, like hal: agreeing right answers are not listed
    "hal": backward(),
    "ida": "def affine_backward(dout, cache):\n    raise NotImplementedError\n",   # raise, like jo: no values
    "jo": "def affine_backward(dout, cache):\n    raise NotImplementedError\n",
    "kai": backward(dx="np.zeros_like(x)"),            # a stub's zeros, like lee: not evidence
    "lee": backward(dx="0 * x"),
    "mo": backward(db="dout.sum(axis=0) + 1"),         # the same diagnosis as ned, other values
    "ned": backward(db="dout.sum(axis=0) + 2"),
}


@pytest.fixture(scope="module")
def similar_class(tmp_path_factory):
    folder = tmp_path_factory.mktemp("similar")
    for name, source in SIMILAR_CLASS.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
    files = sorted(folder.iterdir())
    # one run: the table on standard output, the JSON (the same text --format json prints) in a file
    out = tmp_path_factory.mktemp("similar-out") / "grades.json"
    as_table = grade(PY_EXERCISE, files, "--similarity", "-j", "2", "--json", str(out))
    return json.loads(out.read_text(encoding="utf-8")), as_table.stdout


def test_students_with_the_same_slip_are_listed_together(similar_class):
    data, _ = similar_class
    groups = {tuple(s["students"]): s for s in data["similar"]}
    assert set(groups) == {("ann", "bob"), ("eve", "fin")}, groups
    assert groups[("ann", "bob")]["parts"] == ["affine.db"]
    assert groups[("eve", "fin")]["parts"] == ["affine.dw", "affine.db"]
    assert "not summed over the batch" in groups[("ann", "bob")]["reasons"][0]
    # db of shape (5,) given as (4, 5) at the exercise's point and 3 hidden ones: 4 * 20 values
    assert groups[("ann", "bob")]["values"] == 4 * 20
    # dw (6, 5) transposed, db (5,) negated, at 4 points: 4 * (30 + 5)
    assert groups[("eve", "fin")]["values"] == 4 * 35
    assert [tuple(s["students"]) for s in data["similar"]] == [("eve", "fin"), ("ann", "bob")]  # most values first
    by_name = {s["student"]: s for s in data["submissions"]}
    from gradcheck_cli.teaching.similarity import diagnosis  # same words (but where each file sets db), other values
    assert diagnosis(by_name["mo"]["parts"][2]["reason"]) == diagnosis(by_name["ned"]["parts"][2]["reason"])
    for s in data["submissions"]:  # the fingerprint is never in a gradebook
        assert all(set(p) <= {"what", "points", "earned", "status", "reason", "point"} for p in s["parts"])


def test_the_similarity_report_in_the_table(similar_class):
    _, table = similar_class
    assert "similar wrong answers" in table and "ann, bob" in table and "eve, fin" in table
    assert "gus, hal" not in table and "ida, jo" not in table and "kai, lee" not in table and "mo, ned" not in table


def test_no_similarity_without_asking(tmp_path):
    (tmp_path / "a.py").write_text(backward(db="dout"), encoding="utf-8")
    (tmp_path / "b.py").write_text(backward(db="dout"), encoding="utf-8")
    done = grade(PY_EXERCISE, [tmp_path / "a.py", tmp_path / "b.py"], "--format", "json")
    assert "similar" not in json.loads(done.stdout)
    assert "fingerprint" not in done.stdout


GATE = "gate affine(x, W, b) = x @ W + b\n"
POINT = ("\nx = [[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]]\nW = [[1.0, 2.0], [2.0, -1.0]]\nb = [0.5, -0.5]\n"
         "L = sum(tanh(affine(x, W, b)))\n")


def gate(dx="dout @ W.T", dW="x.T @ dout", db="sum(dout, axis=0)") -> str:
    return GATE + f"  dx = {dx}\n  dW = {dW}\n  db = {db}\n" + POINT


def test_grad_submissions_with_the_same_slip(tmp_path):
    subs = {"al": gate(dW="x.T @ dout / 2"), "bea": gate(dW="0.5 * (x.T @ dout)"), "cy": gate(dW="x.T @ dout / 4"),
            "dot": gate(), "eli": gate()}
    for name, text in subs.items():
        (tmp_path / f"{name}.grad").write_text(text, encoding="utf-8")
    done = grade(GRAD_EXERCISE, sorted(tmp_path.iterdir()), "--similarity", "--format", "csv")
    assert "al, bea: 1 part(s)" in done.stderr and "cy" not in done.stderr.split("al, bea")[1].split("\n")[0]
    assert "dot, eli" not in done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["dW"] for r in rows] == ["0", "0", "0", "2", "2"]


def test_similar_groups_merge_the_parts_two_students_share():
    def g(name, *wrong):
        return Graded(name, name, [PartResult(w, 1, 0, "wrong", r, fingerprint=f, wrong_values=v) for w, r, f, v in wrong])
    graded = [g("a", ("p", "r1", "f1", 3), ("q", "r2", "f2", 4)), g("b", ("p", "r1", "f1", 3), ("q", "r2", "f2", 4)),
              g("c", ("p", "r1", "f1", 3), ("q", "r2", "other", 4)), g("d", ("p", "r9", "f1", 3))]
    groups = similar(graded)
    assert [(s.students, s.parts, s.values) for s in groups] == [(("a", "b"), ("q",), 4), (("a", "b", "c"), ("p",), 3)]
