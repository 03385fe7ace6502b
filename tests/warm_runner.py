"""A warm runner: one Python, started once with a given environment (an `OPENBLAS_CORETYPE` among it), that
runs `gradcheck` commands one after another in its own process, each as the console script would run it,
so that the docs' commands run under a second and a third kernel without a Python, gradcheck, torch and
JAX started again for each (`test_readme.py`).

A command it takes is a simple one: `gradcheck ARGS...`, no shell syntax but quotes, a `#` comment and
file globs (`words` reads it as bash would). Anything else is bash's, and so is a command that sets
variables (`NAME=value gradcheck ...`): what is read from the environment when a module is imported
(gradcheck's limits, `core/limits.py`; numpy's and torch's settings) takes a fresh process. For each:

- `sys.argv` is the console script's;
- its standard output and standard error are one file at the descriptor level (`dup2` onto descriptors
  1 and 2, as `2>&1` makes them): what Python, C code and the processes it starts write is all there;
- `gradcheck_cli.cli.invoke` runs it, the console script's own function (`entry` is `one_blas_thread`
  once, then `invoke`, then the fork servers ended and `os._exit`), so check-py's fork servers stay for
  the next command.

The protocol is a pipe each way, not the descriptors captured: one JSON line per request
(`{"argv": [...]}`), one per reply (`{"output": ..., "code": ...}`). The runner ends when its
request pipe closes, its fork servers ended first (their CPU time is then counted in its own).

A bash command that is not simple (a pipe, `$(...)`, `printf ... | gradcheck ... -`) runs with the
runner's shim first on PATH (`Runner.shell`): a `gradcheck` script that sends its arguments, its folder
and its standard input to the runner over a Unix socket, and writes what came back to its descriptors
1 and 2 — one file in the runner where they are one file in the shim (`2>&1`, or both the caller's), so
their order is the order the command wrote them in; else standard error first, as gradcheck's own
(written at once) comes before its standard output to a pipe (written when it ends). Where the shim's
environment is not the runner's but for what bash sets (a variable set for the command, read as
gradcheck is imported), it starts the real console script instead.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL = set("|&;<>()$`\\{}~!")  # outside quotes: syntax a simple command does not have
GLOB = set("*?[")


def words(command: str) -> list | None:
    """The words of a simple `gradcheck` command run from the repository's root, globs expanded as bash
    would (sorted); None for anything else."""
    found: list[tuple[str, bool]] = []  # (word, has an unquoted glob character)
    word, globbed, started, quote = "", False, False, ""
    for c in command + " ":
        if quote:
            if c == quote:
                quote = ""
            elif quote == '"' and c in "$`\\!":
                return None
            else:
                word += c
        elif c in "'\"":
            quote, started = c, True
        elif c in " \t":
            if started:
                found.append((word, globbed))
            word, globbed, started = "", False, False
        elif c == "#" and not started:
            break
        elif c in SHELL or c == "\n":
            return None
        else:
            word, started = word + c, True
            globbed |= c in GLOB
    if quote:
        return None
    if not found or found[0] != ("gradcheck", False):
        return None
    argv = []
    for text, has_glob in found:
        matches = sorted(glob.glob(text, root_dir=ROOT)) if has_glob else []
        argv.extend(matches or [text])
    return argv


class RunnerGone(AssertionError):
    """The runner ended, or did not answer in time."""


@dataclass
class Result:
    output: str
    code: int


SHIM = """\
import base64, json, os, socket, sys
REAL = {real!r}
SHELL = {{"PWD", "OLDPWD", "SHLVL", "_", "PATH", "WARM_RUNNER"}}
address = os.environ.get("WARM_RUNNER", "")
try:
    with open(address + ".env", encoding="utf-8") as f:
        started = json.load(f)
except OSError:
    started = None
if started is None or {{k: v for k, v in os.environ.items() if k not in SHELL}} != \\
        {{k: v for k, v in started.items() if k not in SHELL}}:
    os.execv(REAL, [REAL, *sys.argv[1:]])  # a variable set for the command: read as gradcheck is imported
given = sys.stdin.buffer.read()
out, err = os.fstat(1), os.fstat(2)
merged = (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)  # 2>&1, or both the caller's: one file, as there
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
    connection.connect(address)
    stream = connection.makefile("rwb")
    stream.write(json.dumps({{"argv": ["gradcheck", *sys.argv[1:]], "cwd": os.getcwd(), "merged": merged,
                             "stdin": base64.b64encode(given).decode()}}).encode() + b"\\n")
    stream.flush()
    reply = json.loads(stream.readline())
sys.stderr.buffer.write(base64.b64decode(reply["stderr"]))  # (empty when merged) first, as gradcheck's own
sys.stderr.flush()  # stderr is written at once, its stdout to a pipe when it ends
sys.stdout.buffer.write(base64.b64decode(reply["stdout"]))
sys.stdout.flush()
sys.exit(reply["code"])
"""


class Runner:
    """The test's side of one runner: started at its first command, ended by `close`."""

    def __init__(self, env: dict, name: str, timeout: float = 300.0):
        self.env, self.name, self.timeout = env, name, timeout
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()
        self.folder = tempfile.mkdtemp(prefix="gradcheck-warm-runner-")
        self.address = os.path.join(self.folder, "socket")

    def _start(self) -> None:
        to_runner, from_test = os.pipe()
        from_runner, to_test = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(to_runner), str(to_test), self.address], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(to_runner, to_test))
        finally:
            os.close(to_runner)
            os.close(to_test)
        self.requests = os.fdopen(from_test, "w", encoding="utf-8")
        self.replies = os.fdopen(from_runner, "r", encoding="utf-8")
        shims = os.path.join(self.folder, "bin")
        os.mkdir(shims)
        shim = os.path.join(shims, "gradcheck")
        with open(shim, "w", encoding="utf-8") as f:
            f.write(f"#!{sys.executable} -IS\n" + SHIM.format(real=os.path.join(os.path.dirname(sys.executable), "gradcheck")))
        os.chmod(shim, 0o755)
        with open(self.address + ".env", "w", encoding="utf-8") as f:
            json.dump(self.env, f)

    def shell(self) -> dict:
        """The environment of a bash command whose `gradcheck` runs in this runner: the runner's, with the
        shim first on PATH. The shim runs a fresh `gradcheck` where the command sets a variable for it."""
        if self.process is None:
            self._start()
        return {**self.env, "PATH": os.path.join(self.folder, "bin") + os.pathsep + self.env.get("PATH", ""),
                "WARM_RUNNER": self.address}

    def run(self, argv: list) -> Result:
        if self.process is None:
            self._start()
        assert self.process is not None
        try:
            self.requests.write(json.dumps({"argv": argv}) + "\n")
            self.requests.flush()
        except (BrokenPipeError, ValueError):
            self._gone("took no request")
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.replies, selectors.EVENT_READ)
            while not sel.select(timeout=1.0):  # its children may hold the pipe: its own end is watched
                if self.process.poll() is not None:
                    self._gone("ended")
                if time.monotonic() > deadline:
                    self._gone(f"gave no answer in {self.timeout:.0f} s")
        line = self.replies.readline()
        if not line:
            self._gone("ended")
        reply = json.loads(line)
        return Result(output=reply["output"], code=reply["code"])

    def _gone(self, what: str):
        assert self.process is not None
        self.close()
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace")[-3000:]
        raise RunnerGone(f"the warm runner under {self.name} {what} (exit status {self.process.returncode}); "
                         f"it wrote:\n{tail}")

    def close(self) -> None:
        """End the runner (its request pipe closed), killed if it has not ended in 30 s; reaped."""
        if self.process is None:
            return
        for f in (self.requests, self.replies):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def serve(requests_fd: int, replies_fd: int, address: str | None = None) -> None:  # pragma: no cover - runs in the runner
    script = os.path.join(os.path.dirname(sys.executable), "gradcheck")
    sys.path[0] = os.path.dirname(script)  # as the console script's Python has it, not this folder
    for fd in (requests_fd, replies_fd):
        os.set_inheritable(fd, False)
    import ctypes
    libc = ctypes.CDLL(None)
    from gradcheck_cli.cli import invoke, one_blas_thread
    one_blas_thread(os.environ)  # as the console script does before numpy is imported

    def run_one(argv: list, *, cwd: str, stdin: bytes = b"", split: bool = False) -> tuple:
        """(what it wrote to descriptor 1, to descriptor 2 (b"" unless `split`: then 2 is 1's), exit status)."""
        sys.argv = [script, *argv[1:]]
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(0), os.dup(1), os.dup(2)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as given:
            given.write(stdin)
            given.seek(0)
            os.dup2(given.fileno(), 0)
            os.dup2(out.fileno(), 1)
            os.dup2((err if split else out).fileno(), 2)
            try:
                os.chdir(cwd)
                code = invoke()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                for fd, copy in enumerate(saved):
                    os.dup2(copy, fd)
                    os.close(copy)
                libc.fflush(None)  # what C code left in stdio's buffers: lost with os._exit in the console
                # script, so not in this command's output either
                os.chdir(ROOT)
            out.seek(0)
            err.seek(0)
            return out.read(), err.read(), code

    requests = os.fdopen(requests_fd, "r", encoding="utf-8")
    replies = os.fdopen(replies_fd, "w", encoding="utf-8")
    listener = None
    if address is not None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen()
    with selectors.DefaultSelector() as sel:
        sel.register(requests, selectors.EVENT_READ)
        if listener is not None:
            sel.register(listener, selectors.EVENT_READ)
        while True:
            ready = {key.fileobj for key, _ in sel.select()}
            if listener in ready:  # a `gradcheck` a bash command ran, by the shim
                connection, _ = listener.accept()
                with connection, connection.makefile("rwb") as stream:
                    request = json.loads(stream.readline())
                    out, err, code = run_one(request["argv"], cwd=request["cwd"], split=not request["merged"],
                                             stdin=base64.b64decode(request["stdin"]))
                    stream.write(json.dumps({"stdout": base64.b64encode(out).decode(), "code": code,
                                             "stderr": base64.b64encode(err).decode()}).encode() + b"\n")
            if requests in ready:
                line = requests.readline()
                if not line:
                    break
                request = json.loads(line)
                out, _, code = run_one(request["argv"], cwd=str(ROOT))
                replies.write(json.dumps({"output": out.decode("utf-8", errors="replace"), "code": code}) + "\n")
                replies.flush()
    forks = sys.modules.get("gradcheck_cli.python.forkserver")
    if forks is not None:
        forks.shutdown()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
