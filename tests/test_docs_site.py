"""The documentation site builds: `mkdocs build --strict` (mkdocs.yml at the root, the pages in
docs/) with no warning — every page in the nav, every link between pages resolving. Skipped where
MkDocs is not installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT


def test_the_docs_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("MkDocs is not installed: pip install '.[docs]'")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    assert "WARNING" not in done.stdout, done.stdout
    assert (tmp_path / "site" / "index.html").exists()


def test_the_site_carries_the_circuit_pages_the_teaching_page_embeds(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("MkDocs is not installed: pip install '.[docs]'")
    import re
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    teaching = (site / "teaching" / "index.html").read_text(encoding="utf-8")
    linked = re.findall(r'(?:iframe src|a href)="\.\./(circuits/[^"]+)"', teaching)
    assert len(linked) == 2, linked
    for page in linked:  # each is explain's page, written at build time: its stepper and its steps
        text = (site / page).read_text(encoding="utf-8")
        assert 'id="gc-next"' in text and 'id="gc-steps"' in text and "/work/" not in text.split("</h1>")[0]
    neuron = (site / linked[0]).read_text(encoding="utf-8")
    assert '"dline":{"text":"dt = dout * out","line":4' in neuron  # the wrong d line the page is there to show
