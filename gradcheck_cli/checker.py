"""The library entry point: build the graph, run the three oracles, compare, and judge each node."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import autodiff, numeric, symbolic
from .errors import GradcheckError, GradSyntaxError, UsageError
from .graph import Graph, build
from .report import CheckReport, ExpectRow, NodeRow, RunReport
from .syntax import parse

DEFAULT_RTOL = 1e-5      # finite differences: CS231n's "below 1e-7 is right, above 1e-4 is wrong"
DEFAULT_ATOL = 1e-8      # values both below this count as equal
SYMBOLIC_RTOL = 1e-8     # backprop against the exact derivative: float rounding only
SAFETY = 4.0             # how many error estimates a finite difference may be off by
UNRELIABLE = 1e-2        # an error estimate above this fraction of the value: the difference can't judge


def rel_error(a, b, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """|a − b| / max(|a|, |b|), elementwise; 0 where both are below `atol`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(all="ignore"):
        err = np.abs(a - b) / np.where(scale > 0, scale, 1.0)
    return np.where(scale < atol, 0.0, err)


def parse_value(text: str, seed: int = 0, name: str = "value") -> np.ndarray:
    """A constant written in the language (`2`, `[1, 2]`, `0.1*randn(3)`) as an array."""
    program = parse(text)
    if len(program.statements) != 1 or type(program.statements[0]).__name__ != "ExprStmt":
        raise GradSyntaxError(f"{name} must be a single value", 1, 1)
    from .graph import Builder, _Const
    ref = Builder(program, name, None, False, seed).expr(program.statements[0].expr)
    if not isinstance(ref, _Const):
        raise GradSyntaxError(f"{name} must be a constant value (numbers, arrays, randn(...))", 1, 1)
    return ref.value


def leaf_values(at: dict | None, seed: int) -> dict:
    """`--at` values (text in the language, or numbers) as arrays; errors point into the value."""
    out = {}
    for key, value in (at or {}).items():
        if isinstance(value, str):
            try:
                value = parse_value(value, seed, f"--at {key}")
            except GradcheckError as err:
                raise err.located(f"--at {key}", value) from None
        out[key] = np.asarray(value, dtype=float)
    return out


def check(text: str, *, source: str = "<expr>", at: dict | None = None, seed: int = 0,
          rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, step: float | None = None,
          symbolic_check: bool = True, strict: bool = False, free_names: bool = False,
          budget: int = numeric.DEFAULT_BUDGET, sympy_seconds: float = symbolic.DEFAULT_SECONDS) -> CheckReport:
    """Check the gradient at every node of the function written in `text`.

    Never raises for bad input: the report's `error` holds the GradcheckError instead.
    """
    options = {"rtol": rtol, "atol": atol, "step": step, "symbolic": symbolic_check, "strict": strict,
               "budget": budget, "at": {k: v for k, v in (at or {}).items() if isinstance(v, str)}}
    report = CheckReport(source=source, seed=seed, options=options, inline=text if free_names else None)
    try:
        graph = build(parse(text), source, leaf_values(at, seed), free_names, seed)
        _fill(report, graph, rtol, atol, step, symbolic_check, budget, sympy_seconds, seed)
    except GradcheckError as err:
        report.error = err.located(source, text)
    except RecursionError:
        report.error = GradcheckError("the input is nested too deeply", 1, 1).located(source, text)
    return report


def check_file(path, **options) -> CheckReport:
    """Check one `.grad` file; unreadable files become a report with an error."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return CheckReport(source=source, seed=options.get("seed", 0),
                           error=GradcheckError(f"cannot read: {err.strerror or err}").located(source, None))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return CheckReport(source=source, seed=options.get("seed", 0), error=GradcheckError(
            f"not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})", line, 1).located(source, None))
    if "\x00" in text:
        return CheckReport(source=source, seed=options.get("seed", 0), error=GradcheckError(
            "this is a binary file, not a .grad source", 1, 1).located(source, None))
    return check(text, source=source, **options)


def expand_targets(targets) -> list:
    """Files named, and every `*.grad` under directories named (sorted, recursive)."""
    files = []
    for target in targets:
        p = Path(target)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.grad") if q.is_file())
            if not found:
                raise UsageError(f"{target}: no .grad files in this directory")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"{target}: no such file or directory")
    return files


def check_paths(targets, jobs: int = 1, **options) -> RunReport:
    """Check every file a list of targets names; a broken file is reported, the rest still run."""
    return check_paths_parallel(expand_targets(targets), jobs, **options)


def check_paths_parallel(files: list, jobs: int = 1, **options) -> RunReport:
    """Check files in `jobs` processes; the results keep the order of `files`."""
    if jobs <= 1 or len(files) <= 1:
        return RunReport([check_file(f, **options) for f in files])
    import functools
    from concurrent.futures import ProcessPoolExecutor
    chunk = max(1, len(files) // (jobs * 4))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return RunReport(list(pool.map(functools.partial(check_file, **options), files, chunksize=chunk)))


# --- judging ------------------------------------------------------------------------------------

def _fill(report: CheckReport, graph: Graph, rtol, atol, step, symbolic_check, budget, sympy_seconds, seed):
    values = autodiff.forward(graph)
    backward_errors: dict = {}
    adjoints = autodiff.backward(graph, values, backward_errors)
    out = graph.nodes[graph.output]
    report.output, report.value = out.name, values[out.id]
    checked = [n for n in graph.checked() if n.kind != "const"]
    ids = [n.id for n in checked]
    backprop = {n.id: autodiff.jacobian(graph, adjoints[n.id], n) for n in checked}

    def backprop_of(nid):
        return backprop.get(nid, autodiff.jacobian(graph, adjoints[nid], graph.nodes[nid]))

    differences = dict(step=step, budget=budget, seed=seed, reference=backprop, rtol=rtol, atol=atol)
    num = numeric.finite_differences(graph, values, ids, **differences)
    sym = symbolic.derivatives(graph, values, ids, sympy_seconds) if symbolic_check else {}
    rows = {}
    for node in checked:
        bp = backprop[node.id]
        row = _judge(node, bp, values[node.id], num[node.id], sym.get(node.id), rtol, atol)
        if row.status == "fail" and num[node.id].method == "projection":
            # A random projection failed: recheck every element so the report names the bad one.
            redo = numeric.finite_differences(graph, values, [node.id], exhaustive={node.id}, **differences)
            row = _judge(node, bp, values[node.id], redo[node.id], sym.get(node.id), rtol, atol)
        rows[node.id] = row
    _diagnose(graph, rows, backward_errors)
    for node in graph.checked():
        if node.kind == "const":
            rows[node.id] = NodeRow(node.name, node.label, node.shape, node.pos.line, node.pos.col,
                                    values[node.id], None, None, None, None, None, "skip",
                                    "const: frozen, no gradient is checked")
    report.nodes = [rows[n.id] for n in graph.checked()]
    report.expects = [_expect_row(graph, e, values, backprop_of(e.node), symbolic_check) for e in graph.expects]


def _judge(node, bp, value, num: numeric.NumericResult, sym, rtol, atol) -> NodeRow:
    sv = sym.value if sym is not None else None
    if num.method == "projection":
        flat_bp = bp.reshape(bp.shape[: bp.ndim - len(node.shape)] + (-1,))
        u = num.directions.reshape(num.directions.shape[0], -1)
        a = np.moveaxis(np.tensordot(flat_bp, u, axes=([-1], [1])), -1, 0)  # (P, *out)
        b = num.projected
        sv_cmp = None
    else:
        a, b, sv_cmp = bp, num.value, sv
    scale = np.maximum(np.abs(a), np.abs(b))
    finite = np.isfinite(b)
    with np.errstate(all="ignore"):
        tol = np.maximum(np.maximum(atol, rtol * scale), SAFETY * num.estimate)
        # judged against the row's largest gradient, so exact zeros with rounding noise stay reliable
        row_scale = max(float(np.max(scale[finite], initial=0.0)), atol)
        unreliable = ~finite | (num.truncation > UNRELIABLE * np.maximum(scale, row_scale))
        num_ok = finite & (np.abs(a - b) <= tol) & ~unreliable  # an unreliable difference vouches for nothing
    num_err = rel_error(a, np.where(finite, b, np.inf), atol)
    kink = num.kink
    # On a kink (v itself) any slope between the one-sided differences is a valid subgradient;
    # near one, the function is differentiable at v and the exact derivative decides.
    if num.one_sided is not None:
        lower, upper = num.one_sided
        with np.errstate(all="ignore"):
            subgradient = (a >= lower - tol) & (a <= upper + tol)
        on_kink = num.at_kink
    else:
        subgradient = np.ones(np.shape(a), dtype=bool)
        on_kink = np.ones(np.shape(a), dtype=bool)
    if sv_cmp is not None:
        sym_err = rel_error(bp, sv_cmp, atol)
        sym_ok = np.abs(bp - sv_cmp) <= np.maximum(atol, SYMBOLIC_RTOL * np.maximum(np.abs(bp), np.abs(sv_cmp)))
        at_kink = np.where(sym_ok | (on_kink & subgradient), 1, 3)
        status = np.where(kink, at_kink, np.where(~sym_ok, np.where(num_ok, 2, 3), np.where(~num_ok, 2, 0)))
    else:
        sym_err = None
        at_kink = np.where(subgradient, 1, 3)
        status = np.where(kink, at_kink, np.where(~num_ok, np.where(unreliable, 2, 3), 0))
    worst_flat = int(np.argmax(status.ravel() * 10.0 + np.nan_to_num(num_err.ravel(), nan=9.0) / 10.0)) \
        if status.size else 0
    worst = np.unravel_index(worst_flat, status.shape) if status.ndim else ()
    code = int(status.max()) if status.size else 0
    label = {0: "pass", 1: "kink", 2: "warn", 3: "fail"}[code]
    note = _note(label, sv_cmp is not None, bool(np.asarray(num_ok)[worst]) if status.size else True,
                 bool(np.asarray(unreliable)[worst]) if status.size else False, num, sym)
    with np.errstate(all="ignore"):
        tol_rel = float((tol / np.where(scale > 0, scale, 1.0)).ravel()[worst_flat]) if status.size else rtol
    return NodeRow(
        name=node.name, op=node.label, shape=node.shape, line=node.pos.line, col=node.pos.col,
        value=value, grad=bp, numeric=num.value, symbolic=sv,
        numeric_error=float(np.max(num_err)) if num_err.size else 0.0,
        symbolic_error=float(np.max(sym_err)) if sym_err is not None and sym_err.size else None,
        status=label, note=note, tolerance=max(rtol, min(tol_rel, 1.0)),
        worst_index=tuple(int(i) for i in worst) if np.ndim(status) else None,
        numeric_method=num.method if num.method == "exhaustive" else
        f"projection ({num.projected.shape[0]} random directions)")


def _note(label, have_sym, num_ok, unreliable, num, sym) -> str | None:
    notes = []
    if label == "fail":
        if have_sym and num_ok:
            notes.append("SymPy disagrees with backprop and finite differences")
        elif have_sym:
            notes.append("backprop disagrees with both finite differences and SymPy")
        else:
            notes.append("backprop disagrees with finite differences")
    elif label == "warn":
        if have_sym and num_ok:
            notes.append("SymPy disagrees with backprop and finite differences (which agree)")
        elif have_sym:
            notes.append("finite difference unreliable here: backprop agrees with SymPy")
        else:
            notes.append("finite difference unreliable here and no exact derivative to decide")
    elif label == "kink":
        notes.append("a max/min/relu/abs changes branch within the step")
    if num.left_domain:
        notes.append("a nudged value left the function's domain")
    if num.method == "projection":
        notes.append("finite differences by random projections (node past the element budget)")
    if sym is not None and sym.note:
        notes.append(sym.note)
    return "; ".join(notes) or None


def _diagnose(graph: Graph, rows: dict, backward_errors: dict):
    """Point failing rows at the gate whose backward goes wrong.

    The cause sits where a failing node feeds a consumer whose own row passes: that consumer's
    backward is wrong (for a user gate, the d line of that input). Rows further upstream only
    inherit the failure, and say so.
    """
    for nid, row in rows.items():
        if row.status != "fail":
            continue
        consumers = [graph.nodes[c] for c in graph.consumers[nid] if c in rows]
        good = [c for c in consumers if rows[c.id].status != "fail" or c.id in backward_errors]
        if not good:
            bad = next((c for c in consumers if rows[c.id].status == "fail"), None)
            if bad is not None:
                row.note = f"inherits the failure of '{bad.name}' downstream"
            continue
        causes = []
        for c in good:
            where = f"'{c.name}' ({c.label}, line {c.pos.line})"
            if c.id in backward_errors:
                err = backward_errors[c.id]
                causes.append(f"the backward of {where} failed: {err.message}"
                              + (f" (line {err.line})" if err.line else ""))
                row.culprit = row.culprit or ((err.line, err.col) if err.line else (c.pos.line, c.pos.col))
                continue
            slots = [k for k, i in enumerate(c.inputs) if i == nid]
            origin = [c.gate.backward_source[k] for k in slots if k < len(c.gate.backward_source)]
            causes.append(f"the gradient goes wrong in the backward of {where}"
                          + (f": {origin[0][0]}" if origin else ""))
            row.culprit = row.culprit or ((origin[0][1], origin[0][2]) if origin else (c.pos.line, c.pos.col))
        row.note = f"{row.note}; " + "; ".join(causes)


def _expect_row(graph, exp, values, actual, symbolic_check) -> ExpectRow:
    from .expects import judge
    expected, status, note = judge(exp, graph, values, actual, symbolic_check)
    return ExpectRow(exp.target, expected, actual, status, exp.pos.line, exp.pos.col, note)
