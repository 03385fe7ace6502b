"""JUnit XML, as GitLab and Jenkins read it: one testsuite, one testcase per file."""

from __future__ import annotations

import re

from ..core.report import RunReport
from .common import failure_lines, precision_lines, warning_lines

_NOT_XML = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
                      "\ud800-\udfff\ufffe\uffff]")  # and what XML holds but a CI page would act on or hide:
# C1 controls, carriage returns, bidi overrides and isolates, zero-width characters, line separators


def xml_text(text: str) -> str:
    """Text XML 1.0 can hold and a CI page shows as it is: control, format and bidi characters and lone
    surrogates become visible escapes (\\x1b, \\u202e); newlines and tabs stay."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}",
                        text)


def _case_name(report) -> str:
    return report.source if report.inline is None else f"<expr> {report.inline}"


def _failure_message(report) -> str:
    """`2 gradient checks failed (1 root cause)`: the failing rows, and the causes they come from when fewer."""
    from ..checking.diagnosis import causes
    rows, roots = len(report.failures), len(causes(report))
    message = f"{rows} gradient check{'s' if rows != 1 else ''} failed"
    return message + (f" ({roots} root cause{'s' if roots != 1 else ''})" if roots < rows else "")


def render_junit(run: RunReport) -> str:
    import xml.etree.ElementTree as ET
    failures = sum(1 for r in run.results if r.error is None and not r.passed)
    errors = sum(1 for r in run.results if r.error is not None)
    suite = ET.Element("testsuite", name="gradcheck", tests=str(len(run.results)),
                       failures=str(failures), errors=str(errors), skipped="0",
                       time=f"{sum(r.elapsed for r in run.results):.3f}")
    seen: dict = {}
    for report in run.results:
        name = _case_name(report)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # unique and stable: the same file twice gets #2, #3, ...
            name = f"{name} #{seen[name]}"
        case = ET.SubElement(suite, "testcase", classname="gradcheck", name=xml_text(name),
                             file=xml_text(report.path or report.source), time=f"{report.elapsed:.3f}")
        if report.error is not None:
            err = report.error
            el = ET.SubElement(case, "error", message=xml_text(err.message), type=type(err).__name__)
            el.text = xml_text(err.format())
        elif not report.passed:
            lines = failure_lines(report)
            el = ET.SubElement(case, "failure", message=_failure_message(report), type="GradientCheckFailure")
            el.text = xml_text("\n".join(lines + ["", "reproduce: " + report.reproduce()]))
        elif report.warnings or precision_lines(report):  # a passing file's warnings: in its output, as JUnit readers show it
            ET.SubElement(case, "system-out").text = xml_text("\n".join(warning_lines(report) + precision_lines(report)))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<testsuites>\n' + ET.tostring(suite, encoding="unicode")
            + "\n</testsuites>\n")
