"""The student's side of sealed grading: a process that holds nothing but the submission, imports it,
and calls its functions at the inputs and upstream gradients the grader sends, answering with plain
numbers. It computes no verdict and knows no secret; everything it answers is checked by the grader.

This file is run as a script (`python -I student_side.py`), copied into the submission's private
folder: it imports only the standard library and numpy, never gradcheck. The grader imports the same
file for the wire format, so both sides speak one.

Wire format: each message is an 8-byte big-endian length, then that many bytes of UTF-8 JSON (no
pickle). An array is `{"shape": [...], "f8": BASE64}` (little-endian float64); other values are JSON's
own (numbers, strings, booleans, null, lists, objects with string keys); a tuple is `{"tuple": [...]}`.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import struct
import sys
import traceback
import types

import numpy as np

HEADER = struct.Struct(">Q")
MAX_DEPTH = 16          # nesting of lists, tuples and objects in one value
MAX_TEXT = 2_000        # characters of any one string
MAX_ITEMS = 10_000      # entries of any one list or object


class WireError(ValueError):
    """A message that breaks the wire format (wrong framing, type, size or nesting)."""


def encode(value, depth: int = 0):
    """A value as JSON-ready data: arrays of numbers, numbers, text, None, and lists, tuples and
    dicts of them. Raises WireError for anything else (an object, a complex array, a function)."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise WireError(f"an array of {value.dtype} (numbers only)")
        data = np.ascontiguousarray(value, dtype="<f8")
        return {"shape": list(value.shape), "f8": base64.b64encode(data.tobytes()).decode("ascii")}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v, depth + 1) for k, v in value.items()}}
    raise WireError(f"a {type(value).__name__}")


def decode(data, max_elements: int, depth: int = 0):
    """The value `encode` wrote, checked as it is rebuilt: types, nesting, sizes (at most
    `max_elements` array elements in any one array). Raises WireError."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    if data is None or isinstance(data, (bool, float)):
        return data
    if isinstance(data, int):
        if abs(data) > 2 ** 62:
            raise WireError("an integer out of range")
        return data
    if isinstance(data, str):
        if len(data) > MAX_TEXT:
            raise WireError("a string too long")
        return data
    if isinstance(data, list):
        return [decode(v, max_elements, depth + 1) for v in _items(data)]
    if isinstance(data, dict) and set(data) == {"shape", "f8"}:
        return _array(data["shape"], data["f8"], max_elements)
    if isinstance(data, dict) and set(data) == {"tuple"} and isinstance(data["tuple"], list):
        return tuple(decode(v, max_elements, depth + 1) for v in _items(data["tuple"]))
    if isinstance(data, dict) and set(data) == {"dict"} and isinstance(data["dict"], dict):
        return {str(k)[:MAX_TEXT]: decode(v, max_elements, depth + 1) for k, v in _items(data["dict"]).items()}
    raise WireError("a value of an unknown kind")


def _items(items):
    if len(items) > MAX_ITEMS:
        raise WireError("a list or an object too long")
    return items


def _array(shape, text, max_elements: int):
    """An array from its shape and base64 text, each checked before anything is allocated."""
    if (not isinstance(shape, list) or len(shape) > 32
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= max_elements for s in shape)):
        raise WireError("an array with a bad shape")
    size = 1
    for s in shape:
        size *= s
    if size > max_elements or not isinstance(text, str) or len(text) != 4 * ((8 * size + 2) // 3):
        raise WireError("an array of the wrong size")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise WireError("an array that is not base64") from None
    if len(raw) != 8 * size:
        raise WireError("an array of the wrong size")
    return np.frombuffer(raw, dtype="<f8").astype(float).reshape(shape)


def frame(message: dict) -> bytes:
    body = json.dumps(message, allow_nan=True, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


# --- the student's side ------------------------------------------------------------------------------

SUBMISSION = "submission.py"  # the copy's name in the private folder: errors are placed by it


def _write(fd: int, message: dict) -> None:
    data = frame(message)
    while data:
        data = data[os.write(fd, data):]


def _read(fd: int) -> dict | None:
    def exactly(n: int) -> bytes | None:
        chunks = b""
        while len(chunks) < n:
            more = os.read(fd, min(n - len(chunks), 1 << 20))
            if not more:
                return None
            chunks += more
        return chunks
    head = exactly(HEADER.size)
    if head is None:
        return None
    body = exactly(HEADER.unpack(head)[0])
    return None if body is None else json.loads(body.decode("utf-8"))


def _failure(exc: BaseException, where: str) -> dict:
    """What the student's code raised, where, as plain text (the grader escapes and shortens it)."""
    line = col = None
    for found in traceback.extract_tb(exc.__traceback__):
        if os.path.basename(found.filename) == SUBMISSION:
            line, col = found.lineno, (getattr(found, "colno", None) or 0) + 1
    if isinstance(exc, SyntaxError) and os.path.basename(exc.filename or "") == SUBMISSION:
        line, col = exc.lineno, exc.offset
    if isinstance(exc, SystemExit):
        text = f"SystemExit (sys.exit({exc.code!r}))"
    else:
        try:
            message = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        except BaseException:  # noqa: BLE001 - an exception whose str() raises
            message = ""
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return {"ok": False, "where": where, "error": text[:MAX_TEXT], "length": len(text),  # (the grader's cut says it)
            "line": line if isinstance(line, int) else None, "col": col if isinstance(col, int) else None}


def _gradients(result, names: list) -> list:
    if isinstance(result, dict):
        result = [result.get(n, result.get("d" + n)) for n in names]
    elif len(names) == 1 and not isinstance(result, (tuple, list)):
        result = [result]
    if not isinstance(result, (tuple, list)):
        raise TypeError(f"the backward must return {len(names)} gradient(s), not a {type(result).__name__}")
    out = []
    for g in list(result)[:MAX_ITEMS]:
        if g is None:
            out.append(None)
            continue
        a = np.asarray(g)
        if a.dtype.kind == "c":
            raise TypeError("the backward returned complex numbers")
        out.append(encode(np.asarray(a, dtype=float)))
    return out


def arguments(params: dict) -> dict:
    """The exercise's params as its functions get them (check-py's --param reading): a JSON list of
    numbers is a numpy array, integers staying integers (labels, indices); anything else as it is."""
    out = {}
    for key, value in params.items():
        if isinstance(value, list):
            try:
                found = np.array(value)
            except ValueError:  # ragged
                found = None
            out[key] = found if found is not None and found.dtype.kind in "biuf" else value
        else:
            out[key] = value
    return out


_PARAMETERS: dict = {}  # (a plain function, its code) -> its parameters' names: inspect.signature is slow


def _parameters(fn):
    if isinstance(fn, types.FunctionType) and not hasattr(fn, "__signature__") and not hasattr(fn, "__wrapped__"):
        key = (fn, fn.__code__)
        found = _PARAMETERS.get(key)
        if found is None:
            found = _PARAMETERS[key] = frozenset(inspect.signature(fn).parameters)
        return found
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def call_with(fn, order: list, values: dict):
    """`fn` called with `values` (inputs and params): by keyword when they are all its parameters'
    names, else by position in `order` (the exercise's forward's order of them)."""
    taken = _parameters(fn)
    if all(name in taken for name in values):
        return fn(**values)
    return fn(*[values[name] for name in order if name in values])


CACHE: list = []  # the cache of the latest forward call, which the next backward call reads


def _call(module, request: dict) -> dict:
    """One call of the student's functions: `forward` (its outputs answered, its cache kept here),
    `backward` (the upstreams, and the kept cache or one the grader sends) or `loss` ((loss, dx))."""
    op, fn, names = request["op"], request["fn"], request["names"]
    if op in ("forward", "loss"):
        values = dict(zip(names, [np.array(decode(a, 1 << 40)) for a in request["inputs"]]))
        values.update(arguments(request.get("params") or {}))
        CACHE.clear()
        try:
            result = call_with(getattr(module, fn), request["order"], values)
            if op == "loss":
                if not isinstance(result, tuple) or len(result) != 2:
                    raise TypeError(f"{fn} must return (loss, gradient)")
                return {"ok": True, "outs": [encode(np.asarray(result[0], dtype=float))],
                        "grads": _gradients(result[1], names)}
            if not isinstance(result, tuple) or len(result) < 2:
                raise TypeError(f"{fn} must return (out, cache), or several outputs and then the cache")
            outs = [encode(np.asarray(o, dtype=float)) for o in result[:-1]]
        except BaseException as exc:  # noqa: BLE001 - anything the student's code does, SystemExit too
            return _failure(exc, "loss" if op == "loss" else "forward")
        CACHE.append(result[-1])
        return {"ok": True, "outs": outs}
    try:
        cache = CACHE.pop() if request["cache"] is None and CACHE else decode(request["cache"], 1 << 40)
        upstream = [decode(u, 1 << 40) for u in request["upstream"]]
    except BaseException as exc:  # noqa: BLE001
        return _failure(exc, "backward")
    try:
        grads = _gradients(getattr(module, fn)(*upstream, cache), names)
    except BaseException as exc:  # noqa: BLE001
        return _failure(exc, "backward")
    return {"ok": True, "grads": grads}


def main() -> int:
    """Serve the grader's requests (standard input) with replies on the descriptor it names."""
    requests, replies, path = 0, int(sys.argv[1]), sys.argv[2]
    module = None
    while True:
        request = _read(requests)
        if request is None:
            return 0
        if request["op"] == "load":
            try:
                import importlib.util
                spec = importlib.util.spec_from_file_location("submission", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                has = {name: callable(getattr(module, name, None)) for name in request["names"]}
                _write(replies, {"ok": True, "has": has})
            except BaseException as exc:  # noqa: BLE001
                _write(replies, _failure(exc, "import"))
        elif request["op"] in ("forward", "backward", "loss"):
            _write(replies, _call(module, request))


if __name__ == "__main__":
    sys.exit(main())
