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
"""

from __future__ import annotations

import glob
import json
import os
import selectors
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


class Runner:
    """The test's side of one runner: started at its first command, ended by `close`."""

    def __init__(self, env: dict, name: str, timeout: float = 300.0):
        self.env, self.name, self.timeout = env, name, timeout
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def _start(self) -> None:
        to_runner, from_test = os.pipe()
        from_runner, to_test = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(to_runner), str(to_test)], cwd=ROOT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(to_runner, to_test))
        finally:
            os.close(to_runner)
            os.close(to_test)
        self.requests = os.fdopen(from_test, "w", encoding="utf-8")
        self.replies = os.fdopen(from_runner, "r", encoding="utf-8")

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


def serve(requests_fd: int, replies_fd: int) -> None:  # pragma: no cover - runs in the runner
    script = os.path.join(os.path.dirname(sys.executable), "gradcheck")
    sys.path[0] = os.path.dirname(script)  # as the console script's Python has it, not this folder
    for fd in (requests_fd, replies_fd):
        os.set_inheritable(fd, False)
    import ctypes
    libc = ctypes.CDLL(None)
    from gradcheck_cli.cli import invoke, one_blas_thread
    one_blas_thread(os.environ)  # as the console script does before numpy is imported
    requests = os.fdopen(requests_fd, "r", encoding="utf-8")
    replies = os.fdopen(replies_fd, "w", encoding="utf-8")
    for line in requests:
        request = json.loads(line)
        sys.argv = [script, *request["argv"][1:]]
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with tempfile.TemporaryFile() as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                code = invoke()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
                libc.fflush(None)  # what C code left in stdio's buffers: lost with os._exit in the console
                # script, so not in this command's output either
                os.chdir(ROOT)
            out.seek(0)
            output = out.read().decode("utf-8", errors="replace")
        replies.write(json.dumps({"output": output, "code": code}) + "\n")
        replies.flush()
    forks = sys.modules.get("gradcheck_cli.python.forkserver")
    if forks is not None:
        forks.shutdown()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
