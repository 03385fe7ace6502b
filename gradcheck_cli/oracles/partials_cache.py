"""SymPy's partial derivatives of the elementwise gates, kept between runs, so that a check whose
gates are all elementwise need not import SymPy (a third of a second) to differentiate them again.

SymPy differentiates each kind of elementwise call (the gate, its attributes, its arity) once; its
partials are stored as `symvalues.tree_of` trees, plain JSON data evaluated by `symvalues.tree_value`
(the evaluator every SymPy value of a check goes through), never text read back by SymPy. The file is
named by SymPy's version and a hash of the sources that make the partials (the gates' SymPy forms, this
module and the ones that differentiate and evaluate): a new SymPy or a changed gate names another file,
and an entry is used only when the file's own record of both matches. Only the registry's own gates are
kept. It lives in gradcheck's cache folder (`core/cache.py`: GRADCHECK_CACHE_DIR, else
`$XDG_CACHE_HOME/gradcheck`, `~/.cache/gradcheck`); GRADCHECK_NO_CACHE=1 turns it off. A file that cannot be read or written is as none: SymPy then
differentiates, as without the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

from ..core.cache import directory, read_json, write_json
from .symvalues import TREE_FUNCTIONS

SOURCES = ("oracles/symbolic.py", "oracles/symvalues.py", "oracles/partials_cache.py")  # and every gates/*.py
HEADS = {"s": 2, "n": 2, "pow": 3}  # a tree node's head -> its length, where fixed
MAX_KINDS = 2_000  # kinds kept in one file (a constant is an attribute: `x + 0.3` and `x + 0.4` are two kinds)


def sympy_version() -> str | None:
    """SymPy's version, read from its release file without importing it; None where it cannot be read."""
    try:
        spec = importlib.util.find_spec("sympy")
        if spec is None or not spec.submodule_search_locations:
            return None
        text = (Path(list(spec.submodule_search_locations)[0]) / "release.py").read_text(encoding="utf-8")
    except (OSError, ImportError, ValueError):
        return None
    found = re.search(r"""__version__\s*=\s*["']([0-9A-Za-z.+_-]+)["']""", text)
    return found.group(1) if found else None


def sources_hash(sources: tuple = SOURCES) -> str:
    """A hash of the sources that make the partials (or `sources`: paths under gradcheck_cli), and every gates/*.py."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in sorted(p.relative_to(root).as_posix() for p in (root / "gates").glob("*.py")) + list(sources):
        digest.update(name.encode())
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            digest.update(b"(missing)")
    return digest.hexdigest()[:20]


class Store:
    """The partials of one SymPy version and one set of sources: read once, written back on a miss."""

    def __init__(self, folder: Path | None, version: str | None, sources: str):
        self.version, self.sources = version, sources
        self.path = None if folder is None or version is None else folder / f"partials-sympy{version}-{sources}.json"
        self.entries: dict | None = None
        self.pending = False  # kinds made since the file was last written

    def get(self, key: str) -> list | None:
        """The trees of one kind of call, or None."""
        if self.entries is None:
            self.entries = self._read()
        found = self.entries.get(key)
        return found if isinstance(found, list) and all(valid(t) for t in found) else None

    def put(self, key: str, trees: list) -> None:
        """Keeps the trees of one kind of call, written with the others made since by `flush`."""
        if self.path is None:
            return
        if self.entries is None:
            self.entries = self._read()
        self.entries[key] = trees
        self.pending = True

    def flush(self) -> None:
        """Writes the kinds made since the last flush (the file rewritten whole, atomically, with what
        another process wrote meanwhile; at most MAX_KINDS kinds, the ones already kept first); quietly
        not where the folder cannot be written."""
        if not self.pending or self.path is None or self.entries is None:
            return
        self.pending = False
        kept = self._read()
        added = 0
        for key, trees in self.entries.items():
            if len(kept) >= MAX_KINDS:
                break
            if key not in kept:
                kept[key] = trees
                added += 1
        self.entries = {**kept, **self.entries}
        if added:
            write_json(self.path, {"sympy": self.version, "sources": self.sources, "partials": kept})

    def _read(self) -> dict:
        data = read_json(self.path)
        if (not isinstance(data, dict) or data.get("sympy") != self.version or data.get("sources") != self.sources
                or not isinstance(data.get("partials"), dict)):
            return {}  # none, damaged, or another version's or another source's: never used
        return data["partials"]


def valid(tree) -> bool:
    """A tree of the shape `tree_of` makes (a file edited or cut short is not evaluated)."""
    stack = [tree]
    while stack:
        t = stack.pop()
        if not isinstance(t, list) or not t or not isinstance(t[0], str):
            return False
        head = t[0]
        if head in HEADS and len(t) != HEADS[head]:
            return False
        if head == "s":
            if not isinstance(t[1], int) or isinstance(t[1], bool) or t[1] < 0:
                return False
        elif head == "n":
            if not isinstance(t[1], (int, float)) or isinstance(t[1], bool):
                return False
        elif head in ("add", "mul", "pow"):
            stack.extend(t[1:])
        elif head == "f":
            if len(t) < 3 or t[1] not in TREE_FUNCTIONS:
                return False
            stack.extend(t[2:])
        else:
            return False
    return True


_store: Store | None = None


def store() -> Store:
    """This process's store (its folder, SymPy's version and the sources' hash found once)."""
    global _store
    folder = directory()
    if _store is None or (_store.path is None) != (folder is None) or (
            folder is not None and _store.path is not None and _store.path.parent != folder):
        _store = Store(folder, sympy_version(), sources_hash())
    return _store
