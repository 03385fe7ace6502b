"""`--format html`: one self-contained page for check, check-py and explain, escaped, and opened in a
real headless browser (Chromium from Debian's packages; skipped with the reason without it)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import gradcheck_in_process

ROOT = Path(__file__).resolve().parent.parent.parent
WRONG = ROOT / "examples" / "mistakes" / "sq_forgot_2.grad"


def _run(*args, cwd=ROOT):
    return gradcheck_in_process(*args, cwd=cwd)


def _self_contained(page: str, scripts: int = 0):
    """A page that fetches nothing; `scripts`: how many inline scripts it has (explain's stepper: its
    steps as JSON and the script that steps through them; every other page: none)."""
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"<link|<iframe|\bsrc=|@import|url\(", page, re.I), "fetches something"
    assert len(re.findall(r"<script", page, re.I)) == scripts, "runs something"
    for address in re.findall(r"https?://[^\"' )]+", page):
        assert address.startswith(("http://www.w3.org/", "https://www.w3.org/")), address  # SVG's namespaces only


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium (the DevTools protocol over a pipe, devtools.py) for every page of this module,
    started where a test first opens a page (the test skipped there without it, its other checks made):
    each page is navigated to in turn, its own document loaded afresh."""
    kept: list = []

    def started():
        if not kept:
            from devtools import Browser
            kept.append(Browser(tmp_path_factory.mktemp("chromium") / "profile"))
        return kept[0]
    yield started
    for b in kept:
        b.close()


def _open(browser, page: Path, shot: Path) -> str:
    """Load the page headless: its DOM after loading (and a screenshot); fails on a console message, an
    exception or a message of the browser's own (a resource it could not load)."""
    b = browser()
    b.messages.clear()
    b.open(page)
    dom = b.evaluate("document.documentElement.outerHTML")
    data = b.screenshot(shot)
    assert b.messages == [], b.messages  # a console message (an error) while loading
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a real picture, not an empty one
    return dom


def test_a_failing_check_as_one_page_with_the_culprit_first(tmp_path, browser):
    out = tmp_path / "report.html"
    done = _run("check", str(WRONG), "--format", "html", "-o", str(out))
    assert done.returncode == 1, done.stderr
    page = out.read_text(encoding="utf-8")
    _self_contained(page)
    first = page.index('class="culprit"')
    assert first < page.index("<table") and "gate sq(x): dt" in page[first:page.index("</div>", first)]
    assert "line 3" in page[first:page.index("</div>", first)]
    if shutil.which("dot"):
        assert "<svg" in page and "backward fails its own check" in page
    dom = _open(browser, out, tmp_path / "report.png")
    assert 'class="culprit"' in dom and "gate sq(x): dt" in dom


def test_check_py_and_explain_pages(tmp_path, browser):
    out = tmp_path / "layer.html"
    done = _run("check-py", "examples/python/layers_wrong.py::affine", "--shape", "x=10,20,3", "--shape", "w=60,5",
                "--shape", "b=5", "--format", "html", "-o", str(out))
    assert done.returncode == 1, done.stderr
    page = out.read_text(encoding="utf-8")
    _self_contained(page)
    lead = page[page.index('class="culprit"'):]
    assert "<b>b</b> at <b>line 15</b>" in lead[:lead.index("</div>")]
    explained = _run("explain", str(WRONG), "--format", "html")
    assert explained.returncode == 0, explained.stderr
    _self_contained(explained.stdout, scripts=2)
    assert "Backward pass" in explained.stdout and "the backward of <b>sq(x)</b>" in explained.stdout
    (tmp_path / "explain.html").write_text(explained.stdout, encoding="utf-8")
    assert "Backward pass" in _open(browser, tmp_path / "explain.html", tmp_path / "explain.png")


def test_hostile_names_and_notes_are_escaped_in_the_page(tmp_path, browser):
    module = tmp_path / "evil.py"
    module.write_text("import numpy as np\n\n"
                      "def twice_forward(x):\n    return 2 * x, x\n\n"
                      "def twice_backward(dout, cache):\n"
                      "    raise ValueError('<script>alert(1)</script>')\n", encoding="utf-8")
    out = tmp_path / "evil.html"
    done = _run("check-py", f"{module}::twice", "--shape", "x=3", "--format", "html", "-o", str(out))
    assert done.returncode == 1, done.stderr
    page = out.read_text(encoding="utf-8")
    _self_contained(page)  # no <script> survived
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    source = tmp_path / "cmp.grad"
    source.write_text("x = 1.5\ny = 2.0\nf = x * (x < y) + y\n", encoding="utf-8")  # a node named `x < y`
    done = _run("check", str(source), "--format", "html")
    assert "x &lt; y" in done.stdout and "x < y" not in done.stdout.replace("&lt;", "")
    _open(browser, out, tmp_path / "evil.png")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (apt-get install graphviz): nothing to draw with")
def test_the_page_draws_the_report_it_is_given_not_the_file_as_it_is_now(tmp_path):
    # the circuit comes from the text the report was checked from: a file changed (or gone) since the
    # check cannot make the picture disagree with the table beside it
    from gradcheck_cli import check_file
    from gradcheck_cli.core.report import RunReport
    from gradcheck_cli.render.html import pictures
    source = tmp_path / "f.grad"
    source.write_text("alpha = 2\nbeta = 3\nf = alpha * beta\n", encoding="utf-8")
    report = check_file(str(source))
    source.write_text("gamma = 2\nf = gamma * gamma\n", encoding="utf-8")
    svg = pictures(RunReport([report]))[str(source)]
    assert "alpha" in svg and "beta" in svg and "gamma" not in svg
    source.unlink()
    assert "alpha" in pictures(RunReport([report]))[str(source)]
