"""pytest plugin (entry point `pytest11`): every `.grad` file collected is one test.

It only claims files ending in `.grad`, so projects without them are untouched. Options come from
`[tool.gradcheck]` in the nearest pyproject.toml, as for the command line.
"""

from __future__ import annotations

import os

import pytest


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".grad":
        return GradFile.from_parent(parent, path=file_path)
    return None


class GradFile(pytest.File):
    """A `.grad` file: one test item."""

    def collect(self):
        yield GradItem.from_parent(self, name=self.path.name)


class GradCheckFailed(Exception):
    """Raised by a `.grad` item whose check failed; carries the report."""

    def __init__(self, report):
        super().__init__(report.source)
        self.report = report


class GradItem(pytest.Item):
    """Checks its file three ways; fails with the table of the failing rows."""

    def runtest(self):
        from .core.config import load
        from .checking.files import check_file
        settings, _ = load(self.path.parent)
        shown = os.path.relpath(self.path, self.config.invocation_params.dir)  # as the user typed it: no absolute path
        report = check_file(self.path if shown.startswith("..") else shown, settings)
        if not report.passed:
            raise GradCheckFailed(report)

    def repr_failure(self, excinfo, style=None):
        if not isinstance(excinfo.value, GradCheckFailed):
            return super().repr_failure(excinfo)
        from .render.table import failure_text
        width = self.config.get_terminal_writer().fullwidth  # pytest's own width (COLUMNS, the terminal, or 80)
        return failure_text(excinfo.value.report, max(60, width))

    def reportinfo(self):
        return self.path, None, f"gradcheck {self.path.name}"
