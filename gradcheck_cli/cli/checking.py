"""`check` (.grad files, directories, -e) and `check-py` (your Python layers)."""

from __future__ import annotations

import os
import re
import sys

import click

from . import main
from .common import _AT, _fail, _fail_usage, _finish, _guard_output, _parse_at, _report_options, _reuse_freed_memory


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

    _reuse_freed_memory()
    at = _parse_at(at)  # first: `--at x 3` is a malformed --at, not a file named 3
    if expr is not None and targets:
        _fail_usage("give either TARGET files or -e SRC, not both")
    if expr is None and not targets:
        _fail_usage("nothing to check: give TARGET files or directories, or -e SRC (see --help)")
    try:
        config, _ = load()
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
        _guard_output(output, files)
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


_SHAPE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\d+(?:\s*[,x×]\s*\d+)*)?\s*$")


def _parse_shapes(values) -> dict:
    out = {}
    for item in values:
        m = _SHAPE.match(item)
        if not m:
            raise click.BadParameter(f"'{item}': expected NAME=D1,D2,..., e.g. --shape x=10,20,3 (NAME= for a scalar)",
                                     param_hint="--shape")
        dims = tuple(int(d) for d in re.split(r"\s*[,x×]\s*", m.group(2))) if m.group(2) else ()
        out[m.group(1)] = dims
    return out


def _at_values(at, settings) -> dict:
    """`--at NAME=VALUE` entries as arrays (the language's values: 1.5, [1, 2], randn(3), ...)."""
    from ..core.errors import GradcheckError
    from ..language.frontend import parse_value
    values = {}
    for name, text in _parse_at(at).items():
        try:
            values[name] = parse_value(text, settings.seed, f"--at {name}")
        except GradcheckError as err:
            _fail(err)
    return values


def _parse_params(values) -> dict:
    import json
    out = {}
    for item in values:
        m = _AT.match(item)
        try:
            value = json.loads(m.group(2)) if m else None
        except ValueError as err:
            raise click.BadParameter(f"'{item}': the value is not JSON ({err})", param_hint="--param") from None
        if not m:
            raise click.BadParameter(f"'{item}': expected NAME=JSON, e.g. --param conv_param='{{\"stride\": 1, \"pad\": 1}}'",
                                     param_hint="--param")
        out[m.group(1)] = _array_or_list(value) if isinstance(value, list) else value
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
@click.option("--at", "at", multiple=True, metavar="NAME=VALUE", help="A differentiated input's value: 1.5, [1, 2], randn(3), ...")
@click.option("--param", "params", multiple=True, metavar="NAME=JSON",
              help="An argument that is not differentiated (labels, conv_param, ...), as JSON (repeatable).")
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
@_report_options
def check_py(targets, shapes, at, params, order, complex_step, fast, reference, seed, fmt, output, rtol, atol, step, strict, expand, budget, quiet,
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
    from ..core.config import load
    from ..core.errors import GradcheckError
    from ..python.pymodule import collect, used_params
    from ..python.usercode import contained_output
    from ..python.pysource import source_text
    from ..core.report import CheckReport, RunReport

    try:
        config, _ = load()
        settings = config.with_flags(seed=seed, format=fmt, rtol=rtol, atol=atol, step=step, strict=strict,
                                     budget=budget, complex_step=complex_step, reference=reference, fast=fast)
    except GradcheckError as err:
        _fail(err)
    shapes, params = _parse_shapes(shapes), _parse_params(params)
    _guard_output(output, [t.rpartition("::")[0] if "::" in t else t for t in targets])
    values = _at_values(at, settings)
    results, skipped = [], []

    def failed(spec, err):
        report = CheckReport(spec, settings=settings)
        path = spec.rpartition("::")[0] or spec
        report.error = err.located(path, source_text(path))
        results.append(report)
    for target in targets:
        first = len(results)
        with contained_output() as printed:  # the user's prints never reach our output (JSON, JUnit, ...)
            try:
                specs, left = ([target], []) if "::" in target else collect(target, shapes, values, params, settings)
            except GradcheckError as err:
                specs, left = [], []
                failed(target, err)
            skipped += left
            for spec in specs:
                try:
                    chosen = (shapes, values, params) if "::" in target else used_params(spec, shapes, values, params)
                    results.append(_check_spec(spec, chosen, settings, order))
                except GradcheckError as err:
                    failed(spec, err)
        said = printed.warning()
        for report in results[first:] if said else []:
            report.warnings.append((said, 1, 1))
    if not results:
        _fail_usage("no layer was checked:\n" + "\n".join(f"  {spec}: not checked: {why}" for spec, why in skipped))
    run = RunReport(results, skipped=skipped, noun="layer")
    _finish(run, settings.format, output, expand, quiet=quiet, color=color, exit_zero=exit_zero)


def _check_spec(spec: str, chosen: tuple, settings, order: int):
    """One FILE.py::NAME checked: a torch.autograd.Function by the torch bridge (which imports torch),
    a JAX function with a custom_vjp, custom_jvp or custom_gradient rule by the JAX bridge (which
    imports jax), anything else as a Python layer (first order only)."""
    from ..core.errors import GradcheckError
    from ..python.pymodule import check_spec, jax_function, torch_function
    function = torch_function(spec)
    if function is not None:
        from ..python.torch import check_spec as check_torch
        return check_torch(spec, function, *chosen, settings, order)
    rule = jax_function(spec)
    if rule is not None:
        if order != 1:
            raise GradcheckError("--order 2 checks torch.autograd.Functions only", None, None)
        from ..python.jax import check_spec as check_jax
        return check_jax(spec, rule, *chosen, settings)
    if order != 1:
        raise GradcheckError("--order 2 checks torch.autograd.Functions only", None, None)
    return check_spec(spec, *chosen, settings)
