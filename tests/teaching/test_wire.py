"""The wire between the grader and a submission's process: what encode writes, decode rebuilds, and
decode refuses anything else before allocating it (a bad shape, a size that does not match, text that
is not base64, nesting past the limit, a kind it does not know)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from gradcheck_cli.teaching.student_side import MAX_DEPTH, WireError, decode, encode, frame


def test_values_cross_the_wire_as_they_were():
    value = (np.arange(6.0).reshape(2, 3), [1, 2.5, None, True, "text"], {"mode": "train", "p": np.float32(0.5)},
             np.array(3))
    back = decode(json.loads(json.dumps(encode(value))), 100)
    assert isinstance(back, tuple) and np.array_equal(back[0], value[0]) and back[0].dtype == float
    assert back[1] == [1, 2.5, None, True, "text"] and back[2] == {"mode": "train", "p": 0.5}
    assert back[3].shape == () and float(back[3]) == 3.0


@pytest.mark.parametrize("value", [np.array([1 + 2j]), object(), {1: 2}, lambda: 0, np.array(["a"])])
def test_what_is_not_numbers_is_not_sent(value):
    with pytest.raises(WireError):
        encode(value)


def _array(shape, data: bytes) -> dict:
    return {"shape": shape, "f8": base64.b64encode(data).decode()}


@pytest.mark.parametrize("data, why", [
    (_array([10 ** 9], b""), "bad shape"),                   # a shape far past what was asked: refused unread
    (_array([50, 50], b""), "wrong size"),
    (_array([2], b"\0" * 8), "wrong size"),                  # the bytes do not fill the shape
    (_array([-1], b""), "bad shape"),
    (_array([True], b"\0" * 8), "bad shape"),
    ({"shape": [1], "f8": "!!!!!!!!!!!!"}, "base64"),
    ({"shape": [1], "f8": 5}, "wrong size"),
    ({"what": 1}, "unknown kind"),
    (2 ** 70, "out of range"),
    ("x" * 5000, "too long"),
    ([0] * 20_000, "too long"),
])
def test_decode_refuses_what_breaks_the_format(data, why):
    with pytest.raises(WireError, match=why):
        decode(data, 100)


def test_nesting_past_the_limit_is_refused_not_recursed():
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(WireError, match="nested"):
        decode(deep, 100)


def test_a_frame_is_its_length_then_json():
    data = frame({"ok": True})
    assert int.from_bytes(data[:8], "big") == len(data) - 8 and json.loads(data[8:]) == {"ok": True}


def test_the_sandbox_mounts_its_tmp_before_pythons_folders(monkeypatch, tmp_path):
    """A CI's virtual environment may live under /tmp: the sandbox's private /tmp is mounted first,
    so binding Python's folders afterwards keeps them visible (mounted after, it hid them: every
    submission's process died at start)."""
    from gradcheck_cli.teaching import sandbox
    monkeypatch.setattr(sandbox, "_python_folders", lambda: ["/usr", "/tmp/ci/.venv"])
    command = sandbox.Submission._sandboxed(object(), "bwrap", str(tmp_path), 5)
    tmp = next(k for k in range(1, len(command)) if command[k - 1:k + 1] == ["--tmpfs", "/tmp"])
    venv = next(k for k in range(1, len(command)) if command[k - 1:k + 1] == ["--ro-bind", "/tmp/ci/.venv"])
    assert tmp < venv
