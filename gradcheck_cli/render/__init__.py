"""Reports → text, one module per format. The only library package that imports rich."""

from __future__ import annotations

MACHINE_FORMATS = ("json", "junit", "github", "markdown")


def render(run, fmt: str) -> str:
    """A machine format of a RunReport as text: json, junit, github or markdown."""
    if fmt == "json":
        from .json_report import render_json
        return render_json(run) + "\n"
    if fmt == "junit":
        from .junit import render_junit
        return render_junit(run)
    if fmt == "github":
        from .github import render_github
        return render_github(run)
    if fmt == "markdown":
        from .markdown import render_markdown
        return render_markdown(run)
    raise ValueError(f"unknown format {fmt!r}")
