"""check-py's process for the user's code, forked from a server that imported numpy, gradcheck and the
frameworks the targets import: what one target does in its process never reaches the server, the next
call's process, or gradcheck's output; a target killing its parent (the server) is an error at its
line; what a target daemonizes is killed; a second call in the same process reuses the server."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import gradcheck_in_process
from test_user_code_contained import LAYER  # the same affine layer, its hooks filled in per test

from gradcheck_cli.python import forkserver

pytestmark = pytest.mark.skipif(not forkserver.enabled() or not os.path.isdir("/proc"),
                                reason="the fork server runs on Linux")

def write(folder, name, at_import="", forward="", backward=""):
    (folder / name).write_text(LAYER.format(at_import=at_import, forward=forward, backward=backward), encoding="utf-8")


def check(folder, *targets):
    done = gradcheck_in_process("check-py", *targets, "--shape", "x=3,4", "--shape", "w=4,2", "--format", "json",
                                cwd=folder)
    return done, json.loads(done.stdout)["results"]


def need(framework: str) -> None:
    """Skip without `framework`, found but not imported: the checks import it in the processes they
    start, never in this one (where it would cost its import and start its threads before later forks)."""
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")


def _server_pids() -> list[int]:
    return [s.process.pid for s in forkserver._SERVERS.values() if s.alive()]


TORCH_TARGET = ("sq.py::Sq", """import torch


class Sq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g
""")
JAX_TARGET = ("sq.py::sq", """import jax


@jax.custom_vjp
def sq(x):
    return x * x


def sq_fwd(x):
    return sq(x), x


def sq_bwd(x, g):
    return (2 * x * g,)


sq.defvjp(sq_fwd, sq_bwd)
""")


@pytest.mark.parametrize("framework, target", [("torch", TORCH_TARGET), ("jax", JAX_TARGET)])
def test_two_calls_reuse_one_server_whose_child_has_the_framework_imported_already(tmp_path, framework, target):
    """The server imported the framework (the target's file imports it) and what the framework imports on
    its first use in every check (torch.autograd.grad given grad_outputs: its symbolic shapes, SymPy with
    them), computed nothing with it (no more threads than a plain import starts), and froze what it made
    (gc.freeze: a child's collections leave those pages shared); its children check with it."""
    need(framework)
    spec, source = target
    first_use = {"torch": "torch.fx.experimental.symbolic_shapes", "jax": "jax.numpy"}[framework]
    (tmp_path / "sq.py").write_text(f"import gc, sys\nopen('seen.txt', 'a').write(str('{framework}' in sys.modules and "
                                    f"'{first_use}' in sys.modules and gc.get_freeze_count() > 0) + '\\n')\n{source}",
                                    encoding="utf-8")

    def run():
        done = gradcheck_in_process("check-py", spec, "--shape", "x=3", "--format", "json", cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-800:]
        assert json.loads(done.stdout)["results"][0]["passed"] is True
    before = forkserver.STARTS[0]
    run()
    started = forkserver.STARTS[0]
    assert started - before <= 1
    run()
    assert forkserver.STARTS[0] == started  # the second call reused the server
    # the user's module found the framework imported before its own import: the server imported it
    assert (tmp_path / "seen.txt").read_text().split() == ["True", "True"]
    pid = next(s.process.pid for s in forkserver._SERVERS.values() if framework in s.key.modules)
    with open(f"/proc/{pid}/status") as f:
        threads = int(f.read().split("Threads:")[1].split()[0])
    plain = subprocess.run([sys.executable, "-c", f"import numpy, {framework}; "
                            "print(open('/proc/self/status').read().split('Threads:')[1].split()[0])"],
                           capture_output=True, text=True)
    assert threads <= int(plain.stdout), "the server computed something (a thread pool started)"


def test_without_the_server_the_child_imports_torch_itself(tmp_path, monkeypatch):
    need("torch")
    monkeypatch.setenv("GRADCHECK_FORKSERVER", "0")
    (tmp_path / "sq.py").write_text(
        "import sys\nopen('seen.txt', 'a').write(str('torch' in sys.modules) + '\\n')\nimport torch\n\n\n"
        "def sq_forward(x):\n    return x * x, x\n\n\ndef sq_backward(dout, x):\n    return 2 * x * dout\n",
        encoding="utf-8")
    before = forkserver.STARTS[0]
    done = gradcheck_in_process("check-py", "sq.py::sq", "--shape", "x=3", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-500:]
    assert forkserver.STARTS[0] == before
    assert (tmp_path / "seen.txt").read_text().split() == ["False"]


KILL_PARENT = ("    with open(f'/proc/{os.getppid()}/cmdline', 'rb') as f:\n"
               "        assert b'forkserver' in f.read(), 'not forked by the server: not killing the test'\n"
               "    import time; os.kill(os.getppid(), 9); time.sleep(60)\n")  # one line: where it dies


def test_a_target_killing_its_parent_is_an_error_at_its_line_and_the_next_target_is_checked(tmp_path):
    write(tmp_path, "layer.py", backward=KILL_PARENT)
    write(tmp_path, "good.py")
    done, results = check(tmp_path, "layer.py::affine", "good.py::affine")
    assert done.returncode == 2
    assert [r["source"] for r in results] == ["layer.py::affine", "good.py::affine"]
    error = results[0]["error"]
    assert "fork server" in error["message"] and "did the code kill its parent" in error["message"], error
    assert (error["line"], error["col"]) == (14, 5), error  # the os.kill line
    assert results[1]["passed"] is True
    done, results = check(tmp_path, "good.py::affine")  # and the next call too
    assert done.returncode == 0 and results[0]["passed"] is True


POISON = """import gradcheck_cli.python.pymodule as pm, gradcheck_cli.core.report as rp, json as js
os.environ['GRADCHECK_POISON'] = '1'
os.chdir('/')
sys.path.insert(0, '/poisoned-path')
np.sum = lambda *a, **k: 0
np.random.seed(7)
pm._MODULES['poison'] = 1
rp.CheckReport.poisoned = True
js.POISON = 1
"""

OBSERVE = """import gradcheck_cli.python.pymodule as pm, gradcheck_cli.core.report as rp, json as js
with open(os.environ['OBSERVED'], 'a') as f:
    f.write(js.dumps([os.environ.get('GRADCHECK_POISON'), os.getcwd(), '/poisoned-path' in sys.path,
                  float(np.sum(np.ones(3))), 'poison' in pm._MODULES, hasattr(rp.CheckReport, 'poisoned'),
                  hasattr(js, 'POISON'), float(np.random.rand())]) + chr(10))
"""


def test_what_a_target_changes_in_its_process_does_not_reach_the_next_call(tmp_path, monkeypatch):
    """os.environ, the working folder, sys.path, numpy and gradcheck monkeypatched, a module-level
    cache written, numpy's global random state seeded: the next call's process (the same server) sees
    none of it, and draws its own random numbers, as a new process does."""
    observed = tmp_path / "observed.txt"
    monkeypatch.setenv("OBSERVED", str(observed))
    write(tmp_path, "poison.py", at_import=POISON)
    write(tmp_path, "observe.py", at_import=OBSERVE)
    check(tmp_path, "observe.py::affine")
    started = forkserver.STARTS[0]
    check(tmp_path, "poison.py::affine")
    done, results = check(tmp_path, "observe.py::affine")
    assert forkserver.STARTS[0] == started  # one server for the three calls
    assert done.returncode == 0 and results[0]["passed"] is True
    first, last = (json.loads(line) for line in observed.read_text().splitlines())
    assert last[:-1] == [None, str(tmp_path), False, 3.0, False, False, False]
    assert first[-1] != last[-1]  # numpy's global generator seeded afresh in each process


def test_what_a_target_daemonizes_is_killed(tmp_path):
    marker = "6" + str(os.getpid()) + "1"
    daemon = (f"    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
              f"            os.execvp('sleep', ['sleep', '{marker}'])\n        os._exit(0)\n"
              f"    import time\n    for _ in range(200):\n"
              f"        if any(b'{marker}' in open(f'/proc/{{p}}/cmdline', 'rb').read() for p in os.listdir('/proc')\n"
              f"               if p.isdigit() and os.path.exists(f'/proc/{{p}}/cmdline')):\n"
              f"            break\n        time.sleep(0.05)\n")
    write(tmp_path, "layer.py", backward=daemon)
    done, results = check(tmp_path, "layer.py::affine")
    assert results[0]["passed"] is True, results[0]["error"]
    deadline = time.monotonic() + 20
    while _running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _running(marker)
    for pid in left:
        os.kill(int(pid), 9)
    assert left == []


def _running(marker: str) -> list:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == f"sleep\x00{marker}\x00".encode():
                    found.append(pid)
        except OSError:
            pass
    return found


FDS = """with open('fds.txt', 'w') as f:
    for fd in os.listdir('/proc/self/fd'):
        try:
            f.write(os.readlink(f'/proc/self/fd/{fd}') + chr(10))
        except OSError:
            pass
"""


def test_the_child_holds_no_descriptor_of_the_server(tmp_path):
    write(tmp_path, "layer.py", at_import=FDS)
    done, results = check(tmp_path, "layer.py::affine")
    assert results[0]["passed"] is True
    held = (tmp_path / "fds.txt").read_text().splitlines()
    servers = set()
    for pid in _server_pids():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                servers.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
    assert not [h for h in held if h.startswith("socket:") or "pidfd" in h or "eventpoll" in h], held
    assert not {h for h in held if h.startswith(("socket:", "anon_inode:"))} & servers


def test_the_code_s_output_never_reaches_ours(tmp_path, capfd):
    write(tmp_path, "layer.py", at_import="print('LOUD at import'); os.write(1, b'LOUD fd1'); os.write(2, b'LOUD fd2')",
          forward="    print('LOUD forward')\n    os.write(1, b'LOUD C-level')\n")
    done, results = check(tmp_path, "layer.py::affine")
    assert results[0]["passed"] is True
    assert "LOUD" not in done.stdout.replace("LOUD at import", "") and "LOUD" not in done.stderr
    assert any("the code printed" in w["message"] for w in results[0]["warnings"])
    out, err = capfd.readouterr()
    assert "LOUD" not in out + err


def test_a_call_with_another_environment_gets_a_server_of_its_own(tmp_path, monkeypatch):
    """...but not for a variable no import reads (torch's compiler cache folder, which torch sets itself the
    first time a process calls a custom op): the child still sees the call's value."""
    write(tmp_path, "layer.py", at_import="open('env.txt', 'a').write(os.environ['GRADCHECK_TEST_ENV'] + ' ' + "
                                         "os.environ.get('TORCHINDUCTOR_CACHE_DIR', '-') + chr(10))")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    starts = []
    for value, folder in (("a", None), ("b", None), ("b", None), ("b", "inductor")):
        monkeypatch.setenv("GRADCHECK_TEST_ENV", value)
        if folder:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / folder))
        check(tmp_path, "layer.py::affine")
        starts.append(forkserver.STARTS[0])
    assert starts[1] == starts[0] + 1 and starts[3] == starts[2] == starts[1]
    assert (tmp_path / "env.txt").read_text().splitlines() == ["a -", "b -", "b -", f"b {tmp_path / 'inductor'}"]
    assert len(forkserver._SERVERS) <= forkserver.KEEP


def test_a_server_that_imported_a_framework_outlasts_servers_without_one(tmp_path, monkeypatch):
    """More environments than KEEP, each a server of numpy alone: they take each other's places, not
    that of the server which imported torch (seconds to start again); the next torch call reuses it."""
    need("torch")
    spec, source = TORCH_TARGET
    (tmp_path / "sq.py").write_text(source, encoding="utf-8")
    write(tmp_path, "layer.py")

    def torch_call():
        done = gradcheck_in_process("check-py", spec, "--shape", "x=3", "--format", "json", cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-800:]
    torch_call()
    torch_server = list(forkserver._SERVERS.values())[-1]  # the one just used (the most recently used last)
    assert "torch" in torch_server.key.modules
    for value in range(forkserver.KEEP + 1):
        monkeypatch.setenv("GRADCHECK_TEST_ENV", str(value))
        assert check(tmp_path, "layer.py::affine")[0].returncode == 0
    monkeypatch.delenv("GRADCHECK_TEST_ENV")
    assert torch_server.alive() and torch_server in forkserver._SERVERS.values()
    started = forkserver.STARTS[0]
    torch_call()
    assert forkserver.STARTS[0] == started


def test_grades_servers_end_alone(tmp_path):
    """`shutdown(Work.GRADE)` (a grade run in this process is over) ends the servers of grade's workers
    and leaves check-py's, kept for the next check."""
    write(tmp_path, "layer.py")
    assert check(tmp_path, "layer.py::affine")[0].returncode == 0
    grade = forkserver.server(("numpy",), str(tmp_path), child=forkserver.Work.GRADE, slot=7)
    assert grade is not None
    grade.release()
    kept = [s for s in forkserver._SERVERS.values() if s.key.child == forkserver.Work.CHECK]
    assert kept and grade.alive()
    forkserver.shutdown(forkserver.Work.GRADE)
    assert not grade.alive() and grade.process.returncode is not None
    assert [s for s in forkserver._SERVERS.values()] == kept and all(s.alive() for s in kept)


def test_preloads_are_read_from_the_imports_never_run(tmp_path):
    (tmp_path / "a.py").write_text("import os\nfrom torch import nn\nraise SystemExit\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("def f():\n    import jax.numpy as jnp\n", encoding="utf-8")
    (tmp_path / "c.py").write_text("import torchvision\nx = 'import jax'\n", encoding="utf-8")
    (tmp_path / "d.py").write_text("def (:\n", encoding="utf-8")
    paths = [str(tmp_path / n) for n in ("a.py", "b.py", "c.py", "d.py", "missing.py")]
    assert forkserver.preloads(paths[:1]) == ("torch",)
    assert forkserver.preloads(paths[1:2]) == ("jax",)
    assert forkserver.preloads(paths[2:]) == ()
    assert forkserver.preloads(paths) == ("torch", "jax")
