"""SymPy's local Jacobians of gate calls (user gates', matmul's, sum's, ...) and `expect` verdicts kept between runs (`oracles/jacobian_cache.py`): a warm run gives
every array, note and unit of work a run without the cache gives, without SymPy building a gate; a
budget runs out at the same node; an entry damaged, cut short, another call's, another SymPy's or other
sources', or edited, is ignored and made again; the folder stays bounded; the reports are the same bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcheck_cli import check
from gradcheck_cli.checking import expectcheck
from gradcheck_cli.cli import main
from gradcheck_cli.core import meter
from gradcheck_cli.language.frontend import load
from gradcheck_cli.language.graph import Composite
from gradcheck_cli.oracles import autodiff, jacobian_cache, symbolic

ROOT = Path(__file__).resolve().parents[2]
LAYERS = (ROOT / "expressions" / "cs231n_layers.grad").read_text()  # user gates of matmul, max, logsumexp, ...


def _run(text: str, budget: int = symbolic.DEFAULT_BUDGET):
    """SymPy's derivatives of every node of `text` and the work it counted (a fresh parse: no build kept)."""
    symbolic._kept.clear()
    symbolic._kept_cost[0] = 0
    graph = load(text)
    values = autodiff.forward(graph)
    with meter.Meter() as m:
        found = symbolic.derivatives(graph, values, [n.id for n in graph.nodes], budget=budget)
    return found, m.counts


def _same(a, b) -> None:
    (ra, ca), (rb, cb) = a, b
    assert ca == cb  # every unit of SymPy work, counted as without the cache
    assert ra.keys() == rb.keys()
    for k in ra:
        x, y = ra[k], rb[k]
        assert x.note == y.note
        for u, v in ((x.value, y.value), (x.magnitude, y.magnitude)):
            assert (u is None) == (v is None)
            if u is not None:
                assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()


def _entries(folder: Path) -> list:
    return sorted(folder.glob(f"{jacobian_cache.PREFIX}*/*.json"))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADCHECK_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRADCHECK_NO_CACHE", raising=False)
    return tmp_path


def _no_sympy(monkeypatch):
    """A warm run: SymPy builds no gate, neither a user gate nor a registry one (matmul, sum, ...)."""
    def none(node, *args):
        raise AssertionError(f"SymPy built {node.name} ({'user gate' if isinstance(node.gate, Composite) else node.gate.name}) on a warm run")
    monkeypatch.setattr(symbolic, "_sympy_jacobian", none)


@pytest.mark.parametrize("budget", [symbolic.DEFAULT_BUDGET, 400], ids=["whole", "budget-runs-out"])
def test_a_warm_run_is_the_run_without_the_cache(cache, monkeypatch, budget):
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    off = _run(LAYERS, budget)
    assert not _entries(cache)
    monkeypatch.delenv("GRADCHECK_NO_CACHE")
    cold = _run(LAYERS, budget)
    written = _entries(cache)
    assert len(written) >= (3 if budget == symbolic.DEFAULT_BUDGET else 1)  # the user gate calls SymPy made
    if budget == symbolic.DEFAULT_BUDGET:  # (where the budget ran out, SymPy starts that call again: not kept)
        _no_sympy(monkeypatch)
    warm = _run(LAYERS, budget)
    _same(off, cold)
    _same(off, warm)
    if budget == 400:  # the budget runs out where it did: some node has the note, others values
        notes = [r.note for r in off[0].values()]
        assert any(n and "budget" in n for n in notes) and any(r.value is not None for r in off[0].values())


def test_an_entry_is_only_for_its_own_operands(cache, monkeypatch):
    """The same gates at other operand values (the weights scaled) are other entries, not these."""
    other = LAYERS.replace("W1 = 0.5 * randn(5, 6)", "W1 = 0.7 * randn(5, 6)")
    assert other != LAYERS
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    off = _run(other)
    monkeypatch.delenv("GRADCHECK_NO_CACHE")
    _run(LAYERS)
    first = set(_entries(cache))
    _same(off, _run(other))
    assert set(_entries(cache)) > first  # the calls whose operands changed were made and kept anew


def test_the_same_gate_at_other_operands_is_a_foreign_entry(cache, monkeypatch):
    """An entry of the same gate at the same shapes but other operand values, under this call's name
    (a whole, valid entry: its checksum holds, its arrays fit), is not used: its record of its key differs."""
    other = LAYERS.replace("W1 = 0.5 * randn(5, 6)", "W1 = 0.7 * randn(5, 6)")
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    off = _run(LAYERS)
    monkeypatch.delenv("GRADCHECK_NO_CACHE")
    _run(LAYERS)
    mine = {p: json.loads(p.read_text()) for p in _entries(cache)}
    _run(other)
    theirs = [json.loads(p.read_text()) for p in _entries(cache) if p not in mine]
    swapped = 0
    for path, entry in mine.items():
        twin = next((t for t in theirs if t["spent"] == entry["spent"] and t["slots"] != entry["slots"]), None)
        if twin is not None:
            path.write_text(json.dumps(twin))
            swapped += 1
    assert swapped >= 1
    _same(off, _run(LAYERS))
    assert {p: json.loads(p.read_text()) for p in mine} == mine  # made again


def test_complex_values_come_back_exactly(cache):
    store = jacobian_cache.Store(cache, "1.0", "aaa")
    jac = [(np.array([0, 1, 1]), np.array([2, 0, 1]), np.array([1.5 + 1e-30j, -0.0, np.nan])),
           (np.array([], dtype=int), np.array([], dtype=int), np.array([], dtype=float))]
    store.put("c" * 64, [7, 0, 12], jac)
    spent, back = jacobian_cache.Store(cache, "1.0", "aaa").get("c" * 64, 2, [3, 5])
    assert spent == [7, 0, 12]
    for (r, c, v), (r2, c2, v2) in zip(jac, back):
        assert r.dtype == r2.dtype and c.dtype == c2.dtype and v.dtype == v2.dtype
        assert r.tobytes() == r2.tobytes() and c.tobytes() == c2.tobytes() and v.tobytes() == v2.tobytes()
    assert jacobian_cache.Store(cache, "1.0", "aaa").get("c" * 64, 2, [2, 5]) is None  # a column past the operand


def _tamper(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _resign(data: dict) -> None:
    data["check"] = jacobian_cache._checksum(data)


def _flip_value(data: dict) -> None:
    slot = next(s for s in data["slots"] if s["values"])
    raw = bytearray(jacobian_cache.base64.b64decode(slot["values"]))
    raw[3] ^= 0x10
    slot["values"] = jacobian_cache.base64.b64encode(bytes(raw)).decode()


def _row_out_of_range(data: dict) -> None:
    slot = next(s for s in data["slots"] if s["rows"])
    rows = np.frombuffer(jacobian_cache.base64.b64decode(slot["rows"]), dtype="<i8").copy()
    rows[0] = 10 ** 6
    slot["rows"] = jacobian_cache.base64.b64encode(rows.tobytes()).decode()
    _resign(data)


TAMPERED = {
    "a value's bits flipped": _flip_value,
    "the work spent changed": lambda d: d.update(spent=[n + 1 for n in d["spent"]]),
    "another SymPy's": lambda d: (d.update(sympy="0.1"), _resign(d)),
    "other sources'": lambda d: (d.update(sources="0" * 20), _resign(d)),
    "an index outside the output (checksum made again)": _row_out_of_range,
    "a slot missing (checksum made again)": lambda d: (d["slots"].pop(), _resign(d)),
    "a negative work (checksum made again)": lambda d: (d.update(spent=[-1]), _resign(d)),
    "values cut to odd bytes (checksum made again)": lambda d: (
        next(s for s in d["slots"] if s["values"]).update(values="AAAA"), _resign(d)),
    "rows cut to odd bytes (checksum made again)": lambda d: (
        next(s for s in d["slots"] if s["rows"]).update(rows="AAAA", cols="AAAA", values=""), _resign(d)),
    "not base64 (checksum made again)": lambda d: (
        next(s for s in d["slots"] if s["values"]).update(values="!!"), _resign(d)),
}


@pytest.mark.parametrize("how", [*TAMPERED, "cut short", "not JSON", "another call's entry", "empty"])
def test_a_damaged_foreign_or_stale_entry_is_ignored_and_made_again(cache, monkeypatch, how):
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    off = _run(LAYERS)
    monkeypatch.delenv("GRADCHECK_NO_CACHE")
    _run(LAYERS)
    entries = _entries(cache)
    sizes = {p: p.stat().st_size for p in entries}
    largest = max(entries, key=lambda p: p.stat().st_size)
    before = largest.read_bytes()
    if how in TAMPERED:
        _tamper(largest, TAMPERED[how])
    elif how == "cut short":
        largest.write_bytes(before[: len(before) // 2])
    elif how == "not JSON":
        largest.write_bytes(b"\x00\xff garbage")
    elif how == "empty":
        largest.write_bytes(b"")
    else:  # a whole, valid entry of another call under this call's name
        other = next(p for p in entries if p != largest and p.stat().st_size > 200)
        largest.write_bytes(other.read_bytes())
    assert largest.read_bytes() != before
    _same(off, _run(LAYERS))  # every figure as without the cache
    assert largest.read_bytes() == before  # made again by SymPy, and written again whole
    assert {p: p.stat().st_size for p in _entries(cache)} == sizes


def test_an_entry_another_version_wrote_is_not_read_and_old_folders_go(cache):
    graph = load(LAYERS)
    node = next(n for n in graph.nodes if n.gate is not None and not getattr(n.gate, "elementwise", True))
    jac = [(np.array([0]), np.array([0]), np.array([2.5]))] * len(node.inputs)
    old = jacobian_cache.Store(cache, "1.0", "aaa")
    old.put("k" * 64, [3, 4], jac)
    assert old.get("k" * 64, node.size, [1] * len(node.inputs)) is not None
    assert jacobian_cache.Store(cache, "1.1", "aaa").get("k" * 64, node.size, [1] * len(node.inputs)) is None
    assert jacobian_cache.Store(cache, "1.0", "bbb").get("k" * 64, node.size, [1] * len(node.inputs)) is None
    # another environment's folder is kept beside this one (two virtual environments sharing one cache
    # folder do not wipe each other's), up to FOLDERS_KEPT folders: past them the least recently written go
    for n, version in enumerate(("0.7", "0.8", "0.9")):
        jacobian_cache.Store(cache, version, "aaa").put("k" * 64, [3, 4], jac)
        os.utime(cache / f"{jacobian_cache.PREFIX}{version}-aaa", (n, n))  # written long ago, in this order
    new = jacobian_cache.Store(cache, "1.1", "aaa")
    new.put("k" * 64, [3, 4], jac)
    assert sorted(p.name for p in cache.iterdir()) == [f"{jacobian_cache.PREFIX}{v}-aaa" for v in ("0.9", "1.0", "1.1")]


def test_the_folder_is_bounded_and_large_jacobians_are_not_kept(cache, monkeypatch):
    monkeypatch.setattr(jacobian_cache, "MAX_FILES", 8)
    store = jacobian_cache.Store(cache, "1.0", "aaa")
    jac = [(np.arange(3), np.arange(3), np.ones(3))]
    for k in range(30):
        store.put(f"{k:064d}", [1], jac)
        assert len(list(store.path.iterdir())) <= 8 + 8 // 4
    assert store.get(f"{29:064d}", 3, [3]) is not None  # the newest kept
    monkeypatch.setattr(jacobian_cache, "MAX_FILES", 4_000)  # bounded by its bytes alone, however few entries
    monkeypatch.setattr(jacobian_cache, "MAX_BYTES", 2_000)
    store = jacobian_cache.Store(cache, "1.0", "aaa")
    for k in range(30, 60):
        store.put(f"{k:064d}", [1], jac)
        assert sum(p.stat().st_size for p in store.path.iterdir()) <= 2_000 + 2_000 // 4 + 2 * 600
    # an entry of few values and much recorded work (a gate whose derivatives are mostly zero at the point,
    # about 9 kB of it) counts for its whole size
    monkeypatch.setattr(jacobian_cache, "MAX_BYTES", 20_000)
    store = jacobian_cache.Store(cache, "1.0", "aaa")
    for k in range(60, 90):
        store.put(f"{k:064d}", [3] * 3_000, [(np.arange(0), np.arange(0), np.ones(0))])
        assert sum(p.stat().st_size for p in store.path.iterdir()) <= 20_000 + 20_000 // 4 + 2 * 9_200
    monkeypatch.setattr(jacobian_cache, "MAX_BYTES", 2_000)
    monkeypatch.setattr(jacobian_cache, "MAX_VALUES", 2)
    store.put("b" * 64, [1], jac)  # three values: not kept
    assert not (store.path / f"{'b' * 64}.json").exists()
    store.put("c" * 64, [1, 1, 1], jac[:0])  # three units of work recorded: not kept
    assert not (store.path / f"{'c' * 64}.json").exists()
    assert not [p for p in store.path.iterdir() if p.name.startswith(".")]  # no half-written file left


def test_the_reports_are_the_same_bytes_off_cold_and_warm(cache, monkeypatch):
    """What a user sees: `check` on files with user gates, JSON and table, with the cache off, empty and warm."""
    files = [str(ROOT / "examples" / "mistakes" / "cs231n_layers_db.grad")]  # three user gates, db wrong
    env = {"COLUMNS": "140", "NO_COLOR": "1"}

    def run(no_cache: bool) -> tuple:
        symbolic._kept.clear()
        symbolic._kept_cost[0] = 0
        outs = []
        for extra in (["--format", "json"], []):
            result = CliRunner().invoke(main, ["check", *files, *extra], env={**env, "GRADCHECK_NO_CACHE": "1" if no_cache else "0"})
            assert result.exit_code in (0, 1) and result.exception is None or isinstance(result.exception, SystemExit), result.output
            outs.append(result.output)
        return tuple(outs)

    off = run(True)
    assert not _entries(cache)
    cold = run(False)
    assert _entries(cache)
    _no_sympy(monkeypatch)
    warm = run(False)
    assert off == cold == warm
    assert "fail" in off[1]  # the wrong db is caught: a report with a verdict, not an empty one


EXPECTS = "x = -2; y = 5; z = -4\nq = x + y\nf = q * z\nexpect dx = z\nexpect dq = z*z/4 - 8\n"
# dx = z everywhere; dq is z, and z*z/4 - 8 equals it at z = -4 only: SymPy's verdicts (test_user_gates' own)
VERDICTS = [("dx", "pass", "symbolically equal"), ("dq", "fail", "equal at this point only: dq = z")]


def _verdicts(text: str) -> list:
    return [(e.target, e.status, e.note) for e in check(text).expects]


def _answers(folder: Path) -> list:
    return [p for p in _entries(folder) if "answer" in json.loads(p.read_text())]


def test_expect_verdicts_are_kept_and_answer_their_own_question(cache, monkeypatch):
    """A warm run judges `expect` lines without SymPy and as before; a formula, a leaf's name (the derivative's
    text reads it) or the budget changed is another question, answered by SymPy anew."""
    assert _verdicts(EXPECTS) == VERDICTS
    assert len(_answers(cache)) == 2
    fresh = expectcheck._fresh_verdict
    monkeypatch.setattr(expectcheck, "_fresh_verdict", lambda *a: pytest.fail("SymPy judged a kept expectation"))
    assert _verdicts(EXPECTS) == VERDICTS
    monkeypatch.setattr(expectcheck, "_fresh_verdict", fresh)
    swapped = EXPECTS.replace("expect dx = z\n", "expect dx = z*z/4 - 8\n").replace("expect dq = z*z/4 - 8", "expect dq = z")
    assert _verdicts(swapped) == [("dx", "fail", "equal at this point only: dx = z"), ("dq", "pass", "symbolically equal")]
    renamed = EXPECTS.replace("z", "w")
    assert _verdicts(renamed) == [("dx", "pass", "symbolically equal"), ("dq", "fail", "equal at this point only: dq = w")]
    assert len(_answers(cache)) == 6
    graph = load(EXPECTS)
    assert [expectcheck.symbolic_verdict(e, graph, 3) for e in graph.expects] == [None, None]  # past 3 units of work
    assert len(_answers(cache)) == 6  # a budget decided those, not the question: not kept


# Right at this point only (dx = 2xy = 12 = 4y at x = 2): SymPy fails it, unless a budget runs out first
AT_THE_POINT = "x = 2; y = 3\nf = x * x * y\nexpect dx = 4 * y\n"
SPENT_BEFORE = "x = 2; y = 3\nf = x * x * y\nexpect dy = x * x\nexpect dy = x * x\nexpect dx = 4 * y\n"


def _judged(text: str, budget: int | None) -> list:
    return [(e.target, e.status, e.note) for e in check(text, **({} if budget is None else {"symbolic_budget": budget})).expects]


AT, SPENT = AT_THE_POINT, SPENT_BEFORE


@pytest.mark.parametrize("first, then", [((AT, 5), (AT, None)), ((AT, None), (AT, 5)), ((SPENT, 20), (AT, 20)),
                                         ((AT, 20), (SPENT, 20))],
                         ids=["small-then-default", "default-then-small", "spent-before-then-alone", "alone-then-spent-before"])
def test_a_warm_verdict_runs_out_of_budget_where_sympy_would(cache, monkeypatch, first, then):
    """A verdict kept from one run is the verdict another run gets cold, whatever budget each had: a budget
    too small for SymPy (its own, or what the lines before left of the file's) is still too small warm (the
    work the verdict spent is spent again from it), and a verdict a budget cut short is never kept to pass
    a formula right at the point only, later, under a budget that decides it."""
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    cold = _judged(*then)
    monkeypatch.delenv("GRADCHECK_NO_CACHE")
    _judged(*first)
    assert _judged(*then) == cold
    decided = {(AT, None): "fail", (AT, 5): "pass", (AT, 20): "fail", (SPENT, 20): "pass"}  # dx's line, cold
    assert cold[-1][1] == decided[then] and (cold[-1][1] == "fail") != ("too large" in cold[-1][2])


WRONG_VERDICTS = {"edited": lambda a: a.update(verdict=[True, "dq = 0"]),
                  "not a verdict (signed again)": lambda a: a.update(verdict=["yes", 1]),
                  "three parts (signed again)": lambda a: a.update(verdict=[True, "dq = 0", 1]),
                  "other fields (signed again)": lambda a: a.update(more=1),
                  "no work (signed again)": lambda a: a.pop("spent"),
                  "negative work (signed again)": lambda a: a.update(spent=[-1]),
                  "work not counts (signed again)": lambda a: a.update(spent=["1"])}


@pytest.mark.parametrize("how", [*WRONG_VERDICTS, "another expectation's", "cut short", "longer than an entry is"])
def test_a_damaged_or_foreign_verdict_is_ignored_and_made_again(cache, how):
    assert _verdicts(EXPECTS) == VERDICTS
    first, second = sorted(_answers(cache), key=lambda p: json.loads(p.read_text())["answer"]["verdict"][0])  # dq's, dx's
    before = first.read_bytes()
    data = json.loads(before)
    if how == "another expectation's":
        first.write_bytes(second.read_bytes())
    elif how == "cut short":
        first.write_bytes(before[: len(before) // 2])
    elif how == "longer than an entry is":  # the same entry, whole and signed, padded: not read past the bound
        first.write_bytes(before + b" " * jacobian_cache.MAX_READ_BYTES)
    else:
        WRONG_VERDICTS[how](data["answer"])
        if how != "edited":
            _resign(data)
        first.write_text(json.dumps(data))
    assert first.read_bytes() != before
    assert _verdicts(EXPECTS) == VERDICTS
    assert first.read_bytes() == before  # judged by SymPy again, and written again whole


RULE_AND_SLICES = """\
x = randn(20, 30)
W = randn(30, 40)
S = x @ W
L = mean(logsumexp(S, axis=1))
"""  # x @ W: 24,000 SymPy products, past RULE_PAST: its index rule; S's 800 elements: one slice's partials


def _run_rules(text: str) -> tuple:
    """`_run`, this process's confirmations and slices forgotten (a new process), and the rules the Jacobians came by."""
    symbolic._confirmed.clear()
    symbolic._one_slices.clear()
    symbolic._kept.clear()
    symbolic._kept_cost[0] = 0
    graph = load(text)
    values = autodiff.forward(graph)
    rules: dict = {}
    with meter.Meter() as m:
        found = symbolic.derivatives(graph, values, [n.id for n in graph.nodes], rules=rules)
    return (found, m.counts), rules


def test_index_rule_and_slice_confirmations_are_kept(cache, monkeypatch):
    monkeypatch.setenv("GRADCHECK_NO_CACHE", "1")
    off, off_rules = _run_rules(RULE_AND_SLICES)
    assert any("by the index rule" in how for how in off_rules.values())
    assert any("one 1×40 slice" in how for how in off_rules.values())
    monkeypatch.delenv("GRADCHECK_NO_CACHE")
    cold, cold_rules = _run_rules(RULE_AND_SLICES)
    assert len(_answers(cache)) == 2  # the rule's confirmation and the slice's
    monkeypatch.setattr(symbolic, "_rule_is_sympys", lambda *a: pytest.fail("SymPy confirmed a kept rule"))
    monkeypatch.setattr(symbolic, "_slice_partials", lambda *a: pytest.fail("SymPy differentiated a kept slice"))
    warm, warm_rules = _run_rules(RULE_AND_SLICES)
    _same(off, cold)
    _same(off, warm)
    assert off_rules == cold_rules == warm_rules


SLICE_DAMAGE = {
    "a symbol past the slice": lambda a: a["partials"][0][2].__setitem__(slice(None), ["s", 10 ** 6]),
    "not a tree": lambda a: a["partials"][0].__setitem__(2, ["exec", "print(1)"]),
    "a column past the slice": lambda a: a["partials"][0].__setitem__(1, 10 ** 6),
    "an output past the slice": lambda a: a["partials"][0].__setitem__(0, -1),
    "not confirmed": lambda a: a.__setitem__("same", "yes"),
    "other fields": lambda a: a.__setitem__("more", 1),
}


@pytest.fixture(scope="module")
def rule_runs(tmp_path_factory):
    """The run without the cache, and a cache folder a cold run filled: made once, copied by each case."""
    folder = tmp_path_factory.mktemp("rule-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADCHECK_CACHE_DIR", str(folder))
        patch.setenv("GRADCHECK_NO_CACHE", "1")
        off = _run_rules(RULE_AND_SLICES)
        patch.delenv("GRADCHECK_NO_CACHE")
        _run_rules(RULE_AND_SLICES)
    return off, folder


@pytest.mark.parametrize("how", [*SLICE_DAMAGE, "edited, not signed again"])
def test_a_damaged_slice_or_rule_answer_is_made_again(cache, rule_runs, how):
    import shutil
    (off, off_rules), folder = rule_runs
    shutil.copytree(folder, cache, dirs_exist_ok=True)
    slices = [p for p in _answers(cache) if "partials" in json.loads(p.read_text())["answer"]]
    (rule,) = [p for p in _answers(cache) if p not in slices]
    before = {p: p.read_bytes() for p in [*slices, rule]}
    for path in slices:
        data = json.loads(path.read_text())
        if how in SLICE_DAMAGE:
            SLICE_DAMAGE[how](data["answer"])
            _resign(data)
        else:
            data["answer"]["partials"][0][2] = ["n", 0.5]
        path.write_text(json.dumps(data))
    data = json.loads(rule.read_text())
    data["answer"] = {"same": 0} if how in SLICE_DAMAGE else {"same": False}  # (not a bool; edited)
    if how in SLICE_DAMAGE:
        _resign(data)
    rule.write_text(json.dumps(data))
    assert all(p.read_bytes() != b for p, b in before.items())
    again, rules = _run_rules(RULE_AND_SLICES)
    _same(off, again)
    assert rules == off_rules
    assert all(p.read_bytes() == b for p, b in before.items())  # made again by SymPy, written again whole


def test_an_answer_past_its_bound_is_not_kept(cache, monkeypatch):
    store = jacobian_cache.Store(cache, "1.0", "aaa")
    store.put_answer("a" * 64, {"verdict": None})
    assert jacobian_cache.Store(cache, "1.0", "aaa").get_answer("a" * 64) == {"verdict": None}
    monkeypatch.setattr(jacobian_cache, "MAX_ANSWER_BYTES", 400)
    store.put_answer("b" * 64, {"verdict": [True, "x" * 400]})
    assert store.get_answer("b" * 64) is None and not (store.path / f"{'b' * 64}.json").exists()
    assert jacobian_cache.Store(cache, "1.0", "bbb").get_answer("a" * 64) is None  # other sources': not read
