"""`check` (.grad files, directories, -e) and `check-py` (your Python layers)."""

from __future__ import annotations

import math
import os
import re
import sys

import click

from . import main
from .common import _AT, _fail, _fail_usage, _finish, _guard_output, _parse_at, _read_besides, _report_options


@main.command(short_help="Check gradients in .grad files or -e SRC.", epilog="""\b
Examples:
  gradcheck check expressions/
  gradcheck check expressions/two_layer_softmax.grad --expand b2
  gradcheck check -e "(x+y)*max(y,z)" --at x=1 --at y=2 --at z=0
  gradcheck check expressions/ -x -q
  gradcheck check expressions/ --format junit -o report.xml""")
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("-e", "--expr", "expr", metavar="SRC", help="Check this source text instead of files; free names become leaves.")
@click.option("--at", "at", multiple=True, metavar="NAME=VALUE",
              help="Set a leaf's value (repeatable): a number, [1, 2], randn(3), ...")
@_report_options
@click.option("--no-symbolic", "no_symbolic", is_flag=True, default=None, help="Skip the SymPy oracle.")
@click.option("--order", type=click.IntRange(min=1, max=2), default=None,
              help="2: check Hessian-vector products at every leaf (forward-over-reverse through your d lines).")
@click.option("--no-complex-step", "complex_step", flag_value=False, default=None,
              help="Finite differences for every node, not the complex step where the way to the output is analytic.")
@click.option("--symbolic-budget", "symbolic_budget", type=click.IntRange(min=1), default=None,
              help="Expression nodes SymPy's derivatives may visit per file (work, not time) [default: 1000000].")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Check files in N parallel processes (results keep their order) [default: 1].")
@click.option("-v", "--verbose", is_flag=True, help="Also print each gate's own check.")
@click.option("-x", "--exitfirst", is_flag=True, help="Stop after the first file that fails.")
def check(targets, expr, at, seed, fmt, output, rtol, atol, step, no_symbolic, order, complex_step, strict, expand, budget,
          symbolic_budget, jobs, quiet, verbose, exitfirst, exit_zero, color):
    """Check gradients at every node of TARGET files (or directories of *.grad files), or of -e SRC.

    Defaults come from [tool.gradcheck] in the nearest pyproject.toml; options given here win.
    """
    from ..checking.checker import check as check_text
    from ..core.config import load
    from ..core.errors import GradcheckError
    from ..checking.files import check_files, expand_targets
    from ..core.report import RunReport

    at = _parse_at(at)  # first: `--at x 3` is a malformed --at, not a file named 3
    if expr is not None and targets:
        _fail_usage("give either TARGET files or -e SRC, not both")
    if expr is None and not targets:
        _fail_usage("nothing to check: give TARGET files or directories, or -e SRC (see --help)")
    try:
        config, config_path = load()
        settings = config.with_flags(seed=seed, format=fmt, rtol=rtol, atol=atol, step=step, strict=strict,
                                     symbolic=False if no_symbolic else None, budget=budget,
                                     symbolic_budget=symbolic_budget, jobs=jobs, complex_step=complex_step, order=order)
    except GradcheckError as err:
        _fail(err)
    if expr is not None:
        run = RunReport([check_text(expr, source="<expr>", at=at, free_names=True, settings=settings)])
    else:
        try:
            files = expand_targets(targets)
        except GradcheckError as err:
            _fail_usage(err.message)
        _guard_output(output, [*files, *_read_besides(config_path, at)])
        with _progress(settings.format) as on_file:
            run = check_files(files, settings, exitfirst=exitfirst, on_file=on_file, at=at)
    _finish(run, settings.format, output, expand, quiet=quiet, verbose=verbose, color=color, exit_zero=exit_zero)


class _progress:
    """A spinner on standard error naming the file being checked: only for the table with standard
    error a terminal, so logs, pipes, CI and machine formats never see it."""

    def __init__(self, fmt: str):
        self.status = None
        if fmt == "table" and sys.stderr.isatty() and not os.environ.get("CI"):
            from rich.console import Console
            self.status = Console(stderr=True).status("checking ...")

    def __enter__(self):
        if self.status is None:
            return None
        self.status.start()
        return lambda done, total, path: self.status.update(f"checking {path} ({done + 1 if done < total else done}/{total})")

    def __exit__(self, *exc):
        if self.status is not None:
            self.status.stop()
        return False


_SHAPE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\d+(?:\s*[,x×]\s*\d+)*)?\s*$", re.ASCII)  # (digits 0-9 only)


def _parse_shapes(values) -> dict:
    """`--shape NAME=D1,D2` entries as shapes, each and all together counted against the element
    limits (and its dimensions against MAX_NDIM) before anything is allocated."""
    from ..core.limits import MAX_ELEMENTS, MAX_NDIM, MAX_TOTAL_ELEMENTS, size_error
    out, total = {}, 0
    for item in values:
        m = _SHAPE.match(item)
        if not m:
            raise click.BadParameter(f"'{item}': expected NAME=D1,D2,..., e.g. --shape x=10,20,3 (NAME= for a scalar)",
                                     param_hint="--shape")
        digits = re.split(r"\s*[,x×]\s*", m.group(2)) if m.group(2) else []
        if len(digits) > MAX_NDIM:
            raise click.BadParameter(f"'{m.group(1)}=...' has {len(digits)} dimensions (at most {MAX_NDIM})",
                                     param_hint="--shape")
        widest = max((d.lstrip("0") for d in digits), key=len, default="")
        if len(widest) > 30:  # (and int() of 5,000 digits raises)
            raise click.BadParameter(f"'{m.group(1)}=...' has a dimension of {len(widest):,} digits (at most "
                                     f"{MAX_ELEMENTS:,} elements; GRADCHECK_MAX_ELEMENTS raises it)", param_hint="--shape")
        dims = tuple(int(d.lstrip("0") or "0") for d in digits)
        size = math.prod(dims)
        if size > MAX_ELEMENTS:
            raise click.BadParameter(size_error(f"'{item.strip()}'", size, MAX_ELEMENTS, name="MAX_ELEMENTS"),
                                     param_hint="--shape")
        total += size
        if total > MAX_TOTAL_ELEMENTS:
            raise click.BadParameter(size_error("the --shape inputs together", total, MAX_TOTAL_ELEMENTS,
                                                name="MAX_TOTAL_ELEMENTS"), param_hint="--shape")
        if m.group(1) in out:
            raise click.BadParameter(f"'{m.group(1)}' is given twice", param_hint="--shape")
        out[m.group(1)] = dims
    return out


def _at_values(at, settings, shapes: dict) -> dict:
    """`--at NAME=VALUE` entries as arrays (the language's values: 1.5, [1, 2], randn(3), ...): each
    value's size is counted before it is made, and all of them with the --shape inputs after."""
    from ..core.errors import GradcheckError
    from ..core.limits import MAX_TOTAL_ELEMENTS, size_error
    values: dict = {}
    if at:  # the language's front end (lark and its tables) is loaded only to read a value
        from ..language.frontend import leaf_values
        try:
            values = leaf_values(_parse_at(at), settings.seed)
        except GradcheckError as err:
            _fail(err)
    total = sum(math.prod(s) for s in shapes.values()) + sum(v.size for v in values.values())
    if total > MAX_TOTAL_ELEMENTS:
        raise click.BadParameter(size_error("the --shape and --at inputs together", total, MAX_TOTAL_ELEMENTS,
                                            name="MAX_TOTAL_ELEMENTS"), param_hint="--at")
    return values


def _parse_params(values) -> dict:
    """`--param NAME=JSON` entries as values: the text's bytes and nesting, then its elements, counted
    before it is decoded and made an array."""
    import json
    from ..core.limits import MAX_ELEMENTS, MAX_FILE_BYTES, MAX_NESTING
    out = {}
    for item in values:
        m = _AT.match(item)
        if not m:
            raise click.BadParameter(f"'{item[:80]}': expected NAME=JSON, e.g. --param conv_param='{{\"stride\": 1, \"pad\": 1}}'",
                                     param_hint="--param")
        name, text = m.group(1), m.group(2)
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > MAX_FILE_BYTES:
            raise click.BadParameter(f"'{name}': the value is {size:,} bytes (at most {MAX_FILE_BYTES:,}; "
                                     "GRADCHECK_MAX_FILE_BYTES raises it)", param_hint="--param")
        if _json_depth(text) > MAX_NESTING:
            raise click.BadParameter(f"'{name}': the value nests arrays and objects more than {MAX_NESTING} deep",
                                     param_hint="--param")
        try:
            value = json.loads(text)
        except ValueError as err:
            raise click.BadParameter(f"'{item[:80]}': the value is not JSON ({err})", param_hint="--param") from None
        elements = _json_elements(value)
        if elements > MAX_ELEMENTS:
            raise click.BadParameter(f"'{name}': the value has {elements:,} elements (at most {MAX_ELEMENTS:,}; "
                                     "GRADCHECK_MAX_ELEMENTS raises it)", param_hint="--param")
        if name in out:
            raise click.BadParameter(f"'{name}' is given twice", param_hint="--param")
        out[name] = _arrays_in(value)
    return out


def _arrays_in(value):
    """A JSON value with each array of numbers in it a numpy array, in an object's values too
    (`bn_param='{"mode": "test", "running_mean": [0.1, 0.2]}'`, as CS231n's batchnorm reads it)."""
    if isinstance(value, dict):
        return {k: _arrays_in(v) for k, v in value.items()}
    return _array_or_list(value) if isinstance(value, list) else value


_JSON_TOKEN = re.compile(r'\\.|["\[\]{}]', re.S)


def _json_depth(text: str) -> int:
    """How deep JSON text nests arrays and objects (strings skipped), read without decoding it:
    Python's decoder recurses, so a deep one would crash it."""
    depth = deepest = 0
    in_string = False
    for token in _JSON_TOKEN.finditer(text):
        c = token.group()
        if c == '"':
            in_string = not in_string
        elif not in_string and c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif not in_string and c in "]}":
            depth -= 1
    return deepest


def _json_elements(value) -> int:
    """The numbers, strings, booleans and nulls inside a decoded JSON value (its nesting is bounded)."""
    if isinstance(value, list):
        return sum(_json_elements(v) for v in value)
    if isinstance(value, dict):
        return sum(_json_elements(v) for v in value.values())
    return 1


def _parse_structure(values) -> dict:
    """`--structure NAME=KIND` entries as {name: Structure}."""
    out: dict = {}
    if not values:
        return out
    from ..python.structure import Structure
    for item in values:
        m = _AT.match(item)
        kinds = {k.value: k for k in Structure}
        kind = kinds.get(m.group(2).strip().lower()) if m else None
        if kind is None:
            raise click.BadParameter(f"'{item}': expected NAME=KIND, KIND one of {', '.join(kinds)} "
                                     "(e.g. --structure x=symmetric)", param_hint="--structure")
        out[m.group(1)] = kind
    return out


def _array_or_list(value: list):
    """A JSON array of numbers as a numpy array (integers stay integers: an index argument works as
    written); a ragged or non-numeric one stays the list it is."""
    import numpy as np
    try:
        a = np.array(value)
    except ValueError:  # ragged: [[1, 2], [3]]
        return value
    return a if a.dtype.kind in "biuf" else value


@main.command("check-py", short_help="Check the backward of your Python layers.")
@click.argument("targets", nargs=-1, required=True, metavar="FILE.py[::NAME]...")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=D1,D2",
              help="A differentiated input and its shape, filled with seeded normal values (repeatable).")
@click.option("--at", "at", multiple=True, metavar="NAME=VALUE",
              help="A differentiated input's value: 1.5, [1, 2], randn(3), ...; @FILE.json: a point's values.")
@click.option("--param", "params", multiple=True, metavar="NAME=JSON",
              help="An argument that is not differentiated (labels, conv_param, ...), as JSON (repeatable).")
@click.option("--structure", "structure", multiple=True, metavar="NAME=KIND",
              help="An input's structure, kept by the second point and the differences (repeatable): symmetric, "
                   "spd or simplex.")
@click.option("--order", type=click.IntRange(min=1, max=2), default=1, show_default=True,
              help="2: check a torch.autograd.Function's double backward (gradgradcheck's job).")
@click.option("--complex-step", "complex_step", is_flag=True, default=None,
              help="Also differentiate by the complex step (exact to rounding): sees a backward wrong by 1e-7.")
@click.option("--fast", "fast", is_flag=True, default=None,
              help="The given point only, along random directions (torch's fast_mode): quicker, and blind to a backward "
                   "right only at a special point.")
@click.option("--no-reference", "reference", flag_value=False, default=None,
              help="A torch Function or JAX rule: difference every element one by one (torch's way) instead of "
                   "comparing each with autodiff through the forward.")
@click.option("--layouts", "layouts", default=None, metavar="LAYOUT,...|all|none",
              help="A torch Function: the memory layouts its backward is also called in, grad_output and inputs "
                   "(contiguous, transposed, expanded, offset, channels-last, gapped; default all; contiguous alone: the "
                   "repeated runs only).")
@click.option("--dtype", "dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default=None,
              help="A torch Function or JAX rule: also check it in this dtype, against --reference or autodiff through "
                   "its forward, with the dtype's error model (a forward that refuses float64 is checked so anyway).")
@click.option("--reference", "reference_spec", default=None, metavar="FILE.py::fn",
              help="With --dtype: a plain differentiable function of the same arguments, run in float64, as the "
                   "reference.")
@_report_options
def check_py(targets, shapes, at, params, structure, order, complex_step, fast, reference, layouts, dtype,
             reference_spec, seed, fmt, output, rtol, atol, step, strict, expand, budget, quiet,
             exit_zero, color):
    """Check your Python layers: FILE.py::NAME finds NAME_forward and NAME_backward (CS231n's
    convention; or NAME with NAME_vjp, FILE.py::FORWARD,BACKWARD, or a loss NAME returning
    (loss, gradient)) and checks every input's
    gradient against finite differences, at the given point and at a second random one. FILE.py
    alone checks every NAME_forward/NAME_backward pair, and every loss function (svm_loss, ...),
    whose inputs are given (each takes the --shape, --at and --param entries it has parameters
    for; the others are listed as not checked, with what to give). A composite layer that fails is
    blamed on the helper layer it calls whose own check fails.

    FILE.py::MyFunction checks a torch.autograd.Function (PyTorch installed): its backward in
    float64 — every element against autograd through its forward, differences along random
    directions and at every element where the two disagree — and again in its inputs' dtype against
    that float64 reference; --order 2 its double backward. FILE.py::f checks a function with a
    jax.custom_vjp, custom_jvp or custom_gradient rule (JAX installed; also jitted) the same way, in
    float64 under jax.enable_x64, its rule's primal output compared with the function's; FILE.py
    alone checks its JAX rules too.

    This imports FILE.py and runs its code, as pytest does. .grad files are never executed.

    \b
    gradcheck check-py layers.py::affine --shape x=10,20,3 --shape w=60,5 --shape b=5
    gradcheck check-py layers.py::conv --shape x=2,3,5,5 --shape w=4,3,3,3 --shape b=4 \\
        --param conv_param='{"stride": 1, "pad": 1}'
    """
    from contextlib import closing
    from ..core.config import load
    from ..core.errors import GradcheckError
    from ..core.limits import MAX_SECONDS
    from ..python.isolation import run_isolated
    from ..python.layouts import parse as parse_layouts
    from ..core.report import RunReport
    from .pyjobs import TargetJob, check_target, take

    try:
        config, config_path = load()
        settings = config.with_flags(seed=seed, format=fmt, rtol=rtol, atol=atol, step=step, strict=strict,
                                     budget=budget, complex_step=complex_step, reference=reference, fast=fast)
    except GradcheckError as err:
        _fail(err)
    shapes, params, structure = _parse_shapes(shapes), _parse_params(params), _parse_structure(structure)
    both = next((name for name in params if name in shapes), None)
    if both is not None:  # (the forward was given it twice: "got multiple values", from the user's process)
        raise click.BadParameter(f"'{both}' is given as a --shape and as a --param: a differentiated input or an "
                                 "argument passed through, not both", param_hint="--param")
    try:
        chosen = parse_layouts(layouts)
    except GradcheckError as err:
        raise click.BadParameter(err.message.removeprefix("--layouts: "), param_hint="--layouts") from None
    _guard_output(output, [*(t.rpartition("::")[0] if "::" in t else t for t in targets),
                           *([reference_spec.rpartition("::")[0]] if reference_spec else []),
                           *_read_besides(config_path, at)], python=True)
    values = _at_values(at, settings, shapes)
    jobs = [TargetJob(target=t, shapes=shapes, values=values, params=params, structure=structure, settings=settings,
                      order=order, layouts=chosen, dtype=dtype, reference=reference_spec) for t in targets]
    results, skipped, running = [], [], {}
    # Your code runs in a process of its own: an os._exit, a crash or an endless loop there ends that
    # process, not this one, and comes back as an error at your line; only reports cross back.
    files = [t.rpartition("::")[0] if "::" in t else t for t in targets]
    if reference_spec:
        files.append(reference_spec.rpartition("::")[0] or reference_spec)
    with closing(run_isolated(check_target, jobs, seconds=MAX_SECONDS, sources=tuple(files))) as messages:  # Ctrl-C
        for index, message in messages:
            take(message, index, targets, settings, running, results, skipped)
    if not results:
        _fail_usage("no layer was checked:\n" + "\n".join(f"  {spec}: not checked: {why}" for spec, why in skipped))
    run = RunReport(results, skipped=skipped, noun="layer")
    _finish(run, settings.format, output, expand, quiet=quiet, color=color, exit_zero=exit_zero)
