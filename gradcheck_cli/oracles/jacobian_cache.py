"""SymPy's local Jacobians of gate calls at their points (user gates' and the registry's gates but the
elementwise ones, whose partials `partials_cache` keeps), kept between runs, so that a second process
checking the same files (a CI job on every commit, a rerun) need not import SymPy, nor build a gate in
SymPy again to differentiate it at the same operands. Other answers SymPy gives are kept the same way
(`get_answer`): `expect` lines' verdicts (keyed by the whole graph, the formula and the budget), whether
an index rule is SymPy's at reduced shapes, and one slice's partials as `symvalues.tree_of` trees (keyed
by the gate, its attributes and the shapes).

An entry is one call's local Jacobian as `symbolic.local_jacobian` returned it (per operand: rows,
columns and values, the arrays' bytes in base64, exact) and the work it spent, in the order it spent
it (replayed into the check's budget, so that a budget runs out where it would have). It is keyed by
what the Jacobian is made from: a registry gate by its name (only the registry's own), a user gate by
its body node by node (`symbolic._structure`; the registry gates it calls by name), its attributes, its operands' shapes and their
values' bytes. One file per entry, named by a hash of that key, in a folder named by SymPy's version
and a hash of the sources that make the Jacobians, Python's version, numpy's, the machine's and its C
library's (a few such folders kept side by side, for environments that share the cache folder); an entry
is used only when its own record of the key, the version and the sources matches, its checksum holds
and its arrays fit the call: anything
else is as no entry (SymPy then differentiates, and the entry is written again). Plain JSON data,
never a pickle and never text read back by SymPy; written whole and atomically (`core/cache.py`),
so that processes sharing the folder see an entry whole or not at all. At most MAX_FILES entries are
kept, and MAX_BYTES (the least recently written going first), and no call's Jacobian past MAX_VALUES
entries or units of work.
Off with the rest of the cache (GRADCHECK_NO_CACHE=1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np

from ..core.cache import directory, private, read_json, write_json
from ..gates import REGISTRY
from . import partials_cache
from .symvalues import valid_spent

SOURCES = (*partials_cache.SOURCES, "oracles/jacobian_cache.py", "language/graph.py", "core/cache.py",
           "checking/expectcheck.py", "language/expects.py")  # and the `expect` verdicts kept (`get_answer`)
MAX_FILES = 4_000           # entries kept in the folder, and at most MAX_BYTES of them: past either, the
MAX_BYTES = 64 * 1024 ** 2  # oldest written go, down to three quarters of both
MAX_VALUES = 10_000         # nonzero entries of one call's Jacobian kept (about 0.3 MB), and units of work
# recorded; larger ones are not
MAX_ANSWER_BYTES = 1024 ** 2  # another answer (`put_answer`) past this is not kept (a slice of thousands of partials)
MAX_READ_BYTES = 2 * MAX_ANSWER_BYTES  # a file past this is no entry, not read whole (a Jacobian kept is < 1 MB)
FOLDERS_KEPT = 3            # folders of versions and sources kept side by side (this one among them)
PREFIX = "jacobians-sympy"
REGISTRY_AS_IMPORTED = dict(REGISTRY)  # the registry's own gates, whose sources name the folder: a gate put in
# the registry later (a test's changed copy) is no key


def key_of(structure, args: list) -> str | None:
    """The key of a call's Jacobian: a hash of its gate's structure, attributes and operand shapes
    (`symbolic._built_key`) and its operands' values; None where some part is not plain data."""
    text = _canonical(structure)
    if text is None:
        return None
    digest = hashlib.sha256(text.encode())
    for a in args:
        a = np.asarray(a)
        if a.dtype.hasobject:
            return None
        digest.update(f"|{a.dtype.str}{a.shape}|".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def _canonical(x) -> str | None:
    """The key's parts as text equal only for equal parts, the same in every process: a registry gate by
    its name (only the registry's own, as imported: a hash of the gates' sources names the folder)."""
    gate = getattr(x, "gate", None)
    if gate is not None and not isinstance(x, tuple):
        name = getattr(gate, "name", None)
        return f"gate:{name}" if isinstance(name, str) and REGISTRY_AS_IMPORTED.get(name) is gate else None
    if isinstance(x, tuple):
        parts = [_canonical(v) for v in x]
        return None if any(p is None for p in parts) else "(" + ",".join(p for p in parts if p is not None) + ")"
    if x is None or isinstance(x, (bool, int, str, bytes)):
        return repr(x)
    return None


class Store:
    """The Jacobians of one SymPy version and one set of sources, one file per entry."""

    def __init__(self, folder: Path | None, version: str | None, sources: str):
        self.version, self.sources = version, sources
        self.parent = folder
        self.path = None if folder is None or version is None else folder / f"{PREFIX}{version}-{sources}"
        if self.path is not None and self.path.is_symlink():  # a link out of the cache folder: never followed
            self.path = None
        self.written = 0  # entries this process wrote, and about how many bytes since the folder was last
        self.bytes = 0    # bounded: it is bounded again every MAX_FILES // 4 entries or MAX_BYTES // 4 bytes

    def get(self, key: str, out_size: int, sizes: list) -> tuple[list, list] | None:
        """The work spent and the local Jacobian (per operand: rows, cols, values) of the call keyed
        `key`, whose output has `out_size` elements and operands `sizes`; None where there is no
        entry or it does not hold (damaged, cut short, another key's, version's or sources')."""
        if self.path is None:
            return None
        data = read_json(self.path / f"{key}.json", max_bytes=MAX_READ_BYTES)
        if not isinstance(data, dict) or set(data) != {"key", "sympy", "sources", "spent", "slots", "check"}:
            return None
        if data["key"] != key or data["sympy"] != self.version or data["sources"] != self.sources:
            return None
        if data["check"] != _checksum(data):
            return None
        spent, slots = data["spent"], data["slots"]
        if not valid_spent(spent):
            return None
        if not isinstance(slots, list) or len(slots) != len(sizes):
            return None
        jac = []
        for slot, size in zip(slots, sizes):
            found = _arrays(slot, out_size, size)
            if found is None:
                return None
            jac.append(found)
        return spent, jac

    def get_answer(self, key: str) -> dict | None:
        """Another answer SymPy gave (an `expect` line's verdict, a rule's confirmation, a slice's partials:
        plain JSON data, a dict) keyed `key`;
        None where there is none or it does not hold (damaged, another key's, version's or sources').
        The caller checks the answer's fields."""
        if self.path is None:
            return None
        data = read_json(self.path / f"{key}.json", max_bytes=MAX_READ_BYTES)
        if not isinstance(data, dict) or set(data) != {"key", "sympy", "sources", "answer", "check"}:
            return None
        if data["key"] != key or data["sympy"] != self.version or data["sources"] != self.sources:
            return None
        if data["check"] != _checksum(data) or not isinstance(data["answer"], dict) or not _printable(data["answer"]):
            return None
        return data["answer"]

    def put_answer(self, key: str, answer: dict) -> None:
        """Keeps an answer `get_answer` gives back (plain JSON data), as `put` keeps a Jacobian; not one
        past MAX_ANSWER_BYTES."""
        if self.path is None:
            return
        data = {"key": key, "sympy": self.version, "sources": self.sources, "answer": answer}
        data["check"] = _checksum(data)
        if len(json.dumps(data)) <= MAX_ANSWER_BYTES:
            self._count(data)
            write_json(self.path / f"{key}.json", data)

    def _count(self, data: dict) -> None:
        """Bounds the folder every MAX_FILES // 4 entries or MAX_BYTES // 4 bytes this process writes."""
        if self.written % (MAX_FILES // 4) == 0 or self.bytes >= MAX_BYTES // 4:
            self._prune()
            self.bytes = 0
        self.written += 1
        self.bytes += len(json.dumps(data))  # what the file holds

    def put(self, key: str, spent: list, jac: list) -> None:
        """Keeps one call's Jacobian and the work it spent (not one past MAX_VALUES entries)."""
        if self.path is None or sum(len(v) for _, _, v in jac) > MAX_VALUES or len(spent) > MAX_VALUES:
            return
        slots = []
        for rows, cols, values in jac:
            kind = "complex" if np.iscomplexobj(values) else "float"
            slots.append({"rows": _b64(np.asarray(rows, dtype="<i8")), "cols": _b64(np.asarray(cols, dtype="<i8")),
                          "values": _b64(np.asarray(values, dtype="<c16" if kind == "complex" else "<f8")),
                          "dtype": kind})
        data = {"key": key, "sympy": self.version, "sources": self.sources, "spent": [int(n) for n in spent],
                "slots": slots}
        data["check"] = _checksum(data)
        self._count(data)  # its work list with its arrays
        write_json(self.path / f"{key}.json", data)

    def _prune(self) -> None:
        """Bounds the cache: other versions' and sources' folders past FOLDERS_KEPT go, the least
        recently written first, and past MAX_FILES entries or MAX_BYTES the oldest written; quietly nothing
        where the folder cannot be read or written."""
        assert self.path is not None and self.parent is not None
        try:
            others = []  # the folders of other versions and sources (another virtual environment's, or
            for other in self.parent.glob(f"{PREFIX}*"):  # stale ones): the least recently written go,
                if other != self.path and other.is_dir():  # past FOLDERS_KEPT, so that two environments
                    try:  # sharing a cache folder keep each its own
                        others.append((other.stat().st_mtime, str(other)))
                    except OSError:
                        continue
            for _, other_path in sorted(others)[:max(0, len(others) - (FOLDERS_KEPT - 1))]:
                shutil.rmtree(other_path, ignore_errors=True)
            dated = []
            for e in os.scandir(self.path) if private(self.path) and not self.path.is_symlink() else ():
                try:
                    stat = e.stat()
                except OSError:
                    continue
                dated.append((stat.st_mtime, stat.st_size, e.path))
            total = sum(size for _, size, _ in dated)
            if len(dated) < MAX_FILES and total < MAX_BYTES:
                return
            dated.sort()
            left = len(dated)
            for _, size, path in dated:
                if left <= MAX_FILES * 3 // 4 and total <= MAX_BYTES * 3 // 4:
                    break
                left, total = left - 1, total - size
                try:
                    os.unlink(path)
                except OSError:
                    pass
        except OSError:
            pass


def _printable(value, depth: int = 0) -> bool:
    """Is every text in an answer printable? SymPy prints none that is not: an answer holding a control or
    format character (a terminal's escape, put there by hand) is no answer gradcheck wrote."""
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, dict):
        return depth < 32 and all(_printable(k, depth + 1) and _printable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return depth < 32 and all(_printable(v, depth + 1) for v in value)
    return True


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(a.tobytes()).decode("ascii")


def _checksum(data: dict) -> str:
    """A hash of an entry's fields but its checksum (a file edited or damaged in a way JSON still reads)."""
    body = {k: v for k, v in data.items() if k != "check"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _arrays(slot, out_size: int, size: int) -> tuple | None:
    """One operand's (rows, cols, values) from an entry, as `local_jacobian` makes them; None where the
    slot is not of that shape or an index falls outside the output or the operand."""
    if not isinstance(slot, dict) or set(slot) != {"rows", "cols", "values", "dtype"} or slot["dtype"] not in ("float", "complex"):
        return None
    try:
        raw = [base64.b64decode(slot[k], validate=True) for k in ("rows", "cols", "values")]
    except (TypeError, ValueError, binascii.Error):
        return None
    width = 16 if slot["dtype"] == "complex" else 8
    if len(raw[0]) % 8 or len(raw[1]) != len(raw[0]) or len(raw[2]) != len(raw[0]) // 8 * width:
        return None
    rows = np.frombuffer(raw[0], dtype="<i8").astype(int)
    cols = np.frombuffer(raw[1], dtype="<i8").astype(int)
    values = np.frombuffer(raw[2], dtype="<c16" if width == 16 else "<f8").astype(complex if width == 16 else float)
    if rows.size and (rows.min() < 0 or rows.max() >= out_size or cols.min() < 0 or cols.max() >= size):
        return None
    return rows, cols, values


_store: Store | None = None


def store() -> Store:
    """This process's store (its folder, SymPy's version and the sources' hash found once)."""
    global _store
    folder = directory()
    if _store is None or _store.parent != folder:
        _store = Store(folder, partials_cache.sympy_version(), runtime_hash())
    return _store


def runtime_hash() -> str:
    """A hash of the sources that make the Jacobians, Python's version, numpy's, the machine's and its C
    library's (the floats a Jacobian's values are computed with: `math`'s functions are the C library's):
    another of any names another folder, so that a cache folder shared between machines never gives one
    the other's last bits."""
    digest = hashlib.sha256(partials_cache.sources_hash(SOURCES).encode())
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    digest.update(f"|{sys.version}|{np.__version__}|{platform.machine()}|{sys.platform}|{libc}".encode())
    return digest.hexdigest()[:20]
