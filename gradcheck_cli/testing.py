"""Assertions for a test suite: `assert_layer` and `assert_function` fail with gradcheck's table.

    from gradcheck_cli.testing import assert_layer
    from layers import affine_forward, affine_backward

    def test_affine():
        assert_layer(affine_forward, affine_backward, {"x": randn(10, 20, 3), "w": randn(60, 5), "b": randn(5)})
"""

from __future__ import annotations

from .python.pycheck import check_function, check_layer
from .render.table import failure_text
from .core.report import CheckReport


def assert_layer(forward, backward, inputs: dict, params: dict | None = None, **options) -> CheckReport:
    """Check a CS231n-style layer (see `check_layer`); AssertionError with the table if it fails."""
    return _passed(check_layer(forward, backward, inputs, params, **options))


def assert_function(f, vjp, inputs: dict, **options) -> CheckReport:
    """Check a function and its VJP (see `check_function`); AssertionError with the table if it fails."""
    return _passed(check_function(f, vjp, inputs, **options))


def _passed(report: CheckReport) -> CheckReport:
    if report.error is not None:
        raise AssertionError(report.error.format())
    if not report.passed:
        raise AssertionError(failure_text(report))
    return report
