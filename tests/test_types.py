"""The type checker, as configured in pyproject.toml ([tool.mypy]: core, gates, oracles and checking),
reports nothing."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_errors():
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed: pip install -e '.[test]'")
    # No arguments: mypy reads [tool.mypy] from the root's pyproject.toml (its files, its cache_dir .mypy_cache/)
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mypy failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
