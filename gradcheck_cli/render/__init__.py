"""Reports → text, one module per format. The only library package that imports rich."""

from __future__ import annotations

MACHINE_FORMATS = ("json", "junit", "github", "markdown", "html")  # rendered whole, as text


def render(run, fmt: str) -> str:
    """A whole-text format of a RunReport: json, junit, github, markdown or html. Every face but
    JSON (which escapes as JSON does) shows file names with their control characters escaped."""
    if fmt == "json":
        from .json_report import render_json
        return render_json(run) + "\n"
    from .common import displayable
    run = displayable(run)
    if fmt == "junit":
        from .junit import render_junit
        return render_junit(run)
    if fmt == "github":
        from .github import render_github
        return render_github(run)
    if fmt == "markdown":
        from .markdown import render_markdown
        return render_markdown(run)
    if fmt == "html":
        from .html import pictures, render_html
        return render_html(run, pictures(run))
    raise ValueError(f"unknown format {fmt!r}")
