"""JAX rules from the command line: `check-py FILE.py::f` on a jax.custom_vjp, custom_jvp or
custom_gradient function (also behind jax.jit) checks it through the JAX bridge, end to end. Each
rule below comes right and with one slip; its label (right or wrong) is not ours: it is JAX's own
autodiff of an independent forward, written plainly, against the rule's VJP at random points, in the
one process of the JAX API tests (`ORACLE`; gradcheck unused there). The CLI runs in this process: it
never imports JAX itself (the rule runs in check-py's process for user code), which `check_py` asserts
each time, as JAX starts threads and the suite's other tests fork after it. Skipped without JAX."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from one_process import result as run
from one_process import share

if importlib.util.find_spec("jax") is None:
    pytest.skip("JAX is an optional extra: pip install '.[jax]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent.parent

from gradcheck_cli.cli import main  # noqa: E402  (after the skip: the CLI, not JAX)

# Rules written for these tests (ideas from the JAX docs' custom derivative tutorial and from brax's
# safe_arcsin, whose fwd once returned arccos; the code is this file's own).
RULES = '''
import functools

import jax
import jax.numpy as jnp


@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def softplus_fwd(x):
    return softplus(x), x


def softplus_bwd(x, g):
    dx = g * jax.nn.sigmoid(x)
    return (dx,)


softplus.defvjp(softplus_fwd, softplus_bwd)


@jax.custom_vjp
def softplus_slip(x):
    return jnp.logaddexp(x, 0.0)


def softplus_slip_fwd(x):
    return softplus_slip(x), x


def softplus_slip_bwd(x, g):
    dx = g * jax.nn.sigmoid(-x)
    return (dx,)


softplus_slip.defvjp(softplus_slip_fwd, softplus_slip_bwd)


@jax.custom_vjp
def lse(x):
    m = jnp.max(x, axis=-1, keepdims=True)
    return jnp.log(jnp.sum(jnp.exp(x - m), axis=-1)) + m[..., 0]


def lse_fwd(x):
    out = lse(x)
    return out, (x, out)


def lse_bwd(res, g):
    x, out = res
    dx = g[..., None] * jnp.exp(x - out[..., None])
    return (dx,)


lse.defvjp(lse_fwd, lse_bwd)


@jax.custom_vjp
def lse_slip(x):
    m = jnp.max(x, axis=-1, keepdims=True)
    return jnp.log(jnp.sum(jnp.exp(x - m), axis=-1)) + m[..., 0]


def lse_slip_fwd(x):
    out = lse_slip(x)
    return out, (x, out)


def lse_slip_bwd(res, g):
    x, out = res
    dx = g[..., None] * jnp.exp(x) / jnp.sum(jnp.exp(x))
    return (dx,)


lse_slip.defvjp(lse_slip_fwd, lse_slip_bwd)


@jax.custom_jvp
def logcosh(x):
    return jnp.logaddexp(x, -x) - jnp.log(2.0)


@logcosh.defjvp
def logcosh_jvp(primals, tangents):
    x, = primals
    x_dot, = tangents
    y = logcosh(x)
    y_dot = jnp.tanh(x) * x_dot
    return y, y_dot


@jax.custom_jvp
def logcosh_slip(x):
    return jnp.logaddexp(x, -x) - jnp.log(2.0)


@logcosh_slip.defjvp
def logcosh_slip_jvp(primals, tangents):
    x, = primals
    x_dot, = tangents
    y = logcosh_slip(x)
    y_dot = jnp.tanh(-x) * x_dot
    return y, y_dot


@jax.custom_gradient
def xsin(x):
    y = x * jnp.sin(x)

    def rule(g):
        dx = g * (jnp.sin(x) + x * jnp.cos(x))
        return (dx,)
    return y, rule


@jax.custom_gradient
def xsin_slip(x):
    y = x * jnp.sin(x)

    def rule(g):
        dx = g * (jnp.sin(x) + jnp.cos(x))
        return (dx,)
    return y, rule


@jax.custom_gradient
def cube_slip(x):
    return x ** 3, lambda g: (g * 2 * x * x,)


@jax.custom_vjp
@jax.jit
def jsoftplus(x):
    return jnp.logaddexp(x, 0.0)


@jax.jit
def jsoftplus_fwd(x):
    return jsoftplus(x), x


@jax.jit
def jsoftplus_bwd(x, g):
    dx = g * jax.nn.sigmoid(x)
    return (dx,)


jsoftplus.defvjp(jsoftplus_fwd, jsoftplus_bwd)
jitted = jax.jit(jsoftplus)


@jax.custom_vjp
@jax.jit
def jsoftplus_slip(x):
    return jnp.logaddexp(x, 0.0)


@jax.jit
def jsoftplus_slip_fwd(x):
    return jsoftplus_slip(x), x


@jax.jit
def jsoftplus_slip_bwd(x, g):
    dx = g * jax.nn.sigmoid(-x)
    return (dx,)


jsoftplus_slip.defvjp(jsoftplus_slip_fwd, jsoftplus_slip_bwd)
jitted_slip = jax.jit(jsoftplus_slip)
jitted_gradient = jax.jit(xsin_slip)


@jax.custom_vjp
def safe_arcsin(x):
    return jnp.arcsin(jnp.clip(x, -1.0, 1.0))


def safe_arcsin_fwd(x):
    return safe_arcsin(x), x


def safe_arcsin_bwd(x, g):
    dx = g / jnp.sqrt(1.0 - x * x)
    return (dx,)


safe_arcsin.defvjp(safe_arcsin_fwd, safe_arcsin_bwd)


@jax.custom_vjp
def safe_arcsin_slip(x):
    return jnp.arcsin(jnp.clip(x, -1.0, 1.0))


def safe_arcsin_slip_fwd(x):
    return jnp.arccos(jnp.clip(x, -1.0, 1.0)), x


def safe_arcsin_slip_bwd(x, g):
    dx = g / jnp.sqrt(1.0 - x * x)
    return (dx,)


safe_arcsin_slip.defvjp(safe_arcsin_slip_fwd, safe_arcsin_slip_bwd)
'''

RULES_XY = '''
import jax
import jax.numpy as jnp


@jax.custom_jvp
def mix(x, y):
    return jnp.sin(x) * y * y


@mix.defjvp
def mix_jvp(primals, tangents):
    x, y = primals
    x_dot, y_dot = tangents
    out = mix(x, y)
    dx_part = jnp.cos(x) * y * y * x_dot
    dy_part = 2 * jnp.sin(x) * y * y_dot
    return out, dx_part + dy_part


@jax.custom_jvp
def mix_slip(x, y):
    return jnp.sin(x) * y * y


@mix_slip.defjvp
def mix_slip_jvp(primals, tangents):
    x, y = primals
    x_dot, y_dot = tangents
    out = mix_slip(x, y)
    dx_part = jnp.cos(x) * y * y * x_dot
    dy_part = jnp.sin(x) * y * y_dot
    return out, dx_part + dy_part
'''

RULES_INDEX = '''
import jax
import jax.numpy as jnp


@jax.custom_vjp
def gather(x, idx):
    return 2.0 * x[idx]


def gather_fwd(x, idx):
    return gather(x, idx), (x, idx)


def gather_bwd(res, g):
    x, idx = res
    dx = jnp.zeros_like(x).at[idx].add(2.0 * g)
    return dx, None


gather.defvjp(gather_fwd, gather_bwd)


@jax.custom_vjp
def gather_slip(x, idx):
    return 2.0 * x[idx]


def gather_slip_fwd(x, idx):
    return gather_slip(x, idx), (x, idx)


def gather_slip_bwd(res, g):
    x, idx = res
    dx = jnp.zeros_like(x).at[idx].set(2.0 * g)
    return dx, None


gather_slip.defvjp(gather_slip_fwd, gather_slip_bwd)
'''

# CS231n's names on a JAX rule's parts: fwd(x) and bwd(res, g), not forward(x) -> (out, cache) and
# backward(dout, cache); checked as the rule, never called CS231n's way (nor as a loss).
RULES_NAMED = '''
import jax
import jax.numpy as jnp


@jax.custom_vjp
def sigmoid(x):
    return 1 / (1 + jnp.exp(-x))


def sigmoid_forward(x):
    s = sigmoid(x)
    return s, s


def sigmoid_backward(s, g):
    dx = g * s * (1 - s)
    return (dx,)


sigmoid.defvjp(sigmoid_forward, sigmoid_backward)
'''

# The independent forwards: plain jnp, no rule (the oracle's own module), by rule name.
FORWARDS = '''
import jax
import jax.numpy as jnp


def softplus(x):
    return jnp.log1p(jnp.exp(x))


def lse(x):
    return jnp.log(jnp.sum(jnp.exp(x), axis=-1))


def logcosh(x):
    return jnp.log(jnp.cosh(x))


def xsin(x):
    return x * jnp.sin(x)


def cube(x):
    return x ** 3


def arcsin(x):
    return jnp.arcsin(x)


def mix(x, y):
    return jnp.sin(x) * y ** 2


def gather(x, idx):
    return 2.0 * jnp.take(x, idx)


def sigmoid(x):
    return jax.nn.sigmoid(x)
'''

INDEPENDENT = {"softplus": "softplus", "lse": "lse", "logcosh": "logcosh", "xsin": "xsin", "cube": "cube",
               "jitted": "softplus", "jitted_gradient": "xsin", "safe_arcsin": "arcsin", "mix": "mix",
               "gather": "gather", "sigmoid": "sigmoid"}


def independent(name: str) -> str:
    return INDEPENDENT.get(name) or INDEPENDENT[name.replace("_slip", "")]


# JAX's autodiff of each independent forward against the rule's VJP at three random points: run in the one
# process of the JAX API tests (tests/python/one_process.py, `jax_bodies`), which has JAX imported already;
# gradcheck is not used there. The rules' files loaded by path under names of their own (that process has other
# modules' `rules` imported), float64 by `jax.enable_x64` around the oracle alone (the process's flag untouched).
# Every case's two VJPs in one jitted program, compiled once and run at each of the three points.
ORACLE = '''
import importlib.util
import numpy as np
import jax, jax.numpy as jnp


def load(stem):
    spec = importlib.util.spec_from_file_location(f"jax_cli_oracle_{stem}", f"{FOLDER}/{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vjps(pairs):
    """Each (rule, plain forward)'s outputs and VJPs, at its arguments for its `u`: one compiled program for
    them all (jitted: JAX compiles each operation run outside a jit on its own, most of this oracle's time)."""
    def run(points):
        found = []
        for (rule, plain), (args, fixed, u) in zip(pairs, points):
            out, vjp = jax.vjp(lambda *a: rule(*a, *fixed), *args)
            want, vjp_want = jax.vjp(lambda *a: plain(*a, *fixed), *args)
            found.append((out, want, vjp(u), vjp_want(u)))
        return found
    return jax.jit(run)


forwards = load("forwards")
modules = {}
pairs = []
with jax.enable_x64(True):
    for module, name, forward, shapes, extra in CASES:
        if module not in modules:
            modules[module] = load(module)
        pairs.append((getattr(modules[module], name), getattr(forwards, forward)))
    run = vjps(pairs)
    right = [True] * len(CASES)
    for seed in range(3):
        points = []
        for (module, name, forward, shapes, extra), (rule, plain) in zip(CASES, pairs):
            rng = np.random.default_rng(100 + seed)
            args = [jnp.asarray(0.9 * np.tanh(rng.standard_normal(s))) if forward == "arcsin" else
                    jnp.asarray(rng.standard_normal(s)) for s in shapes]
            fixed = [jnp.asarray(np.array(e)) for e in extra]
            shape = jax.eval_shape(lambda *a: rule(*a, *fixed), *args).shape
            points.append((args, fixed, jnp.asarray(rng.standard_normal(shape))))
        for k, (out, want, grads, grads_want) in enumerate(run(points)):
            right[k] &= bool(np.allclose(out, want, rtol=1e-9, atol=1e-12))
            right[k] &= all(np.allclose(a, b, rtol=1e-7, atol=1e-10) for a, b in zip(grads, grads_want))
result = {name: "right" if ok else "wrong" for (module, name, *_), ok in zip(CASES, right)}
'''


def write_files(folder: Path) -> None:
    for stem, text in (("rules", RULES), ("rules_xy", RULES_XY), ("rules_index", RULES_INDEX),
                       ("rules_named", RULES_NAMED), ("forwards", FORWARDS)):
        (folder / f"{stem}.py").write_text(text.lstrip(), encoding="utf-8")


@pytest.fixture(scope="module")
def files(jax_bodies) -> Path:
    """The rules' files, in the folder the oracle read them from (written when `jax_bodies` started)."""
    return jax_bodies[__name__]["folder"]


X_ONLY = ["softplus", "softplus_slip", "lse", "lse_slip", "logcosh", "logcosh_slip", "xsin", "xsin_slip",
          "cube_slip", "jitted", "jitted_slip", "jitted_gradient", "safe_arcsin", "safe_arcsin_slip"]
SHAPES = {"lse": [(3, 4)], "lse_slip": [(3, 4)]}
# how each is given on the command line: seeded normal values, or a point inside arcsin's domain
OPTIONS = {n: ["--shape", "x=" + ",".join(map(str, SHAPES.get(n, [(5,)])[0]))] for n in X_ONLY}
OPTIONS.update({n: ["--at", "x=[0.3, -0.5, 0.8, 0.1, -0.2]"] for n in ("safe_arcsin", "safe_arcsin_slip")})


def oracle_cases() -> list:
    cases = [["rules", n, independent(n), SHAPES.get(n, [(5,)]), []] for n in X_ONLY]
    cases += [["rules_xy", n, independent(n), [(4,), (4,)], []] for n in ("mix", "mix_slip")]
    cases += [["rules_index", n, independent(n), [(5,)], [[0, 2, 2, 4]]] for n in ("gather", "gather_slip")]
    return cases + [["rules_named", "sigmoid", independent("sigmoid"), [(5,)], []]]


def make(folder: Path) -> tuple[str, dict]:
    write_files(folder)
    return f"FOLDER = {str(folder)!r}\nCASES = {oracle_cases()!r}\n", {"oracle": ORACLE}


share(__name__, make)


@pytest.fixture(scope="module")
def labels(jax_bodies) -> dict:
    """name -> "right" or "wrong", by JAX's autodiff of the independent forward (not by gradcheck)."""
    return run(jax_bodies[__name__], "oracle")


def check_py(*args: str) -> tuple[int, dict | None, str]:
    """`check-py ARGS --format json` in this process (its exit code, report and standard error). The
    command itself never imports JAX (the rule runs in check-py's own process; asserted here), so no
    JAX thread is left in this one for the suite's later forks."""
    had_jax = "jax" in sys.modules  # (another test of this worker may have imported it)
    done = CliRunner().invoke(main, ["check-py", *args, "--format", "json"])
    assert had_jax or "jax" not in sys.modules, "check-py imported JAX in its own process"
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = None
    return done.exit_code, report, done.stderr


def line_of(path: Path, after: str, text: str) -> int:
    """The first line holding `text` at or after the line that starts `after`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1


def failing_lines(result: dict) -> set:
    return {(r["line"], r.get("file")) for r in result["nodes"] + result["gates"] if r["status"] == "fail"}


def test_the_oracle_tells_each_right_rule_from_its_slip(labels):
    assert {n for n, v in labels.items() if v == "wrong"} == {
        "softplus_slip", "lse_slip", "logcosh_slip", "xsin_slip", "cube_slip", "jitted_slip", "jitted_gradient",
        "safe_arcsin_slip", "mix_slip", "gather_slip"}


def test_rules_of_one_input_get_the_oracles_verdicts_and_lines_in_the_users_rule(files, labels):
    path = files / "rules.py"
    verdicts, results = {}, {}
    for options in sorted({tuple(o) for o in OPTIONS.values()}):
        names = [n for n in X_ONLY if tuple(OPTIONS[n]) == options]
        code, report, err = check_py(*[f"{path}::{n}" for n in names], *options)
        assert code == 1 and report is not None, err
        for n, result in zip(names, report["results"]):
            assert result["error"] is None, (n, result["error"])
            verdicts[n] = "right" if result["passed"] else "wrong"
            results[n] = result
    assert verdicts == {n: labels[n] for n in X_ONLY}
    # each wrong rule fails at the line of its rule that computes the wrong value, in the user's file
    blamed = {
        "softplus_slip": line_of(path, "def softplus_slip_bwd", "dx = "),
        "lse_slip": line_of(path, "def lse_slip_bwd", "dx = "),
        "logcosh_slip": line_of(path, "def logcosh_slip_jvp", "y_dot = "),  # the jvp's line, not the primal's
        "xsin_slip": line_of(path, "def xsin_slip", "dx = "),
        "cube_slip": line_of(path, "def cube_slip", "lambda g"),
        "jitted_slip": line_of(path, "def jsoftplus_slip_bwd", "dx = "),
        "jitted_gradient": line_of(path, "def xsin_slip", "dx = "),
    }
    for n, line in blamed.items():
        assert failing_lines(results[n]) == {(line, None)}, (n, failing_lines(results[n]))
        assert Path(results[n]["source"].rpartition("::")[0]) == path
    # the primal the rule's fwd returns is compared with the function's: one failing row, at fwd's line
    arcsin = [g for g in results["safe_arcsin_slip"]["gates"] if g["status"] == "fail"]
    assert [(g["gate"], g["line"]) for g in arcsin] == [
        ("forward rule", line_of(path, "def safe_arcsin_slip_fwd", "return "))]
    assert "the forward rule's output differs from the function's" in arcsin[0]["note"]
    assert all(n["status"] == "pass" for n in results["safe_arcsin_slip"]["nodes"])  # (its bwd is arcsin's)
    # float64 honoured: inputs from --shape are float64, so no low-precision row anywhere
    assert not [g for r in results.values() for g in r["gates"] if g["gate"] in ("float32", "float16", "bfloat16")]


def test_a_jvp_slip_in_one_input_is_blamed_on_that_inputs_line(files, labels):
    path = files / "rules_xy.py"
    code, report, err = check_py(f"{path}::mix", f"{path}::mix_slip", "--shape", "x=4", "--shape", "y=4")
    assert code == 1, err
    right, slip = report["results"]
    assert [right["passed"], slip["passed"]] == [labels["mix"] == "right", labels["mix_slip"] == "right"]
    status = {r["name"]: (r["status"], r["line"]) for r in slip["nodes"]}
    assert status == {"x": ("pass", status["x"][1]), "y": ("fail", line_of(path, "def mix_slip_jvp", "dy_part = "))}


def test_an_integer_param_reaches_the_rule_as_an_integer_array(files, labels):
    path = files / "rules_index.py"
    verdicts = {}
    for name in ("gather", "gather_slip"):
        code, report, err = check_py(f"{path}::{name}", "--shape", "x=5", "--param", "idx=[0, 2, 2, 4]")
        assert code == (0 if labels[name] == "right" else 1), (name, err, report)
        verdicts[name] = "right" if report["results"][0]["passed"] else "wrong"
    assert verdicts == {n: labels[n] for n in verdicts}


def test_a_rule_whose_parts_have_cs231n_names_is_checked_as_the_rule(files, labels):
    path = files / "rules_named.py"
    assert labels["sigmoid"] == "right"
    for target in ("sigmoid", "sigmoid_forward"):
        code, report, err = check_py(f"{path}::{target}", "--shape", "x=6")
        assert code == 0, (target, err, report)
        result = report["results"][0]
        assert result["passed"] and [n["name"] for n in result["nodes"]] == ["x"]


def test_a_file_alone_checks_its_rules_whose_inputs_are_given(files, labels):
    code, report, err = check_py(str(files / "rules_named.py"), "--shape", "x=6")
    assert code == 0, err
    assert [r["source"].rpartition("::")[2] for r in report["results"]] == ["sigmoid"]  # the rule, not its parts
    code, report, err = check_py(str(files / "rules_index.py"), "--shape", "x=5")
    assert code == 2 and "gather: not checked: give idx" in err
    code, report, err = check_py(str(files / "rules_index.py"), "--shape", "x=5", "--param", "idx=[0, 2, 2, 4]")
    assert code == 1, err
    assert {r["source"].rpartition("::")[2]: r["passed"] for r in report["results"]} == {
        n: labels[n] == "right" for n in ("gather", "gather_slip")}


def test_exit_codes_and_errors(files):
    path = files / "rules.py"
    assert check_py(f"{path}::softplus", "--shape", "x=3,2")[0] == 0
    assert check_py(f"{path}::softplus_slip", "--shape", "x=3,2")[0] == 1
    code, _, err = check_py(f"{path}::softplus", "--shape", "z=3")
    assert code == 2 and "softplus has no parameter 'z'" in err
    code, _, err = check_py(f"{files / 'rules_xy.py'}::mix", "--shape", "x=3")
    assert code == 2 and "'y' has no default: give it too" in err
    code, _, err = check_py(f"{path}::softplus", "--shape", "x=3", "--order", "2")
    assert code == 2 and "torch.autograd.Functions only" in err


def test_jax_is_imported_only_when_a_target_uses_it():
    code = textwrap.dedent('''
        import sys
        from gradcheck_cli.cli import main
        try:
            main(["check-py", "examples/python/layers.py::affine", "--shape", "x=2,3", "--shape", "w=3,2",
                  "--shape", "b=2", "--format", "json"])
        except SystemExit as done:
            sys.stderr.write(f"exit {done.code} jax {'jax' in sys.modules}")
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stderr.strip().endswith("exit 0 jax False"), done.stderr


SYMMETRIC_RULES = '''
import jax
import jax.numpy as jnp


@jax.custom_vjp
def quad(x):
    return jnp.trace(x @ x)


def quad_fwd(x):
    return quad(x), x


def quad_bwd(x, g):
    return (2 * g * x,)  # d tr(X X) = 2 X^T: right only where X is symmetric


quad.defvjp(quad_fwd, quad_bwd)


@jax.custom_vjp
def quad_slip(x):
    return jnp.trace(x @ x)


def quad_slip_fwd(x):
    return quad_slip(x), x


def quad_slip_bwd(x, g):
    return (3 * g * x,)


quad_slip.defvjp(quad_slip_fwd, quad_slip_bwd)
'''


def test_a_rule_exact_only_on_symmetric_inputs_passes_with_the_structure_stated(tmp_path):
    """tr(X X)'s gradient is 2 Xᵀ; a rule returning 2 X is right on symmetric X only: refused on a
    general X, passing with --structure x=symmetric (its point and its differences symmetric), and
    3 X still fails under it."""
    (tmp_path / "sym.py").write_text(SYMMETRIC_RULES, encoding="utf-8")
    target = str(tmp_path / "sym.py")
    code, _, _ = check_py(f"{target}::quad", "--shape", "x=3,3")
    assert code == 1
    code, report, err = check_py(f"{target}::quad", "--shape", "x=3,3", "--structure", "x=symmetric")
    assert code == 0, (report, err[-500:])
    assert report["results"][0]["passed"] is True
    code, _, _ = check_py(f"{target}::quad_slip", "--shape", "x=3,3", "--structure", "x=symmetric")
    assert code == 1
    code, report, _ = check_py(f"{target}::quad", "--at", "x=[[1, 2], [3, 4]]", "--structure", "x=symmetric")
    assert code == 2 and "symmetric" in report["results"][0]["error"]["message"]  # a given point not of it


BILINEAR = '''import jax
import jax.numpy as jnp


@jax.custom_vjp
def bilinear(w, x):
    return jnp.dot(w, x)


def bilinear_fwd(w, x):
    return bilinear(w, x), (w, x)


def bilinear_bwd(res, g):
    w, x = res
    dw = 2.0 * jnp.outer(g, x)
    dx = w.T @ g + 1.0
    return dw, dx


bilinear.defvjp(bilinear_fwd, bilinear_bwd)
'''


def test_two_slips_in_a_rule_are_two_causes_at_their_lines_not_its_residuals(tmp_path):
    # a JAX bwd takes its residuals first and the cotangent last: the residuals are no upstream that two
    # failing gradients share (which named `w, x = res`, the one right line, as their cause)
    path = tmp_path / "bilinear.py"
    path.write_text(BILINEAR, encoding="utf-8")
    code, report, err = check_py(f"{path}::bilinear", "--shape", "w=3,4", "--shape", "x=4")
    assert code == 1, err
    rows = {r["name"]: r for r in report["results"][0]["nodes"]}
    assert rows["w"]["status"] == rows["x"]["status"] == "fail"
    assert rows["w"]["line"] == line_of(path, "def bilinear_bwd", "dw = ")
    assert rows["x"]["line"] == line_of(path, "def bilinear_bwd", "dx = ")
