"""GitHub Actions workflow commands: one ::error per failing row, at the line that goes wrong."""

from __future__ import annotations

from ..core.report import RunReport
from .common import causes, inherited, row_name, summary


def gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def gh_property(text: str) -> str:
    return gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(run: RunReport) -> str:
    out, annotated = [], set()
    for report in run.results:
        if report.error is not None:
            err = report.error
            props = f"file={gh_property(report.path or report.source)}"
            if err.line:
                props += f",line={err.line},col={err.col or 1}"
            out.append(f"::error {props},title={gh_property('gradcheck: input error')}::{gh_data(err.message)}")
            continue
        for status, (line, col), lead, rows, file in causes(report):  # one annotation per root cause, causes first
            if (file, line, col) in annotated:  # a helper two layers share: once
                continue
            annotated.add((file, line, col))
            level = "error" if status == "fail" or report.settings.strict else "warning"
            title = gh_property(f"gradcheck {status}: {row_name(lead)}")
            also = inherited(rows, lead)
            message = (lead.note or status) + (f"\n{also}" if also else "") + "\nreproduce: " + report.reproduce()
            out.append(f"::{level} file={gh_property(file)},line={line},col={col},"
                       f"title={title}::{gh_data(message)}")
        for message, line, col in report.warnings:
            where = f",line={line},col={col or 1}" if line else ""
            out.append(f"::warning file={gh_property(report.path or report.source)}{where},"
                       f"title={gh_property('gradcheck: warning')}::{gh_data(message)}")
    out.append(summary(run))  # plain text, not a workflow command: nothing to escape
    return "\n".join(out) + "\n"
