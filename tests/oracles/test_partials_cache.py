"""The elementwise gates' local Jacobians: evaluated per gate kind for many calls at once, the same arrays
as call by call; SymPy's partials kept between runs as plain trees, the same values as SymPy's fresh ones
(and as SymPy's own evaluation at a point), never used under another SymPy or other sources, and a warm
run that needs no SymPy import at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

from gradcheck_cli.core import cache
from gradcheck_cli.gates import REGISTRY
from gradcheck_cli.language.frontend import load
from gradcheck_cli.oracles import autodiff, partials_cache, symbolic
from gradcheck_cli.oracles.symvalues import Work, tree_value

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
from bench_core import expression_file  # noqa: E402

# every elementwise registry gate the language writes as an operator or a call, on two leaves
ELEMENTWISE = """\
x = 0.7
y = -1.3
z = 0.0
a = exp(x) + log(abs(y) + 1) + sqrt(abs(x) + 2) + sin(y) * cos(x) - tanh(y) / sigmoid(x)
b = relu(x) + relu(y) + relu(z) + max(x, y) - min(x, y) + abs(z) + x ^ 3 + 2 ^ y + 1 / y
c = 3 * x - y * 0.5 + (x + 2) + (1 - y) + x ** y + max(z, 0) + min(z, 0)
f = a * b + c
"""


def _elementwise_nodes(graph):
    return [n for n in graph.nodes[: graph.output + 1] if n.gate is not None and getattr(n.gate, "elementwise", False)]


def _same(found: list, expected: list) -> None:
    assert len(found) == len(expected)
    for (r1, c1, v1), (r2, c2, v2) in zip(found, expected):
        assert np.array_equal(r1, r2) and np.array_equal(c1, c2)
        assert v1.dtype == v2.dtype and np.array_equal(v1, v2, equal_nan=True)


@pytest.mark.parametrize("text", [ELEMENTWISE, expression_file(300, seed=3)], ids=["every-kind", "tree-300"])
@pytest.mark.parametrize("complex_point", [False, True])
def test_grouped_evaluation_is_the_call_by_call_one(text, complex_point):
    graph = load(text)
    values = autodiff.forward(graph)
    if complex_point:  # second order's complex step: some operands complex, others not
        values = [v if v is None or i % 3 else np.asarray(v, dtype=complex) + 1e-30j for i, v in enumerate(values)]
    nodes = _elementwise_nodes(graph)
    assert len(nodes) > 20
    grouped = symbolic.elementwise_jacobians(nodes, values)
    real = {n.id for n in nodes if not any(np.iscomplexobj(values[i]) for i in n.inputs)}
    assert set(grouped) == real and (len(real) < len(nodes)) == complex_point  # complex calls: one by one
    for node in nodes:
        if node.id in grouped:
            one = symbolic._elementwise_jacobian(node, [values[i] for i in node.inputs], Work(10 ** 9))
            _same(grouped[node.id], one)


def test_grouped_jacobians_match_sympy_at_the_point():
    """Independent of the evaluator: SymPy's own value of each partial at the call's operands."""
    graph = load(ELEMENTWISE)
    values = autodiff.forward(graph)
    nodes = _elementwise_nodes(graph)
    grouped = symbolic.elementwise_jacobians(nodes, values)
    for node in nodes:
        d = [sympy.Symbol(f"d{k}", real=True) for k in range(len(node.inputs))]
        expr = np.asarray(symbolic.gate_sym(node.gate, [np.asarray(s, dtype=object) for s in d], node.attrs),
                          dtype=object).item()
        point = {s: sympy.Float(float(values[i]), 30) for s, i in zip(d, node.inputs)}
        for k, (_, _, vals) in enumerate(grouped[node.id]):
            want = complex(expr.diff(d[k]).subs(point).evalf(30))
            got = float(vals[0]) if vals.size else 0.0
            assert want.imag == 0
            assert got == pytest.approx(want.real, rel=1e-13, abs=1e-300), (node.name, k)


def _kinds(text: str):
    graph = load(text)
    for node in _elementwise_nodes(graph):
        if REGISTRY.get(node.gate.name) is node.gate:
            yield node.gate, node.attrs, len(node.inputs)


def test_cached_partials_are_the_fresh_ones(tmp_path):
    kinds = list(_kinds(ELEMENTWISE))
    writer = partials_cache.Store(tmp_path, "9.9", "sources")
    for gate, attrs, arity in kinds:
        writer.put(f"{gate.name}|{attrs!r}|{arity}", symbolic.fresh_partials(gate, attrs, arity))
    writer.flush()
    reader = partials_cache.Store(tmp_path, "9.9", "sources")  # another process: read from the file
    rng = np.random.default_rng(0)
    for gate, attrs, arity in kinds:
        cached = reader.get(f"{gate.name}|{attrs!r}|{arity}")
        fresh = symbolic.fresh_partials(gate, attrs, arity)
        assert cached == fresh  # the same tree, every float to the bit (JSON keeps a float's repr)
        point = [np.concatenate([rng.normal(size=50) * 3, [0.0, 1.0, -1.0]]) for _ in range(arity)]  # kinks, ties
        for c, f in zip(cached, fresh):
            assert np.array_equal(tree_value(c, point), tree_value(f, point), equal_nan=True)


def test_a_stale_or_damaged_cache_is_not_used(tmp_path):
    trees = [["f", "exp", ["s", 0]]]
    first = partials_cache.Store(tmp_path, "1.0", "aaa")
    first.put("exp|[]|1", trees)
    first.flush()
    assert partials_cache.Store(tmp_path, "1.0", "aaa").get("exp|[]|1") == trees
    assert partials_cache.Store(tmp_path, "1.1", "aaa").get("exp|[]|1") is None  # another SymPy
    assert partials_cache.Store(tmp_path, "1.0", "bbb").get("exp|[]|1") is None  # other gate sources
    # a file under the right name whose own record says otherwise is not used either
    written = tmp_path / "partials-sympy1.0-aaa.json"
    data = json.loads(written.read_text())
    data["sympy"] = "0.5"
    written.write_text(json.dumps(data))
    assert partials_cache.Store(tmp_path, "1.0", "aaa").get("exp|[]|1") is None
    data["sympy"] = "1.0"
    for bad in (["f", "__import__", ["s", 0]], ["s", -1], ["n", "1"], ["pow", ["s", 0]], "exp", []):
        data["partials"]["exp|[]|1"] = [bad]
        written.write_text(json.dumps(data))
        assert partials_cache.Store(tmp_path, "1.0", "aaa").get("exp|[]|1") is None, bad
    written.write_text('{"sympy": "1.0", "sour')  # cut short
    assert partials_cache.Store(tmp_path, "1.0", "aaa").get("exp|[]|1") is None


def test_where_the_cache_lives_and_its_off_switch(monkeypatch, tmp_path):
    for name in ("GRADCHECK_NO_CACHE", "GRADCHECK_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert partials_cache.directory() == tmp_path / "home" / ".cache" / "gradcheck"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert partials_cache.directory() == tmp_path / "xdg" / "gradcheck"
    monkeypatch.setenv("GRADCHECK_CACHE_DIR", str(tmp_path / "mine"))
    assert partials_cache.directory() == tmp_path / "mine"
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    assert partials_cache.directory() is None
    assert partials_cache.store().path is None
    assert partials_cache.sympy_version() == sympy.__version__


def test_an_unwritable_cache_is_as_none(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    store = partials_cache.Store(blocked / "sub", "1.0", "aaa")
    store.put("exp|[]|1", [["f", "exp", ["s", 0]]])
    store.flush()  # no error
    assert not (blocked / "sub").exists()


def test_kinds_made_in_one_check_are_written_once_and_the_file_is_bounded(tmp_path, monkeypatch):
    # every constant is an attribute: a file of many constants makes many kinds
    text = "x = 0.7\nf = " + " + ".join(f"(x * {k + 2})" for k in range(40)) + "\n"
    writes = []
    real = cache.os.replace
    monkeypatch.setattr(cache.os, "replace", lambda a, b: writes.append(b) or real(a, b))
    monkeypatch.setenv("GRADCHECK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRADCHECK_NO_CACHE", raising=False)
    monkeypatch.setattr(symbolic, "_elementwise", {})
    monkeypatch.setattr(partials_cache, "_store", None)
    graph = load(text)
    values = autodiff.forward(graph)
    symbolic.derivatives(graph, values, [n.id for n in graph.nodes])
    assert len(writes) == 1
    kept = json.loads(Path(writes[0]).read_text())["partials"]
    assert len(kept) >= 40 and all(key in kept for key in ("*a|[('c', 2.0)]|1", "*a|[('c', 41.0)]|1"))
    monkeypatch.setattr(partials_cache, "MAX_KINDS", 45)
    monkeypatch.setattr(symbolic, "_elementwise", {})
    monkeypatch.setattr(partials_cache, "_store", None)
    more = "x = 0.7\nf = " + " + ".join(f"(x * {k + 100})" for k in range(40)) + "\n"
    graph = load(more)
    symbolic.derivatives(graph, autodiff.forward(graph), [n.id for n in graph.nodes])
    assert len(json.loads(Path(writes[-1]).read_text())["partials"]) == 45


WARM = """\
import sys, json
from gradcheck_cli import check
report = check(open(sys.argv[1]).read())
print(json.dumps({"sympy": "sympy" in sys.modules, "nodes": [r.to_dict() for r in report.nodes]}))
"""


def test_a_warm_run_needs_no_sympy_and_answers_the_same(tmp_path):
    source = tmp_path / "tree.grad"
    source.write_text(expression_file(60, seed=5))
    env = {**os.environ, "GRADCHECK_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("GRADCHECK_NO_CACHE", None)
    runs = [json.loads(subprocess.run([sys.executable, "-c", WARM, str(source)], env=env, capture_output=True,
                                      text=True, check=True).stdout) for _ in range(2)]
    off = json.loads(subprocess.run([sys.executable, "-c", WARM, str(source)], env={**env, "GRADCHECK_NO_CACHE": "1"},
                                    capture_output=True, text=True, check=True).stdout)
    assert runs[0]["sympy"] and not runs[1]["sympy"] and off["sympy"]
    assert runs[0]["nodes"] == runs[1]["nodes"] == off["nodes"]
    assert len(list((tmp_path / "cache").glob("partials-*.json"))) == 1


def test_the_sources_hash_follows_every_gate_module(tmp_path, monkeypatch):
    import shutil
    package = Path(partials_cache.__file__).resolve().parent.parent
    copy = tmp_path / "gradcheck_cli"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(partials_cache, "__file__", str(copy / "oracles" / "partials_cache.py"))
    before = partials_cache.sources_hash()
    (copy / "gates" / "new_gates.py").write_text("def sym_new(args, attrs):\n    return args[0]\n")
    added = partials_cache.sources_hash()
    (copy / "gates" / "arithmetic.py").write_text((copy / "gates" / "arithmetic.py").read_text() + "\n# changed\n")
    assert len({before, added, partials_cache.sources_hash()}) == 3


# a user gate with `expect` lines (their SymPy verdicts), a tensor file (matmul: a registry gate whose Jacobian
# SymPy builds whole), user gates calling tensor gates (affine: matmul, sum, mean; softmax, logsumexp), and
# index, concatenate and matmul calls in a recurrent step
WARM_FILES = ["expressions/gate_sigmoid.grad", "expressions/cs231n_matmul.grad",
              "examples/mistakes/cs231n_layers_db.grad", "expressions/cs231n_lstm_step.grad"]


def test_a_warm_run_of_tensor_files_user_gates_and_expect_lines_needs_no_sympy(tmp_path):
    """The command line on files whose every SymPy answer (elementwise partials, other gates' local Jacobians,
    `expect` verdicts, a large gate's rule and slices) an earlier run kept: no SymPy import (`-X importtime`
    lists every module imported), and the report byte for byte the cold run's."""
    large = tmp_path / "rule_and_slices.grad"  # a product past RULE_PAST (its index rule, which SymPy confirms)
    large.write_text("x = randn(20, 30)\nW = randn(30, 40)\nL = mean(logsumexp(x @ W, axis=1))\n")  # 20 slices
    env = {**os.environ, "GRADCHECK_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("GRADCHECK_NO_CACHE", None)
    command = [sys.executable, "-X", "importtime", "-m", "gradcheck_cli", "check", *WARM_FILES, str(large), "--format", "json"]

    def run(environment: dict) -> tuple[str, bool]:
        done = subprocess.run(command, env=environment, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 1 and done.stdout.startswith("{"), done.stderr[-2000:]  # a mistake is found
        return done.stdout, any(line.endswith("| sympy") for line in done.stderr.splitlines())

    # (the cold run's report is the one without the cache: test_jacobian_cache's same bytes off, cold and warm)
    (cold, cold_sympy), (warm, warm_sympy) = run(env), run(env)
    assert cold_sympy and not warm_sympy
    assert cold == warm
    report = json.loads(warm)
    text = json.dumps(report, ensure_ascii=False)
    assert "symbolically equal" in text  # gate_sigmoid's formula judged by SymPy, kept
    assert "by the index rule" in text and "on one 1×40 slice" in text  # the large file's two ways
