"""explain's page: the circuit to step through, forward then backward, clicked and keyed through in
headless Chromium (the DevTools protocol over a pipe; skipped with the reason without it), laid out by
Graphviz and, with `dot` off the PATH, by the columns; its steps' JSON and names escaped; the notebook
shows the same page in an iframe, executed by a real kernel."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import gradcheck_in_process
from devtools import Browser

ROOT = Path(__file__).resolve().parent.parent.parent
NEURON = ROOT / "examples" / "mistakes" / "sigmoid_gate_forgot_1_minus_out.grad"
SIGMA = 1 / (1 + math.exp(-1.0))  # the neuron's dot is 2·(−1) + (−3)·(−2) − 3 = 1: the notes' 0.73


def _explain_page(tmp_path: Path, source: Path = NEURON, graphviz: bool = True, name: str = "page.html") -> str:
    """`gradcheck explain SOURCE --format html -o FILE` (in this process); without `graphviz`, `dot` is not on
    the PATH."""
    out = tmp_path / name
    env = dict(os.environ)
    if not graphviz:
        empty = tmp_path / "no-dot"
        empty.mkdir(exist_ok=True)
        env["PATH"] = str(empty)
    done = gradcheck_in_process("explain", source, "--format", "html", "-o", out, cwd=ROOT, env=env)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    return out.read_text(encoding="utf-8")


def _steps(page: str) -> list:
    blob = re.search(r'<script type="application/json" id="gc-steps">(.*?)</script>', page, re.S).group(1)
    assert "<" not in blob and ">" not in blob and "&" not in blob  # as \u escapes: nothing can end the element
    return json.loads(blob)


def _ids():
    """The neuron's node ids by name, from the graph the page is drawn from."""
    from gradcheck_cli import load
    graph = load(NEURON.read_text(encoding="utf-8"), str(NEURON))
    return {n.name: n.id for n in graph.nodes}


def test_the_page_is_self_contained_and_its_steps_say_the_chain_rule(tmp_path):
    page = _explain_page(tmp_path)
    assert not re.search(r"<link|<iframe|\bsrc=|@import|url\(", page, re.I)
    assert len(re.findall(r"<script", page)) == 2  # the steps (JSON) and the stepper, both inline
    for address in re.findall(r"https?://[^\"' )]+", page):
        assert address.startswith("http://www.w3.org/")
    steps = _steps(page)
    # the start, 5 gates forward, the output's gradient 1, 9 edges backward, the inputs' gradients
    assert [s["phase"] for s in steps] == ["start"] + ["forward"] * 5 + ["backward"] * 10 + ["end"]
    ids = _ids()
    into_dot = steps[7]
    assert into_dot["lit"] == [f"gc-n{ids['f']}", f"gc-w{ids['f']}-0", f"gc-n{ids['dot']}"]
    assert into_dot["text"] == f"ddot = 1 × {SIGMA:.4g} = {SIGMA:.4g}"  # the d line's value: σ, not σ(1 − σ)
    assert into_dot["dline"] == {"text": "dt = dout * out", "line": 4, "value": f"{SIGMA:.4g}",
                                 "expected": f"{SIGMA * (1 - SIGMA):.4g}", "right": False}
    assert into_dot["wrong"].startswith("✗ this gate's backward is wrong")
    # the edges after it run registry gates: no d line of the learner's to show
    assert all("dline" not in s for s in steps[8:])
    svg = page[page.index("<svg"):page.index("</svg>")]
    first = re.findall(r'<g id="gc-w([^"]+)" class="[^"]*first-wrong', svg)
    assert first == [f"{ids['f']}-0"]
    # every id a step lights or shows is in the drawing
    for s in steps:
        for element in s["lit"] + s["show"]:
            assert f'id="{element}"' in svg, element


def test_without_graphviz_the_columns_draw_the_same_circuit(tmp_path):
    with_dot = _explain_page(tmp_path, name="dot.html") if shutil.which("dot") else None
    without = _explain_page(tmp_path, graphviz=False, name="columns.html")
    assert 'data-layout="columns"' in without
    ids = sorted(re.findall(r' id="(gc-[nwvg][^"]*)"', without))
    if with_dot is not None:
        assert 'data-layout="graphviz"' in with_dot
        assert sorted(re.findall(r' id="(gc-[nwvg][^"]*)"', with_dot)) == ids  # the same elements to light
        assert _steps(with_dot) == _steps(without)


def test_user_text_is_escaped_in_the_svg_and_in_the_json(tmp_path):
    from gradcheck_cli.render.stepper import script_json
    hostile = {"name": "</script><script>alert(1)</script> & <!--"}
    text = script_json(hostile)
    assert "<" not in text and ">" not in text and "&" not in text and json.loads(text) == hostile
    source = tmp_path / "cmp.grad"  # an unnamed gate is named by its text: `x < y`; a d line holding `>`
    source.write_text("gate step(t) = t * (t > 0)\n  dt = dout * (t > 0)\n"
                      "x = 1.5\ny = 2.0\nf = step(x * (x < y) + y)\n", encoding="utf-8")
    page = _explain_page(tmp_path, source)
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert "x &lt; y" in svg and "x < y" not in svg
    assert any(s.get("dline", {}).get("text") == "dt = dout * (t > 0)" for s in _steps(page))


def test_a_circuit_past_the_page_limit_is_not_drawn(tmp_path):
    from gradcheck_cli.render.html import PICTURED
    source = tmp_path / "long.grad"
    source.write_text("x = 0.5\na0 = x * x\n" + "".join(f"a{i} = a{i - 1} + x\n" for i in range(1, PICTURED + 1)),
                      encoding="utf-8")
    page = _explain_page(tmp_path, source)
    assert "gc-steps" not in page and "<script" not in page and "Backward pass" in page


def _visible(b: Browser, element: str) -> bool:
    return b.evaluate(f"(function(){{var e=document.getElementById({json.dumps(element)});"
                      "return !!e && getComputedStyle(e).visibility !== 'hidden'})()")


def _lit(b: Browser) -> list:
    return b.evaluate("Array.from(document.querySelectorAll('#gc-circuit .lit')).map(function(e){return e.id}).sort()")


def _counter(b: Browser) -> str:
    return b.evaluate("document.getElementById('gc-counter').textContent")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for both layouts' pages (each test navigates to its own file: nothing of the
    page before it is left; the page keeps no storage)."""
    b = Browser(tmp_path_factory.mktemp("chromium") / "profile")
    yield b
    b.close()


@pytest.mark.parametrize("graphviz", [True, False], ids=["graphviz", "columns"])
def test_click_and_key_through_the_circuit(tmp_path, graphviz, browser):
    if graphviz and shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed (apt-get install graphviz): its layout is not drawn")
    page = tmp_path / "neuron.html"
    steps = _steps(_explain_page(tmp_path, graphviz=graphviz, name=page.name))
    ids = _ids()
    f, into_dot = ids["f"], f"{ids['f']}-0"
    grads = [e for s in steps for e in s["show"] if e.startswith("gc-g")]
    b = browser
    b.messages.clear()  # this page's console messages only
    b.open(page)
    assert _counter(b) == "step 0 of 16"
    assert not any(_visible(b, g) for g in grads)  # no gradient before the backward pass
    assert _visible(b, f"gc-v{ids['w0*x0']}-0") and not _visible(b, "gc-vout")  # inputs' values only
    for _ in range(5):
        b.click("gc-next")
    assert _counter(b) == "step 5 of 16"
    assert _lit(b) == sorted([f"gc-n{f}", f"gc-w{into_dot}"])  # the last gate of the forward pass
    assert _visible(b, "gc-vout") and not any(_visible(b, g) for g in grads)
    shot = b.screenshot(tmp_path / "forward.png")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    b.key("ArrowRight")  # the output's gradient, 1
    assert _counter(b) == "step 6 of 16" and _visible(b, "gc-gout") and not _visible(b, f"gc-g{into_dot}")
    b.key("ArrowRight")  # the learner's d line runs: ddot = σ instead of σ(1 − σ)
    assert _counter(b) == "step 7 of 16"
    assert _lit(b) == sorted([f"gc-n{f}", f"gc-w{into_dot}", f"gc-n{ids['dot']}"])
    assert _visible(b, f"gc-g{into_dot}")
    assert b.evaluate(f"document.getElementById('gc-g{into_dot}').textContent") == f"✗ {SIGMA:.3g}"
    panel = b.evaluate("document.getElementById('gc-panel').textContent")
    assert "your line 4: dt = dout * out" in panel and f"{SIGMA * (1 - SIGMA):.4g}" in panel and "✗" in panel
    wire = f"gc-w{into_dot}"
    assert b.evaluate(f"document.getElementById('{wire}').getAttribute('class')") == "wire wrong first-wrong lit"
    assert b.evaluate(f"getComputedStyle(document.querySelector('#{wire} path')).stroke") == "rgb(207, 34, 46)"
    b.screenshot(tmp_path / "d-line.png")
    b.key("ArrowLeft")  # back undoes: the gradient goes again
    assert _counter(b) == "step 6 of 16" and not _visible(b, f"gc-g{into_dot}")
    b.click("gc-back")
    assert _counter(b) == "step 5 of 16" and not _visible(b, "gc-gout")
    for _ in range(20):  # past the end: it stays at the last step
        b.key("ArrowRight")
    assert _counter(b) == "step 16 of 16" and all(_visible(b, g) for g in grads)
    assert b.evaluate("document.getElementById('gc-next').disabled") is True
    b.click("gc-reset")
    assert _counter(b) == "step 0 of 16" and not any(_visible(b, g) for g in grads)
    assert b.messages == []  # no console message, no exception


def test_the_notebook_shows_the_page_to_step_through(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extras")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extras: pip install -e '.[test]'")
    pytest.importorskip("ipykernel", reason="ipykernel is in the test extras")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from gradcheck_cli import load\nfrom gradcheck_cli.teaching.teach import explain"),
                nbformat.v4.new_code_cell(f"explain(load(open({str(NEURON)!r}).read(), 'neuron.grad'))")]
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    shown = nb.cells[1].outputs[0]["data"]
    frame = shown["text/html"]
    assert frame.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in frame
    page = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert _steps(page)[7]["dline"]["text"] == "dt = dout * out"
    assert "backward pass" in shown["text/plain"]
