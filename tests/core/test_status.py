"""A row's status is one enum everywhere, and reads as its word in every face."""

from __future__ import annotations

import json

import pytest

from gradcheck_cli.core.status import Status


def test_the_element_codes_and_the_words_are_one_table():
    assert [Status.of_code(c) for c in range(4)] == [Status.PASS, Status.KINK, Status.WARN, Status.FAIL]
    assert [s.code for s in (Status.PASS, Status.KINK, Status.WARN, Status.FAIL)] == [0, 1, 2, 3]
    with pytest.raises(KeyError):
        Status.of_code(4)


def test_a_status_reads_as_its_word_in_json_text_and_lookups():
    assert json.dumps({"status": Status.FAIL}) == '{"status": "fail"}'
    assert f"{Status.KINK}|{Status.PASS:>6}" == "kink|  pass" and str(Status.WARN) == "warn"
    assert Status.PASS == "pass" and {"pass": 1}[Status.PASS] == 1 and {Status.SKIP: 2}["skip"] == 2
    assert Status("fail") is Status.FAIL


def test_a_report_row_given_a_word_holds_the_enum():
    from gradcheck_cli import check
    report = check("x = 2\nconst c = 3\nf = x * c")
    assert all(isinstance(r.status, Status) for r in report.nodes + report.gates)
    assert {r.name: r.status for r in report.nodes} == {"x": Status.PASS, "c": Status.SKIP, "f": Status.PASS}
    assert report.to_dict()["nodes"][1]["status"] == "skip"
