"""`check(text, at={...})` from Python: a value that is not a rectangular array of real numbers is an
error naming the argument, in the report (as every input error is), never a raw numpy exception."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_cli import check

TEXT = "x = [1.0, 2.0]\nf = sum(x * x)\n"


@pytest.mark.parametrize("value, phrase", [
    ([[1, 2], [3]], "rectangular array of numbers"),
    (object(), "rectangular array of numbers"),
    ([1, None], "rectangular array of numbers"),
    ({"a": 1}, "not a dict"),
    (np.array([1j, 2]), "not complex"),
    (np.zeros([1] * 9), "at most 8"),
])
def test_a_bad_at_value_is_an_error_naming_the_argument(value, phrase):
    report = check(TEXT, at={"x": value})
    assert report.error is not None and "at={'x': ...}" in report.error.message and phrase in report.error.message


def test_good_at_values_are_taken():
    report = check(TEXT, at={"x": [3, 4]})
    assert report.error is None and list(report.nodes[0].value) == [3.0, 4.0]
