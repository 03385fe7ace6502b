"""A class's grades: a table for the teacher, CSV and JSON for the gradebook, and one feedback page
per student (Markdown or HTML) with each part's points and the reason a learner can act on."""

from __future__ import annotations

import csv
import io
import json
import os
from html import escape

from .common import md_code, md_text
from .gradebooks import class_table, csv_safe


def _pts(x: float) -> str:
    return f"{x:g}"


def grades_table(graded: list, exercise, console, parts: bool = False) -> None:
    """The teacher's table (gradebooks.class_table: totals per pair when the parts do not fit)."""
    class_table(graded, exercise, console, parts)


def grades_csv(graded: list, exercise) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "score", "out_of"] + [p.what for p in exercise.parts] + ["reasons"])
    for g in graded:
        reasons = "; ".join(f"{p.what}: {p.reason}" for p in g.parts if p.status != "right")
        writer.writerow([csv_safe(g.student), _pts(g.earned), _pts(g.total)] + [_pts(p.earned) for p in g.parts]
                        + [csv_safe(reasons)])
    return out.getvalue()


def grades_json(graded: list, exercise) -> str:
    return json.dumps({"exercise": shown_path(exercise.path), "out_of": exercise.total,
                       "parts": [{"part": p.what, "points": p.points} for p in exercise.parts],
                       "submissions": [g.to_dict() for g in graded]}, indent=2) + "\n"


def shown_path(path: str) -> str:
    """A path as the gradebook shows it: relative to the working folder when it is inside it, else its
    file's name (never the teacher's absolute path)."""
    rel = os.path.relpath(os.path.abspath(path))
    return rel if not rel.startswith("..") and not os.path.isabs(rel) else os.path.basename(path)


def _first(exercise) -> str:
    return "your own point" if getattr(exercise, "variants", False) else "the exercise's own point"


def _variant(g) -> str:
    return ", ".join(f"{k}={v}" for k, v in g.variant.items())


def feedback_markdown(g, exercise, files=()) -> str:
    lines = [f"# Feedback: {md_text(g.student)}", "",
             f"**{_pts(g.earned)} / {_pts(g.total)}** for `{md_text(os.path.basename(exercise.path))}`",
             "", "| part | points | |", "|---|---|---|"]
    for p in g.parts:
        mark = "✅" if p.status == "right" else "❌"
        lines.append(f"| `{p.what}` | {_pts(p.earned)} / {_pts(p.points)} | {mark} {md_text(p.reason)} |")
    if g.variant:
        lines += ["", f"Your variant: {md_text(_variant(g))}."]
    if files:
        lines += ["", "## Your values", ""]
        for f in files:
            what = (f"`{f.what}` is wrong at point {f.point}" if "." in f.what else f"your own point of `{f.what}`")
            run = f": {md_code(f.command)}" if f.command else " (write its forward too, and `gradcheck check-py` checks it there)"
            lines.append(f"- {what}: [{md_text(f.file)}]({f.file}){run}")
    lines += ["", f"Each part was checked at {_first(exercise)} and at random points only the teacher "
              "knows; a gradient must be right at all of them."]
    return "\n".join(lines) + "\n"


def feedback_html(g, exercise, files=()) -> str:
    from .html import page
    rows = "".join(f"<tr><td><code>{escape(p.what)}</code></td><td class=\"num\">{_pts(p.earned)} / {_pts(p.points)}</td>"
                   f"<td><span class=\"{'pass' if p.status == 'right' else 'fail'}\">"
                   f"{'right' if p.status == 'right' else 'wrong'}</span> {escape(p.reason)}</td></tr>" for p in g.parts)
    extra = f"<p>Your variant: {escape(_variant(g))}.</p>" if g.variant else ""
    if files:
        items = "".join(
            f"<li>{f'<code>{escape(f.what)}</code> is wrong at point {f.point}' if '.' in f.what else f'your own point of <code>{escape(f.what)}</code>'}: "
            f"<a href=\"{escape(f.file)}\">{escape(f.file)}</a>"
            + (f": <code>{escape(f.command)}</code>" if f.command else " (write its forward too, and "
               "<code>gradcheck check-py</code> checks it there)") + "</li>" for f in files)
        extra += f"<h2>Your values</h2><ul>{items}</ul>"
    body = (f"<h1>Feedback: {escape(g.student)}</h1><p><b>{_pts(g.earned)} / {_pts(g.total)}</b> for "
            f"<code>{escape(os.path.basename(exercise.path))}</code></p><table><tr><th>part</th><th>points</th><th>why</th></tr>"
            f"{rows}</table>{extra}"
            f"<p class=\"muted\">Each part was checked at {_first(exercise)} and at random points only the "
            "teacher knows; a gradient must be right at all of them.</p>")
    return page(f"Feedback: {g.student}", body)
