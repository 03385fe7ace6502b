"""The documentation site builds: `mkdocs build --strict` (mkdocs.yml at the root, the pages in
docs/) with no warning — every page in the nav, every link between pages resolving — and carries the pages
its build hook writes. One build for both tests. Skipped where MkDocs is not installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One strict build of the site for the tests below (mkdocs.yml says `strict: true` too): (what mkdocs
    printed, its exit status, the site)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("MkDocs is not installed: pip install '.[docs]'")
    folder = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",  # not --quiet: it silences the
                           # warnings, and then --strict has none to count
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(folder)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    return done.stdout, done.returncode, folder


def test_the_docs_site_builds_strictly(site):
    printed, code, folder = site
    assert code == 0, printed
    assert "WARNING" not in printed, printed
    assert (folder / "index.html").exists()


def test_the_site_carries_the_circuit_pages_the_teaching_page_embeds(site):
    import re
    printed, code, folder = site
    assert code == 0, printed
    teaching = (folder / "teaching" / "index.html").read_text(encoding="utf-8")
    linked = re.findall(r'(?:iframe src|a href)="\.\./(circuits/[^"]+)"', teaching)
    assert len(linked) == 2, linked
    for page in linked:  # each is explain's page, written at build time: its stepper and its steps
        text = (folder / page).read_text(encoding="utf-8")
        assert 'id="gc-next"' in text and 'id="gc-steps"' in text and "/work/" not in text.split("</h1>")[0]
    neuron = (folder / linked[0]).read_text(encoding="utf-8")
    assert '"dline":{"text":"dt = dout * out","line":4' in neuron  # the wrong d line the page is there to show
