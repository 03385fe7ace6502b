"""A module's test bodies run in one process of their own: JAX (or another framework) imported once, not
once per test, and not in the pytest worker, whose other tests fork after it. Each body, a string that
sets `result` (plain JSON values), runs after the module's prelude in a namespace of its own, in order;
a body that raises fails its own test alone, with its traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNNER = """
import json, sys, traceback
prelude, bodies = json.loads(sys.stdin.read())
out = {}
for name, body in bodies.items():
    space = {}
    try:
        exec(compile(prelude + body, name, 'exec'), space)
        out[name] = {'result': json.loads(json.dumps(space['result']))}
    except BaseException:
        out[name] = {'error': traceback.format_exc()}
print(json.dumps(out))
"""


def run_bodies(prelude: str, bodies: dict, cwd: Path) -> dict:
    """{name: {"result": ...} or {"error": its traceback}} of each body, run after `prelude`."""
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps([prelude, bodies]), capture_output=True,
                          text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def result(ran: dict, name: str):
    """The result the body named `name` set (its test fails with the body's traceback where it raised)."""
    assert "error" not in ran[name], ran[name].get("error")
    return ran[name]["result"]
