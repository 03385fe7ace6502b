"""Feedback a student can act on, and variants: the point a part failed at and a command that
reproduces it, the line that raised or sets the gradient, check-py's tie explanation, (1, D) for (D,)
diagnosed (and accepted by `# accept: broadcast-shapes`), "missing" said plainly, no absolute path in
any output, a per-student folder naming its student, and `--variants` giving each student their own
points and sizes. Every submission is written here with a known mistake; the labels are by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import grade_in_process, gradcheck_in_process
from gradcheck_cli.teaching.diagnose_grads import diagnose

ROOT = Path(__file__).resolve().parent.parent.parent

EXERCISE = """# An affine layer on flat inputs.
# points: affine.dx=2 affine.dw=2 affine.db=1
# shapes: affine x=4,3 w=3,5 b=5
{extra}

def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
"""

FORWARD = "def affine_forward(x, w, b):\n    return x @ w + b, (x, w, b)\n\n\n"


def layers(db="dout.sum(axis=0)", dw="x.T @ dout", forward=True, extra="") -> str:
    """A student's layers.py: line 1 the import, the backward's lines at known places (see LINES)."""
    return ("import numpy as np\n\n\n" + (FORWARD if forward else "") + "def affine_backward(dout, cache):\n"
            "    x, w, b = cache\n" + extra + "    dx = dout @ w.T\n" + f"    dw = {dw}\n" + f"    db = {db}\n"
            "    return dx, dw, db\n")


# line numbers in layers() with the forward: 8 def, 9 unpack, 10 dx, 11 dw, 12 db (one more with `extra`)
CLASS = {
    "ada": layers(),
    "ben": layers(db="dout.sum(axis=0, keepdims=True)"),           # (1, 5) for (5,): right values
    "cai": layers(extra="    raise ValueError('not yet')\n"),     # raises at line 10
    "dan": layers(db="2 * dout.sum(axis=0)"),                      # db off by 2, set at line 12
    "eve": "import numpy as np\n\n\ndef affine_forward(x, w, b):\n    return x @ w + b, (x, w, b)\n",  # no backward
    "fay": layers(db="dout", forward=False),                       # not summed, no forward of its own
}
SCORES = {"ada": 5, "ben": 4, "cai": 0, "dan": 4, "eve": 0, "fay": 4}


def _grade(exercise: Path, files: list, cwd: Path, *extra, code: int = 0):
    args = [str(exercise), *map(str, files), "--secret", "424242", "--timeout", "20", "--format", "json", *extra]
    # in this process (not about the process: each submission still runs in its own, sandboxed or a fork
    # server's child)
    done = grade_in_process(*args, cwd=cwd)
    assert done.returncode == code, done.stderr
    return done if code else {s["student"]: s for s in json.loads(done.stdout)["submissions"]}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class in per-student folders (class/ada/layers.py), the exercise elsewhere, every path absolute."""
    base = tmp_path_factory.mktemp("course")
    (base / "teacher").mkdir()
    exercise = base / "teacher" / "affine.py"
    exercise.write_text(EXERCISE.format(extra=""), encoding="utf-8")
    files = []
    for name, text in CLASS.items():
        (base / "class" / name).mkdir(parents=True)
        (base / "class" / name / "layers.py").write_text(text, encoding="utf-8")
        files.append(base / "class" / name / "layers.py")
    out = base / "out"
    out.mkdir()
    got = _grade(exercise, files, base, "--feedback", str(out / "feedback"), "--json", str(out / "grades.json"),
                 "--csv", str(out / "grades.csv"))
    return got, base, exercise, files


def _reason(graded, name, part):
    return next(p for p in graded[name]["parts"] if p["what"] == f"affine.{part}")


def test_the_class_is_scored_exactly(graded):
    got = graded[0]
    assert {n: s["score"] for n, s in got.items()} == SCORES


def test_a_gradient_of_shape_1_d_is_not_called_unsummed(graded):
    ben = _reason(graded[0], "ben", "db")["reason"]
    assert "db has shape (1, 5), not (5,)" in ben and "not summed" not in ben
    assert "ben/layers.py:12: `db = dout.sum(axis=0, keepdims=True)`" in ben
    fay = _reason(graded[0], "fay", "db")["reason"]
    assert "not summed over the batch" in fay  # (4, 5): a real batch axis


def test_the_line_that_raised_and_the_line_that_sets_the_gradient(graded):
    cai = _reason(graded[0], "cai", "dx")["reason"]
    assert "raised ValueError: not yet at cai/layers.py:10: `raise ValueError('not yet')`" in cai
    dan = _reason(graded[0], "dan", "db")["reason"]
    assert "factor of 2" in dan and "db is set at dan/layers.py:12: `db = 2 * dout.sum(axis=0)`" in dan


def test_missing_is_said_plainly(graded):
    for part in ("dx", "dw", "db"):
        assert _reason(graded[0], "eve", part)["reason"] == "missing: affine_backward is not defined"


def test_no_absolute_path_anywhere(graded):
    got, base, _, _ = graded
    texts = [json.dumps(got), *(p.read_text(encoding="utf-8") for p in (base / "out").rglob("*") if p.is_file())]
    for text in texts:
        assert str(base) not in text and "/tmp" not in text
    assert {n: s["source"] for n, s in got.items()} == {n: f"{n}/layers.py" for n in CLASS}
    assert json.loads((base / "out" / "grades.json").read_text(encoding="utf-8"))["exercise"] == "teacher/affine.py"


def test_the_failing_point_is_written_with_a_command_that_reproduces_it(graded):
    got, base, _, files = graded
    feedback = base / "out" / "feedback"
    dan = (feedback / "dan.md").read_text(encoding="utf-8")
    command = "gradcheck check-py layers.py::affine --at @dan.points/affine-point1.json"
    assert command in dan and _reason(got, "dan", "db")["point"] == 1
    point = json.loads((feedback / "dan.points" / "affine-point1.json").read_text(encoding="utf-8"))
    assert sorted(point) == ["b", "w", "x"] and np.shape(point["x"]) == (4, 3) and np.shape(point["b"]) == (5,)
    assert "424242" not in json.dumps(point)
    # the student runs it beside their file: check-py fails their db there, and only their db
    (feedback / "layers.py").write_text(CLASS["dan"], encoding="utf-8")
    done = gradcheck_in_process(*command.split()[1:], "--format", "json", cwd=feedback)  # (the command, run here)
    assert done.returncode == 1, done.stderr
    rows = {r["name"]: r["status"] for r in json.loads(done.stdout)["results"][0]["nodes"]}
    assert rows == {"x": "pass", "w": "pass", "b": "fail"}
    x, w = np.array(point["x"]), np.array(point["w"])
    assert np.allclose(json.loads(done.stdout)["results"][0]["nodes"][0]["value"], x)
    assert w.shape == (3, 5)
    # a student without a forward of their own gets the values, not a command that cannot run
    fay = (feedback / "fay.md").read_text(encoding="utf-8")
    assert "fay.points/affine-point1.json" in fay and "check-py layers.py" not in fay
    assert not (feedback / "ada.points").exists()  # nothing wrong, nothing written


def test_accept_broadcast_shapes(graded):
    _, base, _, files = graded
    accepting = base / "teacher" / "accepting.py"
    accepting.write_text(EXERCISE.format(extra="# accept: broadcast-shapes\n"), encoding="utf-8")
    got = _grade(accepting, [files[0], files[1], files[5]], base)
    assert got["ben"]["score"] == 5 and got["ada"]["score"] == 5
    assert got["fay"]["score"] == 4  # (4, 5) is not (5,) with an axis of length 1


def test_a_student_graded_alone_is_named_after_their_folder(graded):
    _, base, exercise, files = graded
    got = _grade(exercise, [files[1]], base)
    assert list(got) == ["ben"] and got["ben"]["source"] == "ben/layers.py"


def test_unknown_options_are_the_teachers_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(EXERCISE.format(extra="# accept: everything\n"), encoding="utf-8")
    (tmp_path / "s.py").write_text(CLASS["ada"], encoding="utf-8")
    done = _grade(bad, [tmp_path / "s.py"], tmp_path, code=2)
    assert "bad.py:4:11: error: `# accept:` knows broadcast-shapes, not 'everything'" in done.stderr
    bad.write_text(EXERCISE.format(extra="").replace("x=4,3 w=3,5", "x=N,3 w=3,5"), encoding="utf-8")
    done = _grade(bad, [tmp_path / "s.py"], tmp_path, code=2)
    assert "'N' is not a dim" in done.stderr and "# dims: N=2..8" in done.stderr


def test_check_py_reads_a_point_file(tmp_path):
    (tmp_path / "layers.py").write_text(CLASS["ada"], encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps({"x": [[1.0, 2.0, 3.0]], "w": np.eye(3, 2).tolist(), "b": [0.5, 1]}),
                                     encoding="utf-8")
    run = ["check-py", "layers.py::affine", "--format", "json"]  # in this process: not about the process
    done = gradcheck_in_process(*run, "--at", "@p.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["nodes"][0]["value"] == [[1.0, 2.0, 3.0]]
    done = gradcheck_in_process(*run, "--at", "@missing.json", cwd=tmp_path)
    assert done.returncode == 2 and "'@missing.json': No such file or directory" in done.stderr
    (tmp_path / "q.json").write_text("[1, 2]", encoding="utf-8")
    done = gradcheck_in_process(*run, "--at", "@q.json", cwd=tmp_path)
    assert done.returncode == 2 and "expected an object of input names" in done.stderr


POOL = """# points: pool.dx=1
# inputs: pool x=[[1.0, 1.0, 2.0, 0.0], [3.0, 3.0, -1.0, -1.0]]
import numpy as np


def pool_forward(x):
    return x.reshape(x.shape[0], -1, 2).max(axis=2), (x,)


def pool_backward(dout, cache):
    (x,) = cache
    r = x.reshape(x.shape[0], -1, 2)
    first = r[:, :, 0] >= r[:, :, 1]
    dx = np.zeros_like(r)
    dx[:, :, 0] = dout * first
    dx[:, :, 1] = dout * ~first
    return dx.reshape(x.shape)
"""
POOL_FORWARD = "import numpy as np\n\n\ndef pool_forward(x):\n    return x.reshape(x.shape[0], -1, 2).max(axis=2), (x,)\n\n\n"
POOL_CLASS = {
    # every tied element gets the whole gradient: at the exercise's ties the sum is twice the slope
    "every": POOL_FORWARD + "def pool_backward(dout, cache):\n    (x,) = cache\n    r = x.reshape(x.shape[0], -1, 2)\n"
             "    mask = r == r.max(axis=2, keepdims=True)\n    dx = mask * dout[:, :, None]\n    return dx.reshape(x.shape)\n",
    # the first element of each pair always: right where it is the larger or tied, so at the exercise's point only
    "first": POOL_FORWARD + "def pool_backward(dout, cache):\n    (x,) = cache\n    dx = np.zeros_like(x)\n"
             "    dx[:, 0::2] = dout\n    return dx\n",
    # the gradient split evenly at a tie: a valid subgradient
    "split": POOL_FORWARD + "def pool_backward(dout, cache):\n    (x,) = cache\n    r = x.reshape(x.shape[0], -1, 2)\n"
             "    mask = r == r.max(axis=2, keepdims=True)\n    dx = mask * dout[:, :, None] / mask.sum(axis=2, keepdims=True)\n"
             "    return dx.reshape(x.shape)\n",
}


def test_the_tie_explanation_and_the_point_numbers(tmp_path):
    (tmp_path / "pool.py").write_text(POOL, encoding="utf-8")
    for name, text in POOL_CLASS.items():
        (tmp_path / f"{name}.py").write_text(text, encoding="utf-8")
    got = _grade(tmp_path / "pool.py", [tmp_path / f"{n}.py" for n in POOL_CLASS], tmp_path)
    every, first, split = (got[n]["parts"][0] for n in ("every", "first", "split"))
    assert every["earned"] == 0 and every["point"] == 1
    assert every["reason"].startswith("wrong at point 1 of 4: dx: at a tie of 2 elements, backprop's gradients sum to ")
    assert "the right shape but the wrong values" not in every["reason"]
    assert first["earned"] == 0 and first["point"] == 2
    assert first["reason"].startswith("right only at the exercise's own point (special there: symmetric, zeros or "
                                      "ties?), wrong at points 2, 3 and 4 of 4: ")
    assert split["earned"] == 1 and "point" not in split


def test_diagnosis_of_shapes_by_hand():
    right = np.array([1.0, -2.0, 0.5])
    assert diagnose(right[None, :], right, "gamma").startswith("dgamma has shape (1, 3), not (3,): the right values")
    assert diagnose(right[:, None], right, "gamma").startswith("dgamma has shape (3, 1), not (3,): the right values")
    assert "not summed over the batch" in diagnose(np.array([right, 2 * right, -right]) / 2, right, "gamma")
    assert diagnose(2 * right[None, :], right, "gamma") == "dgamma has shape (1, 3), but the input has shape (3,)"



@pytest.mark.parametrize("zero", [0.0, -0.0, 5e-324, 1e-300])
def test_a_zero_gradient_is_said_to_be_zero_not_off_by_a_factor_of_0(zero):
    right = np.array([1.0, -2.0, 0.5])
    assert diagnose(np.full(3, zero), right, "x") == "dx is zero everywhere (or nearly), and the right answer is not"
    assert diagnose(1e-3 * right, right, "x") == "dx is off by a factor of 0.001"  # a small factor still said


# --variants: each student's own sizes and points, from the secret and their name
VARIANT_EXERCISE = """# points: affine.dx=2 affine.dw=2 affine.db=1
# shapes: affine x=N,D w=D,M b=M
# dims: N=2..6 D=2..5 M=2..4


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
"""
RIGHT = ["amy", "bo", "cy", "di", "ed", "flo"]
WRONG = {"gus": ("db", "dout.mean(axis=0)"), "hal": ("dw", "(x.T @ dout) * 1.5")}


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    base = tmp_path_factory.mktemp("variants")
    (base / "ex.py").write_text(VARIANT_EXERCISE, encoding="utf-8")
    files = []
    for name in RIGHT + list(WRONG):
        part, slip = WRONG.get(name, ("db", "dout.sum(axis=0)"))
        (base / f"{name}.py").write_text(layers(**{part: slip}), encoding="utf-8")
        files.append(base / f"{name}.py")
    runs = [_grade(base / "ex.py", files, base, "--variants", "--feedback", str(base / f"fb{k}")) for k in (1, 2)]
    return runs, base


def test_variants_grade_right_and_wrong_under_every_variant(variants):
    (got, _), _ = variants
    for name in RIGHT:
        assert got[name]["score"] == 5, got[name]
    assert got["gus"]["score"] == 4 and _reason(got, "gus", "db")["earned"] == 0
    assert got["hal"]["score"] == 3 and _reason(got, "hal", "dw")["earned"] == 0 and "factor of 1.5" in \
        _reason(got, "hal", "dw")["reason"]


def test_variants_differ_between_students_and_are_deterministic(variants):
    (first, second), base = variants
    dims = {n: tuple(first[n]["variant"][d] for d in "NDM") for n in first}
    assert first == second  # the same secret and names: the same variants, the same grades
    assert len(set(dims.values())) > 1
    points = {}
    for name in first:
        a = json.loads((base / "fb1" / f"{name}.points" / "affine-point1.json").read_text(encoding="utf-8"))
        b = json.loads((base / "fb2" / f"{name}.points" / "affine-point1.json").read_text(encoding="utf-8"))
        assert a == b
        n, d, m = dims[name]
        assert np.shape(a["x"]) == (n, d) and np.shape(a["w"]) == (d, m) and np.shape(a["b"]) == (m,)
        points[name] = a
        page = (base / "fb1" / f"{name}.md").read_text(encoding="utf-8")
        assert f"Your variant: D={d}, M={m}, N={n}." in page and f"{name}.points/affine-point1.json" in page
    # two students' right answers differ in their numbers: db of the forward at their own point, for one upstream
    sums = {name: np.round(np.sum(np.array(p["x"]) @ np.array(p["w"]) + np.array(p["b"])), 9) for name, p in points.items()}
    assert len(set(sums.values())) == len(sums)


def test_without_variants_everyone_has_the_same_points(variants):
    _, base = variants
    got = _grade(base / "ex.py", [base / "amy.py", base / "gus.py"], base, "--feedback", str(base / "plain"))
    assert "variant" not in got["amy"] and got["amy"]["score"] == 5 and got["gus"]["score"] == 4
    point = json.loads((base / "plain" / "gus.points" / "affine-point1.json").read_text(encoding="utf-8"))
    assert np.shape(point["x"]) == (2, 2) and np.shape(point["b"]) == (2,)  # each dim's low end


def test_variants_of_a_grad_exercise_keep_its_verdicts(tmp_path):
    """A .grad exercise under --variants: its hidden points are each student's own; right stays right."""
    exercise = ROOT / "examples" / "grading" / "affine_gate.grad"
    text = exercise.read_text(encoding="utf-8")
    (tmp_path / "amy.grad").write_text(text, encoding="utf-8")
    (tmp_path / "bo.grad").write_text(text, encoding="utf-8")
    got = _grade(exercise, [tmp_path / "amy.grad", tmp_path / "bo.grad"], tmp_path, "--variants")
    assert got["amy"]["score"] == got["bo"]["score"] == got["amy"]["out_of"]
    from gradcheck_cli.teaching.exercise import load_exercise
    from gradcheck_cli.teaching.grading import grad_points
    ex = load_exercise(str(exercise))
    ex.variants = True
    amy, bo, again = (grad_points(ex, 424242, 2, n) for n in ("amy", "bo", "amy"))
    assert amy[0][1] is None and bo[0][1] is None  # the exercise's own point is the file's
    assert not np.allclose(amy[1][1]["x"], bo[1][1]["x"]) and np.array_equal(amy[1][1]["x"], again[1][1]["x"])


def test_the_reproduce_command_carries_the_exercise_params():
    """A pair with `# params:` (batchnorm's bn_param) is reproduced with them: without, check-py
    would call the student's forward one argument short."""
    from pathlib import Path

    from gradcheck_cli.teaching.exercise import load_exercise
    from gradcheck_cli.teaching.grading import _reproduce
    ex = load_exercise(str(Path(__file__).resolve().parents[2] / "examples" / "grading" / "cs231n_a2.py"))
    command = _reproduce("layers.py", "batchnorm", "kim.points/batchnorm-point1.json", ex)
    assert command == ("gradcheck check-py layers.py::batchnorm --at @kim.points/batchnorm-point1.json "
                       "--param 'bn_param={\"mode\": \"train\"}'")
