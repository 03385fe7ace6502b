"""Shared helpers for the test suite."""

pytest_plugins = ["pytester"]

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPRESSIONS = ROOT / "expressions"


def rows(report) -> dict:
    """A report's node rows by name."""
    return {r.name: r for r in report.nodes}


def grad(report, name):
    return np.asarray(rows(report)[name].grad, dtype=float)


@pytest.fixture
def expressions_dir() -> Path:
    return EXPRESSIONS
