"""What a user's layer does cannot reach gradcheck's own output or exit code: its prints (Python's and
a C-level write to descriptor 1) stay out of `--format json`, a closed sys.stdout is ours again, and
sys.exit or a KeyboardInterrupt it raises is an error at its line (exit 2), never a quiet exit 0."""

from __future__ import annotations

import json
import time
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import gradcheck_in_process

LAYER = '''import os, sys
import numpy as np
{at_import}


def affine_forward(x, w):
{forward}    return x @ w, (x, w)


def affine_backward(dout, cache):
    x, w = cache
{backward}    return dout @ w.T, x.T @ dout
'''


def run(tmp_path, at_import="", forward="", backward="", fmt="json", more=(), env=None):
    (tmp_path / "layer.py").write_text(LAYER.format(at_import=at_import, forward=forward, backward=backward),
                                       encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", "layer.py::affine", *more,
                           "--shape", "x=3,4", "--shape", "w=4,2", "--format", fmt], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env=None if env is None else {**os.environ, **env})


def run_here(tmp_path, at_import="", forward="", backward=""):
    """`run` with the command in this process (`gradcheck_in_process`): the layer still runs in check-py's own
    process, so its exit reaches this one only if that process boundary fails (a SystemExit escaping the
    command is its exit code here, a KeyboardInterrupt click's exit 1, another exception raised here). Not for
    what the layer writes to descriptors 1 and 2: those are the console script's, which only `run` reads."""
    (tmp_path / "layer.py").write_text(LAYER.format(at_import=at_import, forward=forward, backward=backward),
                                       encoding="utf-8")
    return gradcheck_in_process("check-py", "layer.py::affine", "--shape", "x=3,4", "--shape", "w=4,2", "--format",
                                "json", cwd=tmp_path)


def test_prints_stay_out_of_the_json_and_are_said_in_a_warning(tmp_path):
    done = run(tmp_path, at_import="print('hello at import')",
               forward="    print('forward ' * 3)\n    os.write(1, b'C-level\\n')\n    sys.stderr.write('err\\n')\n",
               backward="    sys.stdout.close()\n")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # valid JSON: nothing the layer wrote is in it
    text = json.dumps(report)
    assert "forward forward" not in text and "C-level" not in text
    warnings = [w["message"] for r in report.get("results", [report]) for w in r["warnings"]]
    assert any("the code printed" in w and "hello at import" in w for w in warnings), warnings
    assert "C-level" not in done.stderr and "hello" not in done.stderr


# At its import, the layer opens standard output and error of the `gradcheck check-py` process above it through
# /proc (the fork server's parent, whose standard output is the pipe the JSON goes down) and writes a verdict
# of its own there. Opening another process's descriptors takes the right to trace it: a process of
# the same user has it unless the target is not dumpable; root has it always (CAP_SYS_PTRACE), so as root the
# command runs without that capability, as any other user's does.
THROUGH_PROC = """def _above():
    pid = os.getpid()
    while pid > 1:
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        yield pid
for _pid in list(_above()):
    with open(f"/proc/{_pid}/cmdline", "rb") as _f:  # gradcheck's processes only: never the test's own (its
        if b"check-py" not in _f.read():             # worker talks to pytest down its standard output)
            continue
    for _fd in (1, 2):
        try:
            with open(f"/proc/{_pid}/fd/{_fd}", "w") as _f:
                _f.write('{"passed": true, "injected": 1}\\n')
        except OSError:
            pass"""


def test_the_layer_cannot_write_into_our_output_through_proc(tmp_path):
    import shutil
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc and prctl are Linux's")
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("run as root, the command keeps CAP_SYS_PTRACE unless util-linux's setpriv drops it")
        prefix = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"]
    (tmp_path / "layer.py").write_text(LAYER.format(at_import=THROUGH_PROC, forward="", backward=""), encoding="utf-8")
    done = subprocess.run([*prefix, sys.executable, "-m", "gradcheck_cli", "check-py", "layer.py::affine", "--shape",
                           "x=3,4", "--shape", "w=4,2", "--format", "json"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "injected" not in done.stdout and "injected" not in done.stderr
    assert json.loads(done.stdout)["passed"]


def test_junit_stays_xml(tmp_path):
    import xml.etree.ElementTree as ET
    done = run(tmp_path, forward="    print('<oops>')\n", fmt="junit")
    assert done.returncode == 0
    ET.fromstring(done.stdout)


@pytest.mark.parametrize("where, code", [("backward", "sys.exit(0)"), ("backward", "sys.exit(3)"),
                                         ("forward", "sys.exit(0)"), ("backward", "raise KeyboardInterrupt")])
def test_an_exit_in_the_layer_is_an_error_at_its_line(tmp_path, where, code):
    done = run_here(tmp_path, **{where: f"    {code}\n"})
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    report = json.loads(done.stdout)
    error = (report.get("results", [report])[0])["error"]
    assert error["line"] is not None and ("SystemExit" in error["message"] or "KeyboardInterrupt" in error["message"])
    assert "Traceback" not in done.stderr


def test_an_exit_at_import_is_an_error(tmp_path):
    done = run_here(tmp_path, at_import="sys.exit(0)")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "sys.exit(0)" in done.stdout + done.stderr


def test_an_exception_whose_str_raises_is_named(tmp_path):
    done = run_here(tmp_path, at_import="class Weird(Exception):\n    def __str__(self):\n        raise RuntimeError('no')",
                    backward="    raise Weird()\n")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "the backward raised Weird" in done.stdout


ODD = '''import numpy as np
N = [0]


def grow_forward(x):
    N[0] += 1
    return np.ones(N[0]) * x.sum(), x


def grow_backward(dout, cache):
    return np.ones_like(cache) * dout.sum()


def cplx_forward(x):
    return x * (1 + 1j), x


def cplx_backward(dout, cache):
    return dout


class Bad:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("no array for you")


def arr_forward(x):
    return Bad(), x


def arr_backward(dout, cache):
    return dout
'''


ODD_NAMES = ("grow", "cplx", "arr")


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> subprocess.CompletedProcess:
    """One console script checks the three odd targets (what each prints or warns would be in its standard
    error, shared: none may have any); each target's result is its own."""
    folder = tmp_path_factory.mktemp("odd")
    (folder / "odd.py").write_text(ODD, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", *[f"odd.py::{n}" for n in ODD_NAMES],
                           "--shape", "x=3", "--format", "json"], capture_output=True, text=True, cwd=folder,
                          timeout=300)


@pytest.mark.parametrize("name, phrase", [
    ("grow", "its shape must not change as its inputs move"),
    ("cplx", "the forward's output is complex"),
    ("arr", "could not be read as numbers: RuntimeError: no array for you"),
])
def test_odd_outputs_are_errors_not_tracebacks_or_quiet_casts(odd, name, phrase):
    """An output whose shape changes between calls, a complex output (cast to real with numpy's
    warning before, exit 0), an `__array__` that raises: each an error saying so (exit 2)."""
    assert odd.returncode == 2 and "Traceback" not in odd.stderr and "ComplexWarning" not in odd.stderr
    result = json.loads(odd.stdout)["results"][ODD_NAMES.index(name)]
    assert result["source"] == f"odd.py::{name}" and phrase in result["error"]["message"], result["error"]


# --- what no exception handler can catch: the code runs in a process of its own --------------------

SECONDS = {"GRADCHECK_MAX_SECONDS": "1"}


def _error(done):
    report = json.loads(done.stdout)
    return report["results"][0]["error"]


ENDED = [
    ("os._exit(3)", "'affine_backward' called os._exit(3), which ends the process at once"),
    ("os.abort()", "'affine_backward' crashed the process (SIGABRT"),
    ("import ctypes; ctypes.string_at(0)", "'affine_backward' crashed the process (SIGSEGV"),
    ("while True: pass", "'affine_backward' did not return, and was stopped after 1 s of CPU time or 3 s in all"),
    ("import time; time.sleep(600)", "'affine_backward' did not return, and was stopped after 1 s of CPU time or 3 s"),
    # Python that runs while it mostly waits: stopped by the wall clock, its stack written from its own thread
    ("while __import__('time').sleep(0.001) is None: [i * i for i in range(50)]",
     "'affine_backward' did not return, and was stopped after 1 s of CPU time or 3 s in all"),
    # the wall clock's signal ignored by the code: faulthandler's own thread stops it a moment later
    ("import signal, time; signal.signal(signal.SIGALRM, signal.SIG_IGN); time.sleep(600)",
     "'affine_backward' did not return, and was stopped after 1 s of CPU time or 3 s in all"),
]


def busy(total):
    """A backward that computes (no waiting) for `total / 10` s of CPU time in each of its calls."""
    return f"    import time; t = time.process_time()\n    while time.process_time() - t < {total / 10}: pass\n"


# A backward that computes without end, writing down the process's CPU time at its start and, every few
# milliseconds, now (one whole line each: the last is the CPU time a few milliseconds before it was stopped).
ENDLESS_LOGGED = ("    import time; start = time.process_time(); log = open('cpu.txt', 'a', buffering=1); n = 0\n"
                  "    while True: n += 1; n % 2000 or log.write(f'{start} {time.process_time()}\\n')\n")


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> dict:
    """The runs under GRADCHECK_MAX_SECONDS=1 whose code never returns (and the cheap ones beside them),
    by their backward's code: started together, each its own `gradcheck` in a folder of its own, so
    that the seconds each waits out (up to the wall clock's 3 s and the last resort's 2 more) overlap
    rather than add up. Each is still a process of its own with its own limit, as run alone."""
    backwards = [f"    {code}\n" for code, _ in ENDED]
    tmp_path_factory.getbasetemp()  # made here, once: the threads below would race to make it

    def one(backward):
        folder = tmp_path_factory.mktemp("limited")
        began = time.monotonic()
        done = run(folder, backward=backward, env=SECONDS)
        done.folder, done.took = folder, time.monotonic() - began  # where the code wrote what it wrote; how long
        return done
    with ThreadPoolExecutor(max_workers=len(backwards)) as pool:
        ran = dict(zip(backwards, pool.map(one, backwards)))
    # the logged loop after them, beside no other loop of its own: its CPU second comes well before its
    # 3 s in all (starved of CPU on a loaded machine, the two limits fall together)
    return {**ran, ENDLESS_LOGGED: one(ENDLESS_LOGGED)}


@pytest.mark.parametrize("code, phrase", ENDED)
def test_an_ended_crashed_or_endless_backward_is_an_error_at_its_line(limited, code, phrase):
    """What kills or hangs the process the code runs in leaves gradcheck standing: exit 2, the error at
    the line the code was running, the report still valid JSON."""
    done = limited[f"    {code}\n"]
    assert done.returncode == 2, (done.returncode, done.stderr[-800:])
    error = _error(done)
    assert phrase in error["message"], error
    assert (error["line"], error["col"]) == (12, 5), error
    assert done.stderr.startswith("layer.py:12:5: error: ")
    assert "Traceback" not in done.stderr and "Fatal Python error" not in done.stderr


def test_an_exit_at_import_time_is_at_its_line(tmp_path):
    done = run_here(tmp_path, at_import="os._exit(0)")
    assert done.returncode == 2
    error = _error(done)
    assert "called os._exit(0)" in error["message"] and error["line"] == 3, error


def test_the_time_limit_is_a_backstop_not_a_budget(tmp_path, limited):
    """Held both ways: a backward that computes for 0.25 s in all passes under a 1 s limit (run alone,
    not beside the others); one that computes for 3 s is stopped (the limit is the environment
    variable's, not a constant)."""
    done = run(tmp_path, backward=busy(0.25), env=SECONDS)
    assert done.returncode == 0, done.stdout[-800:]
    done = limited[ENDLESS_LOGGED]
    assert done.returncode == 2 and "after 1 s of CPU time" in _error(done)["message"]
    # the loop's line, wherever the process was stopped in it, also where the machine starved the process so
    # that its CPU second took its 3 s in all and the two limits fell together
    assert _error(done)["line"] == 13, (_error(done), done.took)
    # and stopped at its limit, not up to a second later (RLIMIT_CPU alone counts whole seconds: 1.9 s here):
    # the job's second began at or before the backward's start. (Under load the wall clock's 3 s may stop it
    # sooner, which is why there is no lower bound.)
    start, last = map(float, (done.folder / "cpu.txt").read_text().splitlines()[-1].split())
    assert last - start <= 1.15, (start, last)


# A loop whose every instruction has no line (its code's location table says so, as Python 3.11's says of the
# POP_TOP after an expression statement): a signal that stops it there is written `line ???`.
NO_LINE_LOOP = ("    def spin():\n        while True:\n            pass\n"
                "    units = len(spin.__code__.co_code) // 2\n"
                "    spin.__code__ = spin.__code__.replace(co_linetable=bytes([0xFF]) * (units // 8)"
                " + bytes([0xF8 | (units % 8 - 1)]) * (units % 8 > 0))\n"
                "    spin()\n")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the location table's format is Python 3.11's")
def test_a_loop_stopped_where_python_has_no_line_is_at_its_loops_line(tmp_path):
    done = run(tmp_path, backward=NO_LINE_LOOP, env=SECONDS)
    assert done.returncode == 2, done.stderr[-800:]
    error = _error(done)
    assert "'spin' did not return" in error["message"] and (error["line"], error["col"]) == (13, 9), error


STOPPED_LOOP = '''import os, sys
sys.path.insert(0, sys.argv[2])
from gradcheck_cli.python import isolation
isolation._limit_signals(os.fdopen(int(sys.argv[1]), "w", encoding="utf-8"))


def endless():
    n = 0
    while True:
        n += 1
        if n == 1000:
            print("ready", flush=True)


endless()
'''


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to see the process wait")
@pytest.mark.parametrize("first, then", [("SIGALRM", "SIGPROF"), ("SIGPROF", "SIGALRM")])
def test_the_limits_signals_falling_together_keep_the_loops_line(tmp_path, first, then):
    """The wall clock's signal and the CPU's, the second arriving while the first one's stack is
    written (both limits come together when the code gets a third of a core): the stack is written
    whole and the error has the loop's line. Made certain here, not left to the machine's load: the
    stack goes to a pipe filled to the brim, so the first signal's writing waits (the process seen
    asleep) until the second signal has been sent; then the pipe is read."""
    import fcntl
    import signal

    from gradcheck_cli.python import isolation
    (tmp_path / "loop.py").write_text(STOPPED_LOOP, encoding="utf-8")
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"." * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(write_end, fcntl.F_SETFL, 0)
    root = str(Path(isolation.__file__).resolve().parents[2])
    child = subprocess.Popen([sys.executable, "-I", str(tmp_path / "loop.py"), str(write_end), root],
                             stdout=subprocess.PIPE, pass_fds=(write_end,), cwd=tmp_path)
    os.close(write_end)
    try:
        assert child.stdout.readline() == b"ready\n"  # (said from inside the loop)
        os.kill(child.pid, getattr(signal, first))
        deadline = time.monotonic() + 60
        while _state(child.pid) != "S":  # its stack's first write waits on the full pipe
            assert time.monotonic() < deadline and child.poll() is None, child.returncode
            time.sleep(0.01)
        os.kill(child.pid, getattr(signal, then))
        time.sleep(0.2)  # (where it is not blocked, the second signal is handled now)
        dump = b""
        while chunk := os.read(read_end, 1 << 16):
            dump += chunk
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(read_end)
    assert code in (-signal.SIGALRM, -signal.SIGPROF), code
    error = isolation._death(code, dump.decode().strip("."), 1, None)
    assert "'endless' did not return" in error.message and error.line == 9, (error, dump.decode().strip("."))


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def test_the_next_target_is_checked_after_one_that_died(tmp_path):
    (tmp_path / "good.py").write_text(LAYER.format(at_import="", forward="", backward=""), encoding="utf-8")
    done = run(tmp_path, backward="    os._exit(1)\n", more=("good.py::affine",))
    assert done.returncode == 2
    results = json.loads(done.stdout)["results"]
    assert [r["source"] for r in results] == ["layer.py::affine", "good.py::affine"]
    assert "os._exit(1)" in results[0]["error"]["message"] and results[1]["passed"] is True


def _running(marker: str) -> list:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to find processes left behind")
def test_what_the_code_started_does_not_outlive_the_check(tmp_path):
    marker = "9" + str(os.getpid()) + "7"
    done = run(tmp_path, backward=f"    import subprocess; subprocess.Popen(['sleep', '{marker}'])\n    os._exit(0)\n")
    assert done.returncode == 2
    assert _running(f"sleep\x00{marker}") == []


FORGE = """import os, pickle, struct
class Evil:
    def __reduce__(self):
        return (os.system, ('touch PWNED',))
data = pickle.dumps(Evil())
for fd in range(3, 64):
    try:
        os.write(fd, struct.pack('<Q', len(data)) + data)
    except OSError:
        pass
"""


def test_a_forged_message_on_gradcheck_s_pipe_runs_nothing(tmp_path):
    """Code that finds the pipe the reports come back on and writes a pickle that would run a command:
    read by an unpickler that builds only report types, it is an error, and nothing ran."""
    body = "".join("    " + line + "\n" for line in FORGE.splitlines())
    done = run(tmp_path, backward=body)
    assert not (tmp_path / "PWNED").exists()
    assert done.returncode == 2, done.stdout[-600:]
    assert "not a report" in _error(done)["message"]


def test_the_unpickler_builds_reports_and_refuses_functions():
    import io
    import pickle

    import numpy as np

    from gradcheck_cli.core.report import CheckReport
    from gradcheck_cli.python import isolation
    report = CheckReport("x.py::f")
    report.value = np.arange(6.0).reshape(2, 3)
    back = isolation._Restricted(io.BytesIO(pickle.dumps(report, protocol=5))).load()
    assert isinstance(back, CheckReport) and np.array_equal(back.value, report.value)
    for forged in (pickle.dumps(os.system), pickle.dumps(isolation.run_isolated), pickle.dumps(eval)):
        with pytest.raises(pickle.UnpicklingError):
            isolation._Restricted(io.BytesIO(forged)).load()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_exits_130_touches_no_report_and_leaves_no_process(tmp_path):
    import signal
    import time
    marker = "8" + str(os.getpid()) + "3"
    (tmp_path / "layer.py").write_text(LAYER.format(
        at_import="", forward="",
        backward=f"    import subprocess, time; subprocess.Popen(['sleep', '{marker}']); time.sleep(600)\n"),
        encoding="utf-8")
    (tmp_path / "out.json").write_text("old", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gradcheck_cli", "check-py", "layer.py::affine", "--shape", "x=3,4",
                             "--shape", "w=4,2", "--format", "json", "-o", "out.json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _running(f"sleep\x00{marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-600:]
    assert "interrupted" in err and "Traceback" not in err
    assert (tmp_path / "out.json").read_text() == "old"
    gone = time.monotonic() + 0.2  # the same 0.2 s it was given before, no longer waited out where it is gone at once
    while _running(f"sleep\x00{marker}") and time.monotonic() < gone:
        time.sleep(0.01)
    assert _running(f"sleep\x00{marker}") == []


def test_a_module_in_the_working_folder_named_like_the_standard_library_breaks_nothing(tmp_path):
    """A student's random.py (or numpy.py) beside the layer: gradcheck's own imports in the process
    that runs the code are not taken from the working folder."""
    for name in ("random", "numpy", "secrets", "json", "copy", "inspect", "ast", "tokenize", "enum", "typing",
                 "pickle", "struct", "tempfile", "traceback", "faulthandler", "signal", "threading", "warnings"):
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('the folder\\'s own {name}.py')\n", encoding="utf-8")
    done = run(tmp_path)
    assert done.returncode == 0, (done.stdout[-600:], done.stderr[-600:])


def test_output_is_kept_from_ours_when_the_process_has_more_than_1024_files_open():
    """The reader of the code's output waits on its pipe with poll, not select (whose descriptors stop at
    1,024): in a process with many files open (a notebook, the pytest plugin) the pipe is past that."""
    import resource

    from gradcheck_cli.python import usercode
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this machine allows {hard} open files, fewer than the test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        with usercode.contained_output() as printed:
            os.write(1, b"C-level hello\n")
            print("Python's hello")
        assert printed.size == len("C-level hello\nPython's hello\n")  # (the pipe's part may come second)
        assert sorted(bytes(printed.head).decode().splitlines()) == ["C-level hello", "Python's hello"]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
