"""Rendering DOT text to SVG or PNG with Graphviz's `dot`, where it is installed."""

from __future__ import annotations

import shutil
import subprocess

from ..core.errors import UsageError
from ..core.limits import MAX_DRAWN_NODES, size_error

INSTALL = ("Install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
           "conda: conda install graphviz), or use --format dot and render the text elsewhere.")


def render(dot_text: str, fmt: str, nodes: int = 0) -> bytes:
    """The image bytes of a picture of `nodes` nodes; a UsageError when it is too large for Graphviz
    to lay out in reasonable time (its layout grows faster than the graph), or Graphviz is missing or fails."""
    if nodes > MAX_DRAWN_NODES:
        raise UsageError(size_error(f"--format {fmt}: the picture", nodes, MAX_DRAWN_NODES, "nodes",
                                    "MAX_DRAWN_NODES") + "; --format dot prints its source at any size")
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(f"--format {fmt} needs Graphviz's `dot`, which is not installed. " + INSTALL)
    result = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True)
    if result.returncode != 0:
        raise UsageError(f"Graphviz failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
