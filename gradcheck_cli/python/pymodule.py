"""A user's Python module of layers: every forward/backward pair in it, and the helper layers a
composite layer calls (so a composite's failure is blamed on the helper whose own check fails).

Importing FILE.py runs its code (opt-in, as pytest does); `.grad` files are never executed.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
from dataclasses import replace
import json
import os
import sys
import textwrap
import warnings

import numpy as np

from ..core.errors import did_you_mean
from .pycheck import check_function, check_layer, check_loss
from .structure import structures
from .pysource import USER_ERRORS, PythonError, display, exception_text, no_parameter, parameter_names, user_position
from ..core.report import CheckReport, GateRow
from ..core.settings import Settings
from ..core.streams import Stream, stream
from ..core.text import shell_quote

SUFFIXES = (("_forward", "_backward"), ("_forward_naive", "_backward_naive"))


def layer_pairs(module, own_only: bool = False) -> list:
    """(name, forward, backward) for every NAME_forward/NAME_backward (and _naive) pair the module
    holds (`own_only`: whose backward is written in the module's own file, as pytest collects a
    file's own tests), in the order their backwards are written."""
    found = []
    for attr in dir(module):
        for fwd_suffix, bwd_suffix in SUFFIXES:
            name = attr[: -len(fwd_suffix)] if attr.endswith(fwd_suffix) else ""
            fwd, bwd = getattr(module, attr), getattr(module, name + bwd_suffix, None)
            if name and callable(fwd) and callable(bwd) and (not own_only or _defined_in(bwd, module)):
                found.append((name, fwd, bwd))
    return sorted(found, key=lambda p: _first_line(p[2]))


def loss_functions(module, taken: set) -> list:
    """(name, function, None) for every function of the module's own file named as a loss (`svm_loss`,
    `softmax_loss_naive`, `loss`) that is not part of a layer pair: checked as one returning
    (loss, gradient), as `FILE.py::NAME` would check it."""
    found = []
    for attr in dir(module):
        fn = getattr(module, attr)
        if (inspect.isfunction(fn) and _defined_in(fn, module) and attr not in taken
                and "loss" in attr.split("_") and not attr.endswith(("_backward", "_vjp"))):
            found.append((attr, fn, None))
    return found


def _defined_in(fn, module) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_filename == getattr(module, "__file__", None)


def _first_line(fn) -> int:
    code = getattr(fn, "__code__", None)
    return code.co_firstlineno if code is not None else 0


def collect(path: str, shapes: dict, values: dict, params: dict, settings) -> tuple:
    """(specs to check, [(spec, why not checked)]) for `check-py FILE.py`: every pair whose
    forward's required parameters are all given (--shape, --at or --param), and every loss
    function (returning (loss, gradient)) whose parameters are."""
    module = load_module(path)
    pairs = layer_pairs(module, own_only=True)
    taken = {f.__name__ for _, fwd, bwd in pairs for f in (fwd, bwd)}
    rules = jax_rules(module)  # a JAX rule's fwd and bwd are its parts, never a layer pair or a loss of their own
    parts = {id(getattr(r, p, None)) for _, r, _ in rules for p in ("fwd", "bwd", "jvp")}
    ops = custom_ops(module)  # a custom op's function and its registered backward are its parts, too
    parts |= {id(getattr(getattr(module, n), p, None)) for n, _, _ in ops
              for p in ("_init_fn", "_backward_fn", "_setup_context_fn")}
    pairs = [p for p in pairs + loss_functions(module, taken) if id(p[1]) not in parts and id(p[2]) not in parts]
    pairs = sorted(pairs + [(n, rule_function(r), None) for n, r, _ in rules] + ops,
                   key=lambda p: _first_line(p[2] or p[1]))
    if not pairs:
        raise PythonError(f"{path} has no NAME_forward/NAME_backward pair, nor a NAME_loss function, to check")
    given = set(shapes) | set(values) | set(params)
    specs, skipped, named = [], [], set()
    for name, fwd, bwd in pairs:
        # conv_forward and conv_forward_naive in one file: the second by its explicit pair
        spec = f"{path}::{name}" if name not in named else f"{path}::{fwd.__name__},{bwd.__name__}"
        named.add(name)
        try:
            signature = inspect.signature(fwd)
        except (TypeError, ValueError):
            skipped.append((spec, "its forward's parameters cannot be read"))
            continue
        missing = [p.name for p in signature.parameters.values()
                   if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)
                   and p.name not in given]
        if missing:
            skipped.append((spec, f"give {', '.join(missing)} (--shape, --at or --param)"))
        elif not any(p in signature.parameters for p in list(shapes) + list(values)):
            skipped.append((spec, "no differentiated input given (--shape or --at)"))
        else:
            specs.append(spec)
    return specs, skipped


def used_params(spec: str, shapes: dict, values: dict, params: dict) -> tuple:
    """The --shape, --at and --param entries that the layer of `spec` takes (a module's layers share them)."""
    rule = _jax_rule(jax_function(spec))
    op = torch_function(spec)
    forward = (rule_function(rule) if rule is not None else op._init_fn if is_custom_op(op)
               else load_target(spec)[0])
    names = set(parameter_names(forward))
    pick = lambda d: {k: v for k, v in d.items() if k in names}  # noqa: E731
    return pick(shapes), pick(values), pick(params)


def check_spec(spec: str, shapes: dict, values: dict, params: dict, settings, structure: dict | None = None):
    """Check one `FILE.py::NAME`; a composite layer that fails is folded into the helper whose own check
    fails (not under a stated structure: the helper's inputs have none)."""
    report = check_target(spec, shapes, values, params, settings, structure)
    if report.error is None and not report.passed and not structure:
        fold_into_helpers(report, spec, shapes, values, params, settings)
    return report


def fold_into_helpers(report, spec: str, shapes: dict, values: dict, params: dict, settings) -> None:
    """When a composite layer fails (affine_relu calling relu's backward), check each helper layer it
    calls (defined in its file or imported into it), at the inputs the composite gives it; if a
    helper's own check fails, the composite's failing rows are that helper's failure: blamed at the
    helper's line, in the helper's file, one cause."""
    path, _, name = spec.rpartition("::")
    forward, backward, layer_style, inputs = target_inputs(spec, shapes, values, params, settings)
    if not layer_style:
        return
    module = load_module(path)
    order = _names_in(backward)  # helpers in the order the backward calls them
    called = set(order) | set(_names_in(forward))
    failing = []
    for hname, hfwd, hbwd in layer_pairs(module):  # defined in the file, or imported into it (layer_utils.py)
        if hname == name or hbwd.__name__ not in called:
            continue
        recorded = _record(module, hfwd, forward, inputs, params)
        if recorded is None:
            continue
        helper = check_layer(hfwd, hbwd, *recorded, name=f"{path}::{hname}", settings=settings)
        bad = [r for r in helper.nodes if r.status == "fail"]
        if helper.error is None and bad:
            rank = order.index(hbwd.__name__) if hbwd.__name__ in order else len(order)
            failing.append((rank, hbwd.__name__, bad[0], helper.path))
    # The first helper the backward calls whose own check fails is where the gradient first goes
    # wrong: the composite's rows fold into it. Any other failing helper is a cause of its own.
    for k, (_, helper_name, row, file) in enumerate(sorted(failing, key=lambda f: f[0])):
        _fold(report, row, helper_name, None if file == report.path else file, rows_too=k == 0)


def _fold(report, row, helper_name: str, file: str | None, rows_too: bool) -> None:
    """Add the helper's own failing check to the report (its line is in `file` when that is another
    file); with `rows_too`, blame the composite's failing rows on it."""
    at = f"line {row.line}" + (f" of {file}" if file else "")
    if rows_too:
        why = f"the gradient goes wrong in {helper_name}, which it calls and whose own check fails ({at})"
        culprit = (row.line, row.col, file) if file else (row.line, row.col)
        failing = {id(r) for r in report.failures}

        def blamed(r):
            return replace(r, culprit=culprit, note=f"{r.note}; {why}" if r.note else why) if id(r) in failing else r
        report.nodes = [blamed(r) for r in report.nodes]
        report.gates = [blamed(r) for r in report.gates]
        for r in report.expects:
            if id(r) in failing:
                r.culprit, r.note = culprit, f"{r.note}; {why}" if r.note else why
    report.gates.insert(0, GateRow(name=helper_name, gate="backward", input=row.name, line=row.line, col=row.col,
                                   call_line=row.line, status="fail",
                                   numeric_error=row.numeric_error, symbolic_error=None,
                                   tolerance=row.tolerance, point=1,
                                   note=f"{helper_name} on its own, at the inputs the composite gives it: {row.note}",
                                   file=file))


def _names_in(fn) -> list:
    """Every name a function's source mentions (calls to helpers among them), in the order written."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    found = [(n.lineno, n.col_offset, n.id) for n in ast.walk(tree) if isinstance(n, ast.Name)]
    found += [(n.lineno, n.col_offset, n.attr) for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    return list(dict.fromkeys(name for *_, name in sorted(found)))


def _record(module, hfwd, forward, inputs: dict, params: dict):
    """(inputs, params) of the helper's forward's first call inside the composite's forward, split into
    float arrays (differentiated) and the rest; None when it is not called there."""
    calls = []
    attr = hfwd.__name__

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return hfwd(*args, **kwargs)
    original = getattr(module, attr, None)
    if original is not hfwd:
        return None
    setattr(module, attr, spy)
    try:
        with np.errstate(all="ignore"):
            forward(**{k: np.array(v) for k, v in inputs.items()}, **params)
    except USER_ERRORS:  # noqa: BLE001 - the user's code may raise anything: then nothing to fold
        return None
    finally:
        setattr(module, attr, original)
    if not calls:
        return None
    try:
        bound = inspect.signature(hfwd).bind(*calls[0][0], **calls[0][1])
    except (TypeError, ValueError):
        return None
    h_inputs, h_params = {}, {}
    for key, value in bound.arguments.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            h_inputs[key] = value.copy()
        else:
            h_params[key] = value
    return (h_inputs, h_params) if h_inputs else None


# --- targets named on the command line: FILE.py::NAME ----------------------------------------------

def check_target(spec: str, shapes: dict, values: dict, params: dict, settings: Settings,
                 structure: dict | None = None) -> CheckReport:
    """Check `FILE.py::NAME` (NAME_forward/NAME_backward, or NAME and NAME_vjp, or FORWARD,BACKWARD)
    with inputs of the given shapes (seeded normal values) or values, in the forward's parameter order;
    `structure` ({name: Structure}) as `--structure` states it."""
    forward, backward, layer_style, inputs = target_inputs(spec, shapes, values, params, settings, structure)
    if backward is None:
        report = check_loss(forward, inputs, params, name=spec, settings=settings, structure=structure)
    elif layer_style:
        report = check_layer(forward, backward, inputs, params, name=spec, settings=settings, structure=structure)
    else:
        report = check_function(lambda *a: forward(*a, **params), backward, inputs, name=spec, settings=settings,
                                structure=structure)
    report.source = spec
    report.rerun = rerun_command(spec, shapes, values, params, settings, structure)
    return report


def target_inputs(spec: str, shapes: dict, values: dict, params: dict, settings: Settings,
                  structure: dict | None = None) -> tuple:
    """(forward, backward, is a layer, inputs) of `FILE.py::NAME`: the differentiated inputs in the
    forward's parameter order, seeded normal values of the given shapes (a point of the input's stated
    structure, if any) or the given values."""
    forward, backward, layer_style = load_target(spec)
    order = parameter_names(forward)
    given = list(shapes) + [n for n in values if n not in shapes]
    for name in given + list(params):
        if order and name not in order:
            raise no_parameter(forward, name, order)
    if not given:
        raise PythonError("give each differentiated input's shape with --shape NAME=D1,D2 (or a value with --at)")
    names = sorted(given, key=lambda n: order.index(n) if n in order else len(order))
    stated = structures(structure, names)
    rng = stream(settings.seed, Stream.PYTHON_MODULE)
    inputs = {n: values[n] if n in values else rng.standard_normal(shapes[n]) for n in names}
    inputs = {n: stated[n].draw(v, n) if n in stated and n not in values else v for n, v in inputs.items()}
    return forward, backward, layer_style, inputs


def torch_function(spec: str):
    """The torch.autograd.Function subclass, or the `torch.library.custom_op`, that `FILE.py::NAME`
    names, or None (torch is not imported here)."""
    path, sep, name = spec.rpartition("::")
    if not sep or not path or not name or "," in name:
        return None  # (load_target says what is wrong with the spec)
    fn = lookup(load_module(path), name)
    if inspect.isclass(fn) and any(c.__module__.startswith("torch.autograd") and c.__name__ == "Function"
                                   for c in fn.__mro__[1:]):
        return fn
    return fn if is_custom_op(fn) else None


def is_custom_op(obj) -> bool:
    """A `torch.library.custom_op` (its type, CustomOpDef, told by its module: torch is not imported here)."""
    kind = type(obj)
    return kind.__module__.startswith("torch._library") and kind.__name__ == "CustomOpDef"


def custom_ops(module) -> list:
    """(name, the function the op was made from, None) for each `torch.library.custom_op` whose function
    is written in the module's own file, once."""
    found, seen = [], set()
    for attr in dir(module):
        obj = getattr(module, attr, None)
        if is_custom_op(obj) and id(obj) not in seen and _defined_in(getattr(obj, "_init_fn", None), module):
            seen.add(id(obj))
            found.append((attr, obj._init_fn, None))
    return found


def jax_function(spec: str):
    """The JAX function with a derivative rule that `FILE.py::NAME` names, or None (jax is not imported
    here): NAME a `jax.custom_vjp` or `jax.custom_jvp` (what `jax.custom_gradient` makes too), also
    behind `jax.jit`; or NAME naming the parts of one (NAME_forward and NAME_backward its fwd and bwd,
    which take JAX's arguments, not CS231n's)."""
    path, sep, name = spec.rpartition("::")
    if not sep or not path or not name:
        return None  # (load_target says what is wrong with the spec)
    module = load_module(path)
    names = [n.strip() for n in name.split(",")] if "," in name else [name]
    found = _jax_rule(getattr(module, names[0], None)) if len(names) == 1 else None
    if found is not None:
        return getattr(module, names[0])
    if len(names) == 1:
        names += [name + suffix for pair in SUFFIXES for suffix in pair]
    wanted = [getattr(module, n, None) for n in names]
    for attr in dir(module):
        obj = getattr(module, attr, None)
        rule = _jax_rule(obj)
        parts = [getattr(rule, p, None) for p in ("fwd", "bwd", "jvp")] if rule is not None else []
        if any(w is not None and any(w is p for p in parts) for w in wanted):
            return obj
    return None


def jax_rules(module) -> list:
    """(name, rule, None) for each JAX rule whose function is written in the module's own file, once
    (by its own name rather than a jitted alias's)."""
    found, seen = [], set()
    named = [(attr, getattr(module, attr, None)) for attr in dir(module)]
    for attr, obj in sorted(named, key=lambda a: _jax_rule(a[1]) is not a[1]):
        rule = _jax_rule(obj)
        if rule is not None and id(rule) not in seen and _defined_in(rule_function(rule), module):
            seen.add(id(rule))
            found.append((attr, rule, None))
    return found


def rule_function(rule):
    """A JAX rule's function as the user wrote it (the one `jax.custom_gradient` wraps, too): its
    parameters and its file."""
    fun = inspect.unwrap(getattr(rule, "fun", rule))
    code = getattr(fun, "__code__", None)
    if code is not None and fun.__qualname__.startswith("custom_gradient.") and "fun" in code.co_freevars:
        return inspect.unwrap(fun.__closure__[code.co_freevars.index("fun")].cell_contents)
    return fun


def _jax_rule(obj):
    """The jax.custom_vjp or custom_jvp object `obj` is or wraps (jit, functools.wraps), or None; told
    by its type's module, without importing jax."""
    for _ in range(32):
        kind = type(obj)
        if kind.__module__.startswith("jax") and kind.__name__ in ("custom_vjp", "custom_jvp"):
            return obj
        try:
            obj = getattr(obj, "__wrapped__", None)
        except USER_ERRORS:  # noqa: BLE001 - a user object's __getattr__ may raise anything
            return None
        if obj is None:
            return None
    return None


def load_target(spec: str):
    """(forward, backward, is a layer) for `FILE.py::NAME`; imports FILE (this runs its code). A
    function NAME with no backward beside it is a loss that returns its own gradient (backward None)."""
    path, sep, name = spec.rpartition("::")
    if not sep or not path or not name:
        raise PythonError(f"'{spec}': expected FILE.py::NAME, e.g. layers.py::affine")
    module = load_module(path)
    if "," in name:
        fwd_name, _, bwd_name = (p.strip() for p in name.partition(","))
        pairs = [(fwd_name, bwd_name, True)]
    else:
        pairs = [(f"{name}_forward", f"{name}_backward", True), (f"{name}_forward_naive", f"{name}_backward_naive", True),
                 (name, f"{name}_vjp", False), (name, f"{name}_backward", True)]
        for suffix, back in (("_forward", "_backward"), ("_forward_naive", "_backward_naive")):
            if name.endswith(suffix):  # ::rnn_forward means the rnn_forward/rnn_backward pair
                pairs.append((name, name[: -len(suffix)] + back, True))
    for fwd_name, bwd_name, layer_style in pairs:
        fwd, bwd = lookup(module, fwd_name), lookup(module, bwd_name)
        if callable(fwd) and callable(bwd):
            return fwd, bwd, layer_style
    if "," not in name and callable(lookup(module, name)):
        return lookup(module, name), None, False  # a loss returning its own gradient: svm_loss -> (loss, dx)
    for dotted in (p for p in name.split(",") if "." in p):
        missing = _missing_part(module, path, dotted.strip())
        if missing:
            raise PythonError(missing)
    offered = sorted(n[: -len("_forward")] for n in dir(module) if n.endswith("_forward")
                     and callable(getattr(module, n + "", None)))
    hint = f" (layers there: {', '.join(offered)})" if offered else ""
    raise PythonError(f"{path} has no {name}_forward/{name}_backward pair, nor {name} with {name}_vjp, nor a "
                      f"function {name} returning (loss, gradient){hint}")


def lookup(module, dotted: str):
    """The object at `dotted` in the module (`Outer.Inner`: a class's attribute, any depth), or None."""
    found = module
    for part in dotted.split("."):
        try:
            found = getattr(found, part, None)
        except USER_ERRORS:  # noqa: BLE001 - an attribute is the user's code (a property) and may raise
            return None
        if found is None:
            return None
    return found


def _missing_part(module, path: str, dotted: str) -> str | None:
    """What is missing on the way to `dotted` (its last part aside), and what is there instead."""
    parts = dotted.split(".")
    for k, part in enumerate(parts[:-1]):
        owner = lookup(module, ".".join(parts[:k])) if k else module
        if lookup(owner, part) is None:
            where = f"{path}::{'.'.join(parts[:k])}" if k else path
            names = [n for n in _names_of(owner) if not n.startswith("_")]
            listed = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            return (f"{where} has no '{part}'" + did_you_mean(part, names) + (f" (it has: {listed})" if names else ""))
    owner = lookup(module, ".".join(parts[:-1]))
    names = [n for n in _names_of(owner) if not n.startswith("_")]
    listed = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"{path}::{'.'.join(parts[:-1])} has no '{parts[-1]}'" + did_you_mean(parts[-1], names) + (
        f" (it has: {listed})" if names else "")


def _names_of(owner) -> list:
    """The names a module or class holds itself (a class's own, not those it inherits; no modules)."""
    try:
        held = dict(vars(owner)) if inspect.isclass(owner) or inspect.ismodule(owner) else {}
    except TypeError:
        return []
    names = [n for n, v in held.items() if not inspect.ismodule(v)]
    return names if inspect.isclass(owner) else sorted(names)


_MODULES: dict = {}  # imported user files, by path and version: each is imported (run) once per process


def load_module(path: str):
    """The user's FILE.py, imported once (this runs its code); errors point into the file."""
    if not os.path.isfile(path):
        raise PythonError(f"'{path}': no such file")
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key in _MODULES:
        return _MODULES[key]
    root, dotted = _package_of(key[0])
    if root not in sys.path:
        sys.path.insert(0, root)  # so the file's own `from layers import ...` works, as under pytest
    try:
        with _own_state():
            module = _import(key[0], path, dotted)
    except SyntaxError as exc:
        raise PythonError(f"cannot import {path}: {exc.msg}", exc.lineno, exc.offset) from None
    except USER_ERRORS as exc:  # noqa: BLE001 - importing the user's file may raise anything
        line, col = user_position(exc, display(path))
        raise PythonError(f"cannot import {path}: {exception_text(exc)}", line, col) from None
    _MODULES[key] = module
    return module


@contextlib.contextmanager
def _own_state():
    """What a file sets for the whole process as it is imported, taken back after it: numpy's floating-point
    errors (`np.seterr(all="raise")`, a debugging aid) and the warnings filters (`simplefilter("error")`).
    They would reach gradcheck's own arithmetic in the same process (an underflow in its differences raised
    as an error of the check); the user's calls run with both silenced anyway (`usercode.quiet`)."""
    with warnings.catch_warnings(), np.errstate():
        yield


def _import(absolute: str, path: str, dotted: str | None):
    """The file's module, its code run: by its dotted name inside a package, else by its path."""
    if dotted:  # a module of a package (cs231n/layer_utils.py's `from .layers import *`): by its dotted name
        return importlib.import_module(dotted)
    module_name = "gradcheck_user_" + "".join(c if c.isalnum() else "_" for c in absolute)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    # in sys.modules while its code runs, as an import puts it: what looks a class or a function up by its
    # module (a dataclass under `from __future__ import annotations`, pickle, multiprocessing,
    # inspect.getsource) finds the file; taken out again if the file does not import
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _package_of(path: str) -> tuple:
    """(the folder to import from, the dotted module name) of a file inside a package (folders with
    __init__.py), or (its own folder, None) for a plain script."""
    folder, name = os.path.split(path)
    parts = [os.path.splitext(name)[0]]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    return (folder, ".".join(parts)) if len(parts) > 1 else (folder, None)


def rerun_command(spec, shapes, values, params, settings: Settings, structure: dict | None = None) -> str:
    """The check-py command line that reruns this check of `spec`."""
    parts = ["gradcheck", "check-py", spec]
    parts += [f"--shape={n}={','.join(str(d) for d in s)}" for n, s in shapes.items()]
    parts += [f"--at={n}={np.asarray(v).tolist()}" for n, v in values.items()]
    parts += [f"--param={n}={json.dumps(_jsonable(v))}" for n, v in params.items()]
    parts += [f"--structure={n}={getattr(k, 'value', k)}" for n, k in (structure or {}).items()]
    if settings.seed:
        parts.append(f"--seed={settings.seed}")
    if settings.complex_step:
        parts.append("--complex-step")
    if not settings.reference:
        parts.append("--no-reference")
    if settings.fast:
        parts.append("--fast")
    return " ".join(shell_quote(p) for p in parts)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
