"""Every size a user gives `check-py` (and `check`) is counted against the documented limits before
anything is made from it: `--shape` (elements, all of them together, dimensions), `--at` values,
`--param` JSON (bytes, nesting, elements), `pyproject.toml` (bytes, nesting) and a layer's output.
Each refusal is exit 2 naming the option (or a position in the file), never a traceback, and each
limit is held both ways: just under passes, just over is refused."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tomllib

import click
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
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


def run(tmp_path, *args, env: dict | None = None, memory: int | None = None, command: str = "check-py"):
    """`gradcheck check-py` (or `command`) in a fresh process, in `tmp_path` with layers.py there,
    the GRADCHECK_* variables `env` set and its address space capped at `memory` bytes."""
    (tmp_path / "layers.py").write_text(LAYERS)

    def cap():
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "gradcheck_cli", command, *args], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, preexec_fn=cap, timeout=300)


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

def test_a_74_gib_shape_is_refused_before_it_is_allocated(tmp_path):
    # under a 1 GiB address space, drawing the 10^10 values first would die in numpy (a traceback)
    result = run(tmp_path, "layers.py::double", "--shape", "x=100000,100000", memory=GiB)
    refused(result, "--shape", "'x=100000,100000' would have 10,000,000,000 elements (at most 2,000,000; "
            "GRADCHECK_MAX_ELEMENTS raises it)")


def test_the_elements_of_a_shape_both_ways(tmp_path):
    env = {"GRADCHECK_MAX_ELEMENTS": "12"}
    passed(run(tmp_path, "layers.py::double", "--shape", "x=3,4", "-q", env=env))
    refused(run(tmp_path, "layers.py::double", "--shape", "x=13", env=env), "--shape", "'x=13' would have 13 elements",
            "at most 12")


def test_the_shapes_together_both_ways(tmp_path):
    env = {"GRADCHECK_MAX_TOTAL_ELEMENTS": "20"}
    passed(run(tmp_path, "layers.py::pair", "--shape", "x=3,4", "--shape", "y=2,4", "-q", env=env))
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=3,4", "--shape", "y=3,3", env=env), "--shape",
            "the --shape inputs together would have 21 elements (at most 20; GRADCHECK_MAX_TOTAL_ELEMENTS raises it)")


def test_the_dimensions_of_a_shape_both_ways(tmp_path):
    passed(run(tmp_path, "layers.py::double", "--shape", "x=1,1,1,1,1,1,1,2", "-q"))
    refused(run(tmp_path, "layers.py::double", "--shape", "x=1,1,1,1,1,1,1,1,2"), "--shape", "9 dimensions (at most 8)")
    refused(run(tmp_path, "layers.py::double", "--shape", "x=" + ",".join(["1"] * 70)), "--shape",
            "70 dimensions (at most 8)")


def test_a_dimension_of_thousands_of_digits_is_refused(tmp_path):
    # int() of more than 4,300 digits raises in Python 3.11: it is never called
    refused(run(tmp_path, "layers.py::double", "--shape", "x=" + "9" * 5000), "--shape", "a dimension of 5,000 digits")


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

def test_a_huge_at_value_is_refused_before_it_is_drawn(tmp_path):
    result = run(tmp_path, "layers.py::double", "--at", "x=randn(100000,100000)", memory=GiB)
    refused(result, "--at x:1:1: error: randn(100000, 100000) is too large: 10,000,000,000 elements")


def test_the_numbers_written_in_an_at_value_both_ways(tmp_path):
    env = {"GRADCHECK_MAX_ELEMENTS": "12"}
    twelve = "x=[" + ", ".join(str(k) for k in range(1, 13)) + "]"
    passed(run(tmp_path, "layers.py::double", "--at", twelve, "-q", env=env))
    refused(run(tmp_path, "layers.py::double", "--at", twelve[:-1] + ", 13]", env=env),
            "--at x:1:1: error: --at x would have 13 elements (at most 12; GRADCHECK_MAX_ELEMENTS raises it)")


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


def test_at_values_together_with_the_shapes_both_ways(tmp_path):
    env = {"GRADCHECK_MAX_TOTAL_ELEMENTS": "20"}
    passed(run(tmp_path, "layers.py::pair", "--shape", "x=3,4", "--at", "y=randn(8)", "-q", env=env))
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=3,4", "--at", "y=randn(9)", env=env), "--at",
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


def test_the_nesting_of_a_param_both_ways(tmp_path):
    passed(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", f"p={nested(32)}", "-q"))
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", f"p={nested(33)}"),
            "--param", "'p': the value nests arrays and objects more than 32 deep")
    objects = '{"a": ' * 50 + "1" + "}" * 50
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", f"p={objects}"),
            "--param", "more than 32 deep")


def test_a_param_thousands_deep_is_refused_without_a_recursion_error(tmp_path):
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", f"p={nested(5000)}"),
            "--param", "more than 32 deep")


def test_brackets_inside_json_strings_do_not_nest():
    text = json.dumps({"label": "[" * 100 + '"{' * 40, "more": ["]" * 50, "x\\"]})
    assert checking._json_depth(text) == 2  # the object and the list
    assert checking._parse_params([f"p={text}"])["p"]["label"].startswith("[[[")


def test_nesting_is_measured_before_json_decodes(monkeypatch):
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(click.BadParameter, match="more than 32 deep"):
        checking._parse_params([f"p={nested(33)}"])


def test_the_elements_of_a_param_both_ways(tmp_path, monkeypatch):
    env = {"GRADCHECK_MAX_ELEMENTS": "10"}
    ten = "p=" + json.dumps([[1, 2, 3], {"a": [4, 5, 6, 7]}, "x", None, True])
    passed(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", ten, "-q", env=env))
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", "p=" + json.dumps(list(range(11))),
                env=env), "--param", "'p': the value has 11 elements (at most 10; GRADCHECK_MAX_ELEMENTS raises it)")
    monkeypatch.setattr(limits, "MAX_ELEMENTS", 10)
    monkeypatch.setattr(checking, "_array_or_list", lambda value: pytest.fail("made an array"))
    with pytest.raises(click.BadParameter, match="11 elements"):
        checking._parse_params(["p=" + json.dumps(list(range(11)))])


def test_the_bytes_of_a_param_both_ways(tmp_path):
    env = {"GRADCHECK_MAX_FILE_BYTES": "10"}
    passed(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", "p=[1,2,3,45]", "-q", env=env))
    refused(run(tmp_path, "layers.py::pair", "--shape", "x=2", "--shape", "y=2", "--param", "p=[1,2,3,456]", env=env),
            "--param", "'p': the value is 11 bytes (at most 10; GRADCHECK_MAX_FILE_BYTES raises it)")


# --- pyproject.toml -------------------------------------------------------------------------------

def check_in(tmp_path, toml: str):
    (tmp_path / "pyproject.toml").write_text(toml)
    return run(tmp_path, "-e", "x*x", "-q", command="check")


def test_the_nesting_of_pyproject_both_ways(tmp_path):
    passed(check_in(tmp_path, f"[tool.gradcheck]\nseed = 3\n[tool.other]\na = {nested(32)}\n"))
    refused(check_in(tmp_path, f"[tool.gradcheck]\nseed = 3\n[tool.other]\na = {nested(33)}\n"),
            "pyproject.toml:4:37: error: arrays and tables nest more than 32 deep here")
    tables = "{b = " * 33 + "1" + "}" * 33
    refused(check_in(tmp_path, f"[tool.other]\n\na = {tables}\n"), "pyproject.toml:3:", "more than 32 deep")


def test_a_pyproject_thousands_deep_is_refused_without_a_recursion_error(tmp_path):
    refused(check_in(tmp_path, f"[tool.gradcheck]\nseed = {nested(5000)}\n"), "pyproject.toml:2:", "more than 32 deep")
    refused(check_in(tmp_path, "[tool.gradcheck]\nseed." + ".".join(["a"] * 3000) + " = 1\n"),
            "pyproject.toml:2:1: error: [tool.gradcheck] seed nests more than 32 deep")


def test_dotted_keys_in_the_gradcheck_table_both_ways(tmp_path):
    under = "[tool.gradcheck]\nseed = 1\nx." + ".".join(["a"] * 32) + " = 1\n"  # x holds 32 tables in one another
    refused(check_in(tmp_path, under), "unknown key 'x'")  # read, and refused as a setting it is not
    refused(check_in(tmp_path, under.replace("x.", "x.a.")), "pyproject.toml:3:1", "x nests more than 32 deep")


def test_brackets_in_toml_strings_and_comments_do_not_nest(tmp_path):
    toml = ('[tool.gradcheck]\nseed = 4  # ' + "[" * 40 + '\n[tool.other]\na = "' + "[" * 40 + '\\""\n'
            "b = '" + "{" * 40 + "'\nc = '''\n" + "[" * 40 + "\n'''\n" + 'd = """\n' + "[" * 40 + '\\""""\n')
    assert tomllib.loads(toml)["tool"]["gradcheck"] == {"seed": 4}
    passed(check_in(tmp_path, toml))


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


def test_a_huge_output_is_an_error_at_the_forward(tmp_path):
    result = run(tmp_path, "layers.py::wide", "--shape", "x=2", "--param", "n=100000000")
    refused(result, "layers.py:21:1: error: the forward's output has 100,000,000 elements (at most 2,000,000; "
            "GRADCHECK_MAX_ELEMENTS raises it)")
    env = {"GRADCHECK_MAX_ELEMENTS": "50"}
    passed(run(tmp_path, "layers.py::wide", "--shape", "x=2", "--param", "n=50", "-q", env=env))
    refused(run(tmp_path, "layers.py::wide", "--shape", "x=2", "--param", "n=51", env=env), "51 elements (at most 50")


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


def test_a_jax_rule_with_a_huge_output():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    from gradcheck_cli.jax import check

    @jax.custom_vjp
    def wide_sum(x):
        return x.sum() * jnp.ones(2_000_001)
    wide_sum.defvjp(lambda x: (wide_sum(x), x), lambda x, g: (g.sum() * jnp.ones_like(x),))
    report = check(wide_sum, (np.ones(3),))
    assert report.error is not None and "2,000,001 elements (at most 2,000,000" in report.error.message
