"""A fork server for the process that runs the user's code: a Python started once that has imported
numpy, gradcheck's worker modules and, when the targets' source imports them, torch and JAX, and forks
one child for each run of `isolation.run_isolated`. The child then does what a fresh Python started for
the run would do (`isolation._child`), without paying those imports again (nor those torch makes on its
first use in a check, preloaded too). What the imports made is frozen (`gc.freeze`) before the first fork:
a child's garbage collections never walk it, so its memory stays shared with the server rather than
copied page by page into every child (0.28 s → 0.04 s of CPU a torch call's child, first use included).

The server never runs user code: it imports, forks, and reports each child's exit status; it takes no
module, path or code from a request, only the descriptors, the working folder and the environment of
the call. Its own session (Ctrl-C does not reach it), its standard streams /dev/null; it ends when
the process that started it closes its socket (at exit, or when it ends in any way). It is the
nearest subreaper of what its children start: a process the user's code daemonized is killed once it
is orphaned. A child dies with the server (the parent-death signal, its stack written first), so the
code killing its parent (`os.kill(os.getppid(), 9)`) ends its own process, reported as an error at its
line; the next run starts a new server.

One server per (Python, gradcheck copy, environment, modules preloaded, what its children run, slot);
servers of at most `KEEP` such families (all but the slot) are kept: when one more is needed, the least
recently used family without a framework goes first (it restarts in a fraction of a second; one that
imported torch or JAX takes seconds). `gradcheck grade` forks its `.grad` workers from servers of its own
(teaching/graderun.py: one per job slot, `-I`, a clean environment).
`GRADCHECK_FORKSERVER=0` turns it off: a fresh Python is started for each run, as before.
"""

from __future__ import annotations

import ast
import atexit
import ctypes
import dataclasses
import gc
import importlib
import os
import pickle
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from enum import Enum

KEEP = 3  # families of servers kept at once (check-py's numpy alone, with torch, with JAX; a call with another
# environment, preload set or child starts its own family)
VOLATILE = frozenset({"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"})  # read by no import, not in the key (the
# child still gets the call's whole environment): pytest's changes with every test; torch sets the other itself, to
# its default, the first time a process calls a torch.library custom op (before it, the same call would have
# started another torch server)
ORPHAN_SIGNAL = signal.SIGPWR  # a child's parent-death signal: its stack is written, then it ends
PRELOADS = {"torch": ("torch", "torch.fx.experimental.symbolic_shapes"), "jax": ("jax", "jax.numpy")}  # a top-level
# import in a target's file → preloaded; with torch, what torch.autograd.grad imports at its first call with
# grad_outputs (sympy among it, ~0.3 s of CPU), which every check of a Function makes: paid once per server
_BASE = ("numpy", "numpy.random", "gradcheck_cli.python.pymodule", "gradcheck_cli.python.usercode",
         "gradcheck_cli.python.pysource", "gradcheck_cli.python.pycheck", "gradcheck_cli.core.report")
_REPLY = struct.Struct("<Bqq")  # kind, pid, wait status
_FORKED, _EXITED = 1, 2
START_SECONDS = 600.0  # the longest a server may take to import and fork (a loaded machine, torch and JAX)
_PR_SET_CHILD_SUBREAPER = 36  # prctl: orphans of the children are reparented here (the parent-death signal
_PR_SET_PDEATHSIG = 1          # is set by each child: die_with_server)


class Work(Enum):
    """What a server's children run ("module:function", named to the server on its command line):
    `run(pipe_fd, stack_fd, orphaned=...)`, which never returns."""
    CHECK = "gradcheck_cli.python.isolation:_child"          # check-py: the user's code, its jobs
    GRADE = "gradcheck_cli.teaching.grade_worker:forked"     # grade: one .grad submission's worker


def die_with_server(orphaned: tuple, sig: int) -> bool:  # pragma: no cover - runs in a child
    """A child is sent `sig` when its server ends (`orphaned`: (the server's orphan signal, its pid));
    False when the server has ended already (before the line above took effect)."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return os.getppid() == orphaned[1]


def enabled() -> bool:
    return os.environ.get("GRADCHECK_FORKSERVER", "1").strip() != "0" and hasattr(socket, "send_fds") \
        and hasattr(os, "pidfd_open") and sys.platform.startswith("linux")


def preloads(paths) -> tuple[str, ...]:
    """The frameworks the files import (read, never run: `import torch`, `from jax import numpy`), in a
    fixed order; a file that cannot be read or parsed adds none."""
    wanted: set[str] = set()
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                tree = ast.parse(f.read(1 << 22))
        except (OSError, SyntaxError, ValueError, RecursionError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                wanted.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                wanted.add(node.module.split(".")[0])
    return tuple(name for name in PRELOADS if name in wanted)


@dataclass(frozen=True, kw_only=True)
class _Request:
    """A fork: the call's working folder and environment (its descriptors travel beside it)."""
    cwd: str
    environ: dict


@dataclass(frozen=True, kw_only=True)
class _Key:
    executable: str
    root: str
    environ: tuple
    modules: tuple
    child: Work = Work.CHECK  # what the children run
    isolated: bool = False    # the server's Python started with -I
    slot: int = 0             # several servers of one family for callers at once (one child at a time each)

    def family(self) -> _Key:
        return dataclasses.replace(self, slot=0)


class ServerGone(Exception):
    """The server ended (or never answered) before it forked the child."""


class Child:
    """A child the server forked: its pid (its own session and process group) and its end."""

    def __init__(self, server: _Server, pid: int):
        self.server, self.pid = server, pid

    def stop(self, grace: float) -> int | None:
        """Its exit status (negative: a signal; None: the server ended first, so it did too, by the
        parent-death signal). It has `grace` seconds to end by itself; then it is killed with its
        process group, and what it left in that group after it."""
        try:
            status = self.server.exit_status(self.pid, grace)
            if status is None:
                _kill_group(self.pid)
                status = self.server.exit_status(self.pid, 30.0)
        finally:  # (Ctrl-C while waiting too)
            _kill_group(self.pid)
            self.server.release()
        return None if status is None else os.waitstatus_to_exitcode(status)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Server:
    """The parent's side of one server: its process, its socket, and a lock (one child at a time;
    a second caller meanwhile, in another thread, starts a fresh Python instead)."""

    def __init__(self, key: _Key):
        self.key, self.owner = key, os.getpid()
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [key.executable, *(["-I"] if key.isolated else []), "-c", _BOOT, key.root, str(theirs.fileno()),
                 key.child.value, *key.modules],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True, env=dict(key.environ))
        finally:
            theirs.close()
        self.sock, self.gone = ours, False
        self.exits: dict[int, int] = {}  # pid -> wait status, reported before it was asked for

    def alive(self) -> bool:
        return not self.gone and self.process.poll() is None

    def fork(self, fds: list[int], *, cwd: str | None = None, environ: dict | None = None) -> Child:
        """A child with the descriptors `fds` (the report pipe, the stack file, the task's pipe), in
        `cwd` with `environ` (by default the caller's own)."""
        request = _Request(cwd=os.getcwd() if cwd is None else cwd, environ=dict(os.environ if environ is None else environ))
        try:
            socket.send_fds(self.sock, [pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)], fds)
            while (reply := self._reply(START_SECONDS)) is not None and reply[0] == _EXITED:
                self.exits[reply[1]] = reply[2]  # an earlier child's, whose caller stopped waiting
        except OSError:
            reply = None
        except BaseException:  # Ctrl-C while it starts: it ends, and a child it forked with it
            self.close()
            raise
        if reply is None:
            self.close()
            raise ServerGone
        return Child(self, reply[1])

    def exit_status(self, pid: int, timeout: float) -> int | None:
        """The wait status of child `pid` once the server reports it, None after `timeout` seconds
        or when the server is gone."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits:
            if self.gone:
                return None
            reply = self._reply(max(0.0, deadline - time.monotonic()))
            if reply is None:
                return None
            if reply[0] == _EXITED:
                self.exits[reply[1]] = reply[2]
        return self.exits.pop(pid)

    def _reply(self, timeout: float):
        """The next reply, None after `timeout` (the server may still be alive) or at its end."""
        if self.gone:
            return None
        try:
            self.sock.settimeout(max(timeout, 1e-3))
            data = self.sock.recv(_REPLY.size)
        except TimeoutError:
            return None
        except OSError:
            data = b""
        if len(data) != _REPLY.size:
            self.gone = True
            return None
        return _REPLY.unpack(data)

    def release(self) -> None:
        if self.lock.locked():
            self.lock.release()

    def close(self) -> None:
        """End the server: its socket closed is its signal to exit."""
        self.gone = True
        try:
            self.sock.close()
        except OSError:
            pass
        if os.getpid() == self.owner:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_SERVERS: dict[_Key, _Server] = {}
_REGISTRY = threading.Lock()
STARTS = [0]  # servers started by this process (the tests count them)


def server(modules: tuple[str, ...], root: str, *, child: Work = Work.CHECK, environ: dict | None = None,
           isolated: bool = False, slot: int = 0) -> _Server | None:
    """A server for this call, free and alive (started if need be), its lock held; None when all
    are busy (another thread's run). Its children run `child`; the server runs with `environ` (by
    default the caller's environment), started with -I when `isolated`; callers that run children at
    once each pass a slot of their own."""
    environ = os.environ if environ is None else environ
    key = _Key(executable=sys.executable, root=root, modules=modules, child=child, isolated=isolated, slot=slot,
               environ=tuple(sorted((k, v) for k, v in environ.items() if k not in VOLATILE)))
    with _REGISTRY:
        found = _SERVERS.pop(key, None)
        if found is not None and not found.alive():
            found.close()
            found = None
        if found is None:
            while True:  # other families ended, down to KEEP - 1 of them: the least recently used free one
                # without a framework first, else the least recently used free one
                families = list(dict.fromkeys(k.family() for k in _SERVERS if k.family() != key.family()))
                free = [f for f in families if not any(s.lock.locked() for k, s in _SERVERS.items() if k.family() == f)]
                if len(families) < KEEP or not free:
                    break
                gone = next((f for f in free if not _framework(f)), free[0])
                for k in [k for k in _SERVERS if k.family() == gone]:
                    _SERVERS.pop(k).close()
            try:
                found = _Server(key)
            except OSError:  # no process to be had: a fresh Python is tried instead
                return None
            STARTS[0] += 1
        _SERVERS[key] = found  # the most recently used last
        if not found.lock.acquire(blocking=False):
            return None
        return found


def _framework(key: _Key) -> bool:
    """Has the server imported a framework (a costly start)?"""
    return any(name in key.modules for name in PRELOADS)


def shutdown(child: Work | None = None) -> None:
    """End every server this process started (at exit), or only those whose children run `child`."""
    with _REGISTRY:
        keys = [k for k in _SERVERS if child is None or k.child == child]
        servers = [_SERVERS.pop(k) for k in keys]
    for s in servers:
        s.close()


def _forget_after_fork() -> None:  # a forked copy of the parent does not share its servers
    for s in _SERVERS.values():
        s.gone = True
        try:
            s.sock.close()
        except OSError:
            pass
    _SERVERS.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)


# --- the server ---------------------------------------------------------------------------------------

# As isolation's child: this copy of gradcheck, the working folder off the path (-I leaves it off already).
_BOOT = ("import sys; sys.flags.safe_path or sys.path.pop(0); sys.path.insert(0, sys.argv[1]); "
         "from gradcheck_cli.python import forkserver; del sys.path[0]; "
         "forkserver._serve(int(sys.argv[2]), sys.argv[4:], sys.argv[3])")


def _serve(sock_fd: int, modules: list[str], child: str) -> None:  # pragma: no cover - runs in the server process
    """Import, then fork a child per request and report how each ended, until the socket closes.
    `child` (a Work's value) is what the child runs: `run_child(pipe_fd, stack_fd, orphaned=...)`,
    which never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=sock_fd)
    os.set_inheritable(sock_fd, False)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for name in (*_BASE, *modules):
        try:
            importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - not importable here: the child imports it itself, and says why
            pass
    if child not in {w.value for w in Work}:  # gradcheck's own children only
        os._exit(2)
    where, name = child.split(":")
    run_child = getattr(importlib.import_module(where), name)
    gc.collect()
    gc.freeze()  # what the imports made is never traversed by a child's collections: its pages stay shared
    me = os.getpid()
    try:
        os.close(os.pidfd_open(me))
    except OSError:  # a kernel without pidfds: ended before any fork, the caller starts fresh Pythons
        os._exit(0)
    children: dict[int, int] = {}  # pidfd -> pid
    events = selectors.DefaultSelector()
    events.register(sock, selectors.EVENT_READ)
    while True:
        for found, _ in events.select(timeout=0.25):
            if found.fileobj is sock:
                try:
                    data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 8)
                except OSError:
                    data, fds = b"", []
                if not data:
                    os._exit(0)  # the parent is gone: so are we (our children with us)
                pid = _fork(sock, events, fds, pickle.loads(data), me, list(children), run_child)
                for fd in fds:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                events.register(pidfd, selectors.EVENT_READ)
                sock.send(_REPLY.pack(_FORKED, pid, 0))
            else:
                pidfd = found.fd
                pid = children.pop(pidfd)
                events.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                try:
                    sock.send(_REPLY.pack(_EXITED, pid, status))
                except OSError:
                    os._exit(0)
        if not children:  # between runs: what the last one left (a child running keeps its orphans' company)
            _sweep(me, set())


def _sweep(me: int, ours: set) -> None:  # pragma: no cover - runs in the server process
    """Kill and reap the processes adopted as orphans (a child's daemonized descendants)."""
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            adopted = [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return
    for pid in adopted:
        if pid in ours:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _fork(sock, events, fds, request: _Request, me: int, pidfds: list[int], run_child) -> int:  # pragma: no cover - server
    """Fork a child; in it, become what a fresh Python started for the run would be, then run it."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        for number in (signal.SIGINT,):
            signal.signal(number, signal.default_int_handler)
        events.close()
        sock.close()
        for fd in pidfds:
            os.close(fd)
        pipe_fd, stack_fd, task_fd = fds
        os.dup2(task_fd, 0)
        os.close(task_fd)
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.environ)
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()  # numpy's global generator drawn afresh, as in a new process
        run_child(pipe_fd, stack_fd, orphaned=(ORPHAN_SIGNAL, me))
    finally:
        os._exit(70)
