"""What a user's layer does cannot reach gradcheck's own output or exit code: its prints (Python's and
a C-level write to descriptor 1) stay out of `--format json`, a closed sys.stdout is ours again, and
sys.exit or a KeyboardInterrupt it raises is an error at its line (exit 2), never a quiet exit 0."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LAYER = '''import os, sys
import numpy as np
{at_import}


def affine_forward(x, w):
{forward}    return x @ w, (x, w)


def affine_backward(dout, cache):
    x, w = cache
{backward}    return dout @ w.T, x.T @ dout
'''


def run(tmp_path, at_import="", forward="", backward="", fmt="json"):
    (tmp_path / "layer.py").write_text(LAYER.format(at_import=at_import, forward=forward, backward=backward),
                                       encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", "layer.py::affine", "--shape", "x=3,4",
                           "--shape", "w=4,2", "--format", fmt], capture_output=True, text=True, cwd=tmp_path, timeout=300)


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


def test_junit_stays_xml(tmp_path):
    import xml.etree.ElementTree as ET
    done = run(tmp_path, forward="    print('<oops>')\n", fmt="junit")
    assert done.returncode == 0
    ET.fromstring(done.stdout)


@pytest.mark.parametrize("where, code", [("backward", "sys.exit(0)"), ("backward", "sys.exit(3)"),
                                         ("forward", "sys.exit(0)"), ("backward", "raise KeyboardInterrupt")])
def test_an_exit_in_the_layer_is_an_error_at_its_line(tmp_path, where, code):
    done = run(tmp_path, **{where: f"    {code}\n"})
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    report = json.loads(done.stdout)
    error = (report.get("results", [report])[0])["error"]
    assert error["line"] is not None and ("SystemExit" in error["message"] or "KeyboardInterrupt" in error["message"])
    assert "Traceback" not in done.stderr


def test_an_exit_at_import_is_an_error(tmp_path):
    done = run(tmp_path, at_import="sys.exit(0)")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "sys.exit(0)" in done.stdout + done.stderr


def test_an_exception_whose_str_raises_is_named(tmp_path):
    done = run(tmp_path, at_import="class Weird(Exception):\n    def __str__(self):\n        raise RuntimeError('no')",
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


@pytest.mark.parametrize("name, phrase", [
    ("grow", "its shape must not change as its inputs move"),
    ("cplx", "the forward's output is complex"),
    ("arr", "could not be read as numbers: RuntimeError: no array for you"),
])
def test_odd_outputs_are_errors_not_tracebacks_or_quiet_casts(tmp_path, name, phrase):
    """An output whose shape changes between calls, a complex output (cast to real with numpy's
    warning before, exit 0), an `__array__` that raises: each an error saying so (exit 2)."""
    (tmp_path / "odd.py").write_text(ODD, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gradcheck_cli", "check-py", f"odd.py::{name}", "--shape", "x=3",
                           "--format", "json"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "ComplexWarning" not in done.stderr
    assert phrase in json.loads(done.stdout)["results"][0]["error"]["message"]
