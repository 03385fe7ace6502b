"""A class's grades for other gradebooks: Gradescope's autograder `results.json`, an LMS-ready CSV
(student, score, out of), the teacher's table kept readable with many parts (totals per pair when
the parts do not fit, each pair's parts on demand), and the report of wrong answers that agree."""

from __future__ import annotations

import csv
import io
import json
import os

GRADESCOPE_NOTE = ("Each part was checked at the exercise's own point and at random points only the teacher "
                   "knows; a gradient must be right at all of them.")
WHY_MIN = 24   # columns the reason keeps before the table drops to totals per pair
STUDENT_MAX = 32  # columns of the student's name, folded past them: a student's long file name cannot squeeze
# the reasons of the class into a word per line


def _pts(x: float) -> str:
    return f"{x:g}"


# --- Gradescope ---------------------------------------------------------------------------------

def gradescope_results(g, exercise) -> str:
    """One submission as Gradescope's autograder reads it (/autograder/results/results.json): a test
    per part with its points and reason, all shown as plain text (no HTML or Markdown rendered)."""
    tests = [{"name": p.what, "name_format": "text", "score": p.earned, "max_score": p.points,
              "status": "passed" if p.status == "right" else "failed", "output": p.reason, "output_format": "text",
              "visibility": "visible"} for p in g.parts]
    results = {"score": g.earned,
               "output": f"{_pts(g.earned)} / {_pts(g.total)} for {os.path.basename(exercise.path)}. {GRADESCOPE_NOTE}",
               "output_format": "text", "test_output_format": "text", "test_name_format": "text",
               "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"


# --- an LMS's CSV -------------------------------------------------------------------------------

def lms_csv(graded: list, exercise) -> str:
    """student,score,out_of: one row per student, for a learning management system's grade import."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "score", "out_of"])
    for g in graded:
        writer.writerow([csv_safe(g.student), _pts(g.earned), _pts(g.total)])
    return out.getvalue()


def csv_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting with =, +, -, @, a tab or a carriage return would be
    taken as a formula (a student's name is a file name the student chose). Every CSV gradcheck writes of
    a class (this one, and `grades.grades_csv`'s) writes the students' text through it."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- the table ----------------------------------------------------------------------------------

def _owners(exercise) -> list:
    return list(dict.fromkeys(p.owner for p in exercise.parts))


def _width(columns: list, rows: list) -> int:
    """Columns a rich table needs with every cell whole: each column's widest cell, its padding and rule."""
    from rich.cells import cell_len  # a wide character takes two columns
    widths = [max(cell_len(line) for line in c.split("\n")) for c in columns]
    for row in rows:
        widths = [max(w, cell_len(cell)) for w, cell in zip(widths, row)]
    return sum(w + 3 for w in widths) + 1


def class_table(graded: list, exercise, console, parts: bool = False) -> None:
    """The teacher's table: every part's points where they fit beside the reason; else each pair's
    total (and with `parts`, one table per pair with its parts)."""
    from rich.table import Table
    from rich.text import Text  # cells as plain text: a student's `[/bold]` is shown, never taken as markup
    owners = _owners(exercise)
    one_owner = len(owners) == 1
    names = [g.student[:STUDENT_MAX] for g in graded]  # as wide as the table shows them
    scores = [_pts(g.earned) for g in graded]
    room = console.width - WHY_MIN

    def headers(ps, short, sep=" "):
        return [f"{p.what.rpartition('.')[2] if short else p.what}{sep}({_pts(p.points)})" for p in ps]

    def fits(heads, cells):
        return _width(["student", "score", *heads], [[n, s, *c] for n, s, c in zip(names, scores, cells)]) <= room

    part_heads = headers(exercise.parts, one_owner)
    part_cells = [[_pts(p.earned) for p in g.parts] for g in graded]
    title = f"{exercise.path}: {len(graded)} submissions, out of {_pts(exercise.total)}"
    if fits(part_heads, part_cells) or one_owner:
        console.print(_table(Table, Text, title, part_heads, graded, part_cells, _first_wrong))
        return
    by_owner = {o: [k for k, p in enumerate(exercise.parts) if p.owner == o] for o in owners}
    if parts:
        for o in owners:
            ps = [exercise.parts[k] for k in by_owner[o]]
            cells = [[_pts(g.parts[k].earned) for k in by_owner[o]] for g in graded]
            total = sum(p.points for p in ps)
            console.print(_table(Table, Text, f"{o}: out of {_pts(total)}", headers(ps, True, "\n"), graded, cells,
                                 lambda g, ks=by_owner[o]: _first_wrong(g, ks, short=True),
                                 earned=lambda g, ks=by_owner[o]: sum(g.parts[k].earned for k in ks)))
        return
    pair_heads = [f"{o}\n({_pts(sum(exercise.parts[k].points for k in ks))})" for o, ks in by_owner.items()]
    pair_cells = [[_pts(sum(g.parts[k].earned for k in ks)) for ks in by_owner.values()] for g in graded]
    caption = f"{len(exercise.parts)} parts in {len(owners)} pairs: --parts shows each part"
    if fits(pair_heads, pair_cells):
        console.print(_table(Table, Text, title, pair_heads, graded, pair_cells, _first_wrong, caption=caption))
        return
    lost = [[" · ".join(f"{o} {_pts(sum(g.parts[k].earned for k in ks))}/{_pts(sum(exercise.parts[k].points for k in ks))}"
                        for o, ks in by_owner.items() if any(g.parts[k].status != "right" for k in ks)) or "none"]
            for g in graded]
    console.print(_table(Table, Text, title, ["pairs not full"], graded, lost, _first_wrong, caption=caption,
                         fold=True))


def _first_wrong(g, indices=None, short: bool = False) -> str:
    ps = g.parts if indices is None else [g.parts[k] for k in indices]
    wrong = next((p for p in ps if p.status != "right"), None)
    if wrong is None:
        return "all right"
    return f"{wrong.what.rpartition('.')[2] if short else wrong.what}: {wrong.reason}"


def _table(Table, Text, title: str, heads: list, graded: list, cells: list, why, caption: str | None = None,
           fold: bool = False, earned=None):
    table = Table(title=title, caption=caption)
    table.add_column("student", max_width=STUDENT_MAX, overflow="fold")
    table.add_column("score", justify="right", no_wrap=True)
    for head in heads:
        table.add_column(head, justify="left" if fold else "right", overflow="fold" if fold else "ellipsis",
                         ratio=1 if fold else None)
    table.add_column("the first wrong part: why", overflow="fold", ratio=1)
    for g, row in zip(graded, cells):
        table.add_row(Text(g.student), _pts(earned(g) if earned else g.earned), *row, Text(why(g)))
    return table


# --- wrong answers that agree -------------------------------------------------------------------

def similarity_dict(groups: list) -> list:
    return [{"students": list(s.students), "parts": list(s.parts), "reasons": list(s.reasons), "values": s.values}
            for s in groups]


def similarity_text(groups: list) -> str:
    """The report for the teacher, as plain lines."""
    if not groups:
        return "similar wrong answers: none (no two students' wrong answers agree)\n"
    lines = [f"similar wrong answers: {len(groups)} group(s), the same wrong values at the same points "
             "and the same diagnosis"]
    for s in groups:
        lines.append(f"- {', '.join(s.students)}: {len(s.parts)} part(s), {s.values} wrong values agree")
        lines += [f"    {what}: {reason}" for what, reason in zip(s.parts, s.reasons)]
    return "\n".join(lines) + "\n"


def similarity_table(groups: list, console) -> None:
    from rich.table import Table
    from rich.text import Text
    if not groups:
        console.print(Text("similar wrong answers: none (no two students' wrong answers agree)"))
        return
    table = Table(title="similar wrong answers: the same wrong values at the same points, the same diagnosis")
    table.add_column("students", overflow="fold")
    table.add_column("values", justify="right", no_wrap=True)
    table.add_column("parts and diagnosis", overflow="fold", ratio=1)
    for s in groups:
        table.add_row(Text(", ".join(s.students)), str(s.values),
                      Text("\n".join(f"{what}: {reason}" for what, reason in zip(s.parts, s.reasons))))
    console.print(table)
