"""`--layouts` / `layouts=` read without torch (python/layouts.py): names, all, none, and a clear
error for a name that is not one."""

from __future__ import annotations

import pytest

from gradcheck_cli.core.errors import UsageError
from gradcheck_cli.python.layouts import ALL, Layout, flag, parse


def test_all_is_the_default_and_none_is_nothing():
    assert parse(None) == ALL and parse("all") == ALL and parse("ALL") == ALL
    assert parse("none") == ()


def test_names_are_read_in_order_once():
    assert parse("transposed, expanded,transposed") == (Layout.TRANSPOSED, Layout.EXPANDED)
    assert parse(("offset", Layout.CHANNELS_LAST)) == (Layout.OFFSET, Layout.CHANNELS_LAST)


def test_an_unknown_name_is_a_usage_error_that_suggests_the_near_one():
    with pytest.raises(UsageError, match="unknown layout 'transpose'.*did you mean 'transposed'"):
        parse("transpose")
    with pytest.raises(UsageError):
        parse(",")


def test_the_flag_reruns_the_same_choice():
    for text in ("none", "contiguous", "expanded,offset", "all"):
        assert parse(flag(parse(text)) or "all") == parse(text)
    assert flag(ALL) is None
