"""Notebooks: the example notebook executed by a real kernel (nbclient + ipykernel), the magics, and
what every report shows itself as (HTML leading with the culprit, a plain-text fallback)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOK = ROOT / "examples" / "notebooks" / "backprop_checks.ipynb"


@pytest.fixture(scope="module")
def kernel():
    """One real kernel (python3, started in the repository by the first notebook run in it) for this
    module's notebooks, run one after the other: its start and end paid once."""
    pytest.importorskip("nbclient", reason="nbclient is in the test extras: pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="ipykernel is in the test extras")
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    manager = AsyncKernelManager(kernel_name="python3")
    yield manager
    if manager.has_kernel:
        run_sync(manager.shutdown_kernel)(now=True)


def _execute(kernel, nb, allow_errors=False):
    import nbclient
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=allow_errors, km=kernel,
                                     resources={"metadata": {"path": str(ROOT)}})
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    return nb


def _outputs(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.output_type in ("execute_result", "display_data", "error")]


def test_the_example_notebook_runs_in_a_real_kernel_and_shows_its_verdicts(kernel):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extras")
    nb = _execute(kernel, nbformat.read(NOTEBOOK, as_version=4))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(o.output_type == "error" for c in code for o in c.get("outputs", []))
    circuit, slip, layer, wrong, explained = (_outputs(c) for c in code[1:6])
    html = circuit[0]["data"]["text/html"]
    assert 'class="ok"' in html and "all 5 checked nodes" in html
    # the picture is Graphviz's: drawn where `dot` is installed, left out (never an error) where it is not
    assert ("<svg" in html) == (shutil.which("dot") is not None)
    assert "1 passed" in circuit[0]["data"]["text/plain"]
    # the slip: the culprit leads, naming the d line (line 2 of the cell), and the row that inherits it
    html = slip[0]["data"]["text/html"]
    lead = html[html.index('class="culprit"'):]
    assert lead.index("gate sq(x): dt") < lead.index("</div>") and "line 2" in lead[:lead.index("</div>")]
    assert "dt (line 2): fail" in slip[0]["data"]["text/plain"]
    assert "1 passed" in layer[0]["data"]["text/plain"] and 'class="ok"' in layer[0]["data"]["text/html"]
    html = wrong[0]["data"]["text/html"]
    lead = html[html.index('class="culprit"'): html.index("</div>", html.index('class="culprit"'))]
    assert "<b>b</b>" in lead and "line 5" in lead  # db = dout[0], line 5 of the cell
    assert "<details>" in html  # tensor rows fold out
    assert "backward pass" in explained[0]["data"]["text/plain"] and "Backward pass" in explained[0]["data"]["text/html"]


def test_magic_errors_are_one_line_not_a_traceback(kernel):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extras")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext gradcheck_cli"),
                nbformat.v4.new_code_cell("%%gradcheck --bogus\nx = 1\nf = x"),
                nbformat.v4.new_code_cell("%%gradcheck\nx = 1\nf = x +\n"),
                nbformat.v4.new_code_cell("%gradcheck expressions/cs231n_circuit.grad --seed 3"),
                nbformat.v4.new_code_cell("%gradcheck nosuch.grad")]
    nb = _execute(kernel, nb, allow_errors=True)
    bogus = nb.cells[1].outputs  # IPython shows a UsageError as one line on stderr
    assert len(bogus) == 1 and bogus[0].output_type == "stream" and bogus[0].name == "stderr"
    assert bogus[0].text.startswith("UsageError: %%gradcheck: unknown option --bogus") and "Traceback" not in bogus[0].text
    syntax = _outputs(nb.cells[2])[0]  # a bad program is the report's error, shown with its caret
    assert syntax.output_type == "execute_result" and "cell:2:8: error: unexpected end of line" in syntax["data"]["text/plain"]
    assert "^" in syntax["data"]["text/plain"] and 'class="culprit"' in syntax["data"]["text/html"]
    ok = _outputs(nb.cells[3])[0]
    assert "1 passed" in ok["data"]["text/plain"]
    missing = _outputs(nb.cells[4])[0]
    assert "nosuch.grad" in missing["data"]["text/plain"] and "1 with errors" in missing["data"]["text/plain"]


def test_every_report_has_a_mime_bundle_without_a_kernel():
    from gradcheck_cli import check, check_function, load
    from gradcheck_cli.teaching.teach import explain
    report = check("x = 2.0\nf = x * x\n")
    bundle = report._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"} and "1 passed" in bundle["text/plain"]
    layer = check_function(np.tanh, lambda g, x: g * (1 - np.tanh(x) ** 2) * 1.01, {"x": np.linspace(-1, 1, 5)})
    assert "x (line" in layer._repr_mimebundle_()["text/plain"] and 'class="culprit"' in layer._repr_mimebundle_()["text/html"]
    assert "Backward pass" in explain(load("x = 3\nf = x * x"))._repr_mimebundle_()["text/html"]


def test_hostile_names_and_notes_are_escaped():
    from gradcheck_cli import check_function

    def f(x):
        return x * 2

    def vjp(g, x):
        raise ValueError("<script>alert(1)</script>")
    report = check_function(f, vjp, {"x": np.ones(3)}, name="<img src=x onerror=alert(2)>")
    html = report._repr_mimebundle_()["text/html"]
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html


def test_the_magics_take_order_2_and_no_complex_step():
    from gradcheck_cli.core.errors import UsageError
    from gradcheck_cli.notebook import check_cell, options
    flags, _, _, _ = options("--order 2 --no-complex-step --seed 1", "gradcheck")
    assert flags == {"order": 2, "complex_step": False, "seed": 1}
    with pytest.raises(UsageError, match="--order"):
        options("--order 3", "gradcheck")
    report = check_cell("--order 2 --no-picture", "gate cube(t) = t^3\n  dt = dout * 6.75\nx = 1.5\nf = cube(x)\n")
    assert not report.passed and [g.input for g in report.gates if g.status == "fail"] == ["dt"]


def test_the_cell_magics_at_defines_a_leaf_the_cell_does_not_define_as_e_does():
    from gradcheck_cli.notebook import bundle, check_cell
    report = check_cell("--at x=0.5", "f = x * x\n")  # as `gradcheck check -e 'f = x * x' --at x=0.5`
    assert report.error is None and report.passed
    row = next(r for r in report.nodes if r.name == "x")
    assert row.op == "input" and float(row.value) == 0.5 and float(row.grad) == 1.0
    assert "1 passed" in bundle(report)["text/plain"]
    # a name neither the cell nor --at defines is still an error, with its position
    report = check_cell("--at x=0.5 --no-picture", "f = x * y\n")
    assert report.error is not None and "unknown name 'y'" in report.error.format()
