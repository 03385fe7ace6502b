"""check-py's jobs: what the process running the user's code gets (`TargetJob`), does
(`check_target`) and sends back (`Begun`, `Checked`, `Skipped`), and how the command takes each
message (`take`). Imported by `check-py` only: the other commands do not pay for it."""

from __future__ import annotations

from dataclasses import dataclass


def take(message, index: int, targets, settings, running: dict, results: list, skipped: list) -> None:
    """One message from the process running the user's code, checked for what it claims to be."""
    from ..core.report import CheckReport
    from ..python.isolation import Died
    from ..python.pysource import source_text
    if isinstance(message, Begun) and isinstance(message.spec, str):
        running[index] = message.spec
    elif isinstance(message, Checked) and isinstance(message.report, CheckReport):
        results.append(shown(message.report))
    elif isinstance(message, Skipped) and isinstance(message.items, list):
        skipped += [(str(item[0]), str(item[1])) for item in message.items
                    if isinstance(item, tuple) and len(item) == 2]
    elif isinstance(message, Died):
        spec = running.get(index, targets[index])
        report = CheckReport(spec, settings=settings)
        path = message.error.source or spec.rpartition("::")[0] or spec
        report.error = message.error.located(path, source_text(path))
        report.path = path
        results.append(report)


SHOWN_MAX = 4000  # characters of one text of a report from the user's process (a note, a name, a message)


def shown(report):
    """A report from the process that runs the user's code, every text in it (names the code gives its
    functions, notes quoting what it raised, messages) as every face may show it: control, format and
    separator characters written as escapes (`visible`), each text cut at SHOWN_MAX. That process
    cleans them too, but it is the user's: what crosses back is cleaned here. The source text an error
    quotes is read here, from the file the error names."""
    import dataclasses
    from ..core.text import cut, visible, visible_lines
    from ..python.pysource import source_text

    def text(value, lines: bool = False):
        if not isinstance(value, str):
            return value
        return (visible_lines if lines else visible)(cut(value, SHOWN_MAX))

    def row(r):
        return dataclasses.replace(r, **{f.name: text(getattr(r, f.name), f.name == "note")
                                         for f in dataclasses.fields(r) if isinstance(getattr(r, f.name), str)})
    report.nodes = [row(r) for r in report.nodes]
    report.gates = [row(r) for r in report.gates]
    report.source, report.output, report.rerun = text(report.source), text(report.output), text(report.rerun)
    report.warnings = [(text(w[0], lines=True), *w[1:]) for w in report.warnings]
    if report.error is not None:
        report.error.message = text(report.error.message, lines=True)
        report.error.text = source_text(report.error.source) if isinstance(report.error.source, str) else None
    return report


@dataclass(frozen=True, kw_only=True)
class TargetJob:
    """One FILE.py[::NAME] of check-py, as the process running the user's code gets it."""
    target: str
    shapes: dict
    values: dict
    params: dict
    structure: dict  # name -> Structure
    settings: object
    order: int
    layouts: tuple | None = None  # the torch layouts chosen (python/layouts.py; None: all)
    dtype: str | None = None      # --dtype: a native check in it (python/native.py)
    reference: str | None = None  # --reference FILE.py::fn


@dataclass(frozen=True, kw_only=True)
class Begun:
    spec: str  # the layer being checked now: an error that ends the process is its report


@dataclass(frozen=True, kw_only=True)
class Checked:
    report: object


@dataclass(frozen=True, kw_only=True)
class Skipped:
    items: list  # (spec, why it was not checked)


def check_target(job: TargetJob, send) -> None:
    """In the process that runs the user's code: check one FILE.py[::NAME] target, sending each
    layer's report (its prints kept out of every output, and said in a warning)."""
    from ..core.errors import GradcheckError
    from ..python.pymodule import collect, used_params
    from ..python.usercode import contained_output
    from ..python.pysource import source_text
    from ..core.report import CheckReport

    target, settings, reports = job.target, job.settings, []

    def failed(spec, err):
        report = CheckReport(spec, settings=settings)
        path = spec.rpartition("::")[0] or spec
        report.error = err.located(path, source_text(path))
        reports.append(report)
    with contained_output() as printed:  # the user's prints never reach our output (JSON, JUnit, ...)
        send(Begun(spec=target))
        try:
            specs, left = ([target], []) if "::" in target else collect(target, job.shapes, job.values, job.params,
                                                                        settings)
        except GradcheckError as err:
            specs, left = [], []
            failed(target, err)
        for spec in specs:
            send(Begun(spec=spec))
            try:
                chosen = ((job.shapes, job.values, job.params) if "::" in target
                          else used_params(spec, job.shapes, job.values, job.params))
                stated = {n: k for n, k in job.structure.items() if "::" in target or n in chosen[0] or n in chosen[1]}
                reports.append(check_spec_of(spec, chosen, settings, job.order, stated, job.layouts, job.dtype,
                                           job.reference))
            except GradcheckError as err:
                failed(spec, err)
    said = printed.warning()
    for report in reports:
        if said:
            report.warnings.append((said, 1, 1))
        send(Checked(report=report))
    send(Skipped(items=list(left)))


def check_spec_of(spec: str, chosen: tuple, settings, order: int, structure: dict, layouts: tuple | None = None,
                dtype: str | None = None, reference: str | None = None):
    """One FILE.py::NAME checked: a torch.autograd.Function by the torch bridge (which imports torch),
    a JAX function with a custom_vjp, custom_jvp or custom_gradient rule by the JAX bridge (which
    imports jax), anything else as a Python layer (first order only)."""
    from ..core.errors import GradcheckError
    from ..python.pymodule import check_spec, jax_function, torch_function
    function = torch_function(spec)
    native = None
    if reference is not None:
        from ..python.native import load_reference
        native = (reference, load_reference(reference))
    if function is not None:
        from ..python.torch import check_spec as check_torch
        return check_torch(spec, function, *chosen, settings, order, structure, layouts, dtype, native)
    rule = jax_function(spec)
    if rule is not None:
        if order != 1:
            raise GradcheckError("--order 2 checks torch.autograd.Functions only", None, None)
        from ..python.jax import check_spec as check_jax
        return check_jax(spec, rule, *chosen, settings, structure, dtype, native)
    if dtype is not None or reference is not None:
        raise GradcheckError("--dtype and --reference check a torch.autograd.Function or a JAX rule", None, None)
    if order != 1:
        raise GradcheckError("--order 2 checks torch.autograd.Functions only", None, None)
    return check_spec(spec, *chosen, settings, structure)
