"""Every size a user gives `check-py` (and `check`) is counted against the documented limits before
anything is made from it: `--shape` (elements, all of them together, dimensions), `--at` values,
`--param` JSON (bytes, nesting, elements), `pyproject.toml` (bytes, nesting) and a layer's output.
Each refusal is exit 2 naming the option (or a position in the file), never a traceback, and each
limit is held both ways: just under passes, just over is refused.

The command-line runs are declared beside their tests (`declare`) and made by one fixture for the
module (`ran`): those with the same GRADCHECK_* variables and address-space cap in one fresh process
(the limits are read from the environment as gradcheck is imported), each run through the command in
a folder of its own, with layers.py (and its pyproject.toml) there."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import tomllib
from dataclasses import dataclass

import click
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from one_process import result as run_body
from one_process import share
from torch_threads import torch_on_one_thread  # noqa: F401  (autouse: torch on one thread in each test)
from gradcheck_cli.cli import checking, main
from gradcheck_cli.core import config, limits
from gradcheck_cli.core.errors import GradcheckError, GradSyntaxError
from gradcheck_cli.language import frontend
from gradcheck_cli.python import pycheck, usercode
from gradcheck_cli.python.pycheck import check_function

LAYERS = '''import numpy as np


def double_forward(x):
    return 2 * x, None


def double_backward(dout, cache):
    return 2 * dout


def pair_forward(x, y, p=None):
    return x.sum() * y, (x, y)


def pair_backward(dout, cache):
    x, y = cache
    return np.full(x.shape, float(np.sum(dout * y))), dout * x.sum()


def wide_forward(x, n):
    return np.full(n, x.sum()), x


def wide_backward(dout, cache):
    return np.full(cache.shape, dout.sum())
'''

GiB = 1 << 30


@dataclass(frozen=True, kw_only=True)
class Run:
    """`gradcheck COMMAND ARGS` with the GRADCHECK_* variables `env` set and the address space capped at
    `memory` bytes, in a folder holding layers.py and, if given, `toml` as its pyproject.toml."""
    args: tuple
    command: str = "check-py"
    env: tuple = ()
    memory: int | None = None
    toml: str | None = None


RUNS: dict[str, Run] = {}


def declare(name: str, *args: str, env: dict | None = None, memory: int | None = None, command: str = "check-py",
            toml: str | None = None) -> None:
    RUNS[name] = Run(args=args, command=command, env=tuple(sorted((env or {}).items())), memory=memory, toml=toml)


# Each run through click's CliRunner (its exit code, standard output and error as a process gives them;
# an exception that escaped the command written to standard error as its traceback).
DRIVER = """
import json, os, sys, traceback
from click.testing import CliRunner
from gradcheck_cli.cli import main
done = []
for folder, argv in json.loads(sys.stdin.read()):
    os.chdir(folder)
    result = CliRunner().invoke(main, argv)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "".join(traceback.format_exception(result.exception))
    done.append([result.exit_code, result.stdout, err])
print(json.dumps(done))
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every declared run, by name: one fresh process for the runs of one environment and cap."""
    groups: dict[tuple, list[str]] = {}
    for name, spec in RUNS.items():
        groups.setdefault((spec.env, spec.memory), []).append(name)
    results = {}
    for (env, memory), names in groups.items():
        calls = []
        for name in names:
            folder = tmp_path_factory.mktemp(name)
            (folder / "layers.py").write_text(LAYERS)
            if RUNS[name].toml is not None:
                (folder / "pyproject.toml").write_text(RUNS[name].toml)
            calls.append([str(folder), [RUNS[name].command, *RUNS[name].args]])

        def cap(memory=memory):
            if memory is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(calls), capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), **dict(env)}, preexec_fn=cap, timeout=600,
                              cwd=tmp_path_factory.getbasetemp())
        assert done.returncode == 0, done.stderr[-2000:]
        for name, (code, out, err) in zip(names, json.loads(done.stdout.strip().splitlines()[-1])):
            results[name] = subprocess.CompletedProcess(RUNS[name].args, code, out, err)
    return results


def refused(result, *fragments):
    """Exit 2, no traceback, every fragment in standard error."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result


def passed(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


# --- --shape --------------------------------------------------------------------------------------

# under a 1 GiB address space, drawing the 10^10 values first would die in numpy (a traceback)
declare("74_gib", "layers.py::double", "--shape", "x=100000,100000", memory=GiB)


def test_a_74_gib_shape_is_refused_before_it_is_allocated(ran):
    refused(ran["74_gib"], "--shape", "'x=100000,100000' would have 10,000,000,000 elements (at most 2,000,000; "
            "GRADCHECK_MAX_ELEMENTS raises it)")


declare("shape_12", "layers.py::double", "--shape", "x=3,4", "-q", env={"GRADCHECK_MAX_ELEMENTS": "12"})
declare("shape_13", "layers.py::double", "--shape", "x=13", env={"GRADCHECK_MAX_ELEMENTS": "12"})


def test_the_elements_of_a_shape_both_ways(ran):
    passed(ran["shape_12"])
    refused(ran["shape_13"], "--shape", "'x=13' would have 13 elements", "at most 12")


declare("shapes_20", "layers.py::pair", "--shape", "x=3,4", "--shape", "y=2,4", "-q",
        env={"GRADCHECK_MAX_TOTAL_ELEMENTS": "20"})
declare("shapes_21", "layers.py::pair", "--shape", "x=3,4", "--shape", "y=3,3", env={"GRADCHECK_MAX_TOTAL_ELEMENTS": "20"})


def test_the_shapes_together_both_ways(ran):
    passed(ran["shapes_20"])
    refused(ran["shapes_21"], "--shape",
            "the --shape inputs together would have 21 elements (at most 20; GRADCHECK_MAX_TOTAL_ELEMENTS raises it)")


declare("dims_8", "layers.py::double", "--shape", "x=1,1,1,1,1,1,1,2", "-q")
declare("dims_9", "layers.py::double", "--shape", "x=1,1,1,1,1,1,1,1,2")
declare("dims_70", "layers.py::double", "--shape", "x=" + ",".join(["1"] * 70))


def test_the_dimensions_of_a_shape_both_ways(ran):
    passed(ran["dims_8"])
    refused(ran["dims_9"], "--shape", "9 dimensions (at most 8)")
    refused(ran["dims_70"], "--shape", "70 dimensions (at most 8)")


# int() of more than 4,300 digits raises in Python 3.11: it is never called
declare("digits", "layers.py::double", "--shape", "x=" + "9" * 5000)


def test_a_dimension_of_thousands_of_digits_is_refused(ran):
    refused(ran["digits"], "--shape", "a dimension of 5,000 digits")


def test_shapes_are_counted_before_any_input_is_drawn(tmp_path, monkeypatch):
    (tmp_path / "layers.py").write_text(LAYERS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(limits, "MAX_ELEMENTS", 12)
    from gradcheck_cli.python import isolation
    real, drawn = isolation.run_isolated, []

    def counted(work, jobs, **kw):  # inputs are drawn in the process that runs the user's code: none started
        drawn.append(jobs)
        return real(work, jobs, **kw)
    monkeypatch.setattr(isolation, "run_isolated", counted)
    monkeypatch.setenv("GRADCHECK_MAX_ELEMENTS", "12")  # the child reads its limits from the environment
    assert CliRunner().invoke(main, ["check-py", "layers.py::double", "--shape", "x=3,4", "-q"]).exit_code == 0
    assert len(drawn) == 1
    result = CliRunner().invoke(main, ["check-py", "layers.py::double", "--shape", "x=13"])
    assert result.exit_code == 2 and "13 elements" in result.output and len(drawn) == 1


# --- --at -----------------------------------------------------------------------------------------

declare("huge_at", "layers.py::double", "--at", "x=randn(100000,100000)", memory=GiB)


def test_a_huge_at_value_is_refused_before_it_is_drawn(ran):
    refused(ran["huge_at"], "--at x:1:1: error: randn(100000, 100000) is too large: 10,000,000,000 elements")


TWELVE = "x=[" + ", ".join(str(k) for k in range(1, 13)) + "]"
declare("at_12", "layers.py::double", "--at", TWELVE, "-q", env={"GRADCHECK_MAX_ELEMENTS": "12"})
declare("at_13", "layers.py::double", "--at", TWELVE[:-1] + ", 13]", env={"GRADCHECK_MAX_ELEMENTS": "12"})


def test_the_numbers_written_in_an_at_value_both_ways(ran):
    passed(ran["at_12"])
    refused(ran["at_13"], "--at x:1:1: error: --at x would have 13 elements (at most 12; GRADCHECK_MAX_ELEMENTS raises it)")


def test_numbers_are_counted_before_the_value_is_parsed(monkeypatch):
    monkeypatch.setattr(frontend, "MAX_ELEMENTS", 3)
    assert frontend.parse_value("[1, 2.5, 3e2]").tolist() == [1, 2.5, 300]
    monkeypatch.setattr(frontend, "parse", lambda text: pytest.fail("parsed"))
    with pytest.raises(GradSyntaxError, match="4 elements"):
        frontend.parse_value("[1, 2, .5, 4]")


def test_the_bytes_of_an_at_value_both_ways(monkeypatch):
    monkeypatch.setattr(frontend, "MAX_FILE_BYTES", 10)
    assert frontend.parse_value("[1,  2, 3]").tolist() == [1, 2, 3]  # 10 bytes
    monkeypatch.setattr(frontend, "parse", lambda text: pytest.fail("parsed"))
    with pytest.raises(GradSyntaxError, match="11 bytes"):
        frontend.parse_value("[1,  2,  3]")


declare("shape_at_20", "layers.py::pair", "--shape", "x=3,4", "--at", "y=randn(8)", "-q",
        env={"GRADCHECK_MAX_TOTAL_ELEMENTS": "20"})
declare("shape_at_21", "layers.py::pair", "--shape", "x=3,4", "--at", "y=randn(9)", env={"GRADCHECK_MAX_TOTAL_ELEMENTS": "20"})


def test_at_values_together_with_the_shapes_both_ways(ran):
    passed(ran["shape_at_20"])
    refused(ran["shape_at_21"], "--at",
            "the --shape and --at inputs together would have 21 elements (at most 20")


def test_at_values_together_both_ways(monkeypatch):
    monkeypatch.setattr(frontend, "MAX_TOTAL_ELEMENTS", 20)
    assert sum(v.size for v in frontend.leaf_values({"x": "randn(12)", "y": "zeros(2, 4)"}, 0).values()) == 20
    with pytest.raises(GradcheckError, match="the --at values together would have 21 elements") as caught:
        frontend.leaf_values({"x": "randn(12)", "y": "zeros(3, 3)"}, 0)
    assert caught.value.source == "--at y"
    with pytest.raises(GradcheckError, match="the at= values together would have 21 elements"):
        frontend.leaf_values({"x": np.ones(12), "y": np.ones(9)}, 0)


# --- --param --------------------------------------------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


PAIR = ("layers.py::pair", "--shape", "x=2", "--shape", "y=2")
declare("param_32", *PAIR, "--param", f"p={nested(32)}", "-q")
declare("param_33", *PAIR, "--param", f"p={nested(33)}")
OBJECTS = '{"a": ' * 50 + "1" + "}" * 50
declare("param_objects", *PAIR, "--param", f"p={OBJECTS}")


def test_the_nesting_of_a_param_both_ways(ran):
    passed(ran["param_32"])
    refused(ran["param_33"], "--param", "'p': the value nests arrays and objects more than 32 deep")
    refused(ran["param_objects"], "--param", "more than 32 deep")


declare("param_5000", *PAIR, "--param", f"p={nested(5000)}")


def test_a_param_thousands_deep_is_refused_without_a_recursion_error(ran):
    refused(ran["param_5000"], "--param", "more than 32 deep")


def test_brackets_inside_json_strings_do_not_nest():
    text = json.dumps({"label": "[" * 100 + '"{' * 40, "more": ["]" * 50, "x\\"]})
    assert checking._json_depth(text) == 2  # the object and the list
    assert checking._parse_params([f"p={text}"])["p"]["label"].startswith("[[[")


def test_nesting_is_measured_before_json_decodes(monkeypatch):
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(click.BadParameter, match="more than 32 deep"):
        checking._parse_params([f"p={nested(33)}"])


declare("param_10", *PAIR, "--param", "p=" + json.dumps([[1, 2, 3], {"a": [4, 5, 6, 7]}, "x", None, True]), "-q",
        env={"GRADCHECK_MAX_ELEMENTS": "10"})
declare("param_11", *PAIR, "--param", "p=" + json.dumps(list(range(11))), env={"GRADCHECK_MAX_ELEMENTS": "10"})


def test_the_elements_of_a_param_both_ways(ran, monkeypatch):
    passed(ran["param_10"])
    refused(ran["param_11"], "--param", "'p': the value has 11 elements (at most 10; GRADCHECK_MAX_ELEMENTS raises it)")
    monkeypatch.setattr(limits, "MAX_ELEMENTS", 10)
    monkeypatch.setattr(checking, "_array_or_list", lambda value: pytest.fail("made an array"))
    with pytest.raises(click.BadParameter, match="11 elements"):
        checking._parse_params(["p=" + json.dumps(list(range(11)))])


declare("param_10_bytes", *PAIR, "--param", "p=[1,2,3,45]", "-q", env={"GRADCHECK_MAX_FILE_BYTES": "10"})
declare("param_11_bytes", *PAIR, "--param", "p=[1,2,3,456]", env={"GRADCHECK_MAX_FILE_BYTES": "10"})


def test_the_bytes_of_a_param_both_ways(ran):
    passed(ran["param_10_bytes"])
    refused(ran["param_11_bytes"], "--param", "'p': the value is 11 bytes (at most 10; GRADCHECK_MAX_FILE_BYTES raises it)")


# --- pyproject.toml -------------------------------------------------------------------------------

def check_in(name: str, toml: str) -> None:
    """`gradcheck check -e x*x` in a folder whose pyproject.toml is `toml`."""
    declare(name, "-e", "x*x", "-q", command="check", toml=toml)


check_in("toml_32", f"[tool.gradcheck]\nseed = 3\n[tool.other]\na = {nested(32)}\n")
check_in("toml_33", f"[tool.gradcheck]\nseed = 3\n[tool.other]\na = {nested(33)}\n")
TABLES = "{b = " * 33 + "1" + "}" * 33
check_in("toml_tables", f"[tool.other]\n\na = {TABLES}\n")


def test_the_nesting_of_pyproject_both_ways(ran):
    passed(ran["toml_32"])
    refused(ran["toml_33"], "pyproject.toml:4:37: error: arrays and tables nest more than 32 deep here")
    refused(ran["toml_tables"], "pyproject.toml:3:", "more than 32 deep")


check_in("toml_5000", f"[tool.gradcheck]\nseed = {nested(5000)}\n")
check_in("toml_3000_keys", "[tool.gradcheck]\nseed." + ".".join(["a"] * 3000) + " = 1\n")


def test_a_pyproject_thousands_deep_is_refused_without_a_recursion_error(ran):
    refused(ran["toml_5000"], "pyproject.toml:2:", "more than 32 deep")
    refused(ran["toml_3000_keys"], "pyproject.toml:2:1: error: [tool.gradcheck] seed nests more than 32 deep")


UNDER = "[tool.gradcheck]\nseed = 1\nx." + ".".join(["a"] * 32) + " = 1\n"  # x holds 32 tables in one another
check_in("dotted_32", UNDER)
check_in("dotted_33", UNDER.replace("x.", "x.a."))


def test_dotted_keys_in_the_gradcheck_table_both_ways(ran):
    refused(ran["dotted_32"], "unknown key 'x'")  # read, and refused as a setting it is not
    refused(ran["dotted_33"], "pyproject.toml:3:1", "x nests more than 32 deep")


STRINGS = ('[tool.gradcheck]\nseed = 4  # ' + "[" * 40 + '\n[tool.other]\na = "' + "[" * 40 + '\\""\n'
           "b = '" + "{" * 40 + "'\nc = '''\n" + "[" * 40 + "\n'''\n" + 'd = """\n' + "[" * 40 + '\\""""\n')
check_in("toml_strings", STRINGS)


def test_brackets_in_toml_strings_and_comments_do_not_nest(ran):
    assert tomllib.loads(STRINGS)["tool"]["gradcheck"] == {"seed": 4}
    passed(ran["toml_strings"])


def test_pyproject_nesting_is_measured_before_toml_decodes(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(f"[tool.other]\na = {nested(33)}\n")
    monkeypatch.setattr(tomllib, "loads", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(GradcheckError, match="more than 32 deep"):
        config.load(tmp_path)


def test_the_bytes_of_pyproject_both_ways(tmp_path, monkeypatch):
    text = "[tool.gradcheck]\nseed = 7\n"
    (tmp_path / "pyproject.toml").write_text(text)
    monkeypatch.setattr(config, "MAX_FILE_BYTES", len(text))
    assert config.load(tmp_path)[0].seed == 7
    (tmp_path / "pyproject.toml").write_text(text + " ")
    with pytest.raises(GradcheckError, match="longer than 26 bytes"):
        config.load(tmp_path)


# --- a layer's output -----------------------------------------------------------------------------

def wide(n: int):
    """f(x) = sum(x) in each of n outputs, and its right VJP."""
    return (lambda x: np.full(n, x.sum())), (lambda dout, x: np.full(x.shape, dout.sum()))


def test_the_elements_of_an_output_both_ways(monkeypatch):
    monkeypatch.setattr(usercode, "MAX_ELEMENTS", 1000)
    assert check_function(*wide(1000), {"x": np.arange(3.0)}).passed
    monkeypatch.setattr(pycheck, "FunctionRunner", lambda *a, **k: pytest.fail("the differences were set up"))
    report = check_function(*wide(1001), {"x": np.arange(3.0)})
    assert report.error.message == "the forward's output has 1,001 elements (at most 1,000; GRADCHECK_MAX_ELEMENTS raises it)"
    assert os.path.samefile(report.error.source, __file__) and report.error.line is not None


# one element over the default limit (not counted, its check would run and pass: exit 0); 10^8 elements take
# the same path after a second of page faults in the layer's own np.full (800 MB)
declare("output_over", "layers.py::wide", "--shape", "x=2", "--param", "n=2000001")
declare("output_50", "layers.py::wide", "--shape", "x=2", "--param", "n=50", "-q", env={"GRADCHECK_MAX_ELEMENTS": "50"})
declare("output_51", "layers.py::wide", "--shape", "x=2", "--param", "n=51", env={"GRADCHECK_MAX_ELEMENTS": "50"})


def test_a_huge_output_is_an_error_at_the_forward(ran):
    refused(ran["output_over"], "layers.py:21:1: error: the forward's output has 2,000,001 elements (at most 2,000,000; "
            "GRADCHECK_MAX_ELEMENTS raises it)")
    passed(ran["output_50"])
    refused(ran["output_51"], "51 elements (at most 50")


def test_a_torch_function_with_a_huge_output():
    torch = pytest.importorskip("torch")
    from gradcheck_cli.torch import check

    class Wide(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sum() * torch.ones(2_000_001, dtype=x.dtype)

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g.sum() * torch.ones_like(x)
    report = check(Wide, (torch.ones(3, dtype=torch.float64),))
    assert report.error is not None and "2,000,001 elements (at most 2,000,000" in report.error.message


# In the one process of the JAX API tests (tests/python/one_process.py, `jax_bodies`): JAX is not
# imported in pytest's process.
JAX_HUGE = """
import numpy as np
import jax, jax.numpy as jnp
from gradcheck_cli.jax import check

@jax.custom_vjp
def wide_sum(x):
    return x.sum() * jnp.ones(2_000_001)
wide_sum.defvjp(lambda x: (wide_sum(x), x), lambda x, g: (g.sum() * jnp.ones_like(x),))
report = check(wide_sum, (np.ones(3),))
result = None if report.error is None else report.error.message
"""
if importlib.util.find_spec("jax") is not None:
    share(__name__, lambda folder: ("", {"huge_output": JAX_HUGE}))


def test_a_jax_rule_with_a_huge_output(jax_bodies):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is an optional extra: pip install '.[jax]'")
    message = run_body(jax_bodies[__name__], "huge_output")
    assert message is not None and "2,000,001 elements (at most 2,000,000" in message
