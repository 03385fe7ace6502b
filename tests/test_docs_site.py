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
