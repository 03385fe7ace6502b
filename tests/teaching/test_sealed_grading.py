"""Red team: `gradcheck grade` attacked by submissions that want the marks without the work, a
classmate's marks, the teacher's secret or solution, or to stop the class. Each attack asserts that
nothing is gained, leaked, lost or stopped: the attacker's parts score what its real gradients
deserve (0 here, as none is right), the classmates beside it keep their exact scores, no output holds
the secret or the solution, and the run ends with exit 0 and a full gradebook.

The class runs twice: in bubblewrap's sandbox (skipped, with the reason, where bwrap cannot start
one) and without it (GRADCHECK_SANDBOX=off); each time in two runs started at once, the submissions
that wait out --timeout (with a classmate beside them) in one, the rest of the class in the other. Attacks that only the sandbox can stop (reading the
teacher's files, the parent's command line) are asserted in the sandboxed run only."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import grade_in_process, gradcheck_in_process
from gradcheck_cli.teaching import sandbox, student_side

ROOT = Path(__file__).resolve().parent.parent.parent
EXERCISE = ROOT / "examples" / "grading" / "affine.py"
SECRET = "424242"

RIGHT = ("import numpy as np\n\n\ndef affine_backward(dout, cache):\n    x, w, b = cache\n"
         "    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)\n")
ZERO_BACKWARD = ("\n\ndef affine_backward(dout, cache):\n    x, w, b = cache\n"
                 "    return np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)\n")


def attack(body: str) -> str:
    """A submission: `body` at import, then an all-zero backward (what the attack hopes to pass)."""
    return "import numpy as np, os, sys, signal, time, gc, json, struct\n" + textwrap.dedent(body) + ZERO_BACKWARD


FORGED = {"student": "ada", "source": "ada.py", "score": 0, "out_of": 5,
          "parts": [{"what": w, "points": 1, "earned": 0, "status": "wrong", "reason": "forged"}
                    for w in ("affine.dx", "affine.dw", "affine.db")]}

# name: (source, the classes of attack it belongs to); every attacker's gradients are wrong, so it earns 0
ATTACKS = {
    # --- points for nothing -----------------------------------------------------------------------
    "patch_verdict": (attack("""
        np.allclose = lambda *a, **k: True
        np.abs = lambda x: np.zeros_like(x)
        np.isfinite = lambda x: np.ones(np.shape(x), bool)
        """), "points"),
    "forge_frame": (attack(f"""
        full = {json.dumps({**FORGED, "student": "forge_frame", "score": 5})!r}.encode()
        for fd in range(3, 10):
            try:
                os.write(fd, struct.pack('>Q', len(full)) + full)
                os.write(fd, b'\\n' + full + b'\\n')
            except OSError:
                pass
        os._exit(0)
        """), "points"),
    "forge_classmate": (attack(f"""
        row = {json.dumps(FORGED)!r}.encode()
        for fd in range(3, 10):
            try:
                os.write(fd, struct.pack('>Q', len(row)) + row)
            except OSError:
                pass
        """), "points"),
    "gc_solution": ("import gc, numpy as np\n" + ZERO_BACKWARD.replace(
        "    x, w, b = cache\n", "    for f in gc.get_objects():\n"
        "        if callable(f) and getattr(f, '__name__', '') == 'affine_backward' and f is not affine_backward:\n"
        "            return f(dout, cache)\n    x, w, b = cache\n"), "points"),
    "proc_solution": (attack("""
        import importlib.util
        for pid in os.listdir('/proc'):
            try:
                args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
            except OSError:
                continue
            for a in args:
                if a.endswith(b'affine.py') and os.path.exists(a):
                    spec = importlib.util.spec_from_file_location('teacher', a.decode())
                    teacher = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(teacher)
                    globals()['STOLEN'] = teacher.affine_backward
        """).replace("    x, w, b = cache\n", "    if 'STOLEN' in globals():\n        return STOLEN(dout, cache)\n"
                     "    x, w, b = cache\n"), "points"),
    "secret_env": (attack("""
        raise RuntimeError('env: ' + repr(dict(os.environ)))
        """), "leak"),
    "secret_cmdline": (attack("""
        seen = []
        for pid in os.listdir('/proc'):
            try:
                seen.append(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())
                seen.append(open(f'/proc/{pid}/environ', 'rb').read().replace(b'\\0', b' ').decode())
            except OSError:
                pass
        raise RuntimeError(' | '.join(seen))
        """), "leak"),
    "secret_stack": (attack("""
        import inspect
        raise RuntimeError(repr([f.frame.f_locals for f in inspect.stack()]))
        """), "leak"),
    # --- points by numerics alone -------------------------------------------------------------------
    "flat_forward": ("import numpy as np\nSEEN = {}\n\n\ndef affine_forward(x, w, b):\n"
                     "    key = (x.shape, round(float(x.ravel()[0]), 2))\n"
                     "    out = SEEN.setdefault(key, x.reshape(x.shape[0], -1) @ w + b)\n"
                     "    return out, (x, w, b)\n" + ZERO_BACKWARD, "numerics"),
    "huge_entry": ("import numpy as np\n\n\ndef affine_backward(dout, cache):\n    x, w, b = cache\n"
                   "    dx = (dout @ w.T).reshape(x.shape)\n    dx.flat[0] = 1e15\n"
                   "    dw = x.reshape(x.shape[0], -1).T @ dout + 0.3\n    db = dout.sum(axis=0) * 1.5\n"
                   "    return dx, dw, db\n", "numerics"),
    # --- hurting others ---------------------------------------------------------------------------
    "survivor": (attack("""
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(4)
                for path in [os.environ.get('GRADEBOOK', ''), SURVIVOR]:
                    try:
                        open(path or SURVIVOR, 'w').write('owned')
                    except OSError:
                        pass
                os._exit(0)
            os._exit(0)
        """), "others"),
    "kill_everyone": (attack("""
        for pid in os.listdir('/proc'):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        """), "others"),
    "kill_parent": (attack("""
        try:
            os.kill(os.getppid(), signal.SIGKILL)
        except OSError:
            pass
        """), "stop"),
    "plant_package": (attack("""
        for where in ['.', os.path.expanduser('~'), os.getcwd()] + (['/tmp'] if os.getcwd().startswith('/tmp/work') else []):
            try:
                os.makedirs(os.path.join(where, 'gradcheck_cli'), exist_ok=True)
                open(os.path.join(where, 'gradcheck_cli', '__init__.py'), 'w').write('raise SystemExit(0)')
                open(os.path.join(where, 'numpy.py'), 'w').write('raise SystemExit(0)')
            except OSError:
                pass
        """), "others"),
    "plant_beside_grader": (attack("""
        try:
            folder = os.readlink(f'/proc/{os.getppid()}/cwd')
            open(os.path.join(folder, 'rich.py'), 'w').write('raise SystemExit(0)')
            open(os.path.join(folder, 'csv.py'), 'w').write('raise SystemExit(0)')
        except OSError:
            pass
        """), "others"),
    "rewrite_class_files": (attack("""
        for path in CLASS_FILES:
            try:
                open(path, 'w').write('# owned')
            except OSError:
                pass
        """), "others"),
    "nudged_noise": ("import numpy as np\nSEEN = []\n\n\ndef affine_backward(dout, cache):\n    x, w, b = cache\n"
                     "    nudged = any(d.shape == dout.shape and not np.array_equal(d, dout) and np.allclose(d, dout, "
                     "rtol=1e-13, atol=0) for d in SEEN)\n"
                     "    SEEN.append(dout.copy())\n"
                     "    if nudged:\n        return np.full(x.shape, 1e12), np.full(w.shape, 1e12), np.full(b.shape, 1e12)\n"
                     "    return np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)\n", "points"),
    "reply_without_grads": (attack("""
        sys.modules['__main__']._call = lambda module, request: {'ok': True}
        """), "stop"),
    "short_base64": (attack("""
        sys.modules['__main__']._call = lambda module, request: {'ok': True, 'out': None,
            'grads': [{'shape': [1], 'f8': 'AAAAAAAAAA=='}] * 3}
        """), "stop"),
    "read_repository": (attack("""
        found = []
        for path in CLASS_FILES + [REPOSITORY + '/.git/HEAD', REPOSITORY + '/pyproject.toml', '/etc/passwd']:
            if os.path.exists(path):
                found.append(path)
        raise RuntimeError('found: ' + repr(found))
        """), "leak"),
    "fill_memory": (attack("""
        written = 0
        for n, folder in enumerate(['/tmp', '.', os.path.expanduser('~'), '/dev/shm', '/dev', '/run', '/var/tmp', '/']):
            for k in range(64):
                try:
                    with open(os.path.join(folder, f'fill{n}_{k}.bin'), 'wb') as f:
                        f.write(b'0' * ((1 << 20) - 1))
                    written += 1
                except OSError:
                    break
        raise RuntimeError(f'wrote {written} MB')
        """), "others"),
    "fork_bomb": (attack("""
        kids = []
        for _ in range(50):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                block = bytearray(30 * 1024 * 1024)
                time.sleep(30)
                os._exit(0)
            kids.append(pid)
        time.sleep(30)
        """), "others"),
    "many_files": (attack("""
        for k in range(200):
            try:
                open(f'junk{k}.bin', 'wb').write(b'0' * (1 << 20) - 1 if False else b'0' * ((1 << 20) - 1))
            except OSError:
                break
        """), "others"),
    # --- stopping the class -------------------------------------------------------------------------
    "text_for_numbers": (attack("""
        def affine_backward(dout, cache):
            return 'dx', ['dw'], {'db': 'no'}
        """).replace(ZERO_BACKWARD, ""), "stop"),
    "nested_reply": (attack("""
        deep = ('[' * 100000 + ']' * 100000).encode()
        body = b'{"ok": true, "grads": ' + deep + b'}'
        os.write(int(sys.argv[1]), struct.pack('>Q', len(body)) + body)
        """), "stop"),
    "not_utf8_reply": (attack("""
        body = b'{"ok": true, "grads": "\\xff\\xfe"}'
        os.write(int(sys.argv[1]), struct.pack('>Q', len(body)) + body)
        """), "stop"),
    "flood_pipe": (attack("""
        fd = int(sys.argv[1])
        os.write(fd, struct.pack('>Q', 6 * 10 ** 9))
        chunk = b'7' * (1 << 20)
        for _ in range(6000):
            os.write(fd, chunk)
        """), "stop"),
    "deep_folder": (attack("""
        for _ in range(1500):
            try:
                os.mkdir('d')
                os.chdir('d')
            except OSError:
                break
        """), "stop"),
    "delete_stderr": (attack("""
        for fd in (1, 2):
            try:
                os.unlink(os.readlink(f'/proc/self/fd/{fd}'))
            except OSError:
                pass
            os.close(fd)
        """), "stop"),
    "surrogate_message": (attack("""
        raise ValueError('bad \\udc80 byte and \\x1b[31mred\\x07 and [/bold] [link=file:///etc/passwd]x[/link]')
        """), "stop"),
    "huge_message": (attack("""
        raise ValueError('x' * (5 * 1024 * 1024))
        """), "stop"),
    "str_raises": (attack("""
        class Weird(Exception):
            def __str__(self):
                raise RuntimeError('no')
        raise Weird()
        """), "stop"),
    # endless: it computes for its first 0.5 s of CPU, then idles in the loop (--timeout is the wall clock's:
    # the same stops it, with no core spent on it for 8 s in each run; past a broken wall clock, only it would)
    "endless_import": (attack("""
        while True:
            if time.process_time() > 0.5:
                time.sleep(0.5)
        """), "stop"),
    "steal_requests": (attack("""
        sys.stdin.buffer.read(1)
        """).replace("    x, w, b = cache\n", "    os.read(0, 1 << 20)\n    x, w, b = cache\n"), "stop"),
    "close_reply_pipe": (attack("""
        os.close(int(sys.argv[1]))
        """), "stop"),
    "exit_in_backward": (ZERO_BACKWARD.replace("    x, w, b = cache\n", "    import sys\n    sys.exit(0)\n")
                         .replace("\n\ndef", "import numpy as np\n\ndef", 1), "stop"),
    "not_utf8_source": ("import numpy as np\nNAME = 'caf\xe9'\n" + ZERO_BACKWARD, "stop"),
    "complex_grads": (RIGHT.replace("dout.sum(axis=0)", "dout.sum(axis=0) * 1j").replace(
        "(dout @ w.T).reshape(x.shape)", "(dout @ w.T).reshape(x.shape) * 1j").replace(
        "x.reshape(x.shape[0], -1).T @ dout", "x.reshape(x.shape[0], -1).T @ dout * 1j"), "stop"),
}

# Attacks no process boundary can stop without the OS sandbox: a process of the grader's own user may
# signal the grader or unlink what its descriptors point at (run by root: every process on the
# machine, and /dev/null itself). Sent to the sandboxed class only.
SANDBOX_ONLY = {"kill_everyone", "kill_parent", "delete_stderr", "rewrite_class_files", "fill_memory"}
# Attacks only the sandbox defeats: without it, the submission's process reads what its user can
# read, the teacher's solution among it (said in the docs). Sent to both, asserted in the sandbox only.
SANDBOX_DEFENDS = {"proc_solution", "read_repository"}

CLASSMATES = {"ada": (RIGHT, 5), "ben": (RIGHT.replace("dout.sum(axis=0)", "dout"), 4), "cal": (RIGHT, 5)}


def _attacks(mode: str) -> list:
    return [name for name in ATTACKS if mode == "sandbox" or name not in SANDBOX_ONLY]


def _survivor(folder: Path) -> Path:
    """Where a survivor would write: in /tmp (which any user may write to, `nobody` too; the sandbox
    shows its own), under a name of this run's class alone, as runs in parallel must not share one."""
    return Path("/tmp") / f"gradcheck-redteam-survivor-{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}"


# The class in two runs of `grade`, started at once (it takes the submissions in the order given). The
# waiting run: the survivor, whose moment comes 5 s after its submission is over, and the two that wait
# out --timeout, side by side in the two slots of -j 2, a classmate graded beside the first (in the
# survivor's slot, before the second). The rest of the class in name order in the other run, graded
# while they wait rather than after them: the two runs' slots hold no more submissions at once than the
# one run's did (its legitimate ones no slower), and the waits no longer hold its work back.
WAITING = ("survivor", "endless_import", "cal", "steal_requests")


def _write_class(folder: Path, mode: str) -> tuple:
    """The class's files, written: (the waiting run's, the rest's)."""
    subs = folder / "submissions"
    subs.mkdir()
    chosen = {name: ATTACKS[name] for name in _attacks(mode)}
    targets = [str(EXERCISE)] + [str(subs / f"{n}.py") for n in CLASSMATES]
    for name, (source, _) in {**chosen, **{k: (v[0], "") for k, v in CLASSMATES.items()}}.items():
        source = source.replace("CLASS_FILES", repr(targets)).replace("REPOSITORY", repr(str(ROOT)))
        source = source.replace("SURVIVOR", repr(str(_survivor(folder))))
        data = source.encode("latin-1") if name == "not_utf8_source" else source.encode("utf-8")
        (subs / f"{name}.py").write_bytes(data)
    (subs / "linked.py").symlink_to(EXERCISE)                    # the solution, by a symbolic link
    (subs / "dangling.py").symlink_to(subs / "no-such-file.py")  # a link to nothing
    (subs / "a b.py").write_text(RIGHT, encoding="utf-8")          # two names, one feedback file once
    (subs / "a_b.py").write_text(RIGHT, encoding="utf-8")
    (subs / "esc\x1b[2J\x07.py").write_text(RIGHT, encoding="utf-8")  # a name that would clear the terminal
    (subs / "new\nline.py").write_text(RIGHT, encoding="utf-8")
    files = sorted(str(p) for p in subs.iterdir())
    waiting = [str(subs / f"{name}.py") for name in WAITING]
    return waiting, [f for f in files if f not in waiting]


def _start(folder: Path, run: str, files: list, sandbox_mode: str) -> subprocess.Popen:
    """`gradcheck grade` of `files` of the class, started, writing to the folder `run` (its standard
    output and error in files there: nothing to drain)."""
    out = folder / run
    out.mkdir()
    env = {**os.environ, "GRADCHECK_SANDBOX": sandbox_mode, "GRADEBOOK": str(out / "grades.csv"),
           "GRADCHECK_SECRET": SECRET, "COLUMNS": "200"}
    with open(out / "stdout.txt", "wb") as stdout, open(out / "stderr.txt", "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "gradcheck_cli", "grade", str(EXERCISE), *files, "--secret", SECRET,
                                 "--timeout", "8", "--memory", "600", "-j", "2", "--csv", str(out / "grades.csv"),
                                 "--json", str(out / "grades.json"), "--feedback", str(out / "feedback")],
                                stdout=stdout, stderr=stderr, cwd=folder, env=env)


def _finished(folder: Path, run: str, files: list, process: subprocess.Popen) -> dict:
    out = folder / run
    texts = [(out / f).read_text(encoding="utf-8", errors="replace") for f in ("stdout.txt", "stderr.txt")]
    done = subprocess.CompletedProcess(process.args, process.returncode, *texts)
    return {"done": done, "out": out, "files": files,
            "graded": {s["student"]: s for s in json.loads((out / "grades.json").read_text(encoding="utf-8"))["submissions"]},
            "csv": (out / "grades.csv").read_text(encoding="utf-8")}


class _SurvivorsFolder:
    """When the survivor's submission was over: the grader's private folder for it (its copy of the
    source, which names this class's survivor file) seen, then gone. The grader removes it last, once
    it has ended the submission's processes and killed what they left behind; the survivor's process
    was started before, so it would write within its 4 s of sleep after that moment, as after the run's end."""

    def __init__(self, marker: str):
        self.marker = marker.encode()
        self.folder: str | None = None
        self.gone: float | None = None  # time.monotonic() when it was first seen gone
        self.looked: set = set()   # folders whose complete source (read-only: written) names another file

    def look(self) -> None:
        if self.folder is not None:
            if self.gone is None and not os.path.exists(self.folder):
                self.gone = time.monotonic()
            return
        with os.scandir(tempfile.gettempdir()) as entries:
            for entry in entries:
                if not entry.name.startswith("gradcheck-submission-") or entry.path in self.looked:
                    continue
                source = os.path.join(entry.path, "work", student_side.SUBMISSION)
                try:
                    complete = os.stat(source).st_mode & 0o777 == 0o444
                    with open(source, "rb") as f:
                        text = f.read()
                except OSError:
                    continue
                if self.marker in text:
                    self.folder = entry.path
                    return
                if complete:
                    self.looked.add(entry.path)


@pytest.fixture(scope="module")
def graded_classes(tmp_path_factory):
    """The class graded in the sandbox (where bwrap can start one) and without it, its two runs in each
    (WAITING) all at once: the waiting runs spend most of their time waiting out the submissions that
    wait out --timeout, while the others grade the rest. Then a survivor's moment (it would write now):
    5 s after each class's survivor submission was over (its private folder gone), or after its run
    ended when that was not seen, once for both."""
    modes = ["sandbox", "off"] if sandbox.bubblewrap() is not None else ["off"]
    classes, started, over, watches = {}, [], {}, {}
    before_all = {str(EXERCISE): EXERCISE.read_bytes()}
    try:
        for mode in modes:
            folder = tmp_path_factory.mktemp(f"redteam-{mode}")
            if _survivor(folder).exists():
                _survivor(folder).unlink()
            waiting, rest = _write_class(folder, mode)
            before = {p: Path(p).read_bytes() for p in waiting + rest if not os.path.islink(p)} | before_all
            watches[mode] = _SurvivorsFolder(repr(str(_survivor(folder))))
            runs = {}
            for run, files in (("waiting", waiting), ("rest", rest)):
                runs[run] = (files, _start(folder, run, files, "auto" if mode == "sandbox" else "off"))
                started.append(runs[run][1])
            classes[mode] = (folder, before, runs)
        deadline = time.monotonic() + 900
        while any(p.poll() is None for p in started) and time.monotonic() < deadline:
            for mode, (_, _, runs) in classes.items():
                watches[mode].look()
                if mode not in over and runs["waiting"][1].poll() is not None:  # the survivor's run
                    over[mode] = time.monotonic()
            time.sleep(0.05)
        assert all(p.poll() is not None for p in started), "a class's run went on past 900 s"
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    for mode in classes:
        watches[mode].look()
        over.setdefault(mode, time.monotonic())
        if watches[mode].gone is not None:
            over[mode] = min(over[mode], watches[mode].gone)
    moment = max(over.values(), default=time.monotonic()) + 5  # a survivor's moment: it would write now
    time.sleep(max(0.0, moment - time.monotonic()))
    graded = {}
    for mode, (folder, before, runs) in classes.items():
        done = [_finished(folder, run, files, process) for run, (files, process) in runs.items()]
        graded[mode] = {"runs": done, "graded": {k: v for d in done for k, v in d["graded"].items()},
                        "mode": mode, "before": before, "folder": folder}
    return graded


@pytest.fixture(scope="module", params=["sandbox", "off"])
def graded_class(request, graded_classes):
    if request.param not in graded_classes:
        pytest.skip("bubblewrap (bwrap) cannot start a sandbox on this machine")
    return graded_classes[request.param]


def test_the_run_ends_with_exit_0_and_a_full_gradebook(graded_class):
    for run in graded_class["runs"]:
        assert run["done"].returncode == 0, run["done"].stderr[-2000:]
        rows = list(csv.DictReader(io.StringIO(run["csv"])))
        assert len(rows) == len(run["files"]) == len(run["graded"])
    assert len(_attacks(graded_class["mode"])) + len(CLASSMATES) + 6 == len(graded_class["graded"])


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_earns_nothing(graded_class, name):
    if name not in _attacks(graded_class["mode"]):
        pytest.skip("without the OS sandbox a process of the grader's user can signal the grader: not sent")
    if name in SANDBOX_DEFENDS and graded_class["mode"] != "sandbox":
        pytest.skip("without the OS sandbox the submission's process can read the teacher's files")
    row = graded_class["graded"][name]
    assert row["score"] == 0, (name, row)
    assert all(p["status"] != "right" for p in row["parts"])


@pytest.mark.parametrize("name", list(CLASSMATES))
def test_classmates_keep_their_exact_scores(graded_class, name):
    assert graded_class["graded"][name]["score"] == CLASSMATES[name][1], graded_class["graded"][name]
    assert graded_class["graded"]["ada"]["parts"][0]["reason"] != "forged"


def test_links_odd_names_and_bad_bytes_are_that_students_zero(graded_class):
    graded = graded_class["graded"]
    assert graded["linked"]["score"] == 0 and "symbolic link" in graded["linked"]["parts"][0]["reason"]
    assert graded["dangling"]["score"] == 0 and "symbolic link" in graded["dangling"]["parts"][0]["reason"]
    assert graded["a b"]["score"] == graded["a_b"]["score"] == 5
    for run in graded_class["runs"]:
        names = sorted(p.name for p in (run["out"] / "feedback").iterdir() if p.is_file())
        assert len(names) == len(run["graded"]) and len({n.lower() for n in names}) == len(names)
        assert all(n.isascii() and "\x1b" not in n and "\n" not in n for n in names)


def test_nothing_a_submission_says_reaches_the_output_raw(graded_class):
    outputs = []
    for run in graded_class["runs"]:
        outputs += [run["done"].stdout, run["done"].stderr, run["csv"], (run["out"] / "grades.json").read_text(encoding="utf-8")]
        outputs += [p.read_text(encoding="utf-8") for p in (run["out"] / "feedback").rglob("*") if p.is_file()]
    for text in outputs:
        assert "\x1b" not in text and "\x07" not in text
        assert SECRET not in text, "the secret leaked"
        assert "GRADCHECK_SECRET" not in text
    reasons = [p["reason"] for s in graded_class["graded"].values() for p in s["parts"]]
    assert max(len(r) for r in reasons) < 1_000  # the 5 MB message is cut
    assert any("[/bold]" in r for r in reasons)   # shown as text, not taken as markup
    table = "".join(run["done"].stdout for run in graded_class["runs"])
    assert "esc" in table and "new" in table


def test_the_solution_stays_with_the_teacher(graded_class):
    if graded_class["mode"] != "sandbox":
        pytest.skip("without the sandbox, the submission's process can read what the user it runs as can read")
    assert "found: []" in graded_class["graded"]["read_repository"]["parts"][0]["reason"]
    written = graded_class["graded"]["fill_memory"]["parts"][0]["reason"]
    assert int(written.split("wrote ")[1].split(" MB")[0]) <= 16, written  # its private /tmp is all it can fill
    reasons = " ".join(p["reason"] for s in graded_class["graded"].values() for p in s["parts"])
    assert "affine.py" not in reasons.replace("affine.dx", "").replace("affine.dw", "").replace("affine.db", "")
    assert graded_class["graded"]["proc_solution"]["score"] == 0


def test_class_files_are_untouched_and_nothing_survives(graded_class):
    for path, data in graded_class["before"].items():
        assert Path(path).read_bytes() == data, f"{path} was changed"
    assert not _survivor(graded_class["folder"]).exists(), "a process outlived its submission"
    if graded_class["mode"] == "off":  # found by its session or its environment, killed, and the teacher told
        assert "note: survivor: 1 process(es) it started were still running after it ended" in \
            "".join(run["done"].stderr for run in graded_class["runs"])
    folder = graded_class["folder"]
    assert not (folder / "gradcheck_cli").exists() and not (folder / "numpy.py").exists()
    if graded_class["mode"] == "sandbox":  # without it, it can write there: but the grader imported all it needs first
        assert not (folder / "rich.py").exists() and not (folder / "csv.py").exists()
    assert not any("owned" in run["csv"] for run in graded_class["runs"])


def test_limits_give_their_reasons(graded_class):
    graded = graded_class["graded"]

    def reason(name):
        return graded[name]["parts"][0]["reason"]
    assert "ran out of time" in reason("endless_import")
    assert "ran out of time" in reason("steal_requests")
    assert "sys.exit(0)" in reason("exit_in_backward")
    assert "format" in reason("nested_reply") and "format" in reason("not_utf8_reply")
    assert "bytes" in reason("flood_pipe")
    # cut once for the grader's reason, counting what was raised ('ValueError: ' and 5 MiB of x): the
    # student's side shortens it to 2,000 characters first, and the count was of those
    assert "(cut: 5,242,892 characters in all)" in reason("huge_message"), reason("huge_message")
    if graded_class["mode"] == "sandbox":
        assert "processes" in reason("fork_bomb") or "memory" in reason("fork_bomb")


# --- `.grad` submissions: only d lines and names of their own ---------------------------------------

GRAD_EXERCISE = """# points: f.dx=2 g.dx=1
const k = 3
gate f(x) = 2 * y
  y = x * x
  dx = dout * 4 * x
gate g(x) = k * x
  dx = dout * k
x = [1.0, 2.0, -0.5]
L = sum(f(x)) + sum(g(x))
"""
F_RIGHT = "gate f(x) = 2 * y\n  y = x * x\n  dx = dout * 4 * x\n"
G_RIGHT = "gate g(x) = k * x\n  dx = dout * k\n"

# name: (text, {part: points}, {part: a phrase of its reason})
GRAD_ATTACKS = {
    "right": (F_RIGHT + G_RIGHT, {"f.dx": 2, "g.dx": 1}, {}),
    "rebind_forward": ("gate f(x) = 2 * y\n  y = 0 * x\n  dx = 0 * dout\n" + G_RIGHT, {"f.dx": 0, "g.dx": 1},
                       {"f.dx": "'y' is the gate's forward"}),
    "rebind_const": (F_RIGHT + "gate g(x) = k * x\n  k = 0\n  dx = dout * k\n", {"f.dx": 2, "g.dx": 0},
                     {"g.dx": "'k' is a name of the exercise's file"}),
    "rebind_param": (F_RIGHT + "gate g(x) = k * x\n  x = 0\n  dx = 0 * dout\n", {"f.dx": 2, "g.dx": 0},
                     {"g.dx": "parameter"}),
    "new_header": ("gate f(x) = 0 * x\n  dx = dout * 4 * x\n" + G_RIGHT, {"f.dx": 2, "g.dx": 1}, {}),
    "zero_header_zero_d": ("gate f(x) = 0 * \\\n  x\n  dx = 0 * dout\n" + G_RIGHT, {"f.dx": 0, "g.dx": 1}, {}),
    "backslash_tail": (G_RIGHT + "gate f(x) = 2 * y\n  dx = dout * 4 * x \\\n\n", {"f.dx": 0, "g.dx": 1}, {}),
    "own_helper": ("gate f(x) = 2 * y\n  t = 4 * x\n  dx = dout * t\n" + G_RIGHT, {"f.dx": 2, "g.dx": 1}, {}),
    "amplified_rounding": ("gate f(x) = 2 * y\n  y = x * x\n  dx = 1e30 * sum(out - 2 * y) + 0 * x\n" + G_RIGHT,
                           {"f.dx": 0, "g.dx": 1}, {}),
    "slightly_wrong_behind_rounding": ("gate f(x) = 2 * y\n  y = x * x\n  dx = dout * 4 * x * (1 + 5e-8) + 1e30 * "
                                       "sum(out - 2 * y)\n" + G_RIGHT, {"f.dx": 0, "g.dx": 1}, {}),
    "no_gate": ("z = 1\n", {"f.dx": 0, "g.dx": 0}, {"f.dx": "has no `gate f"}),
}


@pytest.fixture(scope="module")
def grad_class(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redteam-grad")
    exercise = folder / "exercise.grad"
    exercise.write_text(GRAD_EXERCISE, encoding="utf-8")
    subs = folder / "submissions"
    subs.mkdir()
    for name, (text, _, _) in GRAD_ATTACKS.items():
        (subs / f"{name}.grad").write_text(text, encoding="utf-8")
    (subs / "linked.grad").symlink_to(exercise)
    (subs / "latin.grad").write_bytes(b"gate f(x) = 2 * y\n  dx = dout * 4 * x # caf\xe9\n")
    (subs / "fifo.grad").unlink(missing_ok=True)
    os.mkfifo(subs / "fifo.grad")
    files = sorted(str(p) for p in subs.iterdir())
    # in this process (not about the process: each submission's worker is a child of a fork server of the grade's)
    done = grade_in_process(exercise, *files, "--secret", SECRET, "--timeout", "60", "-j", "2", "--format", "json",
                            cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return {s["student"]: s for s in json.loads(done.stdout)["submissions"]}


@pytest.mark.parametrize("name", list(GRAD_ATTACKS))
def test_a_grad_submission_changes_only_its_d_lines(grad_class, name):
    _, expected, phrases = GRAD_ATTACKS[name]
    parts = {p["what"]: p for p in grad_class[name]["parts"]}
    assert {k: p["earned"] for k, p in parts.items()} == expected, parts
    for part, phrase in phrases.items():
        assert phrase in parts[part]["reason"], parts[part]["reason"]


def test_grad_links_special_files_and_bad_bytes_are_zero(grad_class):
    assert "symbolic link" in grad_class["linked"]["parts"][0]["reason"]
    assert "not a regular file" in grad_class["fifo"]["parts"][0]["reason"]
    assert "not UTF-8" in grad_class["latin"]["parts"][0]["reason"]
    assert all(grad_class[n]["score"] == 0 for n in ("linked", "fifo", "latin"))


# --- the secret, whatever it is, never shown ----------------------------------------------------

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

# It reads its own environment and every ancestor's command line and environment, the grader's among
# them (the processes of the machine's other tests, whose secrets are theirs, are not its business:
# the suite runs in parallel, and the last 300 characters must be of this grader's).
SNOOP = attack("""
    seen, pid = [repr(dict(os.environ))], os.getpid()
    while pid > 1:
        try:
            seen.append(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())
            seen.append(open(f'/proc/{pid}/environ', 'rb').read().replace(b'\\0', b' ').decode())
        except (OSError, UnicodeDecodeError):
            pass
        try:
            pid = int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = [s for s in seen if 'secret' in s.lower()]
    raise RuntimeError(' | '.join(found)[-300:])
    """)


@hsettings(max_examples=4, deadline=None, derandomize=True)
@given(st.integers(min_value=1000, max_value=2 ** 62))
def test_the_secret_never_appears_in_any_output(tmp_path_factory, secret):
    folder = tmp_path_factory.mktemp("snoop")
    (folder / "snoop.py").write_text(SNOOP, encoding="utf-8")
    (folder / "ada.py").write_text(RIGHT, encoding="utf-8")
    runs = {}
    for mode in ("off", "auto"):  # without the sandbox it can read the grader's command line: still masked
        out = folder / f"out-{mode}"
        out.mkdir()
        with open(out / "stdout.txt", "wb") as stdout, open(out / "stderr.txt", "wb") as stderr:  # (the two at once)
            runs[mode] = subprocess.Popen(
                [sys.executable, "-m", "gradcheck_cli", "grade", str(EXERCISE), str(folder / "snoop.py"), str(folder / "ada.py"),
                 "--secret", str(secret), "--timeout", "120", "--json", str(out / "g.json"), "--csv", str(out / "g.csv"),
                 "--feedback", str(out / "fb")], stdout=stdout, stderr=stderr, cwd=folder,
                env={**os.environ, "GRADCHECK_SANDBOX": mode, "GRADCHECK_SECRET": str(secret)})
    for mode, process in runs.items():
        out = folder / f"out-{mode}"
        assert process.wait(timeout=600) == 0, (out / "stderr.txt").read_text(encoding="utf-8", errors="replace")[-1000:]
        texts = [p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file()]  # its stdout and stderr among them
        assert not any(str(secret) in t for t in texts)
        snoop = json.loads((out / "g.json").read_text(encoding="utf-8"))["submissions"][0]
        if mode == "off":  # it did read the command line: what it raised shows the mask, not the number
            assert snoop["student"] == "snoop" and "[the secret]" in snoop["parts"][0]["reason"]


# --- at a kink, any valid subgradient of the exercise's forward earns the points -----------------

RELU_EXERCISE = """# points: relu.dx=1
# inputs: relu x=[[0.0, 1.5, -2.0], [0.0, -0.5, 0.0]]


def relu_forward(x):
    return x * (x > 0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)
"""


KINK_MASKS = {"ge": ("x >= 0", 1), "gt": ("x > 0", 1), "gt_minus_1": ("x > -1", 0), "half": ("0.5 + 0 * x", 0)}


@pytest.fixture(scope="module")
def kink_class(tmp_path_factory):
    """One student per mask, graded in one run (in this process: not about the process; each submission
    still runs in its own, sandboxed)."""
    folder = tmp_path_factory.mktemp("kinks")
    exercise = folder / "relu.py"
    exercise.write_text(RELU_EXERCISE, encoding="utf-8")
    students = []
    for name, (mask, _) in KINK_MASKS.items():
        students.append(folder / f"{name}.py")
        students[-1].write_text(f"def relu_backward(dout, cache):\n    x = cache\n    return dout * ({mask})\n",
                                encoding="utf-8")
    done = gradcheck_in_process("grade", exercise, *students, "--secret", SECRET, "--format", "json", "-j", "2", cwd=folder)
    assert done.returncode == 0, done.stderr
    return {s["student"]: s for s in json.loads(done.stdout)["submissions"]}


@pytest.mark.parametrize("name", list(KINK_MASKS))
def test_any_valid_subgradient_at_the_exercises_kinks_earns_the_points(kink_class, name):
    """relu at exact zeros (the exercise's own point): the slopes there are 0 and 1, so a backward
    that passes 1 (x >= 0) is as right as the exercise's 0; one that is wrong off the kinks is not;
    0.5 at a zero is a valid subgradient but 0.5 elsewhere is wrong."""
    part = kink_class[name]["parts"][0]
    assert part["earned"] == KINK_MASKS[name][1], part


def test_the_hidden_points_are_not_the_secret_used_as_a_seed():
    """A submission sees its hidden points; were the secret their seed, it could try seeds until one
    gives them (a secret up to ~1e7 within the timeout). They come from the secret through scrypt."""
    from gradcheck_cli.core.streams import Stream, stream
    from gradcheck_cli.teaching.grading import hidden_seed
    assert hidden_seed(424242) != 424242 and hidden_seed(424242) == hidden_seed(424242)
    assert stream(hidden_seed(7), Stream.GRADE_PYTHON_POINTS).standard_normal() != \
        stream(7, Stream.GRADE_PYTHON_POINTS).standard_normal()


def test_a_sandbox_setting_that_means_nothing_is_refused(tmp_path):
    (tmp_path / "ada.py").write_text(RIGHT, encoding="utf-8")
    done = gradcheck_in_process("grade", EXERCISE, tmp_path / "ada.py", "--secret", SECRET, cwd=tmp_path,
                                env={**os.environ, "GRADCHECK_SANDBOX": "maybe"})  # refused before it runs
    assert done.returncode == 2 and "GRADCHECK_SANDBOX must be one of auto, off, required, not 'maybe'" in done.stderr
