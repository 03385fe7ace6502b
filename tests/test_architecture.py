"""The package's shape: imports go one way (no cycles), and imports inside functions only where they
keep start-up fast."""

import ast
import functools
import json
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "gradcheck_cli"
pytestmark = pytest.mark.xdist_group("architecture")  # one worker: the package is parsed once (_trees)
# Modules that import the rest of the package lazily, so `gradcheck --help` never pays for numpy.
LAZY_FRONT = {"cli", "__init__", "pytest_plugin", "render"}
# Heavy or rarely needed libraries any module may import inside a function, with the reason.
LAZY_LIBRARIES = {
    "sympy": "only the symbolic oracle needs it, and it takes ~0.3 s to import",
    "rich": "only the terminal renderers need it",
    "xml": "only the JUnit renderer",
    "concurrent": "only -j N",
    "ctypes": "only the CLI's malloc tuning and worker set-up",
    "tomllib": "only when a pyproject.toml exists",
    "tomli": "tomllib on Python 3.10",
    "subprocess": "only Graphviz rendering",
    "importlib": "only user Python modules (check-py)",
    "IPython": "an optional extra: only when a notebook loads the extension",
    "jax": "an optional extra: only when a target uses it",
    "torch": "an optional extra: only when a target uses it",
    "resource": "only in a grading child process, as it starts (the limits are Unix's)",
    "difflib": "only for a suggestion after a wrong name (did you mean ...?)",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts) or "__init__"


def _resolve(module: str, node: ast.ImportFrom) -> list:
    """Package modules an import statement names (relative imports only: the package never imports itself absolutely)."""
    if node.level == 0:
        return []
    base = module.split(".")
    is_package = (PACKAGE / Path(*base) / "__init__.py").exists() if module != "__init__" else True
    anchor = base if is_package and module != "__init__" else base[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
    if module == "__init__":
        anchor = []
    target = anchor + (node.module.split(".") if node.module else [])
    names = []
    for alias in node.names:
        candidate = target + [alias.name]
        if (PACKAGE / Path(*candidate)).with_suffix(".py").exists() or (PACKAGE / Path(*candidate) / "__init__.py").exists():
            names.append(".".join(candidate))
        elif target:
            names.append(".".join(target))
    return names


@functools.cache
def _trees() -> dict:
    """Every module of the package, path -> its syntax tree: parsed once for the tests that read them
    (none changes a tree or the package)."""
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def _imports():
    """module -> [(imported package module, inside a function?, third-party top name)]"""
    found = {}
    for path, tree in _trees().items():
        module = _module_name(path)
        entries = []

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.ImportFrom):
                    targets = _resolve(module, child)
                    entries.extend((t, in_function, None) for t in targets)
                    if child.level == 0:
                        entries.append((None, in_function, child.module.split(".")[0]))
                elif isinstance(child, ast.Import):
                    entries.extend((None, in_function, a.name.split(".")[0]) for a in child.names)
                visit(child, nested)
        visit(tree, False)
        found[module] = entries
    return found


def find_cycle(graph: dict):
    """A list of modules that import each other in a ring, or None."""
    state, stack = {}, []

    def dfs(m):
        state[m] = "open"
        stack.append(m)
        for t in graph.get(m, []):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = dfs(t)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in graph:
        if m not in state:
            found = dfs(m)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_no_import_cycles_inside_the_package():
    imports = _imports()
    assert len(imports) > 20 and sum(len(e) for e in imports.values()) > 50  # the scan sees the package
    graph = {m: sorted({t for t, _, _ in entries if t and t != m}) for m, entries in imports.items()}
    graph = {m: [t for t in ts if t in graph and t.split(".")[0] not in LAZY_FRONT and m != "__init__"]
             for m, ts in graph.items()}
    assert graph["checking.checker"] and "oracles.autodiff" in graph["checking.checker"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_imports_inside_functions_only_keep_start_up_fast():
    for module, entries in _imports().items():
        if module.split(".")[0] in LAZY_FRONT:
            continue
        for target, in_function, library in entries:
            if not in_function:
                continue
            assert target is None, f"{module} imports {target} inside a function: import it at the top"
            assert library in LAZY_LIBRARIES, f"{module} imports {library} inside a function"


def test_the_library_never_prints():
    for path, tree in _trees().items():
        if path.name in ("cli.py",):
            continue
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path.name} calls print()"


def test_no_evaluator_is_ever_called():
    banned = {"eval", "exec", "sympify", "parse_expr", "lambdify", "compile"}
    for path, tree in _trees().items():
        for n in ast.walk(tree):
            if isinstance(n, ast.Call):
                name = getattr(n.func, "id", None) or getattr(n.func, "attr", None)
                if name in banned and not (name == "compile" and isinstance(n.func, ast.Attribute)):
                    raise AssertionError(f"{path.name}:{n.lineno} calls {name}()")


def _parse_with_fresh_parser(syntax) -> str:
    syntax._parser.cache_clear()
    syntax._parsed.clear()  # a text parsed before is not parsed again
    try:
        return syntax.parse("x = 1\nf = x * x").statements[1].name
    finally:
        syntax._parser.cache_clear()


def test_parser_tables_are_kept_as_json_and_loaded_not_rebuilt(monkeypatch, tmp_path):
    """The LALR tables lark builds (0.2 s) are kept in the cache folder as tagged JSON, read back
    through lark's own deserialiser, never a pickle; a second parser loads them instead of building."""
    from gradcheck_cli.language import syntax
    monkeypatch.setenv("GRADCHECK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRADCHECK_NO_CACHE", raising=False)
    loaded, built = [], []
    real_load, real_build = syntax.Lark._load, syntax._build
    monkeypatch.setattr(syntax.Lark, "_load", lambda self, *a, **k: loaded.append(1) or real_load(self, *a, **k))
    monkeypatch.setattr(syntax, "_build", lambda grammar: built.append(1) or real_build(grammar))
    assert _parse_with_fresh_parser(syntax) == "f" and (built, loaded) == ([1], [])
    (saved,) = tmp_path.glob("grammar-*.json")
    assert json.loads(saved.read_text(encoding="utf-8"))["key"] == syntax._grammar()[1]
    assert _parse_with_fresh_parser(syntax) == "f" and (built, loaded) == ([1], [1])
    # what the loaded parser gives is what the built one gives, on every file of the repository
    sources = sorted((ROOT / "expressions").glob("*.grad")) + sorted((ROOT / "examples").rglob("*.grad"))
    syntax._parser.cache_clear()
    from_tables = [repr(syntax.parse(p.read_text(encoding="utf-8"))) for p in sources]
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    syntax._parser.cache_clear()
    assert [repr(syntax.parse(p.read_text(encoding="utf-8"))) for p in sources] == from_tables
    syntax._parser.cache_clear()


@pytest.mark.parametrize("damage", ["another lark", "cut short", "edited", "not tagged"])
def test_tables_of_another_lark_or_damaged_are_rebuilt_not_loaded(monkeypatch, tmp_path, damage):
    from gradcheck_cli.language import syntax
    monkeypatch.setenv("GRADCHECK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRADCHECK_NO_CACHE", raising=False)
    _parse_with_fresh_parser(syntax)
    (saved,) = tmp_path.glob("grammar-*.json")
    text = saved.read_text(encoding="utf-8")
    data = json.loads(text)
    if damage == "another lark":
        data["key"] = data["key"].rsplit("lark-", 1)[0] + "lark-0.0.1"
        saved.write_text(json.dumps(data), encoding="utf-8")
    elif damage == "cut short":
        saved.write_text(text[: len(text) // 2], encoding="utf-8")
    elif damage == "edited":
        data["tables"] = {"d": [["data", {"d": []}], ["memo", {"d": []}]]}
        saved.write_text(json.dumps(data), encoding="utf-8")
    else:
        data["tables"] = {"x": 1, "y": 2}
        saved.write_text(json.dumps(data), encoding="utf-8")
    built = []
    real_build = syntax._build
    monkeypatch.setattr(syntax, "_build", lambda grammar: built.append(1) or real_build(grammar))
    assert _parse_with_fresh_parser(syntax) == "f" and built == [1]
    assert json.loads(saved.read_text(encoding="utf-8"))["key"] == syntax._grammar()[1]  # written again, whole


def test_without_the_cache_the_parser_is_built_and_nothing_written(monkeypatch, tmp_path):
    from gradcheck_cli.language import syntax
    monkeypatch.setenv("GRADCHECK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    assert _parse_with_fresh_parser(syntax) == "f"
    assert not (tmp_path / "cache").exists()


def test_the_package_holds_no_binary_or_generated_file():
    """Nothing binary or generated ships: every file of the package is text (what the tool derives
    once, such as the parser's tables, is made at run time and kept in the user's cache)."""
    for path in PACKAGE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            try:
                path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError(f"{path.relative_to(PACKAGE)} is not text") from None


# The packages, in the order data flows: a module imports only from its own package or one below.
# text → graph → oracles → checks → Python targets → teaching → faces.
PACKAGES = ["core", "gates", "language", "oracles", "checking", "python", "teaching", "render", "cli"]
FACES = {"__init__", "__main__", "notebook", "pytest_plugin", "testing", "torch", "jax"}  # the top: entry points
# Arrows against that order that exist today, each to be removed. None: a user gate is a composite
# gate the evaluators run (autodiff.gate_forward/gate_vjp/gate_branch, symbolic.gate_sym), a user gate
# on constants is folded by building its body with them, and expectations are judged in expectcheck.
KNOWN: set = set()
TOP_LEVEL_MAX = 12  # modules at the package's top: entry points and thin public facades only


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return PACKAGES.index(top) if top in PACKAGES else len(PACKAGES)


def test_every_module_has_a_layer():
    for module in _imports():
        assert module.split(".")[0] in PACKAGES or module in FACES, f"{module} is in no package of PACKAGES"


def test_the_top_of_the_package_holds_entry_points_and_facades_only():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert set(top) == FACES and len(top) <= TOP_LEVEL_MAX, top
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages == sorted(PACKAGES), packages


def test_imports_go_down_the_layers_only():
    found = set()
    for module, entries in _imports().items():
        for target, _, _ in entries:
            if target is None or target.split(".")[0] == module.split(".")[0]:
                continue
            if _layer(target) > _layer(module):
                found.add((module.split(".")[0], target.split(".")[0]))
    assert found <= KNOWN, f"imports against the layers: {sorted(found - KNOWN)}"
    assert found == KNOWN, f"no longer imported, remove from KNOWN: {sorted(KNOWN - found)}"


def test_a_check_without_the_symbolic_oracle_never_imports_sympy():
    import subprocess
    import sys
    code = ("import sys\nfrom gradcheck_cli import check\n"
            "r = check('gate g(t) = t * t\\n  dt = 2 * dout * t\\nx = 2\\nf = g(x)\\nexpect dx = 4', symbolic=False)\n"
            "assert r.passed, r\nprint('sympy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
