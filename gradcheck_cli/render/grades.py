"""A class's grades: a table for the teacher, CSV and JSON for the gradebook, and one feedback page
per student (Markdown or HTML) with each part's points and the reason a learner can act on."""

from __future__ import annotations

import csv
import io
import json
from html import escape

from .common import md_text
from .gradebooks import class_table


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
        writer.writerow([g.student, _pts(g.earned), _pts(g.total)] + [_pts(p.earned) for p in g.parts] + [reasons])
    return out.getvalue()


def grades_json(graded: list, exercise) -> str:
    return json.dumps({"exercise": exercise.path, "out_of": exercise.total,
                       "parts": [{"part": p.what, "points": p.points} for p in exercise.parts],
                       "submissions": [g.to_dict() for g in graded]}, indent=2) + "\n"


def feedback_markdown(g, exercise) -> str:
    lines = [f"# Feedback: {md_text(g.student)}", "", f"**{_pts(g.earned)} / {_pts(g.total)}** for `{exercise.path}`",
             "", "| part | points | |", "|---|---|---|"]
    for p in g.parts:
        mark = "✅" if p.status == "right" else "❌"
        lines.append(f"| `{p.what}` | {_pts(p.earned)} / {_pts(p.points)} | {mark} {md_text(p.reason)} |")
    lines += ["", "Each part was checked at the exercise's own point and at random points only the teacher "
              "knows; a gradient must be right at all of them."]
    return "\n".join(lines) + "\n"


def feedback_html(g, exercise) -> str:
    from .html import page
    rows = "".join(f"<tr><td><code>{escape(p.what)}</code></td><td class=\"num\">{_pts(p.earned)} / {_pts(p.points)}</td>"
                   f"<td><span class=\"{'pass' if p.status == 'right' else 'fail'}\">"
                   f"{'right' if p.status == 'right' else 'wrong'}</span> {escape(p.reason)}</td></tr>" for p in g.parts)
    body = (f"<h1>Feedback: {escape(g.student)}</h1><p><b>{_pts(g.earned)} / {_pts(g.total)}</b> for "
            f"<code>{escape(exercise.path)}</code></p><table><tr><th>part</th><th>points</th><th>why</th></tr>{rows}</table>"
            "<p class=\"muted\">Each part was checked at the exercise's own point and at random points only the "
            "teacher knows; a gradient must be right at all of them.</p>")
    return page(f"Feedback: {g.student}", body)
