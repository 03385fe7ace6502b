"""A module's test bodies run in one process of their own: JAX (or another framework) imported once, not
once per test, and not in the pytest worker, whose other tests fork after it. Each body, a string that
sets `result` (plain JSON values), runs after the module's prelude in a namespace of its own, in order;
a body that raises fails its own test alone, with its traceback. Modules that `share` their bodies run
them in one process for them all (tests/conftest.py's `jax_bodies`): JAX imported once, not per module."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

RUNNER = """
import json, sys, traceback
out = {}
for key, prelude, body in json.loads(sys.stdin.read()):
    space = {}
    try:
        exec(compile(prelude + body, key.rpartition('::')[2], 'exec'), space)
        out[key] = {'result': json.loads(json.dumps(space['result']))}
    except BaseException:
        out[key] = {'error': traceback.format_exc()}
print(json.dumps(out))
"""


def _run(bodies: list, cwd: Path) -> dict:
    """{key: {"result": ...} or {"error": its traceback}} of each [key, prelude, body], in order."""
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(bodies), capture_output=True,
                          text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_bodies(prelude: str, bodies: dict, cwd: Path) -> dict:
    """{name: {"result": ...} or {"error": its traceback}} of each body, run after `prelude`."""
    return _run([[name, prelude, body] for name, body in bodies.items()], cwd)


SHARED: dict[str, Callable[[Path], tuple[str, dict]]] = {}  # a module -> what makes its prelude and bodies


def share(module: str, make: Callable[[Path], tuple[str, dict]]) -> None:
    """The module's bodies run in the one process of every module that shares them: `make(folder)`, in a
    folder of the module's own, gives its prelude and its bodies (called when that process starts)."""
    SHARED[module] = make


def run_shared(folders: dict[str, Path], cwd: Path) -> dict:
    """{module: {"folder": its folder, name: {"result": ...} or {"error": ...}}} of every shared module's
    bodies, module by module, in one process."""
    bodies = []
    for module, make in SHARED.items():
        prelude, made = make(folders[module])
        bodies += [[f"{module}::{name}", prelude, body] for name, body in made.items()]
    out = _run(bodies, cwd)
    return {module: {"folder": folders[module], **{key.rpartition("::")[2]: value for key, value in out.items()
                                                   if key.rpartition("::")[0] == module}} for module in SHARED}


def result(ran: dict, name: str):
    """The result the body named `name` set (its test fails with the body's traceback where it raised)."""
    assert "error" not in ran[name], ran[name].get("error")
    return ran[name]["result"]
