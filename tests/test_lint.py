"""The code passes the linter configured in pyproject.toml ([tool.ruff]); CI installs ruff with the test extra."""

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        try:
            import ruff as _  # noqa: F401
        except ImportError:
            pytest.skip("ruff is not installed (pip install -e '.[test]' brings it)")
        command = [sys.executable, "-m", "ruff"]
    else:
        command = [ruff]
    done = subprocess.run(command + ["check", "--no-cache", str(ROOT)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
